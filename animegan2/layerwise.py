"""Exact layer-by-layer execution of the AnimeGANv2 generator over row strips.

This is the generator's inference path (``Generator.forward`` under no_grad), and, with a
memory budget, the exact low-memory mode. Layer norm uses statistics of the whole map, so
the network runs one convolution at a time: a pass convolves its input strip by strip (with
a halo for the kernel's reach, reflect padding at the image borders only), stores the raw
output and pools its moments over all strips. The next pass reads that output normalised,
activated and, where the network upsamples, resized on the fly, strip by strip: no
full-size normalised, padded or resized copy of a map is ever made.

Why it is fast on CPU: strips are a few MB, so a pass works in cache, and stored maps are
recycled between passes. A straightforward eager forward pass allocates a fresh tensor for
every padded input, convolution output, norm output and resize; above 32 MB glibc maps each
one fresh from the OS, and at 512 x 512 the page faults of first touching them (about
700,000 of them) take around 40% of its time.

With a budget, stored maps that do not fit it go to memory-mapped files, freed memory is
handed back to the OS after every strip, and strips are sized from the budget.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import architectures
from ._memory import current_rss, peak_rss, trim_heap
from .errors import ConfigError
from .resize import resize_bilinear_tf

_SLOPE = 0.2  # LeakyReLU slope of every activation (DESIGN.md 2.1)
_STRIP_BYTES = 6 * 2**20  # input per strip without a budget: measured fastest of 2-16 MB at 512-1024
_MIN_STRIP_ROWS = 8  # keeps the halo (up to 6 rows) a small share of what a strip reads
# Under a budget, what a process with torch and the model loaded typically holds before the
# run. Strip sizes come from the budget less this constant, never from the measured RSS:
# oneDNN's 1x1 convolutions round differently for different strip heights, so strips sized
# from run-time state would give different bits in different processes.
_TYPICAL_RESIDENT = 320 * 2**20


def pooled_moments(counts: Tensor, means: Tensor, variances: Tensor) -> tuple[float, float]:
    """Mean and (biased) variance of the union of groups holding ``counts`` values with the
    given means and variances (1-D tensors), in float64 and without the cancellation of
    E[x^2] - E[x]^2.

    >>> pooled_moments(torch.tensor([2, 2]), torch.tensor([2.0, 6.0]), torch.tensor([1.0, 1.0]))
    (4.0, 5.0)
    """
    counts, means, variances = (t.double() for t in (counts, means, variances))
    total = counts.sum()
    mean = (counts * means).sum() / total
    return mean.item(), ((counts * (variances + (means - mean).square())).sum() / total).item()


def _uses_stats_kernel(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda")


def _moments(y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Counts, means and variances (on the CPU) of the columns of a (1, C, H, W) map, for
    :func:`pooled_moments`. On CPU and CUDA the batch-norm statistics kernel computes them:
    two-pass, vectorised, multi-threaded (GroupNorm's runs one thread when there is one
    group), and on the contiguous map permuted so its columns are the channels it reads
    memory in order. Other devices (MPS) take ``var_mean``."""
    columns = y.contiguous().permute(0, 3, 1, 2)
    if _uses_stats_kernel(y.device):
        means, variances = torch.batch_norm_update_stats(columns, None, None, 0.0)
    else:
        variances, means = torch.var_mean(columns, dim=(0, 2, 3), correction=0)
    means, variances = means.cpu(), variances.cpu()
    return torch.full_like(means, y.shape[1] * y.shape[2]), means, variances


def _resident_now() -> int:
    """What this process holds now: the current RSS, else the peak so far (an upper bound),
    else 0 where the OS gives neither (the budget then counts only the maps)."""
    return current_rss() or peak_rss() or 0


# --- storage of one layer's raw output ------------------------------------------------


class _Pool:
    """Flat buffers for stored maps. With ``recycle``, given-back buffers are kept for later
    maps, so a pass reuses memory an earlier one already touched; when none is large enough
    the free ones are dropped, so the pool never holds more than the maps alive at once need.
    Without it (under a memory budget) a given-back buffer is freed at once."""

    def __init__(self, device: torch.device, dtype: torch.dtype, recycle: bool = True) -> None:
        self.device, self.dtype, self.recycle = device, dtype, recycle
        self.free: list[Tensor] = []

    def take(self, numel: int) -> Tensor:
        fitting = [i for i, buf in enumerate(self.free) if buf.numel() >= numel]
        if not fitting:
            self.free.clear()
            return torch.empty(numel, device=self.device, dtype=self.dtype)
        return self.free.pop(min(fitting, key=lambda i: self.free[i].numel()))

    def give(self, buf: Tensor) -> None:
        if self.recycle:
            self.free.append(buf)


