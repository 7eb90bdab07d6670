"""Weights by any name -> verified state_dict + metadata; the single door to pretrained models.

``weights`` may be a manifest name or alias (``"face_paint_512_v2"``, ``"webtoon"``), a local
file (``.pt``/``.pth``/``.safetensors``), a TF1 checkpoint (folder, prefix or ``.index``;
converted on the fly), an ``https://`` URL or ``hf://owner/repo/file``. Every one ends in
:func:`load_state_dict`; :func:`load_generator` builds the model from it.

The manifest (``animegan2/weights_manifest.json``, or ``$ANIMEGAN2_MANIFEST``) is data: one
entry per named weight with its files, mirrors, sizes, digests, upsampling mode, epsilon,
training size, style, source and licence note.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import torch
from torch import Tensor, nn

from . import download
from .download import FileSpec
from .errors import ManifestError, WeightsError
from .model import UPSAMPLE_MODES, Generator

BUNDLED_MANIFEST = Path(__file__).with_name("weights_manifest.json")
DEFAULT_WEIGHTS = "face_paint_512_v2"
FORMATS = ("torch-state-dict", "tf1-checkpoint")
_HUB_HASH = re.compile(r"-([a-f0-9]{8,64})\.")  # torch.hub's name-<sha256 prefix>.ext convention


@dataclass(frozen=True)
class WeightsMeta:
    """What a weight file needs besides its tensors to be run correctly."""

    architecture: str = "animeganv2"
    upsample: str = "align_corners"
    norm_eps: float = 1e-5
    size: int | None = None
    style: str | None = None
    name: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class WeightSpec:
    """One manifest entry: a named weight, its files and how to run it."""

    name: str
    aliases: tuple[str, ...]
    description: str
    format: str
    architecture: str
    upsample: str
    norm_eps: float
    size: int | None
    style: str
    source: str
    license: str
    files: tuple[FileSpec, ...]

    @property
    def meta(self) -> WeightsMeta:
        return WeightsMeta(self.architecture, self.upsample, self.norm_eps, self.size, self.style, self.name, self.license)


# --- the manifest ---

_ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "aliases": (list,),
    "description": (str,),
    "format": (str,),
    "architecture": (str,),
    "upsample": (str,),
    "norm_eps": (float, int),
    "size": (int,),
    "style": (str,),
    "source": (str,),
    "license": (str,),
    "files": (list,),
}
_ENTRY_REQUIRED = ("description", "format", "upsample", "norm_eps", "style", "source", "license", "files")
_FILE_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "urls": (list,),
    "size": (int,),
    "sha256": (str,),
    "sha1_git": (str,),
    "unverified": (list,),
    "note": (str,),
}
_DIGEST_RE = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha1_git": re.compile(r"[0-9a-f]{40}")}
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def manifest_path() -> Path:
    """``$ANIMEGAN2_MANIFEST`` if set (it replaces the bundled manifest), else the bundled one."""
    return Path(os.environ.get("ANIMEGAN2_MANIFEST") or BUNDLED_MANIFEST)


def _check_fields(where: str, raw: Any, fields: dict[str, tuple[type, ...]], required: tuple[str, ...]) -> None:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: must be a JSON object, found {type(raw).__name__}")
    for key, value in raw.items():
        if key.startswith("$"):
            continue
        if key not in fields:
            raise ManifestError(f"{where}, field {key!r}: unknown field (known: {', '.join(fields)})")
        if not isinstance(value, fields[key]) or isinstance(value, bool):
            raise ManifestError(f"{where}, field {key!r}: expected {fields[key][0].__name__}, found {type(value).__name__}")
    for key in required:
        if key not in raw:
            raise ManifestError(f"{where}, field {key!r}: missing")


def _parse_file(where: str, raw: Any) -> FileSpec:
    _check_fields(where, raw, _FILE_FIELDS, ("name", "urls"))
    name = raw["name"]
    if not name or "/" in name or "\\" in name or name.startswith(".") or ".." in name:
        raise ManifestError(f"{where}, field 'name': {name!r} is not a plain file name (no '/', '..' or leading '.')")
    if not raw["urls"]:
        raise ManifestError(f"{where}, field 'urls': empty; list at least one mirror")
    for url in raw["urls"]:
        try:
            if not isinstance(url, str):
                raise WeightsError(f"{url!r} is not a string")
            download.parse_hf(url) if url.startswith("hf://") else download.check_url(url)
        except WeightsError as exc:
            raise ManifestError(f"{where}, field 'urls': {exc}") from exc
    for algo, pattern in _DIGEST_RE.items():
        if algo in raw and not pattern.fullmatch(raw[algo]):
            raise ManifestError(f"{where}, field {algo!r}: {raw[algo]!r} is not a lower-case hex {algo} digest")
    if raw.get("size", 1) <= 0:
        raise ManifestError(f"{where}, field 'size': must be positive")
    unverified = tuple(raw.get("unverified", ()))
    for item in unverified:
        if item not in ("size", "sha256", "sha1_git") or item not in raw:
            raise ManifestError(f"{where}, field 'unverified': {item!r} is not a size or digest field of this file")
    return FileSpec(name, tuple(raw["urls"]), raw.get("size"), raw.get("sha256"), raw.get("sha1_git"), unverified)


def _parse_entry(where: str, name: str, raw: Any) -> WeightSpec:
    _check_fields(where, raw, _ENTRY_FIELDS, _ENTRY_REQUIRED)
    if raw["format"] not in FORMATS:
        raise ManifestError(f"{where}, field 'format': {raw['format']!r} is not one of {FORMATS}")
    if raw["upsample"] not in UPSAMPLE_MODES:
        raise ManifestError(f"{where}, field 'upsample': {raw['upsample']!r} is not one of {UPSAMPLE_MODES}")
    if not raw["files"]:
        raise ManifestError(f"{where}, field 'files': empty")
    files = tuple(_parse_file(f"{where}, files[{i}]", f) for i, f in enumerate(raw["files"]))
    if len({f.name for f in files}) != len(files):
        raise ManifestError(f"{where}, field 'files': two files share a name")
    if raw["format"] == "tf1-checkpoint" and sum(f.name.endswith(".index") for f in files) != 1:
        raise ManifestError(f"{where}, field 'files': a tf1-checkpoint needs exactly one '.index' file")
    return WeightSpec(
        name=name,
        aliases=tuple(raw.get("aliases", ())),
        description=raw["description"],
        format=raw["format"],
        architecture=raw.get("architecture", "animeganv2"),
        upsample=raw["upsample"],
        norm_eps=float(raw["norm_eps"]),
        size=raw.get("size"),
        style=raw["style"],
        source=raw["source"],
        license=raw["license"],
        files=files,
    )


def load_manifest(path: str | Path | None = None) -> dict[str, WeightSpec]:
    """Read and validate a manifest (default :func:`manifest_path`); name -> :class:`WeightSpec`.

    Raises :class:`ManifestError` naming the entry and field at fault.

    >>> sorted(load_manifest())[:2]
    ['celeba_distill', 'face_paint_512_v1']
    """
    path = Path(path or manifest_path())
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read the weights manifest {path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("weights"), dict):
        raise ManifestError(f"{path}: expected a JSON object with a 'weights' object (name -> entry)")
    specs: dict[str, WeightSpec] = {}
    seen: dict[str, str] = {}
    for name, entry in raw["weights"].items():
        where = f"{path}: entry {name!r}"
        if not _NAME_RE.fullmatch(name):
            raise ManifestError(f"{where}: names are lower-case letters, digits, '_', '.', '-'")
        spec = _parse_entry(where, name, entry)
        for label in (name, *spec.aliases):
            if label in seen:
                raise ManifestError(f"{where}, field 'aliases': {label!r} already names entry {seen[label]!r}")
            seen[label] = name
        specs[name] = spec
    return specs


def get_spec(name: str) -> WeightSpec:
    """The manifest entry called ``name`` (or having it as an alias)."""
    specs = load_manifest()
    for spec in specs.values():
        if name == spec.name or name in spec.aliases:
            return spec
    raise WeightsError(
        f"no weights named {name!r}: known names are {', '.join(sorted(specs))}; "
        "or give a file, a TF1 checkpoint, an https:// URL or hf://owner/repo/file"
    )


# --- fetching named weights ---


def _import_hint(spec: WeightSpec) -> str:
    urls = " and ".join(f.urls[0] for f in spec.files)
    target = "FILE" if len(spec.files) == 1 else "FOLDER"
    return f"Fetch {urls} elsewhere, then run `animegan2 weights import {spec.name} {target}`."


def _tf_prefix(spec: WeightSpec) -> str:
    return next(f.name for f in spec.files if f.name.endswith(".index"))[: -len(".index")]


def _tf_check(prefix: str):
    def check(folder: Path) -> None:
        from .tfcheckpoint import TFCheckpoint

        TFCheckpoint(folder / prefix).verify()

    return check


def _fetch_files(spec: WeightSpec, progress: bool, check_hash: bool, sources: dict[str, Path] | None = None) -> dict[str, Path]:
    check = _tf_check(_tf_prefix(spec)) if spec.format == "tf1-checkpoint" else None
    return download.fetch(
        spec.name, spec.files, progress=progress, check_hash=check_hash, check=check, sources=sources,
        offline_hint=_import_hint(spec),
    )


def _converted_path(spec: WeightSpec) -> Path:
    """Where the converted safetensors of a TF entry lives, keyed by its sources' digests."""
    digests = []
    for f in spec.files:
        pin = download.cache_dir() / "pins" / spec.name / (f.name + ".sha256")
        digests.append(f.sha256 or f.sha1_git or (pin.read_text().strip() if pin.exists() else ""))
    key = hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]
    return download.cache_dir() / "converted" / f"{spec.name}-{key}.safetensors"


