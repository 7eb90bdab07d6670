"""Weights by any name -> verified state_dict + metadata; the single door to pretrained models.

``weights`` may be a manifest name or alias (``"face_paint_512_v2"``, ``"webtoon"``), a local
file (``.pt``/``.pth``/``.safetensors``), a TF1 checkpoint (folder, prefix or ``.index``;
converted on the fly), an AnimeGANv3 ``.onnx`` file, an ``https://`` URL or
``hf://owner/repo/file``. Every one resolves to a verified local file; :func:`load_generator`
builds the model its architecture needs (:func:`build_model`; ONNX files become an
:class:`~animegan2.onnx_v3.OnnxGeneratorV3`).

The manifest (``animegan2/weights_manifest.json``, or ``$ANIMEGAN2_MANIFEST``) is data: one
entry per named weight with its files, mirrors, sizes, digests, upsampling mode, epsilon,
training size, style, source and licence note.
"""

from __future__ import annotations

import hashlib
import json
import math
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
from ._atomic import write_bytes_atomic
from .download import FileSpec
from .errors import ConfigError, ManifestError, WeightsError
from .model import UPSAMPLE_MODES, Generator
from .model_v1 import GeneratorV1

BUNDLED_MANIFEST = Path(__file__).with_name("weights_manifest.json")
DEFAULT_WEIGHTS = "face_paint_512_v2"
FORMATS = ("torch-state-dict", "tf1-checkpoint", "onnx", "numpy")  # numpy: the trainer's vgg19.npy
ARCHITECTURES = {
    "animeganv2": "AnimeGANv2",
    "animeganv1": "AnimeGAN v1",
    "animeganv3": "AnimeGANv3",
    "vgg19": "VGG19 (training features, animegan2.train)",
}  # id -> display
_WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors", ".onnx", ".index", ".ckpt")  # a string ending so is a path
_HUB_HASH = re.compile(r"-([a-f0-9]{8,64})\.")  # torch.hub's name-<sha256 prefix>.ext convention


