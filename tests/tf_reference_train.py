"""The original AnimeGANv2 training graph in TensorFlow 1 graph mode: the yardstick of the trainer.

Written from TachibanaYoshino/AnimeGANv2 (``AnimeGANv2.py`` ``build_model``/``train``,
``net/discriminator.py``, ``tools/ops.py``, ``tools/vgg19.py``) with its variable names and
ops: the generator of ``tests/tf_reference.py``; ``D_net`` with ``ops.conv`` (zero pad 1, or
1 top/left only at stride 2) and ``ops.spectral_norm`` (a non-trainable ``u`` per conv, one
power iteration, ``u.assign`` as a control dependency, no stop_gradient), its kernels
N(0, 0.02) and ``u`` truncated N(0, 1) as the original initialises them; D applied to
anime, gray anime, G(photo), gray smooth in that order with shared variables; a VGG19 of
``tf.constant`` layers from a ``vgg19.npy`` dict; the losses of ``ops.py``; three
``tf.train.AdamOptimizer(lr, beta1=0.5, beta2=0.999)``. A step is one ``sess.run`` per
optimiser, as the original's loop does.

It runs in float64 by default (``dtype``), so that it pins the formulas and not one set of
float32 kernels. Then every constant is the float64 of its decimal, except the VGG means,
which are the float32 values the original's float32 graph subtracts (and a float32 VGG
buffer holds); Adam's hyperparameters are float64 tensors (a Python float would be made a
float32 tensor first); the Huber loss is written out, as ``tf.losses.huber_loss`` computes
it (its ``compute_weighted_loss`` casts to float32); the generator's float64 stand-ins are
in ``tests/tf_reference.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tests.tf_reference import _Init, generator, layer_norm, lrelu

tf1 = tf.compat.v1
VGG_MEAN = [103.939, 116.779, 123.68]


class OriginalInit(_Init):
    """The original's initial values for :func:`tests.tf_reference.generator`: kernels from
    ``tf.contrib.layers.variance_scaling_initializer()`` (truncated normal, stddev
    sqrt(1.3 * 2 / fan_in), fan_in = kh * kw * shape[-2]), layer norms gamma 1, beta 0,
    depthwise biases 0 -- drawn here with NumPy so the test does not depend on contrib."""

    def conv(self, shape, gain=None, depthwise=False):
        std = np.sqrt(2.6 / (shape[0] * shape[1] * shape[2]))
        values = self.rng.standard_normal(int(np.prod(shape)))
        while np.any(bad := np.abs(values) > 2):  # TF's truncated normal re-draws beyond 2 sigma
            values[bad] = self.rng.standard_normal(int(bad.sum()))
        return (values.reshape(shape) * std).astype(self.dtype)

    def gamma(self, c):
        return np.ones(c, self.dtype)

    def beta(self, c):
        return np.zeros(c, self.dtype)


def _l2_norm(v, eps=1e-12):
    return v / (tf.reduce_sum(v**2) ** 0.5 + eps)


def spectral_norm(w):
    w_shape = w.shape.as_list()
    w = tf.reshape(w, [-1, w_shape[-1]])
    # A TF1 reference variable, as the original's TF 1.8/1.15 made by default. TensorFlow runs the
    # D step's four applications one after another on it: they see 1, 2, 3, 4 power iterations
    # and u leaves the run four on (a resource variable, and 8 inter-op threads, measured alike).
    u = tf1.get_variable(
        "u", [1, w_shape[-1]], w.dtype, tf1.truncated_normal_initializer(), trainable=False, use_resource=False
    )
    v_hat = _l2_norm(tf.matmul(u, tf.transpose(w)))
    u_hat = _l2_norm(tf.matmul(v_hat, w))
    sigma = tf.matmul(tf.matmul(v_hat, w), tf.transpose(u_hat))
    w_norm = w / sigma
    with tf.control_dependencies([u.assign(u_hat)]):
        return tf.reshape(w_norm, w_shape)


def sn_conv(x, channels, stride, scope):
    """``ops.conv(kernel=3, pad=1, pad_type='zero', use_bias=False, sn=True)``."""
    with tf1.variable_scope(scope):
        if stride == 1:
            x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        else:  # (kernel - stride) is odd: pad_bottom = kernel - stride - pad = 0
            x = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
        shape = [3, 3, int(x.shape[-1]), channels]
        w = tf1.get_variable("kernel", shape, x.dtype, tf1.random_normal_initializer(0.0, 0.02))
        return tf.nn.conv2d(x, spectral_norm(w), [1, stride, stride, 1], "VALID")


def discriminator(x, init, ch=64, n_dis=3, reuse=False):
    channel = ch // 2
    with tf1.variable_scope("discriminator", reuse=reuse):
        x = lrelu(sn_conv(x, channel, 1, "conv_0"))
        for i in range(1, n_dis):
            x = lrelu(sn_conv(x, channel * 2, 2, f"conv_s2_{i}"))
            x = lrelu(layer_norm(sn_conv(x, channel * 4, 1, f"conv_s1_{i}"), init, scope=f"1_norm_{i}"))
            channel *= 2
        x = lrelu(layer_norm(sn_conv(x, channel * 2, 1, "last_conv"), init, scope="2_ins_norm"))
        return sn_conv(x, 1, 1, "D_logit")


def vgg_conv4_4(rgb, layers):
    """``tools/vgg19.py`` ``Vgg19.build`` up to ``conv4_4_no_activation``."""
    red, green, blue = tf.split(((rgb + 1) / 2) * 255.0, 3, axis=3)
    mean = np.float32(VGG_MEAN).astype(rgb.dtype.as_numpy_dtype)
    x = tf.concat([blue - mean[0], green - mean[1], red - mean[2]], axis=3)
    for block, convs in ((1, 2), (2, 2), (3, 4), (4, 4)):
        if block > 1:
            x = tf.nn.max_pool2d(x, 2, 2, "SAME")
        for i in range(1, convs + 1):
            w, b = (tf.constant(v, rgb.dtype) for v in layers[f"conv{block}_{i}"])
            x = tf.nn.bias_add(tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME"), b)
            if (block, i) != (4, 4):
                x = tf.nn.relu(x)
    return x


def _l1(x, y):
    return tf.reduce_mean(tf.abs(x - y))


def _gram(x):
    b, c = tf.shape(x)[0], tf.shape(x)[3]
    x = tf.reshape(x, [b, -1, c])
    return tf.matmul(tf.transpose(x, [0, 2, 1]), x) / tf.cast(tf.size(x) // b, x.dtype)


def huber_loss(labels, predictions, delta=1.0):
    """``tf.compat.v1.losses.huber_loss`` (weights 1: the mean), in the inputs' dtype."""
    error = tf.abs(predictions - labels)
    quadratic = tf.minimum(error, delta)
    return tf.reduce_mean(0.5 * quadratic * quadratic + delta * (error - quadratic))


