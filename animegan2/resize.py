"""Bilinear resizing as the generator uses it: the TF1-legacy resize of the original
graph (any size, and an exact 2x interleave), the three 2x upsampling modes, and the
output size each mode gives the generator.

This module depends on torch alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

UPSAMPLE_MODES = ("tf", "align_corners", "half_pixel")


def _legacy_axis(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    # TF1 legacy scaler: src = dst * (in / out) in float32, no half-pixel offset.
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lower = src.floor()
    lerp = (src - lower).to(device)
    lower = lower.long()
    upper = torch.clamp(lower + 1, max=in_size - 1)
    return lower.to(device), upper.to(device), lerp


def resize_bilinear_tf(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize with TF1 ``tf.image.resize_images`` semantics (align_corners=False,
    half_pixel_centers=False): source coordinate = destination index * in/out.

    >>> resize_bilinear_tf(torch.arange(4.).view(1, 1, 2, 2), (4, 4))[0, 0, 0]
    tensor([0.0000, 0.5000, 1.0000, 1.0000])
    """
    out_h, out_w = size
    in_h, in_w = x.shape[-2:]
    top, bottom, y_lerp = _legacy_axis(in_h, out_h, x.device)
    left, right, x_lerp = _legacy_axis(in_w, out_w, x.device)
    x_lerp = x_lerp.to(x.dtype)
    y_lerp = y_lerp.to(x.dtype).view(-1, 1)
    # Same operation order as TF's kernel: along x for both rows, then along y.
    rows_top = x.index_select(-2, top)
    rows_bottom = x.index_select(-2, bottom)
    top_l, top_r = rows_top.index_select(-1, left), rows_top.index_select(-1, right)
    bot_l, bot_r = rows_bottom.index_select(-1, left), rows_bottom.index_select(-1, right)
    top_row = top_l + (top_r - top_l) * x_lerp
    bottom_row = bot_l + (bot_r - bot_l) * x_lerp
    return top_row + (bottom_row - top_row) * y_lerp


def upsample2x(x: Tensor, mode: str, align_size: tuple[int, int]) -> Tensor:
    """The generator's 2x upsampling in one of :data:`UPSAMPLE_MODES`.

    ``align_size`` is the target size used by ``"align_corners"`` (the published port
    resizes to explicit sizes); the other modes double the input exactly.
    """
    if mode == "tf":
        return upsample2x_tf(x)
    if mode == "align_corners":
        return F.interpolate(x, size=align_size, mode="bilinear", align_corners=True)
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def size_multiple(mode: str) -> int:
    """The side multiple the generator returns at its own size in ``mode``: 4 for ``"tf"`` and
    ``"half_pixel"`` (the two stride-2 convolutions halve, rounding down, and the upsamplings
    double exactly), 1 for ``"align_corners"`` (it resizes to the input's size).

    >>> size_multiple("tf"), size_multiple("align_corners")
    (4, 1)
    """
    return 1 if mode == "align_corners" else 4


def output_size(mode: str, height: int, width: int) -> tuple[int, int]:
    """The generator's output size for a ``height`` x ``width`` input in ``mode``.

    >>> output_size("tf", 257, 383), output_size("align_corners", 257, 383)
    ((256, 380), (257, 383))
    """
    multiple = size_multiple(mode)
    return multiple * (height // multiple), multiple * (width // multiple)


def _lerp_half_into(out: Tensor, x: Tensor, dim: int) -> None:
    # out's even slots along ``dim`` take x, odd ones the midpoint with the next element
    # (the last one repeats: TF clamps the neighbour). For an exact 2x the legacy lerp
    # weights are exactly 0 and 0.5; TF's order a + (b - a) * 0.5 keeps its rounding.
    n = x.shape[dim]
    pairs = out.unflatten(dim, (n, 2))
    even, odd = pairs.select(dim + 1, 0), pairs.select(dim + 1, 1)
    even.copy_(x)
    if n > 1:
        a, b = x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1)
        odd.narrow(dim, 0, n - 1).copy_(a).add_(b - a, alpha=0.5)  # in-place: autograd-safe
    odd.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1))


def upsample2x_tf(x: Tensor) -> Tensor:
    """Exact 2x TF1-legacy bilinear upsampling, equal to ``resize_bilinear_tf(x, (2h, 2w))``
    up to float rounding, as an interleave (no index tensors).

    >>> upsample2x_tf(torch.tensor([[[[0.0, 1.0, 4.0]]]]))[0, 0, 0]
    tensor([0.0000, 0.5000, 1.0000, 2.5000, 4.0000, 4.0000])
    """
    *lead, h, w = x.shape
    rows = x.new_empty((*lead, h, 2 * w))
    _lerp_half_into(rows, x, x.dim() - 1)
    out = x.new_empty((*lead, 2 * h, 2 * w))
    _lerp_half_into(out, rows, x.dim() - 2)
    return out
