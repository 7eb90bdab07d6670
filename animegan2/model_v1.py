"""The AnimeGAN (v1) generator, exact to the original TensorFlow 1 graph.

Differences from AnimeGANv2 (:mod:`animegan2.model`): instance norms instead of layer
norms (epsilon 1e-5 after plain convs, 1e-6 after separable convs, as the original's
``tf.contrib`` defaults give), separable convs with the stride in the depthwise step,
two parallel downsampling branches summed, eight inverted residual blocks at 256
channels, and TF1-legacy bilinear resizes on the way down and up.

The child names follow the TF scopes (``b1``, ``b2``, ``m``, ``u2``, ``u1``), so the
converter's mapping reads in the order TensorFlow created the variables.

This module depends on torch and :mod:`animegan2.model` alone.
"""

from __future__ import annotations

from torch import Tensor, nn

from .model import resize_bilinear_tf

CONV_NORM_EPS = 1e-5
SEPARABLE_NORM_EPS = 1e-6


class ConvNormLReLU(nn.Sequential):
    """Reflect pad 1 (3x3 only) -> conv without bias -> instance norm -> LeakyReLU(0.2)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.ReflectionPad2d(kernel_size // 2),
            nn.Conv2d(in_ch, out_ch, kernel_size, bias=False),
            nn.InstanceNorm2d(out_ch, eps=CONV_NORM_EPS, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class SeparableConv(nn.Sequential):
    """``tf.contrib.layers.separable_conv2d`` as the original uses it: reflect pad, 3x3
    depthwise conv carrying the stride, 1x1 pointwise conv, instance norm (eps 1e-6),
    LeakyReLU(0.2). At stride 2 only the bottom and right are padded, then VALID."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReflectionPad2d((0, 1, 0, 1) if stride == 2 else 1),
            nn.Conv2d(in_ch, in_ch, 3, stride=stride, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.InstanceNorm2d(out_ch, eps=SEPARABLE_NORM_EPS, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class ResizeConv(nn.Module):
    """TF1-legacy bilinear resize to (H//2, W//2) or (2H, 2W), then a stride-1 separable conv
    (the original's ``Downsample`` / ``Unsample``)."""

    def __init__(self, in_ch: int, out_ch: int, up: bool) -> None:
        super().__init__()
        self.up = up
        self.conv = SeparableConv(in_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        size = (2 * h, 2 * w) if self.up else (h // 2, w // 2)
        return self.conv(resize_bilinear_tf(x, size))


class TwoWayDown(nn.Module):
    """Halve the resolution twice over and sum: a stride-2 separable conv (``strided``, created
    first in TF) plus resize-then-separable-conv (``resized``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.strided = SeparableConv(in_ch, out_ch, stride=2)
        self.resized = ResizeConv(in_ch, out_ch, up=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.strided(x) + self.resized(x)


class InvertedResBlock(nn.Module):
    """1x1 expand (x2) + IN + LReLU, reflect-padded 3x3 depthwise (no bias) + IN + LReLU,
    1x1 project + IN, residual add."""

    def __init__(self, ch: int = 256, expansion_ratio: int = 2) -> None:
        super().__init__()
        mid = ch * expansion_ratio
        self.layers = nn.Sequential(
            ConvNormLReLU(ch, mid, kernel_size=1),
            nn.ReflectionPad2d(1),
            nn.Conv2d(mid, mid, 3, groups=mid, bias=False),
            nn.InstanceNorm2d(mid, eps=CONV_NORM_EPS, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(mid, ch, 1, bias=False),
            nn.InstanceNorm2d(ch, eps=CONV_NORM_EPS, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class GeneratorV1(nn.Module):
    """The AnimeGAN (v1) generator: 129 tensors, 3,956,096 parameters.

    Same call convention as :class:`animegan2.model.Generator` with ``upsample="tf"``:
    NCHW float in [-1, 1] (sides of at least 8) -> NCHW in [-1, 1] of size
    (4*floor(H/4), 4*floor(W/4)).

    >>> import torch
    >>> GeneratorV1().eval()(torch.zeros(1, 3, 66, 41)).shape
    torch.Size([1, 3, 64, 40])
    """

    architecture = "animeganv1"
    upsample = "tf"  # fixed: the original resizes with TF1-legacy bilinear, which callers read

    def __init__(self) -> None:
        super().__init__()
        self.b1 = nn.Sequential(ConvNormLReLU(3, 64), ConvNormLReLU(64, 64), TwoWayDown(64, 128))
        self.b2 = nn.Sequential(ConvNormLReLU(128, 128), SeparableConv(128, 128), TwoWayDown(128, 256))
        self.m = nn.Sequential(
            ConvNormLReLU(256, 256),
            *(InvertedResBlock(256) for _ in range(8)),
            ConvNormLReLU(256, 256),
        )
        self.u2 = nn.Sequential(ResizeConv(256, 128, up=True), SeparableConv(128, 128), ConvNormLReLU(128, 128))
        self.u1 = nn.Sequential(ResizeConv(128, 128, up=True), ConvNormLReLU(128, 64), ConvNormLReLU(64, 64))
        self.out_layer = nn.Sequential(nn.Conv2d(64, 3, 1, bias=False), nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(self.u1(self.u2(self.m(self.b2(self.b1(x))))))
