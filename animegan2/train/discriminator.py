"""The AnimeGANv2 discriminator as the original builds, initialises and normalises it.

Original: TachibanaYoshino/AnimeGANv2 ``net/discriminator.py`` and ``tools/ops.py``
(commit 8f97ab48). 3x3 convs, zero padding, no bias, each divided by its spectral norm;
layer norm (per sample over C, H, W, per-channel affine, epsilon 1e-12); LReLU 0.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArgumentError


def _l2_normalize(x: Tensor) -> Tensor:
    # tools/ops.py l. 166-167: x / (sqrt(sum x^2) + 1e-12), over the whole tensor.
    return x / (x.square().sum().sqrt() + 1e-12)


class SpectralNormConv2d(nn.Conv2d):
    """A 3x3 conv whose weight is divided by its largest singular value as ``tools/ops.py``
    ``spectral_norm`` (l. 139-164) does it, not as ``torch.nn.utils.spectral_norm``:

    * ``u`` [1, out] is a buffer (the original's non-trainable variable ``u``), truncated
      N(0, 1) at construction (l. 143), advanced by ONE power iteration per forward in
      training mode (l. 147-156, ``iteration=1``; the ``u.assign`` of l. 161) -- one forward
      per D or G step in the trainer, as one ``sess.run`` is one iteration in the original;
    * sigma = v W u'^T with v = l2(u W^T), u' = l2(v W) (l. 152-158, W as [k*k*in, out]),
      and the gradient flows through v, u' and sigma into W (no stop_gradient), while
      PyTorch's spectral_norm treats u and v as constants;
    * the weight starts N(0, 0.02) (l. 11 ``weight_init``, used at l. 38); no bias
      (``net/discriminator.py`` l. 7-24 pass ``use_bias=False``).

    In this discriminator the normalisation changes nothing but ``u`` itself: each conv but
    the last feeds a layer norm through scale-equivariant ops (zero padding, LReLU, conv), so
    D's outputs and gradients do not depend on sigma (to the norm's epsilon 1e-12), and the
    last conv has one output, whose sigma is exactly ||W||.

    Padding: the original pads a stride-2 conv by 1 on top/left only (l. 26-30); for even
    H and W that gives the same windows as symmetric padding 1 (the extra bottom/right row
    is never read), so :class:`Discriminator` takes H and W multiples of 4.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.register_buffer("u", torch.empty(1, out_ch))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's initialisers: W ~ N(0, 0.02), u ~ N(0, 1) truncated at 2 sigma."""
        nn.init.normal_(self.weight, 0.0, 0.02)
        if hasattr(self, "u"):  # nn.Conv2d.__init__ calls this before u exists
            nn.init.trunc_normal_(self.u, 0.0, 1.0, -2.0, 2.0)

    def normalized_weight(self) -> Tensor:
        """W / sigma(W), computed in float32 outside autocast; advances ``u`` in training mode."""
        with torch.autocast(self.weight.device.type, enabled=False):
            dtype = torch.promote_types(self.weight.dtype, torch.float32)
            w = self.weight.to(dtype).flatten(1)  # [out, in*k*k]: the original's W transposed
            v = _l2_normalize(self.u.to(dtype, copy=True) @ w)  # a copy: autograd keeps it, the update below changes u
            wv = v @ w.T
            u = _l2_normalize(wv)
            sigma = wv @ u.T
            if self.training:
                with torch.no_grad():
                    self.u.copy_(u)
            return self.weight / sigma.to(self.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), None, self.stride, self.padding)


def _layer_norm(ch: int) -> nn.Module:
    # tools/ops.py l. 127-130: tf.contrib.layers.layer_norm defaults (epsilon 1e-12, gamma 1, beta 0).
    return nn.GroupNorm(1, ch, eps=1e-12)


class Discriminator(nn.Module):
    """Patch discriminator: one logit per 4x4 input patch (NCHW in [-1, 1] -> N x 1 x H/4 x W/4).

    ``ch`` is the width of the last stages (64 in the recipe: 32, 64, 128, 128, 256, 256, 1;
    ``train.py`` ``--ch 64 --n_dis 3``). H and W must be multiples of 4.

    >>> Discriminator()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, ch: int = 64) -> None:
        super().__init__()
        c = ch // 2
        act = {"negative_slope": 0.2, "inplace": True}
        self.layers = nn.Sequential(
            SpectralNormConv2d(3, c), nn.LeakyReLU(**act),
            SpectralNormConv2d(c, 2 * c, stride=2), nn.LeakyReLU(**act),
            SpectralNormConv2d(2 * c, 4 * c), _layer_norm(4 * c), nn.LeakyReLU(**act),
            SpectralNormConv2d(4 * c, 4 * c, stride=2), nn.LeakyReLU(**act),
            SpectralNormConv2d(4 * c, 8 * c), _layer_norm(8 * c), nn.LeakyReLU(**act),
            SpectralNormConv2d(8 * c, 8 * c), _layer_norm(8 * c), nn.LeakyReLU(**act),
            SpectralNormConv2d(8 * c, 1),
        )  # fmt: skip

    def forward(self, image: Tensor) -> Tensor:
        """Logits of ``image`` (N x 3 x H x W, H and W multiples of 4)."""
        if image.shape[-2] % 4 or image.shape[-1] % 4:
            raise ArgumentError(f"the discriminator takes H and W multiples of 4, got {tuple(image.shape[-2:])}")
        return self.layers(image)
