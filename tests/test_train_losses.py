"""The recipe's losses, VGG feature extractor and discriminator against hand-computed values."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from animegan2.errors import WeightsError
from animegan2.train import losses
from animegan2.train.discriminator import Discriminator
from animegan2.train.presets import PRESETS, Preset
from animegan2.train.vgg import CONV_INDEX, load_vgg19
from tests.hostile import CodeRunningPickle
from tests.reference_train import fake_caffe_layers

HAYAO = PRESETS["hayao"]


def test_gram_is_per_sample_and_divided_by_hwc():
    f = torch.zeros(2, 2, 1, 2)
    f[0, 0, 0] = torch.tensor([1.0, 2.0])
    f[0, 1, 0] = torch.tensor([3.0, 4.0])
    g = losses.gram(f)
    assert torch.equal(g[0], torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4)
    assert torch.equal(g[1], torch.zeros(2, 2))  # a batch-wide Gram would leak sample 0 here


def test_style_loss_is_l1_between_grams():
    a, b = torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2)
    b[0, 0, 0] = torch.tensor([1.0, 2.0])  # gram(b) = [[5, 0], [0, 0]] / 4
    assert losses.style_loss(a, b).item() == pytest.approx(5 / 4 / 4)


def test_yuv_matches_tensorflow_kernel():
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    assert losses.rgb_to_yuv(red).flatten().tolist() == pytest.approx([0.299, -0.14714119, 0.61497538])


def test_color_loss_l1_on_y_and_huber_on_u_v_in_both_regimes():
    black = -torch.ones(1, 3, 1, 1)
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    cyan = torch.tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1)
    quadratic = 0.299 + 0.5 * 0.14714119**2 + 0.5 * 0.61497538**2
    assert losses.color_loss(black, red).item() == pytest.approx(quadratic, rel=1e-6)
    # red vs cyan: |dY| = 0.701 - 0.299, |dU| = 0.29428238 (quadratic), |dV| = 1.22995076 (linear)
    dy, du, dv = abs(0.701 - 0.299), 2 * 0.14714119, 2 * 0.61497538
    want = dy + 0.5 * du**2 + (dv - 0.5)
    assert losses.color_loss(cyan, red).item() == pytest.approx(want, rel=1e-5)


def test_total_variation_halves_squares_and_divides_per_direction():
    img = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    # dh = [-2, -3] -> 13/2/2 = 3.25; dw = [-1, -2] -> 5/2/2 = 1.25
    assert losses.total_variation_loss(img).item() == 4.5


def test_discriminator_four_terms_with_their_weights():
    ones = torch.ones(2, 1, 2, 2)
    p = Preset(con=1, sty=1, col=1, tv=1, d_real=1.1, d_fake=1.3, d_gray=1.7, d_smooth=0.005)
    d = losses.discriminator_loss(0 * ones, 2 * ones, 3 * ones, -ones, p)
    assert d.item() == pytest.approx(300 * (1.1 * 1 + 1.3 * 4 + 1.7 * 9 + 0.005 * 1))
    assert losses.generator_adv_loss(3 * ones).item() == 4.0


def test_generator_loss_is_the_weighted_sum():
    torch.manual_seed(0)
    photo, fake = torch.rand(2, 3, 4, 4) * 2 - 1, torch.rand(2, 3, 4, 4) * 2 - 1
    fp, ff, fa = torch.rand(2, 5, 2, 2), torch.rand(2, 5, 2, 2), torch.rand(2, 5, 2, 2)
    logits = torch.rand(2, 1, 1, 1)
    t = losses.generator_loss(photo, fake, fp, ff, fa, logits, HAYAO)
    assert t["content"].item() == pytest.approx(1.5 * (fp - ff).abs().mean().item())
    assert t["adv"].item() == pytest.approx(300 * ((logits - 1) ** 2).mean().item())
    parts = sum(t[k] for k in ("content", "style", "color", "tv", "adv"))
    assert t["total"].item() == pytest.approx(parts.item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_loss_holds_under_autocast_with_caffe_scale_features(dtype):
    """Caffe-scale conv4_4 features (N(20, 80^2)) and D logits of a few hundred overflow
    float16 in a Gram entry or a square; every loss must still come out as in float32. The
    inputs are given as float32 and as autocast's ops hand them over (in ``dtype``); the 1e-3
    covers only rounding the inputs to ``dtype``, averaged over 10^6 elements (bfloat16's
    2^-9 per element), far below the NaN/inf or the ~1% that a matmul in ``dtype`` gives."""
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 512, 32, 32, generator=gen) * 80 + 20 for _ in range(3)]
    photo, fake = (torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1 for _ in range(2))
    logits = [torch.randn(2, 1, 16, 16, generator=gen) * 300 for _ in range(4)]

    def every_loss(f, images, d):
        terms = losses.generator_loss(*images, *f, d[0], HAYAO)
        return {
            "gram": losses.gram(f[0]).abs().sum(), "d": losses.discriminator_loss(*d, HAYAO),
            **{k: terms[k] for k in terms},
        }  # fmt: skip

    want = every_loss(feats, (photo, fake), logits)
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in want.values())
    for cast in (lambda t: t, lambda t: t.to(dtype)):
        with torch.autocast("cpu", dtype=dtype):
            got = every_loss([cast(f) for f in feats], (cast(photo), cast(fake)), [cast(d) for d in logits])
        for name, value in got.items():
            assert value.dtype == torch.float32, name
            assert value.item() == pytest.approx(want[name].item(), rel=1e-3), (name, dtype)


def test_losses_keep_float64_for_reference_evaluations():
    f = torch.rand(1, 4, 3, 3, dtype=torch.float64)
    assert losses.style_loss(f, 2 * f).dtype == losses.color_loss(f[:, :3], f[:, :3]).dtype == torch.float64


# --- VGG --------------------------------------------------------------------------------

def write_both_formats(tmp_path):
    layers = fake_caffe_layers()
    npy = tmp_path / "vgg19.npy"
    np.save(npy, layers, allow_pickle=True)
    tv = {}
    for name, index in CONV_INDEX.items():
        w = torch.from_numpy(layers[name][0].transpose(3, 2, 0, 1).copy())
        tv[f"features.{index}.weight"] = w.flip(1) if index == 0 else w  # torchvision's conv1_1 takes RGB
        tv[f"features.{index}.bias"] = torch.from_numpy(layers[name][1])
    tv["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(tv, tmp_path / "vgg19.pth")
    return layers, npy, tmp_path / "vgg19.pth"


def manual_features(layers, bgr_input):
    x = bgr_input
    for name in CONV_INDEX:
        if name.endswith("_1") and name != "conv1_1":
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        w, b = layers[name]
        x = F.conv2d(x, torch.from_numpy(w.transpose(3, 2, 0, 1).copy()), torch.from_numpy(b), padding=1)
        if name != "conv4_4":
            x = F.relu(x)
    return x


def test_vgg_both_formats_give_identical_features(tmp_path):
    layers, npy, pth = write_both_formats(tmp_path)
    image = torch.rand(2, 3, 30, 34) * 2 - 1
    caffe = load_vgg19(npy)
    assert caffe.normalization == "caffe"
    tv_as_caffe = load_vgg19(pth, normalization="caffe")
    got = caffe(image)
    assert torch.equal(got, tv_as_caffe(image))
    # The recipe's normalisation: 0..255, BGR, minus the Caffe means, no std.
    bgr = ((image + 1) * 127.5).flip(1) - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    want = manual_features(layers, bgr)
    assert got.shape == (2, 8, 4, 5)  # 30x34 -> pools round up like TF SAME: 15x17, 8x9, 4x5
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-5)


def test_vgg_torchvision_file_defaults_to_imagenet_normalisation(tmp_path):
    layers, npy, pth = write_both_formats(tmp_path)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    vgg = load_vgg19(pth)
    assert vgg.normalization == "torchvision"
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb = ((image + 1) / 2 - mean) / std
    want = manual_features(layers, rgb.flip(1))  # manual_features takes conv1_1 in BGR order
    assert torch.allclose(vgg(image), want, atol=1e-5)
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg_npy_refuses_pickled_code(tmp_path):
    evil = CodeRunningPickle(tmp_path / "pwned")
    np.save(tmp_path / "evil.npy", np.array({"conv1_1": evil}, dtype=object), allow_pickle=True)
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        load_vgg19(tmp_path / "evil.npy")
    assert not evil.marker.exists()


def test_vgg_by_zoo_name_comes_from_the_verified_cache(tmp_path, monkeypatch):
    from animegan2 import zoo

    layers, npy, _ = write_both_formats(tmp_path)
    zoo.import_weights("vgg19", npy, progress=False)  # as a download would land, pinned
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ANIMEGAN2_OFFLINE", "1")
    assert zoo.get_spec("vgg19").format == "numpy"
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(load_vgg19("vgg19", progress=False)(image), load_vgg19(npy)(image))


def test_vgg_wrong_file_is_a_clear_error(tmp_path):
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(WeightsError, match="not a torchvision vgg19 state_dict"):
        load_vgg19(tmp_path / "x.pt")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(WeightsError, match="not vgg19.npy"):
        load_vgg19(tmp_path / "plain.npy")
    with pytest.raises(WeightsError):
        load_vgg19(tmp_path / "missing.npy")  # neither a file nor a zoo name


# --- discriminator ----------------------------------------------------------------------


def test_discriminator_layout_and_spectral_norm():
    torch.manual_seed(0)
    d = Discriminator()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128, 256, 256, 1]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 1, 1]
    assert all(c.bias is None and c.padding == (1, 1) and c.padding_mode == "zeros" for c in convs)
    assert [n.eps for n in d.modules() if isinstance(n, torch.nn.GroupNorm)] == [1e-12] * 3
    assert d(torch.zeros(2, 3, 36, 20)).shape == (2, 1, 9, 5)
    with pytest.raises(ValueError, match="multiples of 4"):  # where the original's stride-2 padding differs
        d(torch.zeros(1, 3, 18, 20))
    small = Discriminator(ch=8)
    for _ in range(30):  # one power iteration per forward in training mode: converged by now
        small(torch.zeros(1, 3, 8, 8))
    small.eval()
    for c in (m for m in small.modules() if isinstance(m, torch.nn.Conv2d)):
        sigma = torch.linalg.matrix_norm(c.normalized_weight().detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.02)
