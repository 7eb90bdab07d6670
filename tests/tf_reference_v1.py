"""The original AnimeGAN (v1) generator in TensorFlow 1 graph mode: the yardstick of v1 conversion.

Written from TachibanaYoshino/AnimeGAN ``net/generator.py`` (DESIGN.md 2.5) on the pieces of
:mod:`tests.tf_reference` (reflect pads, ``Conv*/weights`` VALID convs, LeakyReLU, the TF1
``resize_images`` upsampling, random values). TF 2 has no ``tf.contrib``, so the two contrib
layers only v1 uses are written with the ``tf.nn`` ops they reduce to, under the variable
names they create:

- ``contrib.layers.instance_norm``: ``InstanceNorm*/{beta,gamma}``; ``tf.nn.moments`` over H
  and W + ``tf.nn.batch_normalization``; epsilon 1e-5 where the original passes it
  (``tools/ops.instance_norm``), the contrib default 1e-6 inside separable convs;
- ``contrib.layers.separable_conv2d``: ``SeparableConv2d*/{depthwise,pointwise}_weights`` +
  ``tf.nn.separable_conv2d`` (the stride in the depthwise step), its instance norm under
  ``SeparableConv2d*/InstanceNorm`` and LeakyReLU.

Scopes auto-number (``Conv``, ``Conv_1``, ``SeparableConv2d_1``, ...) in evaluation order, as
in the original: in ``a + b`` the left operand's layers are created first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.tf_reference import TFV2Checkpoint, _pad, build_v2_checkpoint, conv2d, lrelu, tf, tf1, upsample

SIZES = ((64, 64), (67, 45), (50, 77))
SEPARABLE_STD = 0.05  # small, as trained separable weights are: the norm's epsilon then matters


def instance_norm(x, init, eps, scope=None):
    channels = int(x.shape[-1])
    with tf1.variable_scope(scope, default_name="InstanceNorm"):
        beta = tf1.get_variable("beta", initializer=init.beta(channels))
        gamma = tf1.get_variable("gamma", initializer=init.gamma(channels))
        mean, variance = tf1.nn.moments(x, [1, 2], keep_dims=True)
        return tf.nn.batch_normalization(x, mean, variance, offset=beta, scale=gamma, variance_epsilon=eps)


def conv_norm_lrelu(x, init, filters, kernel_size=3):
    return lrelu(instance_norm(conv2d(x, init, filters, kernel_size), init, 1e-5))


def separable(x, init, filters, strides=1):
    """The original ``Separable_conv2d``: reflect pad (all sides at stride 1, bottom/right at 2)."""
    x = _pad(x, 0, 1, 0, 1) if strides == 2 else _pad(x, 1, 1, 1, 1)
    channels = int(x.shape[-1])
    with tf1.variable_scope(None, default_name="SeparableConv2d"):
        dw_value = (init.rng.standard_normal([3, 3, channels, 1]) * SEPARABLE_STD).astype(np.float32)
        pw_value = (init.rng.standard_normal([1, 1, channels, filters]) * SEPARABLE_STD).astype(np.float32)
        dw = tf1.get_variable("depthwise_weights", initializer=dw_value)
        pw = tf1.get_variable("pointwise_weights", initializer=pw_value)
        y = tf.nn.separable_conv2d(x, dw, pw, [1, strides, strides, 1], "VALID")
        return lrelu(instance_norm(y, init, 1e-6))


def downsample(x, init, filters):
    """The original ``Downsample``: TF1 bilinear to (H//2, W//2), then a separable conv."""
    size = [tf.shape(x)[1] // 2, tf.shape(x)[2] // 2]
    return separable(tf1.image.resize_images(x, size), init, filters)


def inverted_res_block(x, init, name):
    with tf1.variable_scope(name):
        net = conv_norm_lrelu(x, init, 2 * int(x.shape[-1]), kernel_size=1)
        net = _pad(net, 1, 1, 1, 1)
        with tf1.variable_scope(name):
            w = tf1.get_variable("w", initializer=init.conv([3, 3, int(net.shape[-1]), 1]))
            net = tf.nn.depthwise_conv2d(net, w, [1, 1, 1, 1], "VALID")
        net = lrelu(instance_norm(net, init, 1e-5, scope="1"))
        net = instance_norm(conv2d(net, init, int(x.shape[-1]), kernel_size=1), init, 1e-5, scope="2")
        return x + net


def generator(x, init):
    """``generator/G_MODEL`` of AnimeGAN v1; NHWC in and out, [-1, 1]."""
    with tf1.variable_scope("generator"), tf1.variable_scope("G_MODEL"):
        with tf1.variable_scope("b1"):
            x = conv_norm_lrelu(x, init, 64)
            x = conv_norm_lrelu(x, init, 64)
            x = separable(x, init, 128, strides=2) + downsample(x, init, 128)
        with tf1.variable_scope("b2"):
            x = conv_norm_lrelu(x, init, 128)
            x = separable(x, init, 128)
            x = separable(x, init, 256, strides=2) + downsample(x, init, 256)
        with tf1.variable_scope("m"):
            x = conv_norm_lrelu(x, init, 256)
            for k in range(1, 9):
                x = inverted_res_block(x, init, f"r{k}")
            x = conv_norm_lrelu(x, init, 256)
        with tf1.variable_scope("u2"):
            x = separable(upsample(x), init, 128)
            x = separable(x, init, 128)
            x = conv_norm_lrelu(x, init, 128)
        with tf1.variable_scope("u1"):
            x = separable(upsample(x), init, 128)
            x = conv_norm_lrelu(x, init, 64)
            x = conv_norm_lrelu(x, init, 64)
        return tf.tanh(conv2d(x, init, 3, kernel_size=1, gain=0.5))


def build_v1_checkpoint(root: Path, sizes=SIZES, seed: int = 0) -> TFV2Checkpoint:
    """Build the v1 generator with random values, save it as the published
    ``root/generator_Hayao_weight/Hayao-60.ckpt`` and run it on random inputs of ``sizes``."""
    return build_v2_checkpoint(root, sizes, seed, network=generator, prefix="Hayao-60.ckpt")
