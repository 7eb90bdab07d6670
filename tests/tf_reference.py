"""The original AnimeGANv2 generator in TensorFlow 1 graph mode: the yardstick of conversion.

Written from DESIGN.md 2.1/2.2 with the original variable names and ops: reflect pads,
VALID convs, ``tf.compat.v1.image.resize_images`` with its v1 defaults to (2H, 2W) taken
from ``tf.shape``, and the ``tf.contrib.layers.layer_norm`` computation (``tf.nn.moments``
over H, W, C, per-channel gamma/beta, ``tf.nn.batch_normalization`` with epsilon 1e-12).
Checkpoints are written by ``tf.compat.v1.train.Saver`` in the published layout. The graph's
float type is its variables' (``_Init``'s ``dtype``, float32 by default); in float64 the
resize and the LReLU, whose ops compute in float32 whatever their input, are written out.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
G_SCOPE = "generator/G_MODEL"
SIZES = ((64, 64), (257, 383), (130, 97), (256, 256))


class _Init:
    """Random, non-trivial values for every variable (gamma != 1, beta != 0, biases != 0).

    Kernels feeding a layer norm get scales spread over two decades, so that some layers'
    variance is near 1e-4 and the norm's epsilon (1e-12 vs 1e-5) visibly changes the output.
    ``dtype`` is the variables' (and so the graph's) float type.
    """

    def __init__(self, seed: int, dtype: type = np.float32) -> None:
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype

    def conv(self, shape, gain=None, depthwise=False):
        fan_in = shape[0] * shape[1] * (1 if depthwise else shape[2])
        gain = 10 ** self.rng.uniform(-2, 0) if gain is None else gain
        return (self.rng.standard_normal(shape) * gain / np.sqrt(fan_in)).astype(self.dtype)

    def gamma(self, c):
        return self.rng.uniform(0.5, 1.5, c).astype(self.dtype)

    def beta(self, c):
        return self.rng.normal(0.0, 0.1, c).astype(self.dtype)


def _pad(x, top, bottom, left, right):
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="REFLECT")


def conv2d(x, init, filters, kernel_size=3, strides=1, gain=None):
    """The original ``Conv2D``: reflect pad by kernel and stride, then a VALID conv, no bias."""
    if kernel_size == 3 and strides == 1:
        x = _pad(x, 1, 1, 1, 1)
    if kernel_size == 7 and strides == 1:
        x = _pad(x, 3, 3, 3, 3)
    if strides == 2:
        x = _pad(x, 0, 1, 0, 1)
    shape = [kernel_size, kernel_size, int(x.shape[-1]), filters]
    with tf1.variable_scope(None, default_name="Conv"):
        w = tf1.get_variable("weights", initializer=init.conv(shape, gain))
    return tf.nn.conv2d(x, w, [1, strides, strides, 1], "VALID")


def layer_norm(x, init, scope=None):
    """``tf.contrib.layers.layer_norm`` with its defaults, as the original calls it."""
    channels = int(x.shape[-1])
    with tf1.variable_scope(scope, default_name="LayerNorm"):
        beta = tf1.get_variable("beta", dtype=x.dtype, initializer=init.beta(channels))
        gamma = tf1.get_variable("gamma", dtype=x.dtype, initializer=init.gamma(channels))
        mean, variance = tf1.nn.moments(x, [1, 2, 3], keep_dims=True)
        return tf.nn.batch_normalization(x, mean, variance, offset=beta, scale=gamma, variance_epsilon=1e-12)


def lrelu(x):
    if x.dtype == tf.float32:
        return tf.nn.leaky_relu(x, alpha=0.2)
    # The LeakyRelu op's alpha is a float32 attribute (0.2 + 3e-9); in x's dtype, as
    # tf.nn.leaky_relu computed it before that op existed.
    return tf.maximum(0.2 * x, x)


def conv_norm_lrelu(x, init, filters, kernel_size=3, strides=1):
    return lrelu(layer_norm(conv2d(x, init, filters, kernel_size, strides), init))


def dwise_conv(x, init, name):
    """The original depthwise 3x3 conv: reflect pad 1, VALID, with a bias."""
    x = _pad(x, 1, 1, 1, 1)
    channels = int(x.shape[-1])
    with tf1.variable_scope(name):
        w = tf1.get_variable("w", initializer=init.conv([3, 3, channels, 1], depthwise=True))
        bias = tf1.get_variable("bias", initializer=init.beta(channels))
        return tf.nn.bias_add(tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "VALID"), bias)


def inverted_res_block(x, init, output_dim, name):
    with tf1.variable_scope(name):
        net = conv_norm_lrelu(x, init, 2 * int(x.shape[-1]), kernel_size=1)
        net = lrelu(layer_norm(dwise_conv(net, init, name), init, scope="1"))
        net = layer_norm(conv2d(net, init, output_dim, kernel_size=1), init, scope="2")
        return x + net if int(x.shape[-1]) == output_dim else net


def upsample(x):
    if x.dtype != tf.float32:
        return upsample2x_exact(x)
    new_h, new_w = 2 * tf.shape(x)[1], 2 * tf.shape(x)[2]
    return tf1.image.resize_images(x, [new_h, new_w])


def upsample2x_exact(x):
    """``resize_images`` to (2H, 2W) in ``x``'s own dtype (ResizeBilinear computes and returns
    float32 whatever its input). Its source coordinate is dst / 2: even outputs copy, odd ones
    are a + (b - a) * 0.5 with the last neighbour clamped, along W and then along H."""
    b, h, w, c = (tf.shape(x)[i] for i in range(4))
    nxt = tf.concat([x[:, :, 1:], x[:, :, -1:]], 2)
    x = tf.reshape(tf.stack([x, x + (nxt - x) * 0.5], 3), [b, h, 2 * w, c])
    nxt = tf.concat([x[:, 1:], x[:, -1:]], 1)
    return tf.reshape(tf.stack([x, x + (nxt - x) * 0.5], 2), [b, 2 * h, 2 * w, c])


def generator(x, init):
    """The AnimeGANv2 generator graph under ``generator/G_MODEL``; NHWC in and out, [-1, 1]."""
    with tf1.variable_scope("generator"), tf1.variable_scope("G_MODEL"):
        with tf1.variable_scope("A"):
            x = conv_norm_lrelu(x, init, 32, 7)
            x = conv_norm_lrelu(x, init, 64, strides=2)
            x = conv_norm_lrelu(x, init, 64)
        with tf1.variable_scope("B"):
            x = conv_norm_lrelu(x, init, 128, strides=2)
            x = conv_norm_lrelu(x, init, 128)
        with tf1.variable_scope("C"):
            x = conv_norm_lrelu(x, init, 128)
            for k in range(1, 5):
                x = inverted_res_block(x, init, 256, f"r{k}")
            x = conv_norm_lrelu(x, init, 128)
        with tf1.variable_scope("D"):
            x = conv_norm_lrelu(upsample(x), init, 128)
            x = conv_norm_lrelu(x, init, 128)
        with tf1.variable_scope("E"):
            x = conv_norm_lrelu(upsample(x), init, 64)
            x = conv_norm_lrelu(x, init, 64)
            x = conv_norm_lrelu(x, init, 32, 7)
        with tf1.variable_scope("out_layer"):
            return tf.tanh(conv2d(x, init, 3, kernel_size=1, gain=1.5))


def discriminator(x, init):
    """A small stand-in discriminator: only its variable names matter (they must be ignored)."""
    with tf1.variable_scope("discriminator"):
        for i, ch in enumerate((32, 64)):
            with tf1.variable_scope(f"conv_{i}"):
                w = tf1.get_variable("weights", initializer=init.conv([3, 3, int(x.shape[-1]), ch]))
                x = lrelu(tf.nn.conv2d(x, w, [1, 2, 2, 1], "SAME"))
        return tf.reduce_mean(x)


@dataclass
class TFV2Checkpoint:
    """A saved generator checkpoint in the published layout plus TF's outputs for it.

    ``directory`` is ``.../generator_Hayao_weight`` (``checkpoint``, ``Hayao-64.ckpt.index``,
    ``.data-00000-of-00001``, ``.meta``); ``outputs[(h, w)]`` is ``(x, y)``, NHWC float32 in
    [-1, 1], with ``y`` as TensorFlow computed it (``4*floor(h/4) x 4*floor(w/4)``).
    """

    directory: Path
    prefix: Path
    outputs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def build_v2_checkpoint(
    root: Path, sizes=SIZES, seed: int = 0, network=None, prefix: str = "Hayao-64.ckpt"
) -> TFV2Checkpoint:
    """Build the generator with random values, save it as ``root/generator_Hayao_weight/<prefix>``
    and run it on random inputs of ``sizes``. ``network(x, init)`` builds another generator
    graph than this module's (the v1 reference uses it)."""
    directory = root / "generator_Hayao_weight"
    directory.mkdir(parents=True)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [1, None, None, 3])
        y = (network or generator)(x, _Init(seed))
        saver = tf1.train.Saver(tf1.global_variables(), save_relative_paths=True)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, str(directory / prefix))
            rng = np.random.default_rng(seed + 1)
            result = TFV2Checkpoint(directory, directory / prefix)
            for h, w in sizes:
                inp = rng.uniform(-1, 1, (1, h, w, 3)).astype(np.float32)
                result.outputs[(h, w)] = (inp, sess.run(y, {x: inp}))
    return result


