"""Step parity with the original TensorFlow trainer: one init step, then one D step and one
G step, from the same weights on the same batch (``tests/tf_reference_train.py``), compared
as losses, gradients and weights -- both sides in float64.

Why float64. The original's initialisation and this 32x32 batch make the steps ill-conditioned
(the G step's adversarial gradient reaches G nearly uniform and G's layer norms cancel most of
it in backward). In float32 (unit roundoff u32 = 6e-8) TF and PyTorch then part with their
kernels' summation orders: with oneDNN's AVX2 kernels or TF's Eigen ones against AVX-512
oneDNN, and this trainer in float32 against the float64 graph, losses were up to 7.1e-4 apart
(1.2e4 u32), init and D-step gradients 5.2e-3 (8.7e4 u32), G-step gradients 9e-2 (1.5e6 u32),
u 1.6e-4 (2.6e3 u32) (AMD EPYC Zen 5). Those amplifications belong to the problem, not to the
kernels, so in float64 (u64 = 1.1e-16) the same rounding shrinks by u32 / u64 = 5e8; and
oneDNN, which has no float64 kernels, takes no part on either side.

Tolerances: each float32 amplification times u64, times 10, rounded up to a power of ten.
* Losses: 1.2e4 u64 = 1.3e-12 -> 1e-10. Measured <= 4.1e-14 (d_total).
* Gradients, per tensor ||g - g_tf|| / ||g_tf||: init and D steps 8.7e4 u64 = 9.6e-12 ->
  1e-10, measured <= 5.2e-12 (D's first norm's beta: 4.7e4 u64, the float32 amplification
  again); G step 1.5e6 u64 = 1.7e-10 -> 1e-8, measured <= 1.1e-13.
* u: 2.6e3 u64 = 2.9e-13 -> 1e-11. Measured <= 1.6e-14.
* Weights and steps, per element, from the gradients' difference: Adam's first step is a
  function of g with slope <= lr / EPS_HAT, so two steps may differ by lr |g - g_tf| / EPS_HAT
  plus a few ulps (``test_every_weight_and_update_matches_the_original``). In float32 that
  slack is the whole step wherever |g| is within the gradient's uncertainty (thousands of G
  elements), which the float32 test had to set aside; in float64 it pins every element down
  (measured per tensor: steps <= 2.1e-10 relative, weights <= 6.8e-12).
Measured at the native ISA, ONEDNN_MAX_CPU_ISA=AVX2 and TF_ENABLE_ONEDNN_OPTS=0 (identical
bits), and with MKL_CBWR=COMPATIBLE (PyTorch's float64 convolutions in other summation
orders; alike). What the bars catch: a float32 constant where the original has a decimal moves
g_color by 1.8e-8 (a float32 colour matrix) or the losses and gradients by 1e-8 to 1e-7
(LReLU's slope as 0.2f); Adam's epsilon 10% off breaks the step bound 5e5-fold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animegan2.convert import ARCHITECTURES, G_SCOPE
from animegan2.model import Generator
from animegan2.train import trainer
from animegan2.train.discriminator import Discriminator
from animegan2.train.optim import TFAdam
from animegan2.train.vgg import load_vgg19
from tests.reference_train import fake_caffe_layers

pytestmark = pytest.mark.tf  # every test compares with the original trainer, run in TensorFlow
SIZE, BATCH = 32, 2
LOSS_RTOL, GRAD_RTOL, G_GRAD_RTOL, U_RTOL = 1e-10, 1e-10, 1e-8, 1e-11  # module docstring
# D's layers as net/discriminator.py names its scopes -> index in Discriminator.layers.
D_NAMES = {
    "conv_0": 0, "conv_s2_1": 2, "conv_s1_1": 4, "1_norm_1": 5, "conv_s2_2": 7, "conv_s1_2": 9,
    "1_norm_2": 10, "last_conv": 12, "2_ins_norm": 13, "D_logit": 15,
}  # fmt: skip


def _config(tmp_path=None):
    # Four distinct D weights, so that swapped terms cannot pass.
    values = {"data": "d", "style": "toy", "out": str(tmp_path or "run"), "preset": "hayao"}
    values |= {"w_d_real": 1.1, "w_d_fake": 1.3, "w_d_gray": 1.7, "w_d_smooth": 0.8}
    return trainer.make_config(values)


def tf_to_torch(tf_vars: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(generator state, discriminator state) from the original's variables (or gradients:
    the names present are converted)."""
    perms = {"kernel": (3, 2, 0, 1), "u": (0, 1), "gamma": (0,), "beta": (0,)}
    keys = {"kernel": "weight", "u": "u", "gamma": "weight", "beta": "bias"}
    g = {}
    for key, (name, perm) in ARCHITECTURES["AnimeGANv2"].mapping().items():
        if G_SCOPE + name in tf_vars:
            g[key] = torch.from_numpy(np.ascontiguousarray(tf_vars[G_SCOPE + name].transpose(perm)))
    d = {}
    for scope, i in D_NAMES.items():
        for name, perm in perms.items():
            if f"discriminator/{scope}/{name}" in tf_vars:
                value = tf_vars[f"discriminator/{scope}/{name}"].transpose(perm)
                d[f"layers.{i}.{keys[name]}"] = torch.from_numpy(np.ascontiguousarray(value))
    return g, d


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Both trainers' losses and weights after each step."""
    from tests.tf_reference_train import run_original_steps

    tmp = tmp_path_factory.mktemp("parity")
    cfg = _config(tmp)
    preset = trainer.preset_of(cfg)
    rng = np.random.default_rng(7)
    nhwc = {k: rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)) for k in ("real", "anime")}
    gray = lambda x: np.repeat(x @ np.array([0.299, 0.587, 0.114])[:, None], 3, axis=3)  # noqa: E731
    nhwc["anime_gray"] = gray(nhwc["anime"])
    nhwc["anime_smooth"] = gray(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)))
    layers = fake_caffe_layers(seed=3, widths=(8, 8, 16, 16))
    np.save(tmp / "vgg19.npy", layers, allow_pickle=True)
    weights = {"con": preset.con, "sty": preset.sty, "col": preset.col, "tv": preset.tv, "adv": preset.adv}
    weights["d"] = (preset.d_real, preset.d_fake, preset.d_gray, preset.d_smooth)
    tf_result = run_original_steps(nhwc, layers, weights, {"init": cfg.lr_init, "g": cfg.lr_g, "d": cfg.lr_d})

    torch.manual_seed(0)
    g, d = Generator(upsample="tf", norm_eps=1e-12).double(), Discriminator().double()
    g_state, d_state = tf_to_torch(tf_result.initial)
    g.load_state_dict(g_state, strict=True)
    d.load_state_dict(d_state, strict=True)
    vgg = load_vgg19(tmp / "vgg19.npy").double()
    betas = (cfg.beta1, cfg.beta2)
    opt_init, opt_g = TFAdam(g.parameters(), lr=cfg.lr_init, betas=betas), TFAdam(g.parameters(), lr=cfg.lr_g, betas=betas)
    opt_d = TFAdam(d.parameters(), lr=cfg.lr_d, betas=betas)
    stepper = trainer.Stepper(torch.amp.GradScaler("cpu", enabled=False), cfg, 1, tmp / "checkpoint.pt")
    batch = {k: torch.from_numpy(v).permute(0, 3, 1, 2).contiguous() for k, v in nhwc.items()}
    names = {"real": "photo", "anime": "anime", "anime_gray": "anime_gray", "anime_smooth": "smooth_gray"}
    batch = {names[k]: v for k, v in batch.items()}

    def autocast():
        return torch.autocast("cpu", enabled=False)

    def states():
        return tuple({k: v.detach().clone() for k, v in m.state_dict().items()} for m in (g, d))

    def grads(module):
        return {k: p.grad.clone() for k, p in module.named_parameters()}

    logged = trainer.init_step(g, vgg, batch, preset, opt_init, stepper, autocast)
    after_init, grads_init = states(), grads(g)
    logged |= trainer.gan_step(g, d, vgg, batch, preset, opt_g, opt_d, stepper, autocast)
    return tf_result, logged, after_init, states(), {"init": grads_init, "d": grads(d), "g": grads(g)}


