"""Straightforward references for the training tools, written for clarity, not speed.

``edge_smooth_reference`` is CartoonGAN's per-pixel loop; tests compare
``animegan2.train.data.edge_smooth`` with it and ``benchmarks/bench_smooth.py`` uses it as
the baseline.
"""

from __future__ import annotations

import cv2
import numpy as np


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
