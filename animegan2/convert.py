"""Original TensorFlow 1 AnimeGAN checkpoints -> PyTorch weights in the published layout.

Each supported network is an :class:`~animegan2.architectures.Architecture` of the registry
with a TF layout: the map from its PyTorch ``state_dict`` keys to TF variable names under
``generator/G_MODEL/`` (with the kernel layout change), the module that defines the expected
shapes, and the numerics its converted weights run with. :func:`detect_architecture` tells
them apart by a variable only that network has; a new network is one more registry entry.

>>> state, meta = convert_checkpoint("generator_Hayao_weight")       # doctest: +SKIP
>>> save_weights(state, meta, "hayao.safetensors")                   # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import __version__
from ._atomic import write_bytes_atomic
from .architectures import ARCHITECTURES as REGISTRY
from .architectures import Architecture
from .download import file_digests
from .errors import CheckpointError, ConfigError, OutputExistsError
from .tfcheckpoint import TFCheckpoint

G_SCOPE = "generator/G_MODEL/"
FLOAT_DTYPES = (np.dtype("float16"), np.dtype("float32"), np.dtype("float64"))

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in REGISTRY.values() if a.mapping is not None}
"""The networks whose TF1 checkpoints convert, by name (from :mod:`animegan2.architectures`)."""


def detect_architecture(names: Iterable[str]) -> str:
    """The :data:`ARCHITECTURES` key of the generator whose TF variable ``names`` are given.

    Raises:
        CheckpointError: no ``generator/G_MODEL`` variables, or none of a known network,
            naming what was found instead.

    >>> detect_architecture(["generator/G_MODEL/C/r1/r1/w"])
    'AnimeGANv2'
    """
    names = list(names)
    inside = {n[len(G_SCOPE) :] for n in names if n.startswith(G_SCOPE)}
    for key, arch in ARCHITECTURES.items():
        if arch.signature in inside:
            return key
    known = ", ".join(f"{k} (has {G_SCOPE}{a.signature})" for k, a in ARCHITECTURES.items())
    if not inside:
        sample = ", ".join(sorted(names)[:3]) or "no variables at all"
        raise CheckpointError(
            f"not an AnimeGAN generator checkpoint: no variable under {G_SCOPE} (found {len(names)}: {sample}, ...)"
        )
    sample = ", ".join(sorted(inside)[:3])
    raise CheckpointError(
        f"{G_SCOPE} holds {len(inside)} variables ({sample}, ...) of no known network; known: {known}"
    )


def _tf_shape(torch_shape: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...]:
    """The TF shape that ``perm`` turns into ``torch_shape``."""
    shape = [0] * len(perm)
    for torch_axis, tf_axis in enumerate(perm):
        shape[tf_axis] = torch_shape[torch_axis]
    return tuple(shape)


def _first(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(G_SCOPE + n for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def convert_checkpoint(src: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Convert a TF1 generator checkpoint (directory, prefix or ``.index``) to a state_dict in
    the published PyTorch layout, plus the metadata to store with it.

    Only ``generator/G_MODEL/*`` is taken; the discriminator and optimizer slots (names such
    as ``.../weights/Adam``) are ignored. Values are crc32c-verified and cast to float32.

    Raises:
        CheckpointError: unreadable checkpoint, unknown network, a missing, unexpected or
            wrongly shaped generator tensor, or a non-float dtype (the message names it).

    >>> state, meta = convert_checkpoint("generator_Hayao_weight")    # doctest: +SKIP
    >>> meta["architecture"], meta["upsample"], meta["norm_eps"]        # doctest: +SKIP
    ('animeganv2', 'tf', '1e-12')
    """
    ckpt = TFCheckpoint(src)
    variables = ckpt.variables()
    arch = ARCHITECTURES[detect_architecture(variables)]
    mapping = arch.mapping()
    expected = {key: tuple(value.shape) for key, value in arch.build().state_dict().items()}
    wanted = {tf_name for tf_name, _ in mapping.values()}
    inside = {n[len(G_SCOPE) :] for n in variables if n.startswith(G_SCOPE)}
    missing = sorted(wanted - inside)
    if missing:
        raise CheckpointError(f"{ckpt.prefix} is not a complete {arch.name} generator: missing {_first(missing)}")
    # Optimizer slots and moving averages are named <variable>/<slot>.
    extra = sorted(n for n in inside - wanted if n.rsplit("/", 1)[0] not in wanted)
    if extra:
        raise CheckpointError(f"{ckpt.prefix} has variables that {arch.name} does not: {_first(extra)}")
    for key, (tf_name, perm) in mapping.items():
        dtype, shape = variables[G_SCOPE + tf_name]
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"tensor {G_SCOPE}{tf_name} has dtype {dtype}; a float tensor was expected")
        if shape != _tf_shape(expected[key], perm):
            raise CheckpointError(
                f"tensor {G_SCOPE}{tf_name} has shape {list(shape)}, but {arch.name} needs "
                f"{list(_tf_shape(expected[key], perm))} (PyTorch {key} {list(expected[key])})"
            )
    state = {}
    for key in expected:
        tf_name, perm = mapping[key]
        value = ckpt.read(G_SCOPE + tf_name).astype(np.float32, copy=False)
        state[key] = torch.from_numpy(np.ascontiguousarray(value.transpose(perm)))
    files = ckpt.files()
    metadata = {
        "format": "pt",
        "architecture": arch.id,
        **arch.native.record(),
        "source": ckpt.prefix.name,
        "source_sha256": json.dumps({f.name: file_digests(f)["sha256"] for f in files}),
        "converter": f"animegan2.convert {__version__}",
    }
    return state, metadata