@dataclass(frozen=True)
class WeightsMeta:
    """What a weight file needs besides its tensors to be run correctly. ``upsample`` and
    ``norm_eps`` are None where the architecture fixes them (AnimeGAN v1, v3)."""

    architecture: str = "animeganv2"
    upsample: str | None = "align_corners"
    norm_eps: float | None = 1e-5
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
    upsample: str | None
    norm_eps: float | None
    size: int | None
    style: str
    source: str
    license: str
    files: tuple[FileSpec, ...]

    @property
    def meta(self) -> WeightsMeta:
        """How to run this entry's weights (what :func:`load_state_dict` returns for it)."""
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
_ENTRY_REQUIRED = ("description", "format", "style", "source", "license", "files")
_V2_NUMERICS = ("upsample", "norm_eps")  # required for animeganv2, fixed by the other architectures
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
    architecture = raw.get("architecture", "animeganv2")
    if architecture not in ARCHITECTURES:
        raise ManifestError(f"{where}, field 'architecture': {architecture!r} is not one of {tuple(ARCHITECTURES)}")
    if (raw["format"] == "onnx") != (architecture == "animeganv3"):
        raise ManifestError(f"{where}, field 'format': animeganv3 weights are 'onnx' files, and only they are")
    for key in _V2_NUMERICS:
        if architecture == "animeganv2" and key not in raw:
            raise ManifestError(f"{where}, field {key!r}: missing")
        if architecture != "animeganv2" and key in raw:
            raise ManifestError(f"{where}, field {key!r}: {architecture} fixes it; remove the field")
    if "upsample" in raw and raw["upsample"] not in UPSAMPLE_MODES:
        raise ManifestError(f"{where}, field 'upsample': {raw['upsample']!r} is not one of {UPSAMPLE_MODES}")
    if "norm_eps" in raw and not (math.isfinite(raw["norm_eps"]) and raw["norm_eps"] > 0):
        raise ManifestError(f"{where}, field 'norm_eps': {raw['norm_eps']!r} is not a positive number")
    if not raw["files"]:
        raise ManifestError(f"{where}, field 'files': empty")
    files = tuple(_parse_file(f"{where}, files[{i}]", f) for i, f in enumerate(raw["files"]))
    if len({f.name for f in files}) != len(files):
        raise ManifestError(f"{where}, field 'files': two files share a name")
    if raw["format"] == "tf1-checkpoint" and sum(f.name.endswith(".index") for f in files) != 1:
        raise ManifestError(f"{where}, field 'files': a tf1-checkpoint needs exactly one '.index' file")
    if raw["format"] == "onnx" and (len(files) != 1 or not files[0].name.endswith(".onnx")):
        raise ManifestError(f"{where}, field 'files': an onnx entry is exactly one '.onnx' file")
    return WeightSpec(
        name=name,
        aliases=tuple(raw.get("aliases", ())),
        description=raw["description"],
        format=raw["format"],
        architecture=architecture,
        upsample=raw.get("upsample"),
        norm_eps=float(raw["norm_eps"]) if "norm_eps" in raw else None,
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


def _onnx_check(name: str):
    def check(folder: Path) -> None:
        from .onnx_v3 import OnnxGeneratorV3

        OnnxGeneratorV3(folder / name)

    return check


def _fetch_files(spec: WeightSpec, progress: bool, check_hash: bool, sources: dict[str, Path] | None = None) -> dict[str, Path]:
    check = None
    if spec.format == "tf1-checkpoint":
        check = _tf_check(_tf_prefix(spec))
    elif spec.format == "onnx":
        check = _onnx_check(spec.files[0].name)
    return download.fetch(
        spec.name, spec.files, progress=progress, check_hash=check_hash, check=check, sources=sources,
        offline_hint=_import_hint(spec),
    )


def _converted_path(spec: WeightSpec) -> Path:
    """Where the converted safetensors of a TF entry lives, keyed by its sources' digests."""
    digests = []
    for f in spec.files:
        pin = download.pin_path(spec.name, f.name)
        digests.append(f.sha256 or f.sha1_git or (pin.read_text().strip() if pin.exists() else ""))
    key = hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]
    return download.cache_dir() / "converted" / f"{spec.name}-{key}.safetensors"


def _convert_cached(spec: WeightSpec, paths: dict[str, Path], check_hash: bool) -> Path:
    """The converted safetensors of a TF entry, made once from its verified sources. Its sha256 is
    recorded beside it (``<file>.sha256``) and checked before each use when ``check_hash``: an
    altered, truncated or unrecorded conversion is converted again."""
    from .convert import convert_checkpoint, save_weights

    out = _converted_path(spec)
    record = out.with_name(out.name + ".sha256")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise download.disk_error(exc, out.parent) from exc
    with download.locked(Path(str(out) + ".lock"), f"converting {spec.name}"):
        if out.exists() and check_hash:
            recorded = record.read_text().strip() if record.exists() else None
            actual = download.file_digests(out)["sha256"]
            if actual != recorded:
                why = f"sha256 {actual} differs from {recorded}, recorded at conversion" if recorded else "no digest recorded"
                download.log.warning("converted cache file %s: %s; converting it again from the verified sources", out, why)
                out.unlink()
        if not out.exists():
            state, metadata = convert_checkpoint(paths[_tf_prefix(spec) + ".index"].parent / _tf_prefix(spec))
            record.unlink(missing_ok=True)
            save_weights(state, metadata, out)
            try:
                write_bytes_atomic(record, (download.file_digests(out)["sha256"] + "\n").encode())
            except OSError as exc:
                raise download.disk_error(exc, record) from exc
    return out


def _files_cached(spec: WeightSpec) -> bool:
    return all((download.cache_dir() / spec.name / f.name).exists() for f in spec.files)


