"""Straightforward references for the training tools, written for clarity, not speed.

``edge_smooth_reference`` is CartoonGAN's per-pixel loop; tests compare
``animegan2.train.data.edge_smooth`` with it and ``benchmarks/bench_smooth.py`` uses it as
the baseline. ``fake_caffe_layers`` makes tiny random VGG19 weights (tests never download).
"""

from __future__ import annotations

import cv2
import numpy as np

CONV_NAMES = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4)) for i in range(1, n + 1)]


def edge_smooth_reference(bgr: np.ndarray) -> np.ndarray:
    """Canny 100/200 on grayscale, 5x5 dilation, then a 5x5 Gaussian of the reflect-padded
    image computed pixel by pixel inside the mask (float sum assigned to uint8)."""
    kernel_size = 5
    gauss = cv2.getGaussianKernel(kernel_size, 0)
    gauss = gauss * gauss.transpose(1, 0)
    pad_img = np.pad(bgr, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    edges = cv2.Canny(gray, 100, 200)
    dilation = cv2.dilate(edges, np.ones((kernel_size, kernel_size), np.uint8))
    out = np.copy(bgr)
    rows, cols = np.where(dilation != 0)
    for y, x in zip(rows, cols):
        for c in range(3):
            out[y, x, c] = np.sum(np.multiply(pad_img[y : y + kernel_size, x : x + kernel_size, c], gauss))
    return out


def fake_caffe_layers(seed: int = 0, widths: tuple[int, int, int, int] = (4, 4, 8, 8)) -> dict[str, list[np.ndarray]]:
    """Tiny VGG19 weights in vgg19.npy's layout: W [3, 3, in, out] for BGR input, b [out]."""
    rng = np.random.default_rng(seed)
    layers, in_ch = {}, 3
    for name in CONV_NAMES:
        out = widths[int(name[4]) - 1]
        w = rng.normal(0, (2 / (9 * in_ch)) ** 0.5, (3, 3, in_ch, out)).astype(np.float32)
        layers[name] = [w, rng.normal(0, 0.1, out).astype(np.float32)]
        in_ch = out
    layers["fc6"] = [np.zeros((2, 2), np.float32), np.zeros(2, np.float32)]  # ignored beyond conv4_4
    return layers