def save_weights(state: dict[str, Tensor], metadata: dict[str, str], out_path: str | Path, *, overwrite: bool = True) -> Path:
    """Write ``state`` atomically: ``.pt`` as a plain state_dict (``torch.load(...,
    weights_only=True)`` reads it), ``.safetensors`` with ``metadata``. Returns the path.

    Raises:
        ConfigError: another extension or a missing output directory.
        WriteError: the file could not be written; nothing is left behind.
        OutputExistsError: ``out_path`` exists and ``overwrite`` is False.

    >>> save_weights(state, meta, "weights/hayao.safetensors")        # doctest: +SKIP
    PosixPath('weights/hayao.safetensors')
    """
    out = Path(out_path)
    if out.suffix not in (".pt", ".safetensors"):
        raise ConfigError(f"output {out} must end in .pt (plain state_dict) or .safetensors")
    if not out.parent.is_dir():
        raise ConfigError(f"output directory {out.parent} does not exist; create it first")
    # Serialized in memory (8.6 MB), then written by us: torch.save and safetensors' save_file
    # hide I/O errors in their own types, and save_file makes 0600 files.
    if out.suffix == ".pt":
        buffer = io.BytesIO()
        torch.save(dict(state), buffer)
        data = buffer.getvalue()
    else:
        from safetensors.torch import save

        data = save(state, metadata=metadata)
    try:
        write_bytes_atomic(out, data, replace=overwrite)
    except FileExistsError as exc:
        raise OutputExistsError(f"{out} already exists; overwrite it or choose another name") from exc
    return out


def describe(src: str | Path) -> str:
    """A listing of a checkpoint: one line per tensor (name, dtype, shape, and the PyTorch key
    it converts to, if any), then a summary line naming the network or why it is unknown."""
    ckpt = TFCheckpoint(src)
    variables = ckpt.variables()
    try:
        arch = detect_architecture(variables)
        to_torch = {G_SCOPE + tf_name: key for key, (tf_name, _) in ARCHITECTURES[arch].mapping().items()}
        summary = f"network: {arch}"
    except CheckpointError as exc:
        to_torch, summary = {}, f"network: unknown ({exc})"
    rows = [
        (name, "?" if dtype == np.dtype(object) else dtype.name, str(list(shape)), to_torch.get(name))
        for name, (dtype, shape) in variables.items()
    ]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    lines = []
    for name, dtype_name, shape, target in rows:
        line = f"{name:<{widths[0]}}  {dtype_name:<{widths[1]}}  {shape:<{widths[2]}}"
        lines.append(f"{line}  -> {target}" if target else line.rstrip())
    count = sum(int(np.prod(s)) for _, s in variables.values())
    shards = len(ckpt.files()) - 1
    lines.append(f"{len(variables)} tensors, {count:,} values, {shards} data shard(s); {summary}")
    return "\n".join(lines)
