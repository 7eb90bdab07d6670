"""The AnimeGANv2 losses, as the original TensorFlow trainer defines them (DESIGN.md 2.4).

Images are NCHW RGB in [-1, 1]; feature maps NCHW. Every loss is a mean over the batch,
so data-parallel gradient averaging equals one process with the combined batch.

Every function here runs outside autocast, on float16/bfloat16 inputs upcast to float32
(float64 stays float64): with the recipe's Caffe-scale VGG features (values in the tens to
hundreds) a Gram entry sums a thousand products of ~1e4 and overflows float16 (max 65504),
and a squared logit of a few hundred does too, so under float16 AMP the style loss became NaN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..color import RGB_TO_YUV
from .presets import Preset

_F = TypeVar("_F", bound=Callable)


def _upcast(x):
    return x.float() if isinstance(x, Tensor) and x.dtype in (torch.float16, torch.bfloat16) else x


def _full_precision(fn: _F) -> _F:
    """Run ``fn`` with autocast off and its float16/bfloat16 tensor arguments as float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in (*args, *kwargs.values()) if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device, enabled=False):
            return fn(*map(_upcast, args), **{k: _upcast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


# tf.image.rgb_to_yuv's kernel, stored as TF stores it: yuv = rgb @ _YUV_KERNEL (float64; cast to rgb's dtype).
_YUV_KERNEL = RGB_TO_YUV.T.contiguous()


@_full_precision
def gram(features: Tensor) -> Tensor:
    """Gram matrix of each sample: F^T F / (H*W*C) with F the (H*W, C) feature matrix.

    >>> gram(torch.ones(2, 3, 4, 4)).shape
    torch.Size([2, 3, 3])
    """
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w * c)


@_full_precision
def content_loss(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """L1 (mean absolute difference) between VGG features of the photo and of G(photo)."""
    return F.l1_loss(fake_features, real_features)


@_full_precision
def style_loss(anime_gray_features: Tensor, fake_features: Tensor) -> Tensor:
    """L1 between the per-sample Gram matrices of G(photo) and of the grayscale anime frame."""
    return F.l1_loss(gram(fake_features), gram(anime_gray_features))


@_full_precision
def rgb_to_yuv(image: Tensor) -> Tensor:
    """RGB in [-1, 1] -> YUV of the image in [0, 1], as ``tf.image.rgb_to_yuv`` computes it.

    >>> rgb_to_yuv(torch.ones(1, 3, 1, 1)).flatten().round(decimals=4)  # white: Y = 1, U = V = 0
    tensor([1., 0., 0.])
    """
    rgb = (image + 1.0) / 2.0
    return torch.einsum("nchw,cd->ndhw", rgb, _YUV_KERNEL.to(rgb))


@_full_precision
def color_loss(photo: Tensor, fake: Tensor) -> Tensor:
    """L1 on Y plus Huber (delta 1, mean) on U and on V between photo and G(photo)."""
    a, b = rgb_to_yuv(photo), rgb_to_yuv(fake)
    return (
        F.l1_loss(b[:, 0], a[:, 0])
        + F.huber_loss(b[:, 1], a[:, 1], delta=1.0)
        + F.huber_loss(b[:, 2], a[:, 2], delta=1.0)
    )


@_full_precision
def total_variation_loss(image: Tensor) -> Tensor:
    """sum(dh^2)/2 / numel(dh) + sum(dw^2)/2 / numel(dw) (``tf.nn.l2_loss`` per direction)."""
    dh = image[:, :, :-1, :] - image[:, :, 1:, :]
    dw = image[:, :, :, :-1] - image[:, :, :, 1:]
    return (dh.square().sum() / 2) / dh.numel() + (dw.square().sum() / 2) / dw.numel()


@_full_precision
def generator_adv_loss(fake_logits: Tensor) -> Tensor:
    """LSGAN generator term: mean((D(G(p)) - 1)^2), unweighted."""
    return (fake_logits - 1.0).square().mean()


@_full_precision
def discriminator_loss(real: Tensor, fake: Tensor, gray: Tensor, smooth: Tensor, preset: Preset) -> Tensor:
    """The LSGAN discriminator loss with the style's four weights and ``preset.adv``:
    adv * [a*mean((D(anime)-1)^2) + b*mean(D(G(p))^2) + c*mean(D(gray anime)^2) + d*mean(D(gray smooth)^2)].
    """
    return preset.adv * (
        preset.d_real * (real - 1.0).square().mean()
        + preset.d_fake * fake.square().mean()
        + preset.d_gray * gray.square().mean()
        + preset.d_smooth * smooth.square().mean()
    )


def generator_loss(
    photo: Tensor,
    fake: Tensor,
    photo_features: Tensor,
    fake_features: Tensor,
    anime_gray_features: Tensor,
    fake_logits: Tensor,
    preset: Preset,
) -> dict[str, Tensor]:
    """Every generator term and their weighted sum under ``"total"`` (content, style, colour,
    TV, adversarial, each already multiplied by its weight)."""
    terms = {
        "content": preset.con * content_loss(photo_features, fake_features),
        "style": preset.sty * style_loss(anime_gray_features, fake_features),
        "color": preset.col * color_loss(photo, fake),
        "tv": preset.tv * total_variation_loss(fake),
        "adv": preset.adv * generator_adv_loss(fake_logits),
    }
    terms["total"] = sum(terms.values())
    return terms