class _Store:
    """A (C, H, W) map in a pooled buffer, or in a file that is mapped only while a strip of
    it is read or written (so only that strip is ever resident)."""

    def __init__(self, shape: tuple[int, int, int], pool: _Pool | None, path: Path | None = None) -> None:
        self.shape, self.pool, self.path = shape, pool, path
        numel = shape[0] * shape[1] * shape[2]
        self.nbytes = numel * 4
        self.buffer: Tensor | None = None
        if path is None:
            self.buffer = pool.take(numel)
            self.data = self.buffer[:numel].view(shape)
        else:
            with open(path, "wb") as f:
                f.truncate(self.nbytes)

    def rows(self, r0: int, r1: int) -> Tensor:
        """A (1, C, r1 - r0, W) view of rows [r0, r1); drop it before the next call."""
        if self.path is None:
            return self.data[None, :, r0:r1]
        return torch.from_numpy(np.memmap(self.path, np.float32, "r+", shape=self.shape)[:, r0:r1])[None]

    def release(self) -> None:
        if self.buffer is not None:
            del self.data
            self.pool.give(self.buffer)
            self.buffer = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


# --- sources: what a pass reads, row strip by row strip ------------------------------


class _Source:
    shape: tuple[int, int, int]  # C, H, W

    def rows(self, r0: int, r1: int) -> Tensor:
        """Rows [r0, r1) as a (1, C, r1 - r0, W) tensor the caller must not modify."""
        raise NotImplementedError


class _TensorSource(_Source):
    def __init__(self, x: Tensor) -> None:
        self.x = x
        self.shape = tuple(x.shape[1:])

    def rows(self, r0: int, r1: int) -> Tensor:
        return self.x[:, :, r0:r1]


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
        if self.scale is None:
            return raw
        y = torch.addcmul(self.shift, raw, self.scale)
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
        # Along W first, then along H, as TF's kernel orders it. Elementwise on purpose: a
        # BLAS matmul here (MKL's sgemm) picks its code path by the data's alignment and
        # threading on Intel CPUs, so it gave other bits in some processes.
        wide = _resize_width(self.src.rows(s0, s1), self.mode, self.out_w)
        device = wide.device
        top = wide.index_select(2, (lower - s0).to(device))
        bottom = wide.index_select(2, (upper - s0).to(device))
        del wide
        bottom -= top
        bottom *= lerp.to(device, top.dtype).view(1, 1, -1, 1)
        top += bottom
        return top


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
        raise ConfigError(f"the layer-by-layer run does not know this layer layout: {type(block).__name__}")
    return [_Conv(c, n, act=True) for c, n in zip(convs, norms)]


def _n_passes(model: nn.Module) -> int:
    # one pass per normalised convolution, and one for the output layer
    return sum(isinstance(m, nn.GroupNorm) for m in model.modules()) + 1