def _convert_cached(spec: WeightSpec, paths: dict[str, Path]) -> Path:
    from filelock import FileLock

    from .convert import convert_checkpoint, save_weights

    out = _converted_path(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not out.exists():
            state, metadata = convert_checkpoint(paths[_tf_prefix(spec) + ".index"].parent / _tf_prefix(spec))
            save_weights(state, metadata, out)
    return out


def fetch_weights(name: str, *, progress: bool = True, check_hash: bool = True) -> Path:
    """Download (or find in the cache) and verify the manifest entry ``name``; return the
    file to load: the ``.pt`` itself, or the converted ``.safetensors`` of a TF1 checkpoint.

    >>> fetch_weights("face_paint_512_v2")  # doctest: +SKIP
    PosixPath('/root/.cache/torch/hub/animegan2/face_paint_512_v2/face_paint_512_v2.pt')
    """
    spec = get_spec(name)
    paths = _fetch_files(spec, progress, check_hash)
    if spec.format == "tf1-checkpoint":
        return _convert_cached(spec, paths)
    return paths[spec.files[0].name]


def cached_weights(name: str) -> Path | None:
    """The loadable cached file of entry ``name`` (see :func:`fetch_weights`), or None; no network."""
    spec = get_spec(name)
    folder = download.cache_dir() / spec.name
    if not all((folder / f.name).exists() for f in spec.files):
        return None
    if spec.format == "tf1-checkpoint":
        out = _converted_path(spec)
        return out if out.exists() else None
    return folder / spec.files[0].name


def import_weights(name: str, source: str | Path, *, progress: bool = True) -> Path:
    """Put files obtained elsewhere into the cache for entry ``name``, after verifying them
    exactly as a download would be; ``source`` is the file, or a folder holding the files
    (a TF1 checkpoint's ``.index`` and ``.data-*``) under their manifest names.

    >>> import_weights("hayao", "/media/usb/generator_Hayao_weight")  # doctest: +SKIP
    """
    spec = get_spec(name)
    source = Path(source)
    if source.is_file() and len(spec.files) == 1:
        sources = {spec.files[0].name: source}
    elif source.is_dir():
        sources = {f.name: source / f.name for f in spec.files}
    else:
        raise WeightsError(f"cannot import {source} as {spec.name}: give the file, or a folder holding {[f.name for f in spec.files]}")
    absent = [str(p) for p in sources.values() if not p.is_file()]
    if absent:
        raise WeightsError(f"cannot import {spec.name}: missing {', '.join(absent)}")
    _fetch_files(spec, progress, True, sources)
    return fetch_weights(spec.name, progress=progress)


def verify_cache() -> list[tuple[str, str, str | None]]:
    """Re-hash every cached file of every manifest entry: (entry, file, problem or None)."""
    report = []
    for spec in load_manifest().values():
        for f in spec.files:
            path = download.cache_dir() / spec.name / f.name
            if not path.exists():
                continue
            try:
                download.verify_file(path, f, spec.name, f"the cache ({path})")
                report.append((spec.name, f.name, None))
            except WeightsError as exc:
                report.append((spec.name, f.name, str(exc)))
    return report


# --- loading ---


def _load_file(path: Path) -> tuple[dict[str, Tensor], WeightsMeta]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                raw = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"cannot read {path} as safetensors: {exc}") from exc
        meta = WeightsMeta(
            architecture=raw.get("architecture", "animeganv2"),
            upsample=raw.get("upsample", "align_corners"),
            norm_eps=float(raw.get("norm_eps", 1e-5)),
            size=int(raw["size"]) if raw.get("size") else None,
            style=raw.get("style"),
            name=path.stem,
        )
        return state, meta
    if _is_tf_checkpoint(path):
        from .convert import convert_checkpoint

        state, _ = convert_checkpoint(path)
        return state, WeightsMeta(upsample="tf", norm_eps=1e-12, name=path.name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"refusing to load {path}: it holds Python objects other than tensors, and unpickling them "
            f"could run code ({str(exc).splitlines()[0]}). Only plain state_dicts are loaded; "
            "re-save it as one (torch.save(model.state_dict(), ...)) from a trusted environment"
        ) from exc
    except Exception as exc:
        raise WeightsError(f"cannot load {path} as a PyTorch weights file: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state_dict of tensors (found {type(state).__name__})")
    return state, WeightsMeta(name=path.stem)


