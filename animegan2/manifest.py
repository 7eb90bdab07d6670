"""The weights manifest: its schema, its validation and lookup by name or alias.

The manifest (``animegan2/weights_manifest.json``, or ``$ANIMEGAN2_MANIFEST``) is data: one
entry per named weight with its files, mirrors, sizes, digests, architecture, upsampling
mode, epsilon, training size, style, source and licence note. :func:`load_manifest` turns it
into :class:`WeightSpec` records or raises :class:`~animegan2.errors.ManifestError` naming the
entry and field at fault. Fetching the files is :mod:`animegan2.resolve`'s job.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import download
from .architectures import ARCHITECTURES, DEFAULT
from .download import FileSpec
from .errors import ManifestError, WeightsError
from .resize import UPSAMPLE_MODES

BUNDLED_MANIFEST = Path(__file__).with_name("weights_manifest.json")
DEFAULT_WEIGHTS = "face_paint_512_v2"
"""The weights a generator runs with when none are named (the published hub's default)."""
WEIGHT_FORMATS = ("torch-state-dict", "tf1-checkpoint", "onnx", "numpy")  # numpy: the trainer's vgg19.npy


@dataclass(frozen=True)
class WeightsMeta:
    """What a weight file needs besides its tensors to be run correctly. ``upsample`` and
    ``norm_eps`` are None where the architecture fixes them (AnimeGAN v1, v3); their
    defaults are the published PyTorch weights' (what a file without metadata runs with)."""

    architecture: str = DEFAULT
    upsample: str | None = ARCHITECTURES[DEFAULT].published.upsample
    norm_eps: float | None = ARCHITECTURES[DEFAULT].published.norm_eps
    size: int | None = None
    style: str | None = None
    name: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class WeightSpec:
    """One manifest entry: a named weight, its files and how to run it.

    ``architecture`` is an id of :data:`~animegan2.architectures.ARCHITECTURES`;
    ``upsample``/``norm_eps`` are None where it fixes them. ``files`` are what
    :func:`animegan2.download.fetch` makes present under the entry's name.
    """

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
        """How to run this entry's weights (what :func:`animegan2.zoo.load_state_dict` returns for it)."""
        return WeightsMeta(self.architecture, self.upsample, self.norm_eps, self.size, self.style, self.name, self.license)

    @property
    def tf_prefix(self) -> str:
        """A ``tf1-checkpoint`` entry's checkpoint prefix: its ``.index`` file's name less the suffix."""
        return next(f.name for f in self.files if f.name.endswith(".index"))[: -len(".index")]


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
_NUMERICS = ("upsample", "norm_eps")  # required where the architecture takes them, refused where it fixes them
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


def _check_architecture(where: str, raw: dict[str, Any]) -> str:
    """The entry's architecture, once its format and numerics fields agree with the registry."""
    if raw["format"] not in WEIGHT_FORMATS:
        raise ManifestError(f"{where}, field 'format': {raw['format']!r} is not one of {WEIGHT_FORMATS}")
    architecture = raw.get("architecture", DEFAULT)
    if architecture not in ARCHITECTURES:
        raise ManifestError(f"{where}, field 'architecture': {architecture!r} is not one of {tuple(ARCHITECTURES)}")
    arch = ARCHITECTURES[architecture]
    if raw["format"] not in arch.weight_formats:
        owners = [a.id for a in ARCHITECTURES.values() if raw["format"] in a.weight_formats]
        if len(owners) == 1:
            raise ManifestError(f"{where}, field 'format': {owners[0]} weights are {raw['format']!r} files, and only they are")
        formats = " or ".join(map(repr, arch.weight_formats))
        raise ManifestError(f"{where}, field 'format': {architecture} weights are {formats} files, not {raw['format']!r}")
    for key in _NUMERICS:
        if arch.published is not None and key not in raw:
            raise ManifestError(f"{where}, field {key!r}: missing")
        if arch.published is None and key in raw:
            raise ManifestError(f"{where}, field {key!r}: {architecture} fixes it; remove the field")
    if "upsample" in raw and raw["upsample"] not in UPSAMPLE_MODES:
        raise ManifestError(f"{where}, field 'upsample': {raw['upsample']!r} is not one of {UPSAMPLE_MODES}")
    if "norm_eps" in raw and not (math.isfinite(raw["norm_eps"]) and raw["norm_eps"] > 0):
        raise ManifestError(f"{where}, field 'norm_eps': {raw['norm_eps']!r} is not a positive number")
    return architecture


def _parse_files(where: str, raw: dict[str, Any]) -> tuple[FileSpec, ...]:
    if not raw["files"]:
        raise ManifestError(f"{where}, field 'files': empty")
    files = tuple(_parse_file(f"{where}, files[{i}]", f) for i, f in enumerate(raw["files"]))
    if len({f.name for f in files}) != len(files):
        raise ManifestError(f"{where}, field 'files': two files share a name")
    if raw["format"] == "tf1-checkpoint" and sum(f.name.endswith(".index") for f in files) != 1:
        raise ManifestError(f"{where}, field 'files': a tf1-checkpoint needs exactly one '.index' file")
    if raw["format"] == "onnx" and (len(files) != 1 or not files[0].name.endswith(".onnx")):
        raise ManifestError(f"{where}, field 'files': an onnx entry is exactly one '.onnx' file")
    return files


def _parse_entry(where: str, name: str, raw: Any) -> WeightSpec:
    _check_fields(where, raw, _ENTRY_FIELDS, _ENTRY_REQUIRED)
    architecture = _check_architecture(where, raw)
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
        files=_parse_files(where, raw),
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