class _LayerwiseRun:
    """One sample through the network, layer by layer."""

    def __init__(
        self, model: nn.Module, x: Tensor, budget: int | None, tile_rows: int | None, tmp_dir, stack, bar
    ) -> None:
        self.model, self.budget, self.tile_rows, self.tmp_dir, self.stack, self.bar = model, budget, tile_rows, tmp_dir, stack, bar
        self.device = next(model.parameters()).device
        self.spill_dir: Path | None = None
        self.n_files = 0
        self.ram_left = float("inf")
        self.work = _STRIP_BYTES
        if budget is None:
            # maps stay where the model runs; without a budget, recycled between passes
            self.pool = _Pool(self.device, x.dtype)
        else:
            # maps stay in host RAM while they fit what the process has left (measured: where
            # a map goes does not change its values); 64 MiB for what the first convs load
            # (oneDNN code and caches) and allocator slack
            self.pool = _Pool(torch.device("cpu"), torch.float32, recycle=False)
            self.work = int(min(max((budget - _TYPICAL_RESIDENT) // 4, 16 * 2**20), 256 * 2**20))
            available = budget - _resident_now() - 64 * 2**20
            self.ram_left = available - 2 * self.work - x.numel() * 4

    # storage
    def _store(self, shape: tuple[int, int, int]) -> _Store:
        nbytes = shape[0] * shape[1] * shape[2] * 4
        if self.budget is None or nbytes <= self.ram_left:
            self.ram_left -= nbytes
            return _Store(shape, self.pool)
        if self.spill_dir is None:
            self.spill_dir = Path(self.stack.enter_context(
                tempfile.TemporaryDirectory(prefix="animegan2-lowmem-", dir=self.tmp_dir)))
        self.n_files += 1
        return _Store(shape, None, self.spill_dir / f"map{self.n_files}.f32")

    def _release(self, src: _Source) -> None:
        if isinstance(src, _Upsampled):
            src = src.src
        if isinstance(src, _Normalized):
            if src.store.buffer is not None:
                self.ram_left += src.store.nbytes
            src.store.release()

    def _strip_rows(self, in_bytes_per_row: int, out_bytes_per_row: int, n_rows: int) -> int:
        if self.tile_rows is not None:
            return self.tile_rows
        if self.budget is None:
            if self.device.type != "cpu":  # GPUs want whole maps, and have no page faults to dodge
                return n_rows
            return max(_MIN_STRIP_ROWS, min(n_rows, self.work // in_bytes_per_row))
        return max(1, min(n_rows, self.work // (4 * in_bytes_per_row + 3 * out_bytes_per_row)))

    def _after_strip(self) -> None:
        if self.budget is not None:
            trim_heap()

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
        moments = []
        step = self._strip_rows(src.shape[0] * w * 4 * s, conv.out_channels * out_w * 4, out_h)
        for o0 in range(0, out_h, step):
            o1 = min(out_h, o0 + step)
            first, end = o0 * s - top, (o1 - 1) * s + k - top  # input rows needed, padding included
            lo, hi = max(first, 0), min(end, h)
            x = src.rows(lo, hi)
            if left or right or lo != first or hi != end:  # reflect at the true image borders only
                x = F.pad(x, (left, right, lo - first, end - hi), mode="reflect")
            y = F.conv2d(x.to(self.device), conv.weight, conv.bias, s, 0, 1, conv.groups)
            del x
            moments.append(_moments(y))
            view = store.rows(o0, o1)
            view.copy_(y)
            del view, y
            self._after_strip()
        mean, var = pooled_moments(*(torch.cat(m) for m in zip(*moments)))
        norm = layer.norm
        scale = norm.weight.detach().cpu().double() / math.sqrt(var + norm.eps)
        shift = norm.bias.detach().cpu().double() - mean * scale
        scale, shift = (t.to(self.pool.device, self.pool.dtype).view(1, -1, 1, 1) for t in (scale, shift))
        return _Normalized(store, scale, shift, _SLOPE if layer.act else None, residual)

    def materialize(self, src: _Normalized) -> _Normalized:
        """Write ``src``'s values back into its own store (row by row, in place)."""
        c, h, w = src.shape
        step = self._strip_rows(c * w * 4, c * w * 4, h)
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
        out = torch.empty(1, conv.out_channels, out_h, out_w, device=x.device, dtype=x.dtype)
        step = self._strip_rows(e.shape[0] * out_w * 4, conv.out_channels * out_w * 4, out_h)
        for r0 in range(0, out_h, step):
            r1 = min(out_h, r0 + step)
            out[:, :, r0:r1] = torch.tanh(conv(e.rows(r0, r1).to(self.device)))
        self._release(e)
        self.bar.update()
        return out


def run_layerwise(
    model: nn.Module,
    x: Tensor,
    *,
    max_memory: int | None = None,
    tmp_dir: str | os.PathLike | None = None,
    tile_rows: int | None = None,
    progress: bool = False,
) -> Tensor:
    """``model(x)`` for an AnimeGANv2 :class:`~animegan2.model.Generator`, run layer by layer
    over row strips (see the module docstring); what the generator's forward pass runs
    under no_grad.

    Args:
        model: the generator (its ``upsample`` mode and layer-norm epsilons are honoured).
        x: NCHW float input in [-1, 1]; samples run one after another.
        max_memory: a peak resident memory in bytes to stay under, counting what the process
            already holds: maps are then kept in host RAM while they fit and in memory-mapped
            files otherwise (see :func:`animegan2.lowmem.run_low_memory`). ``None``: maps stay
            on the model's device.
        tmp_dir: where the memory-mapped files go (default: the system's temp folder);
            they are removed when the call returns or raises.
        tile_rows: rows per strip in every pass (default: a few MB on CPU, sized from the
            budget with one, whole maps on other devices).
        progress: show a progress bar over the layers.

    Returns the module-by-module result up to float rounding (max abs about 1e-5).

    >>> from animegan2.model import Generator
    >>> g = Generator().eval()
    >>> x = torch.rand(1, 3, 67, 45) * 2 - 1
    >>> (run_layerwise(g, x, tile_rows=8) - g.forward_layers(x)).abs().max().item() < 1e-4
    True
    """
    arch = architectures.of(model)
    if arch is None or not arch.strip_engine:
        raise ConfigError(
            f"memory='low' and the layer-by-layer run take {' and '.join(architectures.supporting('strip_engine'))} "
            f"generators only, not {type(model).__name__}; use memory='tiled' for it"
        )
    outputs = []
    with torch.inference_mode(), contextlib.ExitStack() as stack:
        bar = stack.enter_context(
            tqdm(total=_n_passes(model) * len(x), desc="layers", unit="layer", disable=not progress)
        )
        for sample in x:
            if max_memory is not None:
                sample = sample.float().cpu()
            run = _LayerwiseRun(model, sample, max_memory, tile_rows, tmp_dir, stack, bar)
            outputs.append(run.forward(sample[None]))
    return torch.cat(outputs)
