"""Run a Generator over a large image in bounded memory.

Two modes:

* :func:`run_low_memory` (``memory="low"``) is exact: the generator's own layer-by-layer
  run over row strips (:mod:`animegan2.layerwise`) under a memory budget. Stored outputs
  live in RAM while they fit ``max_memory`` and in memory-mapped files in a temporary
  folder otherwise; the folder is removed when the call returns or fails.
* :func:`run_tiled` (``memory="tiled"``) is approximate and fast: overlapping tiles run
  through the model independently (each with its own norm statistics) and are blended
  with feathered weights.
"""

from __future__ import annotations

import os
import re

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .errors import ConfigError
from .layerwise import run_layerwise
from .resize import output_size

MEMORY_MODES = ("normal", "low", "tiled")
DEFAULT_MAX_MEMORY = "2GB"
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory(value: int | str) -> int:
    """A memory size in bytes from an int or a string such as ``"2GB"``, ``"512MiB"``, ``"3e9"``.

    Units are binary (``1KB = 1024`` bytes), as for RAM.

    >>> parse_memory("2GB"), parse_memory("512MB"), parse_memory(1000)
    (2147483648, 536870912, 1000)
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        size = int(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(value))
        if not match:
            raise ConfigError(f"cannot read memory size {value!r}: give bytes or a size like '2GB' or '512MB'")
        size = int(float(match[1]) * _UNITS[match[2].upper()])
    if size <= 0:
        raise ConfigError(f"memory size must be positive, got {value!r}")
    return size


def run_low_memory(
    model: nn.Module,
    x: Tensor,
    *,
    max_memory: int | str | None = DEFAULT_MAX_MEMORY,
    tmp_dir: str | os.PathLike | None = None,
    tile_rows: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Exactly ``model(x)``, computed layer by layer in bounded memory (the generator's own
    layer-by-layer run, :func:`~animegan2.layerwise.run_layerwise`, given a budget).

    Args:
        model: an AnimeGANv2 :class:`~animegan2.model.Generator` (its ``upsample`` mode and
            layer-norm epsilons are honoured).
        x: NCHW float input in [-1, 1], on the CPU; samples run one after another.
        max_memory: the peak resident memory to stay under (bytes or ``"2GB"``), counting
            what the process already holds; intermediate maps that do not fit go to
            memory-mapped files. ``None``: keep everything in memory, as ``model(x)`` does.
        tmp_dir: where the memory-mapped files go (default: the system's temp folder);
            they are removed when the call returns or raises.
        tile_rows: rows per strip in every pass (default: sized from the budget).
        progress: show a progress bar over the layers.

    Returns the module-by-module result up to float rounding (max abs <= 1e-4).

    >>> from animegan2.model import Generator
    >>> g = Generator().eval()
    >>> x = torch.rand(1, 3, 67, 45) * 2 - 1
    >>> (run_low_memory(g, x, tile_rows=8) - g.forward_layers(x)).abs().max().item() < 1e-4
    True
    """
    budget = None if max_memory is None else parse_memory(max_memory)
    return run_layerwise(model, x, max_memory=budget, tmp_dir=tmp_dir, tile_rows=tile_rows, progress=progress)


def _tile_starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


def _feather(n: int, start: int, size: int, overlap: int) -> Tensor:
    """Blend weights along one axis of a tile: ramps up/down over ``overlap`` at inner edges."""
    weight = torch.ones(size)
    ramp = (torch.arange(overlap) + 0.5) / overlap
    if start > 0:
        weight[:overlap] = ramp
    if start + size < n:
        weight[size - overlap:] = ramp.flip(0)
    return weight


def run_tiled(
    model: nn.Module, x: Tensor, *, tile: int = 512, overlap: int = 64, progress: bool = False
) -> Tensor:
    """An approximation of ``model(x)`` from overlapping ``tile`` x ``tile`` tiles run
    independently (each normalised with its own statistics) and blended with linear
    feathering over ``overlap`` pixels. Peak memory is that of one tile.

    The output has ``model(x)``'s size; an image no larger than one tile gives ``model(x)``.

    >>> from animegan2.model import Generator
    >>> g = Generator().eval()
    >>> run_tiled(g, torch.zeros(1, 3, 300, 200), tile=128, overlap=32).shape
    torch.Size([1, 3, 300, 200])
    """
    if tile % 4 or overlap % 4 or not 0 < overlap < tile:
        raise ConfigError(f"tile ({tile}) and overlap ({overlap}) must be multiples of 4 with 0 < overlap < tile")
    _, _, in_h, in_w = x.shape
    h, w = output_size(getattr(model, "upsample", "align_corners"), in_h, in_w)  # the top-left of the input
    device = next(model.parameters()).device
    rows, cols = _tile_starts(h, tile, tile - overlap), _tile_starts(w, tile, tile - overlap)
    out = torch.zeros(x.shape[0], 3, h, w)
    total = torch.zeros(1, 1, h, w)
    with torch.inference_mode(), tqdm(total=len(rows) * len(cols), desc="tiles", disable=not progress) as bar:
        for top in rows:
            th = min(tile, h)
            wy = _feather(h, top, th, overlap).view(-1, 1)
            for left in cols:
                tw = min(tile, w)
                weight = wy * _feather(w, left, tw, overlap)
                # tiles at the bottom/right edge take the input up to its true edge, as model(x) does
                bottom = in_h if top + th == h else top + th
                right = in_w if left + tw == w else left + tw
                y = model(x[:, :, top:bottom, left:right].to(device, torch.float32))
                out[:, :, top:top + th, left:left + tw] += y.cpu() * weight
                total[:, :, top:top + th, left:left + tw] += weight
                bar.update()
    return out.div_(total)