def _color_loss(con, fake):
    con, fake = tf.image.rgb_to_yuv((con + 1.0) / 2.0), tf.image.rgb_to_yuv((fake + 1.0) / 2.0)
    return _l1(con[..., 0], fake[..., 0]) + huber_loss(con[..., 1], fake[..., 1]) + huber_loss(con[..., 2], fake[..., 2])


def _tv_loss(x):
    dh = x[:, :-1, ...] - x[:, 1:, ...]
    dw = x[:, :, :-1, ...] - x[:, :, 1:, ...]
    return tf.nn.l2_loss(dh) / tf.size(dh, out_type=x.dtype) + tf.nn.l2_loss(dw) / tf.size(dw, out_type=x.dtype)


@dataclass
class StepResult:
    """Variables by TF name (without ``:0``) before any step, after the init step, after the
    D step and after the G step; the losses and gradients each ``sess.run`` fetched
    (``grads["init" | "d" | "g"]``, by variable name)."""

    initial: dict[str, np.ndarray]
    after_init: dict[str, np.ndarray]
    after_d: dict[str, np.ndarray]
    after_g: dict[str, np.ndarray]
    losses: dict[str, float]
    grads: dict[str, dict[str, np.ndarray]]


def run_original_steps(
    batch: dict[str, np.ndarray], vgg_layers, weights, lrs, seed: int = 0, dtype: type = np.float64
) -> StepResult:
    """Build the original graph in ``dtype`` for ``batch`` (NHWC ``real``, ``anime``,
    ``anime_gray``, ``anime_smooth``: the gray smooth frame, as the original feeds it), run
    one init step, then one D step and one G step. ``weights``: con, sty, col, tv, adv and
    (real, fake, gray, smooth) D weights; ``lrs``: init, g, d."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        shape = batch["real"].shape
        real, anime, anime_smooth, anime_gray = (tf1.placeholder(dtype, shape) for _ in range(4))
        init = OriginalInit(seed, dtype)
        generated = generator(real, init)
        anime_logit = discriminator(anime, init)
        anime_gray_logit = discriminator(anime_gray, init, reuse=True)
        generated_logit = discriminator(generated, init, reuse=True)
        smooth_logit = discriminator(anime_smooth, init, reuse=True)

        init_loss = weights["con"] * _l1(vgg_conv4_4(real, vgg_layers), vgg_conv4_4(generated, vgg_layers))
        real_f, fake_f = vgg_conv4_4(real, vgg_layers), vgg_conv4_4(generated, vgg_layers)
        anime_f = vgg_conv4_4(anime_gray[: fake_f.shape[0]], vgg_layers)
        terms = {
            "g_content": weights["con"] * _l1(real_f, fake_f),
            "g_style": weights["sty"] * _l1(_gram(anime_f), _gram(fake_f)),
            "g_color": weights["col"] * _color_loss(real, generated),
            "g_tv": weights["tv"] * _tv_loss(generated),
            "g_adv": weights["adv"] * tf.reduce_mean(tf.square(generated_logit - 1.0)),
        }
        g_loss = tf.add_n(list(terms.values()))
        a, b, c, d = weights["d"]
        d_loss = weights["adv"] * (
            a * tf.reduce_mean(tf.square(anime_logit - 1.0))
            + b * tf.reduce_mean(tf.square(generated_logit))
            + c * tf.reduce_mean(tf.square(anime_gray_logit))
            + d * tf.reduce_mean(tf.square(smooth_logit))
        )
        t_vars = tf1.trainable_variables()
        g_vars = [v for v in t_vars if "generator" in v.name]
        d_vars = [v for v in t_vars if "discriminator" in v.name]
        # minimize() = compute_gradients() + apply_gradients(); split to fetch the gradients too.
        optims, grads = [], []
        const = lambda value: tf.constant(value, dtype)  # noqa: E731
        for lr, loss, var_list in ((lrs["init"], init_loss, g_vars), (lrs["d"], d_loss, d_vars), (lrs["g"], g_loss, g_vars)):
            adam = tf1.train.AdamOptimizer(const(lr), beta1=const(0.5), beta2=const(0.999), epsilon=const(1e-8))
            pairs = adam.compute_gradients(loss, var_list=var_list)
            optims.append(adam.apply_gradients(pairs))
            grads.append({v.name[:-2]: g for g, v in pairs})
        init_optim, d_optim, g_optim = optims
        model_vars = [v for v in tf1.global_variables() if v.name.startswith(("generator/", "discriminator/"))]
        model_vars = [v for v in model_vars if "Adam" not in v.name]

        feed = {real: batch["real"], anime: batch["anime"], anime_gray: batch["anime_gray"], anime_smooth: batch["anime_smooth"]}
        one_thread = tf1.ConfigProto(inter_op_parallelism_threads=1)  # a fixed op order: reproducible runs
        with tf1.Session(graph=graph, config=one_thread) as sess:

            def snapshot():
                return {v.name[:-2]: value for v, value in zip(model_vars, sess.run(model_vars))}

            sess.run(tf1.global_variables_initializer())
            initial = snapshot()
            _, losses_init, grads_init = sess.run([init_optim, init_loss, grads[0]], feed)
            after_init = snapshot()
            _, losses_d, grads_d = sess.run([d_optim, d_loss, grads[1]], feed)
            after_d = snapshot()
            _, losses_g, grads_g = sess.run([g_optim, {**terms, "g_total": g_loss}, grads[2]], feed)
            after_g = snapshot()
    losses = {"init_content": float(losses_init), "d_total": float(losses_d), **{k: float(v) for k, v in losses_g.items()}}
    return StepResult(initial, after_init, after_d, after_g, losses, {"init": grads_init, "d": grads_d, "g": grads_g})
