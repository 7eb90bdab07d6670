"""Run a Generator over a large image in bounded memory.

Two modes:

* :func:`run_low_memory` (``memory="low"``) is exact. Layer norm uses statistics of the
  whole image, so the network runs one layer at a time: each pass computes a conv over
  horizontal strips of its input (with a halo for the kernel's reach, reflect padding at
  the image borders only), stores the raw conv output and accumulates its mean and
  variance over all strips in float64. The next pass reads that output normalised (and
  activated, and upsampled) on the fly, strip by strip. Stored outputs live in RAM while
  they fit ``max_memory`` and in memory-mapped files in a temporary folder otherwise;
  the folder is removed when the call returns or fails.
* :func:`run_tiled` (``memory="tiled"``) is approximate and fast: overlapping tiles run
  through the model independently (each with its own norm statistics) and are blended
  with feathered weights.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .errors import ConfigError
from .model import resize_bilinear_tf

MEMORY_MODES = ("normal", "low", "tiled")
DEFAULT_MAX_MEMORY = "2GB"
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SLOPE = 0.2  # LeakyReLU slope of every activation (DESIGN.md 2.1)


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


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc keeps it otherwise, and RSS creeps up)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _current_rss() -> int:
    """Resident set size of this process now (peak so far where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- storage of one layer's raw output ------------------------------------------------


class _Store:
    """A (C, H, W) float32 map in RAM or in a file that is mapped only while a strip of it is
    read or written (so only that strip is ever resident)."""

    def __init__(self, shape: tuple[int, int, int], path: Path | None) -> None:
        self.shape = shape
        self.nbytes = shape[0] * shape[1] * shape[2] * 4
        self.path = path
        if path is None:
            self.array: np.ndarray | None = np.empty(shape, np.float32)
        else:
            self.array = None
            with open(path, "wb") as f:
                f.truncate(self.nbytes)

    def rows(self, r0: int, r1: int) -> Tensor:
        """A (1, C, r1 - r0, W) view of rows [r0, r1); drop it before the next call."""
        array = self.array if self.array is not None else np.memmap(self.path, np.float32, "r+", shape=self.shape)
        return torch.from_numpy(array[:, r0:r1])[None]

    def release(self) -> None:
        self.array = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


# --- sources: what a pass reads, row strip by row strip ------------------------------


class _Source:
    shape: tuple[int, int, int]  # C, H, W

    def rows(self, r0: int, r1: int) -> Tensor:
        """Rows [r0, r1) as a (1, C, r1 - r0, W) tensor the caller may modify."""
        raise NotImplementedError


class _TensorSource(_Source):
    def __init__(self, x: Tensor) -> None:
        self.x = x
        self.shape = tuple(x.shape[1:])

    def rows(self, r0: int, r1: int) -> Tensor:
        return self.x[:, :, r0:r1].clone()


class _Normalized(_Source):
    """A stored raw conv output read as ``act(raw * scale + shift) [+ residual]``."""

    def __init__(
        self,
        store: _Store,
        scale: Tensor | None = None,
        shift: Tensor | None = None,
        slope: float | None = None,
        residual: _Source | None = None,
    ) -> None:
        self.store, self.scale, self.shift, self.slope, self.residual = store, scale, shift, slope, residual
        self.shape = store.shape

    def rows(self, r0: int, r1: int) -> Tensor:
        raw = self.store.rows(r0, r1)
        y = raw.clone() if self.scale is None else torch.addcmul(self.shift, raw, self.scale)
        del raw
        if self.slope is not None:
            F.leaky_relu_(y, self.slope)
        if self.residual is not None:
            y += self.residual.rows(r0, r1)
        return y


def _source_coords(mode: str, n_in: int, n_out: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per output index: lower and upper source index and the weight of the upper one,
    as the in-memory resize computes them (float32 coordinates)."""
    dst = torch.arange(n_out, dtype=torch.float32)
    if mode == "tf":
        src = dst * (torch.tensor(n_in, dtype=torch.float32) / n_out)
    elif mode == "align_corners":
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:  # half_pixel, scale factor 2
        src = ((dst + 0.5) * 0.5 - 0.5).clamp(min=0)
    lower = src.floor()
    lerp = src - lower
    lower = lower.long().clamp(max=n_in - 1)
    return lower, (lower + 1).clamp(max=n_in - 1), lerp


def _resize_width(x: Tensor, mode: str, out_w: int) -> Tensor:
    """Resize along the width only, with the network's own resize (the height is kept,
    which every mode does exactly)."""
    size = (x.shape[2], out_w)
    if mode == "tf":
        return resize_bilinear_tf(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=mode == "align_corners")


class _Upsampled(_Source):
    """A source resized bilinearly to (out_h, out_w), rows computed on demand."""

    def __init__(self, src: _Source, mode: str, out_h: int, out_w: int) -> None:
        c, h, _ = src.shape
        self.src, self.mode, self.out_w = src, mode, out_w
        self.lower, self.upper, self.lerp = _source_coords(mode, h, out_h)
        self.shape = (c, out_h, out_w)

    def rows(self, r0: int, r1: int) -> Tensor:
        lower, upper, lerp = self.lower[r0:r1], self.upper[r0:r1], self.lerp[r0:r1]
        s0, s1 = int(lower[0]), int(upper[-1]) + 1
        # along H as a (rows out x rows in) matrix with two weights per row: gathering
        # rows along H (index_select) is far slower on CPU than this small matmul
        weights = torch.zeros(r1 - r0, s1 - s0)
        out_rows = torch.arange(r1 - r0)
        weights.index_put_((out_rows, lower - s0), 1 - lerp, accumulate=True)
        weights.index_put_((out_rows, upper - s0), lerp, accumulate=True)
        return _resize_width(torch.matmul(weights, self.src.rows(s0, s1)), self.mode, self.out_w)


# --- the network as a list of convs ----------------------------------------------------


@dataclass
class _Conv:
    """One conv of the generator, with the norm and activation that follow it."""

    conv: nn.Conv2d
    norm: nn.Module | None
    act: bool

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) reflect padding: DESIGN.md 2.1, stride 2 pads bottom/right."""
        k, stride = self.conv.kernel_size[0], self.conv.stride[0]
        if stride == 2:
            return 0, 1, 0, 1
        return (k // 2,) * 4


def _convs(block: nn.Module) -> list[_Conv]:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in block.modules() if isinstance(m, nn.GroupNorm)]
    if len(convs) != len(norms):
        raise ConfigError(f"low-memory mode does not know this layer layout: {type(block).__name__}")
    return [_Conv(c, n, act=True) for c, n in zip(convs, norms)]


class _LowMemoryRun:
    """One sample through the network, layer by layer."""

    def __init__(
        self, model: nn.Module, budget: int | None, out_bytes: int, tile_rows: int | None, tmp_dir, stack, bar
    ) -> None:
        self.model, self.tile_rows, self.tmp_dir, self.stack, self.bar = model, tile_rows, tmp_dir, stack, bar
        self.spill_dir: Path | None = None
        self.n_files = 0
        self.ram_left = float("inf")
        self.work = 256 * 2**20
        if budget is not None:
            # 64 MiB for what the first convs load (oneDNN/BLAS code and caches) and allocator slack
            available = budget - _current_rss() - 64 * 2**20
            self.work = int(min(max(available // 4, 16 * 2**20), 256 * 2**20))
            self.ram_left = available - 2 * self.work - out_bytes
        self.device = next(model.parameters()).device

    # storage
    def _store(self, shape: tuple[int, int, int]) -> _Store:
        nbytes = shape[0] * shape[1] * shape[2] * 4
        if nbytes <= self.ram_left:
            self.ram_left -= nbytes
            return _Store(shape, None)
        if self.spill_dir is None:
            self.spill_dir = Path(self.stack.enter_context(
                tempfile.TemporaryDirectory(prefix="animegan2-lowmem-", dir=self.tmp_dir)))
        self.n_files += 1
        return _Store(shape, self.spill_dir / f"map{self.n_files}.f32")

    def _release(self, src: _Source) -> None:
        if isinstance(src, _Upsampled):
            src = src.src
        if isinstance(src, _Normalized) and src.store.path is None and src.store.array is not None:
            self.ram_left += src.store.nbytes
        if isinstance(src, _Normalized):
            src.store.release()

    def _strip_rows(self, in_bytes_per_row: int, out_bytes_per_row: int, n_rows: int) -> int:
        if self.tile_rows is not None:
            return self.tile_rows
        return max(1, min(n_rows, self.work // (4 * in_bytes_per_row + 3 * out_bytes_per_row)))

    # passes
    def conv_pass(self, layer: _Conv, src: _Source, residual: _Source | None = None) -> _Normalized:
        """Conv over ``src`` into a new store; returns it as a normalised source."""
        conv = layer.conv
        _, h, w = src.shape
        k, s = conv.kernel_size[0], conv.stride[0]
        top, bottom, left, right = layer.pads
        out_h = (h + top + bottom - k) // s + 1
        out_w = (w + left + right - k) // s + 1
        store = self._store((conv.out_channels, out_h, out_w))
        count, total, total_sq = 0, 0.0, 0.0
        step = self._strip_rows(src.shape[0] * w * 4 * s, conv.out_channels * out_w * 4, out_h)
        for o0 in range(0, out_h, step):
            o1 = min(out_h, o0 + step)
            first, end = o0 * s - top, (o1 - 1) * s + k - top  # input rows needed, padding included
            lo, hi = max(first, 0), min(end, h)
            x = src.rows(lo, hi)
            if left or right or lo != first or hi != end:  # reflect at the true image borders only
                x = F.pad(x, (left, right, lo - first, end - hi), mode="reflect")
            y = F.conv2d(x.to(self.device), conv.weight, conv.bias, s, 0, 1, conv.groups).cpu()
            del x
            # per-strip moments from the fast, accurate group-norm kernel; the sums in float64
            _, avg, rstd = torch.native_group_norm(y, None, None, 1, y.shape[1], y[0, 0].numel(), 1, 0.0)
            n, avg, var = y.numel(), float(avg), float(rstd) ** -2
            total += n * avg
            total_sq += n * (var + avg * avg)
            count += n
            view = store.rows(o0, o1)
            view.copy_(y)
            del view, y
            _trim_heap()
        norm = layer.norm
        mean = total / count
        scale = norm.weight.detach().double().cpu() / np.sqrt(max(total_sq / count - mean * mean, 0.0) + norm.eps)
        shift = norm.bias.detach().double().cpu() - mean * scale
        return _Normalized(
            store, scale.float().view(1, -1, 1, 1), shift.float().view(1, -1, 1, 1),
            _SLOPE if layer.act else None, residual,
        )

    def materialize(self, src: _Normalized) -> _Normalized:
        """Write ``src``'s values back into its own store (row by row, in place)."""
        c, h, w = src.shape
        step = self.tile_rows or max(1, self.work // (3 * c * w * 4))
        for r0 in range(0, h, step):
            y = src.rows(r0, min(h, r0 + step))
            view = src.store.rows(r0, min(h, r0 + step))
            view.copy_(y)
            del view
        return _Normalized(src.store)

    def block(self, block: nn.Module, src: _Source) -> _Source:
        for module in block:
            if hasattr(module, "layers"):  # inverted residual block
                expand, depthwise, project = _convs(module.layers)
                project.act = False
                residual = src if project.conv.out_channels == expand.conv.in_channels else None
                mid = self.conv_pass(expand, src)
                if residual is None:
                    self._release(src)
                self.bar.update()
                mid2 = self.conv_pass(depthwise, mid)
                self._release(mid)
                self.bar.update()
                out = self.conv_pass(project, mid2, residual)
                self._release(mid2)
                if residual is not None:
                    out = self.materialize(out)
                    self._release(residual)
                src = out
            else:
                (layer,) = _convs(module)
                out = self.conv_pass(layer, src)
                self._release(src)
                src = out
            self.bar.update()
        return src

    def forward(self, x: Tensor) -> Tensor:
        model, mode = self.model, self.model.upsample
        _, h, w = x.shape[1:]
        a = self.block(model.block_a, _TensorSource(x))
        half_h, half_w = a.shape[1:]
        c = self.block(model.block_c, self.block(model.block_b, a))
        size = (half_h, half_w) if mode == "align_corners" else (2 * c.shape[1], 2 * c.shape[2])
        d = self.block(model.block_d, _Upsampled(c, mode, *size))
        size = (h, w) if mode == "align_corners" else (2 * d.shape[1], 2 * d.shape[2])
        e = self.block(model.block_e, _Upsampled(d, mode, *size))
        conv = model.out_layer[0]
        _, out_h, out_w = e.shape
        out = torch.empty(1, conv.out_channels, out_h, out_w)
        step = self._strip_rows(e.shape[0] * out_w * 4, conv.out_channels * out_w * 4, out_h)
        for r0 in range(0, out_h, step):
            r1 = min(out_h, r0 + step)
            out[:, :, r0:r1] = torch.tanh(conv(e.rows(r0, r1).to(self.device))).cpu()
        self._release(e)
        self.bar.update()
        return out


_V2_PARTS = ("block_a", "block_b", "block_c", "block_d", "block_e", "out_layer", "upsample")


def _n_passes(model: nn.Module) -> int:
    return sum(len(_convs(getattr(model, name))) for name in _V2_PARTS[:5]) + 1


def run_low_memory(
    model: nn.Module,
    x: Tensor,
    *,
    max_memory: int | str | None = DEFAULT_MAX_MEMORY,
    tmp_dir: str | os.PathLike | None = None,
    tile_rows: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Exactly ``model(x)``, computed layer by layer in bounded memory.

    Args:
        model: an AnimeGANv2 :class:`~animegan2.model.Generator` (its ``upsample`` mode and
            layer-norm epsilons are honoured).
        x: NCHW float input in [-1, 1], on the CPU; samples run one after another.
        max_memory: the peak resident memory to stay under (bytes or ``"2GB"``), counting
            what the process already holds; intermediate maps that do not fit go to
            memory-mapped files. ``None``: keep everything in RAM.
        tmp_dir: where the memory-mapped files go (default: the system's temp folder);
            they are removed when the call returns or raises.
        tile_rows: rows per strip in every pass (default: sized from the budget).
        progress: show a progress bar over the layers.

    Returns the same tensor as ``model(x)`` up to float rounding (max abs <= 1e-4).

    >>> from animegan2.model import Generator
    >>> g = Generator().eval()
    >>> x = torch.rand(1, 3, 67, 45) * 2 - 1
    >>> (run_low_memory(g, x, tile_rows=8) - g(x)).abs().max().item() < 1e-4
    True
    """
    if not all(hasattr(model, name) for name in _V2_PARTS):
        raise ConfigError(
            f"memory='low' runs AnimeGANv2 generators only, not {type(model).__name__}; use memory='tiled' for it"
        )
    budget = None if max_memory is None else parse_memory(max_memory)
    outputs = []
    with torch.inference_mode(), contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=_n_passes(model) * len(x), desc="low-memory", unit="layer", disable=not progress))
        for sample in x:
            run = _LowMemoryRun(model, budget, sample.numel() * 4, tile_rows, tmp_dir, stack, bar)
            outputs.append(run.forward(sample[None].float().cpu()))
    return torch.cat(outputs)


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
    h, w = in_h, in_w
    if getattr(model, "upsample", "align_corners") != "align_corners":  # output: top-left 4*floor(n/4) pixels
        h, w = 4 * (h // 4), 4 * (w // 4)
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
