"""Weight files -> state_dict + :class:`~animegan2.manifest.WeightsMeta`, and the conversion cache.

:func:`load_file` reads a verified local file: a ``.pt``/``.pth`` state_dict (``torch.load``
with ``weights_only=True``), a ``.safetensors`` file with its metadata, or a TF1 checkpoint
(converted on the fly); it refuses NaN/infinite tensors and metadata that cannot be right.
A plain state_dict says nothing about its network, so the registry tells it from its keys
(:func:`animegan2.architectures.of_state_dict`).

The conversion cache keeps a manifest TF1 entry's conversion as ``.safetensors`` under the
name :func:`animegan2.download.converted_path` gives it, with its sha256 recorded beside it
(:func:`converted`, :func:`conversion_problem`).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
from torch import Tensor

from . import architectures, download
from ._atomic import write_bytes_atomic
from .architectures import ARCHITECTURES, DEFAULT
from .errors import WeightsError
from .manifest import WeightSpec, WeightsMeta
from .resize import UPSAMPLE_MODES


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and string metadata of a ``.safetensors`` file; WeightsError if unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read {path} as safetensors: {exc}") from exc


def _meta_from(raw: dict[str, str], name: str, where: Path) -> WeightsMeta:
    """The :class:`WeightsMeta` of string metadata as :mod:`animegan2.convert` writes it (and
    safetensors stores it); absent fields mean the published PyTorch weights' conventions.
    A value that cannot be right is a :class:`WeightsError` naming ``where`` and the field."""

    def bad(key: str, expected: str) -> WeightsError:
        return WeightsError(f"{where}: its metadata {key}={raw[key]!r} is not {expected}; fix the file's metadata or re-export it")

    architecture = raw.get("architecture", DEFAULT)
    if architecture not in ARCHITECTURES:
        raise bad("architecture", f"one of {', '.join(ARCHITECTURES)}")
    published = ARCHITECTURES[architecture].published  # None: the architecture fixes its numerics
    upsample = raw.get("upsample", published.upsample) if published else None
    if published and upsample not in UPSAMPLE_MODES:
        raise bad("upsample", f"one of {', '.join(UPSAMPLE_MODES)}")
    norm_eps = None
    if published:
        try:
            norm_eps = float(raw.get("norm_eps", published.norm_eps))
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


def is_tf_checkpoint(path: Path) -> bool:
    """Whether ``path`` names a TF1 checkpoint: a folder with one, a prefix or an ``.index``."""
    if path.is_dir():
        return (path / "checkpoint").is_file() or any(path.glob("*.index"))
    return path.suffix == ".index" or Path(str(path) + ".index").is_file()


def _torch_load(path: Path) -> dict[str, Tensor]:
    """A ``torch.save`` file's state_dict, unpickling tensors only."""
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
    return state


def load_file(path: Path) -> tuple[dict[str, Tensor], WeightsMeta]:
    """The state_dict of a verified local weights file and what its metadata (or, for a plain
    state_dict, its keys) says about running it."""
    if path.suffix == ".safetensors":
        state, raw = read_safetensors(path)
        _check_finite(state, path)
        return state, _meta_from(raw, path.stem, path)
    graph = architectures.of_file(path)
    if graph is not None:
        raise WeightsError(f"{path} is an ONNX model ({graph.name}): it has no state_dict; load it with load_generator")
    if path.is_dir() and not is_tf_checkpoint(path):
        raise WeightsError(f"{path} is a folder without a TF1 checkpoint (no 'checkpoint' or .index file): give a weights file")
    if is_tf_checkpoint(path):
        from .convert import convert_checkpoint

        state, metadata = convert_checkpoint(path)
        _check_finite(state, path)
        return state, _meta_from(metadata, path.name, path)
    state = _torch_load(path)
    _check_finite(state, path)
    arch = architectures.of_state_dict(state)
    return state, _meta_from({"architecture": arch.id}, path.stem, path)


# --- the conversion cache ---


def _conversion_is_intact(out: Path, record: Path) -> bool:
    """Whether the cached conversion ``out`` still has the sha256 recorded when it was made."""
    recorded = record.read_text().strip() if record.exists() else None
    actual = download.file_digests(out)["sha256"]
    if actual == recorded:
        return True
    why = f"sha256 {actual} differs from {recorded}, recorded at conversion" if recorded else "no digest recorded"
    download.log.warning("converted cache file %s: %s; converting it again from the verified sources", out, why)
    return False


def converted(spec: WeightSpec, prefix: Path, check_hash: bool) -> Path:
    """The converted safetensors of a TF entry, made once from its verified checkpoint
    ``prefix``. Its sha256 is recorded beside it and checked before each use when
    ``check_hash``: an altered, truncated or unrecorded conversion is converted again."""
    from .convert import convert_checkpoint, save_weights

    out = download.converted_path(spec.name, spec.files)
    record = download.digest_record(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise download.disk_error(exc, out.parent) from exc
    with download.locked(download.lock_path(out), f"converting {spec.name}"):
        if out.exists() and check_hash and not _conversion_is_intact(out, record):
            out.unlink()
        if not out.exists():
            state, metadata = convert_checkpoint(prefix)
            record.unlink(missing_ok=True)
            save_weights(state, metadata, out)
            try:
                write_bytes_atomic(record, (download.file_digests(out)["sha256"] + "\n").encode())
            except OSError as exc:
                raise download.disk_error(exc, record) from exc
    return out


def conversion_problem(spec: WeightSpec, converted_file: Path) -> str | None:
    """Why a cached conversion is not what the entry's cached sources convert to, or None."""
    from .convert import convert_checkpoint

    state, metadata = convert_checkpoint(download.cached_path(spec.name, spec.tf_prefix))
    redo = "delete it and it is converted again on next use"
    try:
        cached, cached_meta = read_safetensors(converted_file)
    except WeightsError as exc:
        return f"{exc}; {redo}"
    same_tensors = cached.keys() == state.keys() and all(torch.equal(cached[k], v) for k, v in state.items())
    # the converter's version may differ; what it converted from may not
    same_meta = all(cached_meta.get(k) == v for k, v in metadata.items() if k != "converter")
    if not (same_tensors and same_meta):
        return f"the converted file {converted_file} differs from a fresh conversion of its verified sources; {redo}"
    return None
