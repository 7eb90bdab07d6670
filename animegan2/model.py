"""The AnimeGANv2 generator and its three upsampling modes.

The module layout (and so the ``state_dict`` keys) is that of the published PyTorch
weights, so their ``.pt`` files load with ``strict=True``; the numerics follow the
original TensorFlow 1 graph when built with ``upsample="tf", norm_eps=1e-12``.

This module depends on torch alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def upsample2x_tf(x: Tensor, out: Tensor | None = None) -> Tensor:
    """Exact 2x TF1-legacy bilinear upsampling, equal to ``resize_bilinear_tf(x, (2h, 2w))``
    up to float rounding, as an interleave (no index tensors); writes into ``out`` if given.

    >>> upsample2x_tf(torch.tensor([[[[0.0, 1.0, 4.0]]]]))[0, 0, 0]
    tensor([0.0000, 0.5000, 1.0000, 2.5000, 4.0000, 4.0000])
    """
    *lead, h, w = x.shape
    rows = x.new_empty((*lead, h, 2 * w))
    _lerp_half_into(rows, x, x.dim() - 1)
    if out is None:
        out = x.new_empty((*lead, 2 * h, 2 * w))
    _lerp_half_into(out, rows, x.dim() - 2)
    return out


def _reflect_fill_(buf: Tensor, pad: tuple[int, int, int, int]) -> None:
    # ``buf``'s interior already holds the image; mirror it into the (left, right, top,
    # bottom) border like ReflectionPad2d, rows first, then full-width columns (corners).
    left, right, top, bottom = pad
    h_end, w_end = buf.shape[-2] - bottom, buf.shape[-1] - right
    rows = buf[..., top:h_end, :]
    if left:
        rows[..., :left].copy_(rows[..., left + 1 : 2 * left + 1].flip(-1))
    if right:
        rows[..., w_end:].copy_(rows[..., w_end - 1 - right : w_end - 1].flip(-1))
    if top:
        buf[..., :top, :].copy_(buf[..., top + 1 : 2 * top + 1, :].flip(-2))
    if bottom:
        buf[..., h_end:, :].copy_(buf[..., h_end - 1 - bottom : h_end - 1, :].flip(-2))


def _padded_buffer(like: Tensor, channels: int, size: tuple[int, int], pad: tuple[int, int, int, int]) -> tuple[Tensor, Tensor]:
    # An uninitialised reflect-padded map and the view of its interior.
    left, right, top, bottom = pad
    h, w = size
    buf = like.new_empty((like.shape[0], channels, h + top + bottom, w + left + right))
    return buf, buf[..., top : top + h, left : left + w]


def _norm_act(y: Tensor, norm: nn.GroupNorm, pad: tuple[int, int, int, int], slope: float | None, residual: Tensor | None = None) -> Tensor:
    # Layer norm (GroupNorm's own kernel: one-pass moments, fused affine), residual, then
    # LeakyReLU written once, straight into the next layer's reflect-padded input.
    out = F.group_norm(y, 1, norm.weight, norm.bias, norm.eps)
    if residual is not None:
        out.add_(residual)
    if not any(pad):
        return out if slope is None else F.leaky_relu_(out, slope)
    buf, inner = _padded_buffer(out, out.shape[1], out.shape[-2:], pad)
    if slope is None:
        inner.copy_(out)
    else:
        torch.ops.aten.leaky_relu.out(out, slope, out=inner)
    _reflect_fill_(buf, pad)
    return buf


class ConvNormLReLU(nn.Sequential):
    """Reflect pad -> conv (no bias unless depthwise) -> layer norm -> LeakyReLU(0.2).

    Children ``0``..``3`` keep the published key layout (``.1`` conv, ``.2`` norm).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | tuple[int, int, int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        norm_eps: float = 1e-12,
    ) -> None:
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            nn.GroupNorm(1, out_ch, eps=norm_eps, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: 1x1 expand, 3x3 depthwise (with bias), 1x1 project, residual
    add when the channel counts match."""

    def __init__(self, in_ch: int, out_ch: int, expansion_ratio: int = 2, norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.use_res_connect = in_ch == out_ch
        bottleneck = in_ch * expansion_ratio
        self.layers = nn.Sequential(
            ConvNormLReLU(in_ch, bottleneck, kernel_size=1, padding=0, norm_eps=norm_eps),
            ConvNormLReLU(bottleneck, bottleneck, groups=bottleneck, bias=True, norm_eps=norm_eps),
            nn.Conv2d(bottleneck, out_ch, kernel_size=1, bias=False),
            nn.GroupNorm(1, out_ch, eps=norm_eps, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return x + out if self.use_res_connect else out

    def forward_fast(self, x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
        """The same block under no_grad, in place, its output reflect-padded by ``pad``
        (left, right, top, bottom) for the next layer."""
        expand, depthwise, project, norm = self.layers
        out = _norm_act(expand[1](x), expand[2], tuple(depthwise[0].padding), expand[3].negative_slope)
        out = _norm_act(depthwise[1](out), depthwise[2], (0, 0, 0, 0), depthwise[3].negative_slope)
        return _norm_act(project(out), norm, pad, None, residual=x if self.use_res_connect else None)


class Generator(nn.Module):
    """The AnimeGANv2 generator.

    Args:
        upsample: ``"tf"`` (TF1-legacy bilinear, exact for TF-converted checkpoints),
            ``"align_corners"`` (the published PyTorch port's default) or ``"half_pixel"``.
            May be changed later through the ``upsample`` attribute.
        norm_eps: layer-norm epsilon; 1e-12 is TensorFlow's, 1e-5 what the published
            PyTorch weights were trained with.

    Under ``torch.no_grad()``/``torch.inference_mode()`` the forward pass takes a fused,
    in-place path (same results up to float rounding, about 1e-6); with autograd enabled it
    runs module by module, so training is unaffected.

    Input: NCHW float in [-1, 1]. Output: NCHW in [-1, 1], of size
    (4*floor(H/4), 4*floor(W/4)) for ``"tf"``/``"half_pixel"`` and (H, W) for ``"align_corners"``.

    >>> g = Generator(upsample="tf").eval()
    >>> g(torch.zeros(1, 3, 257, 383)).shape
    torch.Size([1, 3, 256, 380])
    """

    def __init__(self, upsample: str = "tf", norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.upsample = upsample
        eps = {"norm_eps": norm_eps}
        stride2 = {"stride": 2, "padding": (0, 1, 0, 1)}  # TF pads bottom/right only, then VALID
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, 32, kernel_size=7, padding=3, **eps),
            ConvNormLReLU(32, 64, **stride2, **eps),
            ConvNormLReLU(64, 64, **eps),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(64, 128, **stride2, **eps),
            ConvNormLReLU(128, 128, **eps),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(128, 128, **eps),
            InvertedResBlock(128, 256, 2, **eps),
            InvertedResBlock(256, 256, 2, **eps),
            InvertedResBlock(256, 256, 2, **eps),
            InvertedResBlock(256, 256, 2, **eps),
            ConvNormLReLU(256, 128, **eps),
        )
        self.block_d = nn.Sequential(
            ConvNormLReLU(128, 128, **eps),
            ConvNormLReLU(128, 128, **eps),
        )
        self.block_e = nn.Sequential(
            ConvNormLReLU(128, 64, **eps),
            ConvNormLReLU(64, 64, **eps),
            ConvNormLReLU(64, 32, kernel_size=7, padding=3, **eps),
        )
        self.out_layer = nn.Sequential(nn.Conv2d(32, 3, kernel_size=1, bias=False), nn.Tanh())

    @property
    def upsample(self) -> str:
        return self._upsample

    @upsample.setter
    def upsample(self, mode: str) -> None:
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")
        self._upsample = mode

    @property
    def norm_eps(self) -> float:
        return self.norms()[0].eps

    @norm_eps.setter
    def norm_eps(self, eps: float) -> None:
        for norm in self.norms():
            norm.eps = eps

    def norms(self) -> list[nn.GroupNorm]:
        """Every layer norm of the network, in order."""
        return [m for m in self.modules() if isinstance(m, nn.GroupNorm)]

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return self.forward_layers(x)
        return self._forward_fast(x)

    def forward_layers(self, x: Tensor, upsample: Callable[[Tensor, str, tuple[int, int]], Tensor] = upsample2x) -> Tensor:
        """The plain module-by-module forward pass, what ``forward`` runs when autograd is on:
        no in-place ops on saved tensors, so it trains and traces. ``upsample`` (with
        :func:`upsample2x`'s signature) lets exporters swap in an export-friendly resize."""
        out = self.block_a(x)
        half_size = out.shape[-2:]
        out = self.block_b(out)
        out = self.block_c(out)
        out = upsample(out, self.upsample, half_size)
        out = self.block_d(out)
        out = upsample(out, self.upsample, x.shape[-2:])
        out = self.block_e(out)
        return self.out_layer(out)

    def _forward_fast(self, x: Tensor) -> Tensor:
        # The same network under no_grad/inference_mode: every norm's activation is
        # written straight into the next layer's reflect-padded input, so no separate
        # padding copies, and the TF upsampling is an interleave into that buffer too.
        steps: list[nn.Module | str] = [*self.block_a, *self.block_b, *self.block_c, "up", *self.block_d, "up", *self.block_e]
        pads = [_pad_of(step) for step in steps] + [(0, 0, 0, 0)]
        sizes = [x.shape[-2:]]
        out = F.pad(x, pads[0], mode="reflect")
        for step, next_pad in zip(steps, pads[1:]):
            if isinstance(step, ConvNormLReLU):
                out = step[1](out)
                if step is self.block_a[-1]:
                    sizes.append(out.shape[-2:])  # "align_corners" resizes back to it
                out = _norm_act(out, step[2], next_pad, step[3].negative_slope)
            elif isinstance(step, InvertedResBlock):
                out = step.forward_fast(out, next_pad)
            else:
                out = self._upsample_padded(out, sizes.pop(), next_pad)
        return torch.tanh_(self.out_layer[0](out))

    def _upsample_padded(self, x: Tensor, align_size: tuple[int, int], pad: tuple[int, int, int, int]) -> Tensor:
        if self.upsample == "tf":
            buf, inner = _padded_buffer(x, x.shape[1], (2 * x.shape[-2], 2 * x.shape[-1]), pad)
            upsample2x_tf(x, out=inner)
        else:
            up = upsample2x(x, self.upsample, align_size)
            buf, inner = _padded_buffer(up, up.shape[1], up.shape[-2:], pad)
            inner.copy_(up)
        _reflect_fill_(buf, pad)
        return buf


def _pad_of(step: nn.Module | str) -> tuple[int, int, int, int]:
    # The reflect padding a step wants on its input (left, right, top, bottom).
    if isinstance(step, ConvNormLReLU):
        return tuple(step[0].padding)
    return (0, 0, 0, 0)
