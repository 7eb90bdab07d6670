"""Step parity with the original TensorFlow trainer: one init step, then one D step and one
G step, from the same weights on the same batch (``tests/tf_reference_train.py``), compared
as losses, gradients and weights.

Tolerances. Both sides compute in float32 (eps 6e-8) in different summation orders.
* Losses are means over <= 2e4 terms: rounding differences stay near 1e-6 relative
  (measured <= 1e-6); 1e-4.
* Gradients of the init and D steps: per tensor ||g - g_tf|| / ||g_tf|| measured <= 3e-6;
  1e-4. The G step's gradient is ill-conditioned in float32: its adversarial part reaches
  G nearly uniform and G's layer norms cancel most of it in backward, so our own float32
  gradient differs from float64 by 4.7e-4 (measured on this batch), TF's likewise; measured
  TF vs ours <= 1.3e-3 per tensor; 1e-2.
* Weights, per tensor, 1e-4 relative, and each step's change 1e-3 relative -- on the
  elements whose step float32 determines. The first step of TF's Adam moves a weight by
  lr * g / (|g| + 3.2e-7), nearly lr * sign(g): where |g_tf| is within a few times the
  gradient's own uncertainty |g - g_tf| or of 3.2e-7, the step can land anywhere in
  +-lr. Those elements (measured: 23 of 2.1M in the init step, 1 of 1.1M in the D step,
  3261 of 2.1M in the G step) are bounded by 2 lr per step instead, and their share is
  asserted small. Measured on the rest: weights <= 2.6e-6, steps <= 1.3e-4.
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
RTOL = 1e-4
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
    nhwc = {k: rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32) for k in ("real", "anime")}
    gray = lambda x: np.repeat(x @ np.float32([0.299, 0.587, 0.114])[:, None], 3, axis=3)  # noqa: E731
    nhwc["anime_gray"] = gray(nhwc["anime"])
    nhwc["anime_smooth"] = gray(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32))
    layers = fake_caffe_layers(seed=3, widths=(8, 8, 16, 16))
    np.save(tmp / "vgg19.npy", layers, allow_pickle=True)
    weights = {"con": preset.con, "sty": preset.sty, "col": preset.col, "tv": preset.tv, "adv": preset.adv}
    weights["d"] = (preset.d_real, preset.d_fake, preset.d_gray, preset.d_smooth)
    tf_result = run_original_steps(nhwc, layers, weights, {"init": cfg.lr_init, "g": cfg.lr_g, "d": cfg.lr_d})

    torch.manual_seed(0)
    g, d = Generator(upsample="tf", norm_eps=1e-12), Discriminator()
    g_state, d_state = tf_to_torch(tf_result.initial)
    g.load_state_dict(g_state, strict=True)
    d.load_state_dict(d_state, strict=True)
    vgg = load_vgg19(tmp / "vgg19.npy")
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
    theirs = theirs.double()
    return float((ours.double() - theirs).norm() / theirs.norm())


def _compare(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, float]:
    assert ours.keys() == theirs.keys()
    return {k: _relative(ours[k], theirs[k]) for k in ours}


def test_losses_match_the_original(parity):
    tf_result, logged, *_ = parity
    for name, want in tf_result.losses.items():
        assert logged[name] == pytest.approx(want, rel=RTOL), name


@pytest.mark.parametrize(("step", "rtol"), [("init", RTOL), ("d", RTOL), ("g", 1e-2)])
def test_gradients_match_the_original(parity, step, rtol):
    tf_result, *_, grads = parity
    g_tf, d_tf = tf_to_torch(tf_result.grads[step])
    errors = _compare(grads[step], d_tf if step == "d" else g_tf)
    worst = max(errors, key=errors.get)
    assert errors[worst] < rtol, (worst, errors[worst])


# TF's Adam moves a weight by lr * g / (|g| + EPS_HAT) in its first step (module docstring of
# animegan2.train.optim), EPS_HAT = epsilon / sqrt(1 - beta2).
EPS_HAT = 1e-8 / (1 - 0.999) ** 0.5


def _undetermined(parity, step: str) -> dict[str, torch.Tensor]:
    """Elements whose first step float32 cannot pin down: |g_tf| <= 3 (|g - g_tf| + EPS_HAT),
    a sign not certain or a step in the soft region where it follows |g| itself."""
    tf_result, *_, grads = parity
    g_tf, d_tf = tf_to_torch(tf_result.grads[step])
    theirs = d_tf if step == "d" else g_tf
    return {k: theirs[k].abs() <= 3 * ((grads[step][k] - theirs[k]).abs() + EPS_HAT) for k in grads[step]}


@pytest.mark.parametrize("step", ["init", "d", "g"])
def test_every_weight_and_update_matches_the_original(parity, step):
    """Per tensor, on the elements whose step float32 determines: the weights after the step
    within 1e-4 relative, the step itself (after - before) within 1e-3. The other elements
    (asserted < 0.5% of a network) may differ by the most the steps so far move them, 2 lr each."""
    tf_result, _, after_init, after_gan, _ = parity
    cfg = _config()
    states = (tf_result.initial, tf_result.after_init, tf_result.after_d, tf_result.after_g)
    tf_initial, tf_init, tf_d, tf_g = (tf_to_torch(s) for s in states)
    if step == "init":
        ours_before, ours_after, tf_before, tf_after, lrs = tf_initial[0], after_init[0], tf_initial[0], tf_init[0], [cfg.lr_init]
    elif step == "d":  # kernels and norms; u is checked after the G step
        ours_before, tf_before, tf_after, lrs = after_init[1], tf_init[1], tf_d[1], [cfg.lr_d]
        ours_after = {k: v for k, v in after_gan[1].items() if not k.endswith(".u")}
    else:
        ours_before, ours_after, tf_before, tf_after, lrs = after_init[0], after_gan[0], tf_d[0], tf_g[0], [cfg.lr_init, cfg.lr_g]
    step_mask = _undetermined(parity, step)
    weight_mask = step_mask
    if step == "g":  # the init step's undetermined elements carry their difference along
        init_mask = _undetermined(parity, "init")
        weight_mask = {k: m | init_mask[k] for k, m in step_mask.items()}
    weight_errors, update_errors, loose = {}, {}, 0
    for key, after in ours_after.items():
        keep = ~weight_mask[key]
        weight_errors[key] = _relative(after[keep], tf_after[key][keep])
        free = (after - tf_after[key]).abs()[weight_mask[key]]
        assert free.numel() == 0 or free.max() <= 2 * sum(lrs) * (1 + 1e-3), key
        keep = ~step_mask[key]
        update_errors[key] = _relative((after - ours_before[key])[keep], (tf_after[key] - tf_before[key])[keep])
        loose += int(weight_mask[key].sum())
    worst = max(weight_errors, key=weight_errors.get)
    assert weight_errors[worst] < RTOL, (worst, weight_errors[worst])
    worst = max(update_errors, key=update_errors.get)
    assert update_errors[worst] < 1e-3, (worst, update_errors[worst])
    assert loose < 5e-3 * sum(v.numel() for v in ours_after.values())


def test_spectral_norm_u_matches_the_original(parity):
    """u after the D step (four chained applications) and the G step (one more)."""
    tf_result, _, _, after_gan, _ = parity
    ours = {k: v for k, v in after_gan[1].items() if k.endswith(".u")}
    errors = _compare(ours, {k: v for k, v in tf_to_torch(tf_result.after_g)[1].items() if k.endswith(".u")})
    worst = max(errors, key=errors.get)
    assert errors[worst] < RTOL, (worst, errors[worst])


def test_each_step_changes_what_the_original_changes(parity):
    """The comparisons are not vacuous: each step moved every tensor it trains, and the
    original's u advanced in the D step (four power iterations) and again in the G step."""
    tf_result, *_ = parity
    states = (tf_result.initial, tf_result.after_init, tf_result.after_d, tf_result.after_g)
    before, after_init, after_d, after_g = (tf_to_torch(s) for s in states)
    assert min(_compare(after_init[0], before[0]).values()) > RTOL  # every G tensor, by ~lr_init 2e-4 or more
    assert all(torch.equal(after_init[1][k], before[1][k]) for k in before[1])
    assert min(_compare(after_d[1], after_init[1]).values()) > 1e-5  # every D tensor, by ~lr_d 4e-5 or more
    assert all(torch.equal(after_d[0][k], after_init[0][k]) for k in after_init[0])
    assert min(_compare(after_g[0], after_d[0]).values()) > 1e-5  # every G tensor, by ~lr_g 2e-5 or more
    u_moved = {k: v for k, v in _compare(after_g[1], after_d[1]).items() if k.endswith(".u") and k != "layers.15.u"}
    assert min(u_moved.values()) > 10 * RTOL  # (D_logit's u has one entry: always +-1)