def build_training_checkpoint(root: Path, seed: int = 2) -> Path:
    """A checkpoint as the original trainer writes it: generator, discriminator, Adam slots
    (``.../weights/Adam``, ``Adam_1``, ``beta1_power``) and an int64 global step, after one
    training step. Returns its prefix."""
    root.mkdir(parents=True)
    graph = tf.Graph()
    with graph.as_default():
        init = _Init(seed)
        x = tf1.placeholder(tf.float32, [1, 16, 16, 3])
        fake = generator(x, init)
        loss = tf.reduce_mean(tf.square(fake)) + discriminator(fake, init)
        step = tf1.train.get_or_create_global_step()
        train = tf1.train.AdamOptimizer(1e-3, beta1=0.5).minimize(loss, global_step=step)
        saver = tf1.train.Saver(tf1.global_variables(), save_relative_paths=True)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train, {x: np.random.default_rng(seed).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)})
            return Path(saver.save(sess, str(root / "AnimeGANv2_Hayao.model"), global_step=step))


def write_sharded(src_prefix: Path, dst_prefix: Path, num_shards: int = 2) -> None:
    """Rewrite a checkpoint as ``num_shards`` data files, the way a sharded Saver does: one
    ``SaveV2`` per shard into temporary prefixes, then ``MergeV2Checkpoints``."""
    Path(f"{dst_prefix}_temp").mkdir(parents=True)
    reader = tf1.train.load_checkpoint(str(src_prefix))
    names = sorted(reader.get_variable_to_shape_map())
    parts = []
    for shard in range(num_shards):
        part = tf.raw_ops.ShardedFilename(basename=f"{dst_prefix}_temp/part", shard=shard, num_shards=num_shards)
        chosen = names[shard::num_shards]
        tf.raw_ops.SaveV2(
            prefix=part,
            tensor_names=chosen,
            shape_and_slices=[""] * len(chosen),
            tensors=[tf.constant(reader.get_tensor(n)) for n in chosen],
        )
        parts.append(part)
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts, destination_prefix=str(dst_prefix), delete_old_dirs=True)
