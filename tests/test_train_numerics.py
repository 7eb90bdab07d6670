"""The original's numerics in the trainer's parts: initialisers, spectral norm, TF1's Adam
(DESIGN.md 2.4; the whole step against TensorFlow is tests/test_train_parity.py)."""

import math

import pytest
import torch

from animegan2.model import Generator
from animegan2.train.discriminator import Discriminator, SpectralNormConv2d
from animegan2.train.initializers import init_generator_
from animegan2.train.optim import TFAdam

# std of N(0, s^2) truncated at +-2s, in units of s: sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
TRUNCATED_STD = math.sqrt(1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))


def test_generator_init_is_contribs_variance_scaling():
    torch.manual_seed(0)
    g = init_generator_(Generator())
    for name, m in g.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            kh, kw = m.kernel_size
            scale = math.sqrt(2.6 / (kh * kw * m.in_channels))  # depthwise too: fan_in 9*C, TF's shape[-2] = C
            w = m.weight.detach()
            assert w.abs().max().item() <= 2 * scale * (1 + 1e-6), name
            # the sample std of n truncated normals is within ~4/sqrt(n) of the truth (4 sigma)
            assert w.std().item() == pytest.approx(TRUNCATED_STD * scale, rel=4 / math.sqrt(w.numel()) + 0.02), name
            assert m.bias is None or torch.equal(m.bias, torch.zeros_like(m.bias)), name
        elif isinstance(m, torch.nn.GroupNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))
    depthwise = g.block_c[1].layers[1][1]
    assert depthwise.groups == depthwise.in_channels == 256  # so the bound above used fan_in 9*256, not 9


def test_discriminator_init_is_normal_002_and_u_truncated_normal():
    torch.manual_seed(0)
    convs = [m for m in Discriminator().modules() if isinstance(m, SpectralNormConv2d)]
    w = torch.cat([c.weight.detach().flatten() for c in convs])
    u = torch.cat([c.u.flatten() for c in convs])
    assert w.std().item() == pytest.approx(0.02, rel=0.01) and w.abs().max().item() > 0.08  # not truncated
    assert u.abs().max().item() <= 2.0 and u.std().item() == pytest.approx(TRUNCATED_STD, rel=0.1)


def _reference_sigma(weight: torch.Tensor, u: torch.Tensor):
    """tools/ops.py spectral_norm in float64, W in TF's [kh*kw*in, out] layout."""
    w = weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0])

    def l2(x):
        return x / (x.square().sum().sqrt() + 1e-12)

    v = l2(u @ w.T)
    u_new = l2(v @ w)
    return (v @ w) @ u_new.T, u_new


def test_spectral_norm_is_one_iteration_per_training_forward_with_gradient_through_u_and_v():
    torch.manual_seed(0)
    conv = SpectralNormConv2d(5, 7, stride=2)
    weight64 = conv.weight.detach().double().requires_grad_(True)
    u0 = conv.u.clone()
    x = torch.randn(2, 5, 8, 8)
    out = conv(x)
    sigma, u1 = _reference_sigma(weight64, u0.double())
    assert torch.allclose(conv.u.double(), u1, rtol=1e-5, atol=1e-7)  # advanced by exactly one iteration
    want = torch.nn.functional.conv2d(x.double(), weight64 / sigma, stride=2, padding=1)
    assert torch.allclose(out.double(), want, rtol=1e-5, atol=1e-6)
    # the gradient flows through sigma, v and u' (PyTorch's spectral_norm keeps them constant)
    out.square().sum().backward()
    want.square().sum().backward()
    assert torch.allclose(conv.weight.grad.double(), weight64.grad, rtol=1e-4, atol=1e-6)
    detached = weight64.detach().requires_grad_(True)
    torch.nn.functional.conv2d(x.double(), detached / sigma.detach(), stride=2, padding=1).square().sum().backward()
    assert not torch.allclose(detached.grad, weight64.grad, rtol=1e-2, atol=1e-4)
    conv.eval()
    kept = conv.u.clone()
    conv(x)
    assert torch.equal(conv.u, kept)  # eval mode reads u, never advances it


def test_discriminator_under_autocast_normalises_in_float32():
    torch.manual_seed(0)
    d = Discriminator(ch=8)
    d_ref = Discriminator(ch=8)
    d_ref.load_state_dict(d.state_dict())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d(x)
    d_ref(x)
    for a, b in zip(d.state_dict().items(), d_ref.state_dict().items()):
        assert a[1].dtype == torch.float32 and torch.allclose(a[1], b[1], rtol=1e-6, atol=1e-7), a[0]


def test_tf_adam_is_tensorflows_update_rule():
    """lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); w -= lr_t m / (sqrt(v) + eps); at step 1 with
    |g| = 1e-7 that is lr * 1e-7 / (1e-7 + 3.16e-7) = 0.24 lr, where torch.optim.Adam gives 0.91 lr."""
    lr, b1, b2, eps = 1e-3, 0.5, 0.999, 1e-8
    g = torch.tensor([1e-7, -1.0, 0.0], dtype=torch.float64)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    q = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt, torch_adam = TFAdam([p], lr=lr, betas=(b1, b2), eps=eps), torch.optim.Adam([q], lr=lr, betas=(b1, b2), eps=eps)
    m = v = torch.zeros(3, dtype=torch.float64)
    want = torch.zeros(3, dtype=torch.float64)
    for t in (1, 2, 3):
        grad = g * t
        p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        torch_adam.step()
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad**2
        want -= lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (v.sqrt() + eps)
        assert torch.allclose(p.detach(), want, rtol=1e-12, atol=0)
    first = 1e-7 / (1e-7 + eps / math.sqrt(1 - b2))
    assert first == pytest.approx(0.240, abs=1e-3)
    assert not torch.allclose(p.detach(), q.detach(), rtol=0.1)  # torch's Adam steps differently
    assert set(opt.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}  # torch.optim.Adam's state keys


def test_discriminator_output_does_not_depend_on_u():
    """Each normalised conv but the last feeds a layer norm through zero padding, LReLU and
    convs, all scale-equivariant; the last has one output, whose sigma is ||W|| for any u."""
    torch.manual_seed(0)
    a, b = Discriminator(ch=8), Discriminator(ch=8)
    b.load_state_dict(a.state_dict())
    for conv in (m for m in b.modules() if isinstance(m, SpectralNormConv2d)):
        conv.u.normal_()
    a.eval(), b.eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    convs = [c for c in b.modules() if isinstance(c, SpectralNormConv2d)]
    sigmas = [torch.linalg.matrix_norm(c.normalized_weight().flatten(1), ord=2) for c in convs]
    assert max(s.item() for s in sigmas) > 1.05  # b's normalisation is far from a's ...
    assert torch.allclose(a(x), b(x), rtol=1e-4, atol=1e-5)  # ... its output is not
