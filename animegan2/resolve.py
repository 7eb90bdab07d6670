"""Weights by any name -> the verified local file to load.

A manifest name or alias is fetched (or found in the cache) and verified, a TF1 entry
converted once (:mod:`animegan2.loading`'s conversion cache); an ``https://`` URL or
``hf://owner/repo/file`` is downloaded and pinned; a local path is taken as it is. The
network and the cache layout belong to :mod:`animegan2.download`; the entries to
:mod:`animegan2.manifest`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import download, loading
from .download import FileSpec
from .errors import WeightsError
from .manifest import WeightSpec, get_spec, load_manifest

_WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors", ".onnx", ".index", ".ckpt")  # a string ending so is a path
_HUB_HASH = re.compile(r"-([a-f0-9]{8,64})\.")  # torch.hub's name-<sha256 prefix>.ext convention


def _import_hint(spec: WeightSpec) -> str:
    urls = " and ".join(f.urls[0] for f in spec.files)
    target = "FILE" if len(spec.files) == 1 else "FOLDER"
    return f"Fetch {urls} elsewhere, then run `animegan2 weights import {spec.name} {target}`."


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
        check = _tf_check(spec.tf_prefix)
    elif spec.format == "onnx":
        check = _onnx_check(spec.files[0].name)
    return download.fetch(
        spec.name, spec.files, progress=progress, check_hash=check_hash, check=check, sources=sources,
        offline_hint=_import_hint(spec),
    )


def _files_cached(spec: WeightSpec) -> bool:
    return all(download.cached_path(spec.name, f.name).exists() for f in spec.files)


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
        return loading.converted(spec, paths[spec.tf_prefix + ".index"].parent / spec.tf_prefix, check_hash)
    return paths[spec.files[0].name]


def cached_weights(name: str) -> Path | None:
    """The loadable cached file of entry ``name`` (see :func:`fetch_weights`), or None; no network."""
    spec = get_spec(name)
    if not _files_cached(spec):
        return None
    if spec.format == "tf1-checkpoint":
        out = download.converted_path(spec.name, spec.files)
        return out if out.exists() else None
    return download.cached_path(spec.name, spec.files[0].name)


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
            path = download.cached_path(spec.name, f.name)
            if not path.exists():
                continue
            try:
                download.verify_file(path, f, spec.name, f"the cache ({path})")
                checked.append((spec.name, f.name, None))
            except WeightsError as exc:
                checked.append((spec.name, f.name, str(exc)))
        report += checked
        converted = download.converted_path(spec.name, spec.files) if spec.format == "tf1-checkpoint" else None
        sources_ok = len(checked) == len(spec.files) and not any(problem for *_, problem in checked)
        if converted is not None and converted.exists() and sources_ok:
            report.append((spec.name, converted.name, loading.conversion_problem(spec, converted)))
    return report


def _remote(url: str, progress: bool, check_hash: bool) -> Path:
    """Download a URL or hf:// address into the cache; verify torch.hub's ``-<sha256 prefix>.``
    in its file name when ``check_hash``. Without one, the sha256 seen on first download is
    pinned and the cached file checked against it, as for manifest entries."""
    if not url.startswith("hf://"):
        download.check_url(url)
    path = download.parse_hf(url)[1] if url.startswith("hf://") else unquote(urlsplit(url).path)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.rsplit("/", 1)[-1]).lstrip(".") or "weights.pt"
    digest = _HUB_HASH.search(name) if check_hash else None
    spec = FileSpec(name, (url,), sha256=digest.group(1) if digest else None)
    return download.fetch(download.url_key(url), [spec], progress=progress, check_hash=check_hash)[name]


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


def resolve(weights: str | Path, progress: bool = True, check_hash: bool = True) -> tuple[Path, WeightSpec | None]:
    """The verified local file ``weights`` names, and its manifest entry if it is a name."""
    if _is_url(weights):
        return _remote(weights, progress, check_hash), None
    found = _local_or_spec(weights)
    if isinstance(found, Path):
        return found, None
    return fetch_weights(found.name, progress=progress, check_hash=check_hash), found
