"""The AnimeGANv2 generator and its three upsampling modes.

The module layout (and so the ``state_dict`` keys) is that of the published PyTorch
weights, so their ``.pt`` files load with ``strict=True``; the numerics follow the
original TensorFlow 1 graph when built with ``upsample="tf", norm_eps=1e-12``.

This module depends on torch alone.
"""

from __future__ import annotations

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
        return resize_bilinear_tf(x, (2 * x.shape[-2], 2 * x.shape[-1]))
    if mode == "align_corners":
        return F.interpolate(x, size=align_size, mode="bilinear", align_corners=True)
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


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


class Generator(nn.Module):
    """The AnimeGANv2 generator.

    Args:
        upsample: ``"tf"`` (TF1-legacy bilinear, exact for TF-converted checkpoints),
            ``"align_corners"`` (the published PyTorch port's default) or ``"half_pixel"``.
            May be changed later through the ``upsample`` attribute.
        norm_eps: layer-norm epsilon; 1e-12 is TensorFlow's, 1e-5 what the published
            PyTorch weights were trained with.

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
        out = self.block_a(x)
        half_size = out.shape[-2:]
        out = self.block_b(out)
        out = self.block_c(out)
        out = upsample2x(out, self.upsample, half_size)
        out = self.block_d(out)
        out = upsample2x(out, self.upsample, x.shape[-2:])
        out = self.block_e(out)
        return self.out_layer(out)