def fetch_weights(name: str, *, progress: bool = True, check_hash: bool = True) -> Path:
    """Download (or find in the cache) and verify the manifest entry ``name``; return the
    file to load: the ``.pt`` or ``.onnx`` itself, or the converted ``.safetensors`` of a TF1
    checkpoint. The entry's licence note is logged (a notice in the CLI) when its files are
    first downloaded.

    >>> fetch_weights("face_paint_512_v2")  # doctest: +SKIP
    PosixPath('/root/.cache/torch/hub/animegan2/face_paint_512_v2/face_paint_512_v2.pt')
    """
    spec = get_spec(name)
    fresh = not _files_cached(spec)
    paths = _fetch_files(spec, progress, check_hash)
    if fresh:
        download.log.warning("licence note for %s: %s", spec.name, spec.license)
    if spec.format == "tf1-checkpoint":
        return _convert_cached(spec, paths, check_hash)
    return paths[spec.files[0].name]


def cached_weights(name: str) -> Path | None:
    """The loadable cached file of entry ``name`` (see :func:`fetch_weights`), or None; no network."""
    spec = get_spec(name)
    if not _files_cached(spec):
        return None
    if spec.format == "tf1-checkpoint":
        out = _converted_path(spec)
        return out if out.exists() else None
    return download.cache_dir() / spec.name / spec.files[0].name


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
    """Re-hash every cached file of every manifest entry: (entry, file, problem or None).
    A TF1 entry's converted ``.safetensors`` is checked too, once its sources pass: against a
    fresh conversion of them."""
    report = []
    for spec in load_manifest().values():
        checked = []
        for f in spec.files:
            path = download.cache_dir() / spec.name / f.name
            if not path.exists():
                continue
            try:
                download.verify_file(path, f, spec.name, f"the cache ({path})")
                checked.append((spec.name, f.name, None))
            except WeightsError as exc:
                checked.append((spec.name, f.name, str(exc)))
        report += checked
        converted = _converted_path(spec) if spec.format == "tf1-checkpoint" else None
        sources_ok = len(checked) == len(spec.files) and not any(problem for *_, problem in checked)
        if converted is not None and converted.exists() and sources_ok:
            report.append((spec.name, converted.name, _conversion_problem(spec, converted)))
    return report


def _conversion_problem(spec: WeightSpec, converted: Path) -> str | None:
    """Why a cached conversion is not what the entry's cached sources convert to, or None."""
    from .convert import convert_checkpoint

    state, metadata = convert_checkpoint(download.cache_dir() / spec.name / _tf_prefix(spec))
    redo = "delete it and it is converted again on next use"
    try:
        cached, cached_meta = read_safetensors(converted)
    except WeightsError as exc:
        return f"{exc}; {redo}"
    same_tensors = cached.keys() == state.keys() and all(torch.equal(cached[k], v) for k, v in state.items())
    # the converter's version may differ; what it converted from may not
    same_meta = all(cached_meta.get(k) == v for k, v in metadata.items() if k != "converter")
    if not (same_tensors and same_meta):
        return f"the converted file {converted} differs from a fresh conversion of its verified sources; {redo}"
    return None


# --- loading ---


def _meta_from(raw: dict[str, str], name: str, where: Path) -> WeightsMeta:
    """The :class:`WeightsMeta` of string metadata as :mod:`animegan2.convert` writes it (and
    safetensors stores it); absent fields mean the published PyTorch weights' conventions.
    A value that cannot be right is a :class:`WeightsError` naming ``where`` and the field."""

    def bad(key: str, expected: str) -> WeightsError:
        return WeightsError(f"{where}: its metadata {key}={raw[key]!r} is not {expected}; fix the file's metadata or re-export it")

    architecture = raw.get("architecture", "animeganv2")
    if architecture not in ARCHITECTURES:
        raise bad("architecture", f"one of {', '.join(ARCHITECTURES)}")
    v2 = architecture == "animeganv2"
    upsample = raw.get("upsample", "align_corners") if v2 else None
    if v2 and upsample not in UPSAMPLE_MODES:
        raise bad("upsample", f"one of {', '.join(UPSAMPLE_MODES)}")
    norm_eps = None
    if v2:
        try:
            norm_eps = float(raw.get("norm_eps", 1e-5))
        except ValueError:
            norm_eps = math.nan
        if not (math.isfinite(norm_eps) and norm_eps > 0):
            raise bad("norm_eps", "a positive number")
    size = raw.get("size") or None
    if size is not None and not (size.isdigit() and int(size) > 0):
        raise bad("size", "a positive whole number of pixels")
    return WeightsMeta(
        architecture=architecture,
        upsample=upsample,
        norm_eps=norm_eps,
        size=int(size) if size else None,
        style=raw.get("style"),
        name=name,
    )