def _is_tf_checkpoint(path: Path) -> bool:
    if path.is_dir():
        return (path / "checkpoint").is_file() or any(path.glob("*.index"))
    return path.suffix == ".index" or Path(str(path) + ".index").is_file()


def _remote(url: str, progress: bool, check_hash: bool) -> Path:
    """Download a URL or hf:// address into ``<cache>/urls/<hash>/``; verify torch.hub's
    ``-<sha256 prefix>.`` in its file name when ``check_hash``."""
    if not url.startswith("hf://"):
        download.check_url(url)
    path = download.parse_hf(url)[1] if url.startswith("hf://") else unquote(urlsplit(url).path)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.rsplit("/", 1)[-1]).lstrip(".") or "weights.pt"
    digest = _HUB_HASH.search(name) if check_hash else None
    spec = FileSpec(name, (url,), sha256=digest.group(1) if digest else None)
    key = "urls/" + hashlib.sha256(url.encode()).hexdigest()[:16]
    return download.fetch(key, [spec], progress=progress, check_hash=check_hash, pin_unknown=False)[name]


def load_state_dict(
    weights: str | Path, *, progress: bool = True, check_hash: bool = True
) -> tuple[dict[str, Tensor], WeightsMeta]:
    """Resolve ``weights`` to a verified state_dict and its :class:`WeightsMeta`.

    ``weights``: a manifest name or alias, a local ``.pt``/``.pth``/``.safetensors`` file, a TF1
    checkpoint (folder, prefix or ``.index``; converted on the fly), an ``https://`` URL or
    ``hf://owner/repo[@revision]/file``. ``check_hash`` re-hashes cached files before use (downloads
    are always verified) and, for URLs, checks torch.hub's ``-<sha256 prefix>.`` file-name convention.

    >>> state, meta = load_state_dict("face_paint_512_v2")  # doctest: +SKIP
    >>> meta.upsample, meta.norm_eps, meta.size
    ('align_corners', 1e-05, 512)
    """
    if isinstance(weights, str) and re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", weights):
        return _load_file(_remote(weights, progress, check_hash))
    path = Path(weights).expanduser()
    if not (path.exists() or Path(str(path) + ".index").is_file()):
        if isinstance(weights, Path):
            raise WeightsError(f"no weights at {path}: the file does not exist")
        spec = get_spec(weights)
        state, _ = _load_file(fetch_weights(spec.name, progress=progress, check_hash=check_hash))
        return state, spec.meta
    return _load_file(path)


def load_generator(
    weights: str | Path,
    *,
    device: str | torch.device = "cpu",
    upsample: str | None = None,
    norm_eps: float | None = None,
    progress: bool = True,
    check_hash: bool = True,
) -> nn.Module:
    """Build the generator for ``weights`` with its metadata's upsampling and epsilon (unless
    overridden), load the tensors strictly, and return it in eval mode on ``device``.

    >>> g = load_generator("face_paint_512_v2")  # doctest: +SKIP
    >>> g.upsample, g.norm_eps
    ('align_corners', 1e-05)
    """
    state, meta = load_state_dict(weights, progress=progress, check_hash=check_hash)
    model = Generator(
        upsample=upsample or meta.upsample,
        norm_eps=norm_eps if norm_eps is not None else meta.norm_eps,
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{weights} is not an AnimeGANv2 generator state_dict: {exc}") from exc
    return model.to(device).eval()
