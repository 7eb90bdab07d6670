"""The original AnimeGAN (v1) generator graph, rebuilt in ``tensorflow.compat.v1``.

TF 2 has no ``tf.contrib``, so the three contrib layers the original uses are written
here with the ``tf.nn`` ops they reduce to, under the variable scopes and names they
create (auto-numbered ``Conv``, ``InstanceNorm``, ``SeparableConv2d`` scopes, in the
original's evaluation order):

- ``contrib.layers.conv2d`` (no bias, no normalizer): ``Conv*/weights`` + ``tf.nn.conv2d``;
- ``contrib.layers.instance_norm``: ``InstanceNorm*/{beta,gamma}``, ``tf.nn.moments`` over
  H and W + ``tf.nn.batch_normalization``; epsilon 1e-5 where the original passes it
  (``tools/ops.instance_norm``), the contrib default 1e-6 inside separable convs;
- ``contrib.layers.separable_conv2d``: ``SeparableConv2d*/{depthwise,pointwise}_weights`` +
  ``tf.nn.separable_conv2d`` (stride in the depthwise step) + instance norm + LeakyReLU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

tf = None


def _tf():
    global tf
    if tf is None:
        import tensorflow

        tf = tensorflow.compat.v1
        tf.disable_eager_execution()
    return tf


def _lrelu(x):
    return _tf().nn.leaky_relu(x, 0.2)


def _instance_norm(x, eps, scope=None):
    t = _tf()
    with t.variable_scope(scope, default_name="InstanceNorm"):
        ch = x.get_shape()[-1]
        beta = t.get_variable("beta", [ch], initializer=t.zeros_initializer())
        gamma = t.get_variable("gamma", [ch], initializer=t.ones_initializer())
        mean, var = t.nn.moments(x, [1, 2], keep_dims=True)
        return t.nn.batch_normalization(x, mean, var, beta, gamma, eps)


def _reflect(x, top_left, bottom_right):
    pad = [[0, 0], [top_left, bottom_right], [top_left, bottom_right], [0, 0]]
    return _tf().pad(x, pad, mode="REFLECT")


def _conv(x, filters, kernel_size=3):
    t = _tf()
    if kernel_size == 3:
        x = _reflect(x, 1, 1)
    with t.variable_scope(None, default_name="Conv"):
        w = t.get_variable("weights", [kernel_size, kernel_size, x.get_shape()[-1], filters])
        return t.nn.conv2d(x, w, [1, 1, 1, 1], "VALID")


def _conv_norm_lrelu(x, filters, kernel_size=3):
    return _lrelu(_instance_norm(_conv(x, filters, kernel_size), 1e-5))


def _separable(x, filters, strides=1):
    t = _tf()
    x = _reflect(x, 0, 1) if strides == 2 else _reflect(x, 1, 1)
    with t.variable_scope(None, default_name="SeparableConv2d"):
        ch = x.get_shape()[-1]
        dw = t.get_variable("depthwise_weights", [3, 3, ch, 1])
        pw = t.get_variable("pointwise_weights", [1, 1, ch, filters])
        y = t.nn.separable_conv2d(x, dw, pw, [1, strides, strides, 1], "VALID")
        return _lrelu(_instance_norm(y, 1e-6))


def _resize_separable(x, filters, up):
    t = _tf()
    h, w = t.shape(x)[1], t.shape(x)[2]
    size = [2 * h, 2 * w] if up else [h // 2, w // 2]
    return _separable(t.image.resize_images(x, size), filters)


def _inverted_res(x, name):
    t = _tf()
    with t.variable_scope(name):
        net = _conv_norm_lrelu(x, 512, kernel_size=1)
        net = _reflect(net, 1, 1)
        with t.variable_scope(name):
            w = t.get_variable("w", [3, 3, 512, 1])
            net = t.nn.depthwise_conv2d(net, w, [1, 1, 1, 1], "VALID")
        net = _lrelu(_instance_norm(net, 1e-5, scope="1"))
        net = _instance_norm(_conv(net, 256, kernel_size=1), 1e-5, scope="2")
        return x + net


def build_generator(x):
    """``generator/G_MODEL`` of TachibanaYoshino/AnimeGAN ``net/generator.py`` on NHWC ``x``."""
    t = _tf()
    with t.variable_scope("generator"), t.variable_scope("G_MODEL"):
        with t.variable_scope("b1"):
            x = _conv_norm_lrelu(x, 64)
            x = _conv_norm_lrelu(x, 64)
            x = _separable(x, 128, strides=2) + _resize_separable(x, 128, False)
        with t.variable_scope("b2"):
            x = _conv_norm_lrelu(x, 128)
            x = _separable(x, 128)
            x = _separable(x, 256, strides=2) + _resize_separable(x, 256, False)
        with t.variable_scope("m"):
            x = _conv_norm_lrelu(x, 256)
            for k in range(1, 9):
                x = _inverted_res(x, f"r{k}")
            x = _conv_norm_lrelu(x, 256)
        with t.variable_scope("u2"):
            x = _resize_separable(x, 128, True)
            x = _separable(x, 128)
            x = _conv_norm_lrelu(x, 128)
        with t.variable_scope("u1"):
            x = _resize_separable(x, 128, True)
            x = _conv_norm_lrelu(x, 64)
            x = _conv_norm_lrelu(x, 64)
        return t.tanh(_conv(x, 3, kernel_size=1))


def random_values(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Non-trivial weights (gamma != 1, beta != 0). The separable convs' weights are small, as
    trained ones are, so that their pre-norm variance is small and the norm's epsilon
    matters; the output conv is scaled to keep tanh out of saturation."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        if name.endswith("gamma"):
            v = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith("beta"):
            v = 0.1 * rng.standard_normal(shape)
        elif name.endswith(("depthwise_weights", "pointwise_weights")):
            v = 0.05 * rng.standard_normal(shape)
        else:
            fan_in = shape[0] * shape[1] * (shape[2] if not name.endswith("/w") else 1)
            gain = 0.5 if name.endswith("G_MODEL/Conv/weights") else 2.0
            v = rng.standard_normal(shape) * (gain / fan_in) ** 0.5
        values[name] = v.astype(np.float32)
    return values


def make_checkpoint(root: Path, inputs: list[np.ndarray], seed: int = 0) -> tuple[Path, list[np.ndarray]]:
    """Build the graph, set random weights, save ``root/generator_Hayao_weight/Hayao-60.ckpt``
    with only the generator's variables (as the published checkpoint holds), and run it on
    each NHWC float32 array in ``inputs``. Returns the checkpoint directory and the outputs."""
    t = _tf()
    graph = t.Graph()
    with graph.as_default():
        x = t.placeholder(t.float32, [1, None, None, 3])
        y = build_generator(x)
        variables = t.trainable_variables()
        values = random_values({v.op.name: v.get_shape().as_list() for v in variables}, seed)
        saver = t.train.Saver(variables)
        ckpt_dir = root / "generator_Hayao_weight"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        with t.Session(graph=graph) as sess:
            for v in variables:
                v.load(values[v.op.name], sess)
            saver.save(sess, str(ckpt_dir / "Hayao-60.ckpt"), write_meta_graph=False)
            outputs = [sess.run(y, {x: a}) for a in inputs]
    return ckpt_dir, outputs
