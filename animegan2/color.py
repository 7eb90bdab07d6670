"""Colour: the RGB -> Y'UV matrix the original uses (``tf.image.rgb_to_yuv``, BT.601) and
the colour transfer that keeps a photo's colours under a stylized image's luma.

The training colour loss (:mod:`animegan2.train.losses`) reads the same matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Y'UV (BT.601) from RGB in [0, 1], as ``tf.image.rgb_to_yuv``: ``yuv[i] = sum_j M[i, j] * rgb[j]``.
#: Kept in float64, as TF casts its Python constants to the image's dtype: ``.to(x)`` gives the
#: float32 kernel for float32 images and the full one for float64 (the trainer's parity test).
RGB_TO_YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.14714119, -0.28886916, 0.43601035], [0.61497538, -0.51496512, -0.10001026]],
    dtype=torch.float64,
)
YUV_TO_RGB = torch.linalg.inv(RGB_TO_YUV.float().double()).float()  # the inverse of the float32 kernel


def transfer_chroma(stylized: Tensor, original: Tensor) -> Tensor:
    """Colour transfer: the luma (Y) of ``stylized`` with the chroma (U, V) of ``original``.

    Both are N x 3 x H x W in [-1, 1] of the same size; the result is clipped to [-1, 1].

    >>> grey = torch.zeros(1, 3, 1, 1); red = torch.tensor([0.4, -0.2, -0.2]).view(1, 3, 1, 1)
    >>> [round(v, 4) for v in transfer_chroma(grey, red).flatten().tolist()]  # grey's luma, red's chroma
    [0.4206, -0.1794, -0.1794]
    """
    to_yuv = RGB_TO_YUV.to(stylized.device, torch.float32)
    yuv_s = torch.einsum("ij,njhw->nihw", to_yuv, (stylized.float() + 1) / 2)
    yuv_o = torch.einsum("ij,njhw->nihw", to_yuv, (original.float() + 1) / 2)
    mixed = torch.cat([yuv_s[:, :1], yuv_o[:, 1:]], dim=1)
    rgb = torch.einsum("ij,njhw->nihw", YUV_TO_RGB.to(stylized.device), mixed)
    return (rgb * 2 - 1).clamp(-1, 1).to(stylized.dtype)