def _relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm())


def _compare(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, float]:
    assert ours.keys() == theirs.keys()
    return {k: _relative(ours[k], theirs[k]) for k in ours}


def test_losses_match_the_original(parity):
    tf_result, logged, *_ = parity
    for name, want in tf_result.losses.items():
        assert logged[name] == pytest.approx(want, rel=LOSS_RTOL), name


@pytest.mark.parametrize(("step", "rtol"), [("init", GRAD_RTOL), ("d", GRAD_RTOL), ("g", G_GRAD_RTOL)])
def test_gradients_match_the_original(parity, step, rtol):
    tf_result, *_, grads = parity
    g_tf, d_tf = tf_to_torch(tf_result.grads[step])
    errors = _compare(grads[step], d_tf if step == "d" else g_tf)
    worst = max(errors, key=errors.get)
    assert errors[worst] < rtol, (worst, errors[worst])


# The first step of TF's Adam moves a weight by lr * g / (|g| + EPS_HAT) (module docstring of
# animegan2.train.optim), EPS_HAT = epsilon / sqrt(1 - beta2): a function of g with slope <= lr / EPS_HAT.
EPS_HAT = 1e-8 / (1 - 0.999) ** 0.5
U = 2.0**-53  # float64's unit roundoff


@pytest.mark.parametrize("step", ["init", "d", "g"])
def test_every_weight_and_update_matches_the_original(parity, step):
    """Per element: the step (after - before) within what the gradients' difference allows,
    lr |g - g_tf| / EPS_HAT, plus both sides' rounding of the step and of the weight (a few
    ulps of lr and of w); the weight after it within that plus its difference before."""
    tf_result, _, after_init, after_gan, grads = parity
    cfg = _config()
    states = (tf_result.initial, tf_result.after_init, tf_result.after_d, tf_result.after_g)
    tf_initial, tf_init, tf_d, tf_g = (tf_to_torch(s) for s in states)
    g_tf, d_tf = tf_to_torch(tf_result.grads[step])
    if step == "init":
        ours_before, ours_after, tf_before, tf_after, lr = tf_initial[0], after_init[0], tf_initial[0], tf_init[0], cfg.lr_init
    elif step == "d":  # kernels and norms; u is checked after the G step
        ours_before, tf_before, tf_after, lr = after_init[1], tf_init[1], tf_d[1], cfg.lr_d
        ours_after = {k: v for k, v in after_gan[1].items() if not k.endswith(".u")}
    else:
        ours_before, ours_after, tf_before, tf_after, lr = after_init[0], after_gan[0], tf_d[0], tf_g[0], cfg.lr_g
    theirs = d_tf if step == "d" else g_tf
    assert ours_after.keys() == theirs.keys()
    for key, after in ours_after.items():
        slack = lr * (grads[step][key] - theirs[key]).abs() / EPS_HAT + 32 * U * (lr + after.abs())
        step_error = ((after - ours_before[key]) - (tf_after[key] - tf_before[key])).abs()
        assert (step_error <= slack).all(), (key, float((step_error / slack).max()))
        before_error = (ours_before[key] - tf_before[key]).abs()
        assert ((after - tf_after[key]).abs() <= before_error + slack).all(), key


