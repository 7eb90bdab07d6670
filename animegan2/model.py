"""The AnimeGANv2 generator: the architecture and its upsampling modes, nothing else.

The module layout (and so the ``state_dict`` keys) is that of the published PyTorch
weights, so their ``.pt`` files load with ``strict=True``; the numerics follow the
original TensorFlow 1 graph when built with ``upsample="tf", norm_eps=1e-12``.

This module imports torch, the resize functions and the error types only. How inference is executed is
another module's job: under ``torch.no_grad()``/``torch.inference_mode()`` ``forward``
hands large inputs to the row-strip engine (:mod:`animegan2.layerwise`), imported on
that first call; with autograd on, it runs module by module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .errors import ArgumentError
from .resize import UPSAMPLE_MODES, resize_bilinear_tf, upsample2x, upsample2x_tf

# Below this many pixels per image the strip engine's per-layer overhead outweighs what it
# saves (measured on 2 CPU cores: equal at 128x128 alone and 160x160 in batches of 4).
LAYERWISE_MIN_PIXELS = 160 * 160
#: The smallest side the generator accepts: two stride-2 convolutions leave H//4, and the
#: 3x3 reflect padding that follows needs at least 2 rows (the Stylizer pads smaller images).
MIN_SIDE = 8

__all__ = ["LAYERWISE_MIN_PIXELS", "MIN_SIDE", "UPSAMPLE_MODES", "ConvNormLReLU", "Generator", "InvertedResBlock", "resize_bilinear_tf", "upsample2x", "upsample2x_tf"]


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

    Under ``torch.no_grad()``/``torch.inference_mode()`` the forward pass runs layer by layer
    over row strips (:func:`~animegan2.layerwise.run_layerwise`: the same results up to float
    rounding, within 1e-5 of the module-by-module path, and faster on CPU) for inputs of at
    least :data:`LAYERWISE_MIN_PIXELS` pixels; with autograd enabled, or for smaller inputs,
    it runs module by module, so training is unaffected.

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
            raise ArgumentError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")
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
        if torch.is_grad_enabled() or x.shape[-2] * x.shape[-1] < LAYERWISE_MIN_PIXELS:
            return self.forward_layers(x)
        from . import layerwise  # the execution engine, kept out of the architecture's imports

        return layerwise.run_layerwise(self, x)

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
