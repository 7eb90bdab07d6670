"""The AnimeGANv2 discriminator (DESIGN.md 2.4): spectral-normalised 3x3 convs, zero padding,
no bias, layer norm (per-sample over C, H, W, per-channel affine, epsilon 1e-12), LReLU 0.2.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False))


def _layer_norm(ch: int) -> nn.Module:
    return nn.GroupNorm(1, ch, eps=1e-12)


class Discriminator(nn.Module):
    """Patch discriminator: one logit per 4x4 input patch (NCHW in [-1, 1] -> N x 1 x H/4 x W/4).

    ``ch`` is the width of the last stages (64 in the recipe: 32, 64, 128, 128, 256, 256, 1).

    >>> Discriminator()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, ch: int = 64) -> None:
        super().__init__()
        c = ch // 2
        act = {"negative_slope": 0.2, "inplace": True}
        self.layers = nn.Sequential(
            _conv(3, c), nn.LeakyReLU(**act),
            _conv(c, 2 * c, stride=2), nn.LeakyReLU(**act),
            _conv(2 * c, 4 * c), _layer_norm(4 * c), nn.LeakyReLU(**act),
            _conv(4 * c, 4 * c, stride=2), nn.LeakyReLU(**act),
            _conv(4 * c, 8 * c), _layer_norm(8 * c), nn.LeakyReLU(**act),
            _conv(8 * c, 8 * c), _layer_norm(8 * c), nn.LeakyReLU(**act),
            _conv(8 * c, 1),
        )  # fmt: skip

    def forward(self, image: Tensor) -> Tensor:
        """Logits of ``image`` (N x 3 x H x W)."""
        return self.layers(image)
