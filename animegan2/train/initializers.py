"""The original AnimeGANv2 generator's initial weights (DESIGN.md 2.4).

TachibanaYoshino/AnimeGANv2 ``net/generator.py`` (commit 94d74af0) initialises every
conv kernel with ``tf.contrib.layers.variance_scaling_initializer()`` (l. 24, and l. 41
for the depthwise kernel), the depthwise bias with 0 (l. 44), and ``layer_norm``'s
gamma/beta with contrib's defaults 1/0. That initialiser's defaults are factor 2.0,
mode FAN_IN, normal: ``truncated_normal(0, sqrt(1.3 * factor / fan_in))``, cut at two
standard deviations, with fan_in = kh * kw * shape[-2] of the TF kernel [kh, kw, in, out]
-- also for the depthwise kernel [3, 3, C, 1], whose fan_in is therefore 9*C, not 9.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def init_generator_(generator: nn.Module) -> nn.Module:
    """Re-initialise ``generator`` in place as the original does; returns it."""
    for module in generator.modules():
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            std = math.sqrt(1.3 * 2.0 / (kh * kw * module.in_channels))  # TF shape[-2] is in_channels, groups or not
            nn.init.trunc_normal_(module.weight, 0.0, std, -2 * std, 2 * std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return generator
