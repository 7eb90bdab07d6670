"""A straightforward AnimeGANv2 generator, written independently of ``animegan2.model``.

It is the yardstick: tests compare every fast path against it, and benchmarks use it
as the baseline (plain ``GroupNorm(1)``, ``ReflectionPad2d`` and ``F.interpolate``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _tf_legacy_resize(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """TF1 legacy bilinear written as the textbook formula, one axis at a time."""

    def weights(n_in: int, n_out: int) -> torch.Tensor:
        m = torch.zeros(n_out, n_in, dtype=torch.float64)
        for i in range(n_out):
            src = i * (n_in / n_out)
            lo = int(src)
            frac = src - lo
            m[i, lo] += 1 - frac
            m[i, min(lo + 1, n_in - 1)] += frac
        return m.to(x.dtype)

    wy, wx = weights(x.shape[-2], out_h), weights(x.shape[-1], out_w)
    return torch.einsum("oh,nchw,pw->ncop", wy, x, wx)


def conv_block(in_ch, out_ch, k=3, stride=1, pad=1, groups=1, bias=False, eps=1e-5):
    return nn.Sequential(
        nn.ReflectionPad2d(pad),
        nn.Conv2d(in_ch, out_ch, k, stride, 0, groups=groups, bias=bias),
        nn.GroupNorm(1, out_ch, eps=eps),
        nn.LeakyReLU(0.2),
    )


class ResBlock(nn.Module):
    def __init__(self, cin, cout, eps):
        super().__init__()
        mid = cin * 2
        self.layers = nn.Sequential(
            conv_block(cin, mid, k=1, pad=0, eps=eps),
            conv_block(mid, mid, groups=mid, bias=True, eps=eps),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.GroupNorm(1, cout, eps=eps),
        )
        self.res = cin == cout

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.res else y


class ReferenceGenerator(nn.Module):
    """Same parameters and key names as the published layout; upsample in
    ``"align_corners"``, ``"half_pixel"`` or ``"tf"``."""

    def __init__(self, upsample: str = "align_corners", eps: float = 1e-5):
        super().__init__()
        self.upsample = upsample
        s2 = dict(stride=2, pad=(0, 1, 0, 1), eps=eps)
        self.block_a = nn.Sequential(conv_block(3, 32, 7, pad=3, eps=eps), conv_block(32, 64, **s2), conv_block(64, 64, eps=eps))
        self.block_b = nn.Sequential(conv_block(64, 128, **s2), conv_block(128, 128, eps=eps))
        self.block_c = nn.Sequential(
            conv_block(128, 128, eps=eps),
            ResBlock(128, 256, eps), ResBlock(256, 256, eps), ResBlock(256, 256, eps), ResBlock(256, 256, eps),
            conv_block(256, 128, eps=eps),
        )
        self.block_d = nn.Sequential(conv_block(128, 128, eps=eps), conv_block(128, 128, eps=eps))
        self.block_e = nn.Sequential(conv_block(128, 64, eps=eps), conv_block(64, 64, eps=eps), conv_block(64, 32, 7, pad=3, eps=eps))
        self.out_layer = nn.Sequential(nn.Conv2d(32, 3, 1, bias=False), nn.Tanh())

    def _up(self, x, size):
        if self.upsample == "align_corners":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        if self.upsample == "half_pixel":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return _tf_legacy_resize(x, 2 * x.shape[-2], 2 * x.shape[-1])

    def forward(self, x):
        a = self.block_a(x)
        y = self.block_c(self.block_b(a))
        y = self.block_d(self._up(y, a.shape[-2:]))
        y = self.block_e(self._up(y, x.shape[-2:]))
        return self.out_layer(y)


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Non-trivial random weights in the published layout (gamma != 1, beta != 0, biases != 0)."""
    gen = torch.Generator().manual_seed(seed)
    ref = ReferenceGenerator()
    state = {}
    for name, p in ref.state_dict().items():
        if p.ndim == 4:
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            state[name] = torch.randn(p.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif name.endswith("weight"):  # norm gamma
            state[name] = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
        else:  # norm beta or depthwise bias
            state[name] = 0.1 * torch.randn(p.shape, generator=gen)
    return state


def smooth_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Image-like weights: every k x k kernel a Gaussian (sigma k/3) times a random channel
    mix, so each layer mixes channels and smooths, and activations stay smooth and image-like
    as trained weights keep them; random kernels give noise, on which reduced precision says
    little (README, "Precision")."""
    state = random_state_dict(seed)
    rng = torch.Generator().manual_seed(seed)
    for key, w in state.items():
        if w.ndim == 4 and w.shape[-1] > 1:
            r = torch.arange(w.shape[-1]) - w.shape[-1] // 2
            blur = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * (w.shape[-1] / 3) ** 2))
            if w.shape[1] > 1:
                mix = w.mean(dim=(2, 3), keepdim=True)
            else:  # depthwise: one positive gain per channel
                mix = torch.rand(w.shape[0], 1, 1, 1, generator=rng) + 0.5
            state[key] = mix * blur / blur.sum()
    return state


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2)."""
    return 10 * torch.log10(4 / ((a - b) ** 2).mean()).item()