def test_spectral_norm_u_matches_the_original(parity):
    """u after the D step (four chained applications) and the G step (one more)."""
    tf_result, _, _, after_gan, _ = parity
    ours = {k: v for k, v in after_gan[1].items() if k.endswith(".u")}
    errors = _compare(ours, {k: v for k, v in tf_to_torch(tf_result.after_g)[1].items() if k.endswith(".u")})
    worst = max(errors, key=errors.get)
    assert errors[worst] < U_RTOL, (worst, errors[worst])


def test_each_step_changes_what_the_original_changes(parity):
    """The comparisons are not vacuous: each step moved every tensor it trains, and the
    original's u advanced in the D step (four power iterations) and again in the G step."""
    tf_result, *_ = parity
    states = (tf_result.initial, tf_result.after_init, tf_result.after_d, tf_result.after_g)
    before, after_init, after_d, after_g = (tf_to_torch(s) for s in states)
    assert min(_compare(after_init[0], before[0]).values()) > 1e-4  # every G tensor, by ~lr_init 2e-4 or more
    assert all(torch.equal(after_init[1][k], before[1][k]) for k in before[1])
    assert min(_compare(after_d[1], after_init[1]).values()) > 1e-5  # every D tensor, by ~lr_d 4e-5 or more
    assert all(torch.equal(after_d[0][k], after_init[0][k]) for k in after_init[0])
    assert min(_compare(after_g[0], after_d[0]).values()) > 1e-5  # every G tensor, by ~lr_g 2e-5 or more
    u_moved = {k: v for k, v in _compare(after_g[1], after_d[1]).items() if k.endswith(".u") and k != "layers.15.u"}
    assert min(u_moved.values()) > 1e-3  # (D_logit's u has one entry: always +-1)


def test_float64_stand_ins_compute_the_original_ops():
    """The float64 graph writes out three ops that compute in float32 whatever their input
    (tests/tf_reference*.py); they compute what those ops compute: the resize bit for bit and
    the Huber mean up to summation order, both on float32 data, and the LReLU up to its slope."""
    from tests.tf_reference import lrelu, tf, tf1, upsample2x_exact
    from tests.tf_reference_train import huber_loss

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    y = rng.standard_normal((2, 5, 7, 3)).astype(np.float32) * 2
    with tf1.Session(graph=tf.Graph()) as sess:
        ops = {
            "resize": (upsample2x_exact(tf.constant(x)), tf1.image.resize_images(x, [10, 14])),
            "lrelu": (lrelu(tf.constant(x, tf.float64)), tf.nn.leaky_relu(tf.constant(x, tf.float64), 0.2)),
            "huber": (huber_loss(tf.constant(x), tf.constant(y)), tf1.losses.huber_loss(x, y)),
        }
        out = sess.run(ops)
    np.testing.assert_array_equal(out["resize"][0], out["resize"][1])
    np.testing.assert_allclose(out["lrelu"][0], out["lrelu"][1], rtol=2e-8)  # the op's slope: 0.2 + 3e-9
    assert out["huber"][0] == pytest.approx(out["huber"][1], rel=2 * x.size * 2**-24)  # two sums of x.size terms >= 0