def _check_finite(state: dict[str, Tensor], where: Path) -> None:
    """Refuse weights holding NaN or infinity: they give a black image, not an error."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise WeightsError(f"{where}: tensor {key} holds {bad} NaN or infinite value(s); these weights are broken, get a good copy")


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and string metadata of a ``.safetensors`` file; WeightsError if unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read {path} as safetensors: {exc}") from exc


def _load_file(path: Path) -> tuple[dict[str, Tensor], WeightsMeta]:
    if path.suffix == ".safetensors":
        state, raw = read_safetensors(path)
        _check_finite(state, path)
        return state, _meta_from(raw, path.stem, path)
    if path.suffix == ".onnx":
        raise WeightsError(f"{path} is an ONNX model (AnimeGANv3): it has no state_dict; load it with load_generator")
    if path.is_dir() and not _is_tf_checkpoint(path):
        raise WeightsError(f"{path} is a folder without a TF1 checkpoint (no 'checkpoint' or .index file): give a weights file")
    if _is_tf_checkpoint(path):
        from .convert import convert_checkpoint

        state, metadata = convert_checkpoint(path)
        _check_finite(state, path)
        return state, _meta_from(metadata, path.name, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"refusing to load {path}: it holds Python objects other than tensors, and unpickling them "
            f"could run code ({str(exc).splitlines()[0]}). Only plain state_dicts are loaded; "
            "re-save it as one (torch.save(model.state_dict(), ...)) from a trusted environment"
        ) from exc
    except Exception as exc:  # torch.load fails on foreign bytes with EOFError, KeyError, RuntimeError, ...
        detail = str(exc).splitlines()[0] if isinstance(exc, (OSError, RuntimeError)) else "not a torch.save file"
        raise WeightsError(
            f"cannot load {path}: {detail}; give a .pt/.pth state_dict, a .safetensors file or a TF1 checkpoint"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state_dict of tensors (found {type(state).__name__})")
    _check_finite(state, path)
    if "b1.0.1.weight" in state:  # a plain state_dict says nothing else about its architecture
        return state, WeightsMeta(architecture="animeganv1", upsample=None, norm_eps=None, name=path.stem)
    return state, WeightsMeta(name=path.stem)


def _is_tf_checkpoint(path: Path) -> bool:
    if path.is_dir():
        return (path / "checkpoint").is_file() or any(path.glob("*.index"))
    return path.suffix == ".index" or Path(str(path) + ".index").is_file()


def _remote(url: str, progress: bool, check_hash: bool) -> Path:
    """Download a URL or hf:// address into ``<cache>/urls/<hash>/``; verify torch.hub's
    ``-<sha256 prefix>.`` in its file name when ``check_hash``. Without one, the sha256 seen on
    first download is pinned and the cached file checked against it, as for manifest entries."""
    if not url.startswith("hf://"):
        download.check_url(url)
    path = download.parse_hf(url)[1] if url.startswith("hf://") else unquote(urlsplit(url).path)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.rsplit("/", 1)[-1]).lstrip(".") or "weights.pt"
    digest = _HUB_HASH.search(name) if check_hash else None
    spec = FileSpec(name, (url,), sha256=digest.group(1) if digest else None)
    key = "urls/" + hashlib.sha256(url.encode()).hexdigest()[:16]
    return download.fetch(key, [spec], progress=progress, check_hash=check_hash)[name]


def _is_url(weights: str | Path) -> bool:
    return isinstance(weights, str) and re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", weights) is not None


def _local_or_spec(weights: str | Path) -> Path | WeightSpec:
    """The existing local file ``weights`` names, or its manifest entry; no network."""
    path = Path(weights).expanduser()
    if path.exists() or Path(str(path) + ".index").is_file():
        return path
    if isinstance(weights, Path) or "/" in weights or os.sep in weights or path.suffix in _WEIGHT_SUFFIXES:
        raise WeightsError(f"no weights named {str(weights)!r}: the file {path} does not exist")
    return get_spec(weights)


def check_weights(weights: str | Path) -> None:
    """Raise :class:`WeightsError` at once if ``weights`` is neither an existing local file nor
    a manifest name or alias; touches no network (URLs are checked when they are fetched).

    >>> check_weights("webtoon")
    """
    if not _is_url(weights):
        _local_or_spec(weights)


def _resolve(weights: str | Path, progress: bool, check_hash: bool) -> tuple[Path, WeightSpec | None]:
    """The verified local file ``weights`` names, and its manifest entry if it is a name."""
    if _is_url(weights):
        return _remote(weights, progress, check_hash), None
    found = _local_or_spec(weights)
    if isinstance(found, Path):
        return found, None
    return fetch_weights(found.name, progress=progress, check_hash=check_hash), found


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
    path, spec = _resolve(weights, progress, check_hash)
    state, meta = _load_file(path)
    return state, spec.meta if spec else meta


def build_model(meta: WeightsMeta, *, upsample: str | None = None, norm_eps: float | None = None) -> nn.Module:
    """An untrained generator of ``meta.architecture`` (``animeganv2`` or ``animeganv1``) set up
    as ``meta`` says, ``upsample``/``norm_eps`` overriding it (v2 only: v1 fixes both).

    >>> build_model(WeightsMeta(architecture="animeganv1")).upsample
    'tf'
    """
    if meta.architecture == "animeganv2":
        return Generator(
            upsample=upsample or meta.upsample or "align_corners",
            norm_eps=norm_eps if norm_eps is not None else meta.norm_eps or 1e-5,
        )
    if meta.architecture == "animeganv1":
        if upsample not in (None, "tf") or norm_eps is not None:
            raise ConfigError(
                "AnimeGAN v1 weights run with TF1 bilinear upsampling and their own norm epsilons only: "
                "drop upsample/norm_eps"
            )
        return GeneratorV1()
    raise WeightsError(
        f"weights of architecture {meta.architecture!r} cannot be built here (known: {', '.join(ARCHITECTURES)}; "
        "animeganv3 comes as an .onnx file)"
    )


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
    AnimeGANv3 ``.onnx`` files give an :class:`~animegan2.onnx_v3.OnnxGeneratorV3` (same call
    convention, run by ONNX Runtime on ``device``).

    >>> g = load_generator("face_paint_512_v2")  # doctest: +SKIP
    >>> g.upsample, g.norm_eps
    ('align_corners', 1e-05)
    """
    path, spec = _resolve(weights, progress, check_hash)
    if path.suffix == ".onnx":
        if upsample is not None or norm_eps is not None:
            raise ConfigError("AnimeGANv3 ONNX models fix their own upsampling and norms: drop upsample/norm_eps")
        from .onnx_v3 import OnnxGeneratorV3

        return OnnxGeneratorV3(path, device=device).eval()
    state, meta = _load_file(path)
    meta = spec.meta if spec else meta
    model = build_model(meta, upsample=upsample, norm_eps=norm_eps)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{weights} is not an {ARCHITECTURES[meta.architecture]} generator state_dict: {exc}") from exc
    return model.to(device).eval()
