import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import animegan2
from animegan2.errors import ConfigError, ImageError
from animegan2.imageio import from_tensor, load_image, save_image, to_tensor, DecodedImage
from animegan2.model import Generator
from animegan2.stylize import MIN_SIDE, Stylizer, keep_color, pad_reflect, resolve_device
from tests.reference import random_state_dict

RGB_TO_YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.14714119, -0.28886916, 0.43601035], [0.61497538, -0.51496512, -0.10001026]]
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random.pt"
    torch.save(random_state_dict(seed=3), path)
    return path


@pytest.fixture(scope="module")
def stylizer(weights):
    return Stylizer(weights, device="cpu", progress=False)


@pytest.fixture(scope="module")
def tf_model():
    g = Generator(upsample="tf", norm_eps=1e-5)
    g.load_state_dict(random_state_dict(seed=3))
    return g.eval()


def test_tensor_output_equals_running_the_model(stylizer):
    x = torch.rand(2, 3, 24, 40) * 2 - 1
    with torch.no_grad():
        want, want_1 = stylizer.model(x), stylizer.model(x[1:])
    assert stylizer.model.upsample == "align_corners" and stylizer.device.type == "cpu"
    assert torch.equal(Stylizer(stylizer.model, device="cpu", batch_size=2).stylize(x), want)
    assert torch.equal(stylizer.stylize(x[1]), want_1[0])


def test_uint8_output_is_the_model_output_quantized(stylizer):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    with torch.no_grad():
        y = stylizer.model(torch.from_numpy(pixels).permute(2, 0, 1)[None].float().contiguous() / 127.5 - 1)
    want = ((y[0].permute(1, 2, 0) + 1) / 2 * 255).clamp(0, 255).to(torch.uint8).numpy()
    got = stylizer.stylize(pixels)
    assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_tf_mode_pads_to_a_multiple_of_4_and_crops_back(tf_model):
    s = Stylizer(tf_model, device="cpu")
    x = torch.rand(1, 3, 30, 41) * 2 - 1
    padded = torch.cat([x, x[:, :, 27:29].flip(2)], dim=2)  # 30 -> 32 rows: mirror rows 28, 27
    padded = torch.cat([padded, padded[:, :, :, 37:40].flip(3)], dim=3)  # 41 -> 44 columns: 39, 38, 37
    assert torch.equal(pad_reflect(x, 2, 3), padded)
    with torch.no_grad():
        want = tf_model(padded)[..., :30, :41]
    got = s.stylize(x)
    assert got.shape == x.shape and torch.equal(got, want)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 7), (7, 1)])
def test_smaller_than_the_network_minimum_is_padded(stylizer, tf_model, shape):
    pixels = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert stylizer.stylize(pixels).shape == (*shape, 3)
    out = Stylizer(tf_model, device="cpu").stylize(Image.fromarray(pixels))
    assert out.size == (shape[1], shape[0]) and out.mode == "RGB"
    replicated = pad_reflect(torch.ones(1, 3, *shape), MIN_SIDE - shape[0], MIN_SIDE - shape[1])
    assert replicated.shape[-2:] == (MIN_SIDE, MIN_SIDE)


def test_pad_reflect_beyond_the_image_mirrors_again():
    x = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    assert pad_reflect(x, 0, 5).flatten().tolist() == [1, 2, 3, 2, 1, 2, 3, 2]


@pytest.mark.parametrize(
    "options,size,want",
    [
        ({}, (672, 1280), (672, 1280)),
        ({"size": 256}, (672, 1280), (134, 256)),  # 672 * 0.2 = 134.4
        ({"size": 512}, (100, 50), (512, 256)),
        ({"max_pixels": 100_000}, (672, 1280), (229, 436)),  # sqrt(100000/860160) = 0.34097
        ({"max_pixels": 100_000}, (300, 300), (300, 300)),
        ({"x32": True}, (257, 383), (256, 352)),
        ({"x32": True}, (100, 1000), (256, 992)),
        ({"size": 500, "x32": True}, (1000, 700), (480, 320)),  # 500 x 350 -> 480 x 320
        ({"size": 1000, "max_pixels": 250_000}, (1000, 1000), (500, 500)),
    ],
)
def test_resize_policy_hand_computed(options, size, want):
    assert Stylizer(torch.nn.Identity(), device="cpu", **options).working_size(*size) == want


def test_max_pixels_notice_and_output_at_input_size(stylizer, weights, caplog):
    s = Stylizer(weights, device="cpu", max_pixels=16 * 20)
    pixels = np.random.default_rng(2).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="animegan2"):
        out = s.stylize_arrays([pixels], ["big.png"])[0]
    assert out.shape == (32, 40, 3)
    assert "big.png: 40x32 is over max_pixels=320; stylized at 20x16" in caplog.text
    kept = Stylizer(weights, device="cpu", max_pixels=16 * 20, restore_size=False).stylize(pixels)
    assert kept.shape == (16, 20, 3)


def test_keep_color_keeps_the_input_chroma(weights):
    rng = np.random.default_rng(3)
    pixels = rng.uniform(0.3, 0.7, (16, 24, 3)).astype(np.float32)
    s = Stylizer(weights, device="cpu", keep_color=True)
    out = s.stylize(pixels)
    plain = Stylizer(s.model, device="cpu").stylize(pixels)
    yuv = lambda a: torch.einsum("ij,hwj->hwi", RGB_TO_YUV, torch.from_numpy(a).float())
    inside = ((out > 0) & (out < 1)).all(axis=2)  # pixels not clipped back into [0, 1]
    assert inside.mean() > 0.9
    assert torch.allclose(yuv(out)[inside][:, 1:], yuv(pixels)[inside][:, 1:], atol=1e-5)
    assert torch.allclose(yuv(out)[inside][:, 0], yuv(plain)[inside][:, 0], atol=1e-5)
    grey, red = torch.zeros(1, 3, 1, 1), torch.tensor([0.4, -0.2, -0.2]).view(1, 3, 1, 1)
    # Only Y changes, and Y enters R, G and B with weight 1: red (0.7, 0.4, 0.4) in [0, 1] has
    # Y = 0.4897; grey's Y is 0.5, so every channel gains 0.0103 -> (0.7103, 0.4103, 0.4103).
    assert keep_color(grey, red).flatten().tolist() == pytest.approx([0.4206, -0.1794, -0.1794], abs=1e-4)


def test_batches_give_the_same_images(weights):
    rng = np.random.default_rng(4)
    arrays = [rng.integers(0, 256, (16, 20, 3), dtype=np.uint8) for _ in range(3)]
    arrays.insert(1, rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    single = Stylizer(weights, device="cpu")
    batched = Stylizer(single.model, device="cpu", batch_size=2)
    for a, b in zip(single.stylize_arrays(arrays), batched.stylize_arrays(arrays)):
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_kinds_are_returned_as_given(stylizer):
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (9, 10, 4), dtype=np.uint8)
    out = stylizer.stylize(rgba)
    assert out.shape == (9, 10, 4) and np.array_equal(out[..., 3], rgba[..., 3])
    deep = rng.integers(0, 65536, (9, 10, 3), dtype=np.uint16)
    assert stylizer.stylize(deep).dtype == np.uint16
    assert stylizer.stylize(deep.astype(np.float64) / 65535).dtype == np.float64
    assert stylizer.stylize(rgba[..., 0]).shape == (9, 10, 3)
    pil = stylizer.stylize(Image.fromarray(rgba, "RGBA"))
    assert pil.mode == "RGBA" and np.array_equal(np.asarray(pil)[..., 3], rgba[..., 3])
    assert stylizer.stylize(Image.fromarray(rgba[..., 0], "L")).mode == "RGB"
    with pytest.raises(ImageError, match="got shape"):
        stylizer.stylize(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ImageError, match="cannot stylize a list"):
        stylizer.stylize([1, 2])


def test_bf16_autocast_is_close_to_float32(stylizer):
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    half = Stylizer(stylizer.model, device="cpu", dtype="bf16").stylize(x)
    assert half.dtype == torch.float32 and (half - stylizer.stylize(x)).abs().mean() < 0.05


def test_bad_options_are_config_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="dtype must be one of"):
        Stylizer(torch.nn.Identity(), device="cpu", dtype="int8")
    with pytest.raises(ConfigError, match="batch_size"):
        Stylizer(torch.nn.Identity(), device="cpu", batch_size=0)


def test_files_keep_alpha_16_bits_and_icc(stylizer, tmp_path):
    rng = np.random.default_rng(6)
    src = DecodedImage(
        rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16), rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    )
    save_image(src, tmp_path / "in.png")
    animegan2.stylize_file(tmp_path / "in.png", tmp_path / "out.png", style=stylizer.model, device="cpu")
    out = load_image(tmp_path / "out.png")
    assert out.bit_depth == 16 and np.array_equal(out.alpha, src.alpha)
    want = from_tensor(stylizer.stylize(to_tensor(src.pixels)), np.uint16)[0]
    assert np.array_equal(out.pixels, want)
    animegan2.stylize_file(tmp_path / "in.png", tmp_path / "sbs.jpg", style=stylizer.model, device="cpu", side_by_side=True)
    assert Image.open(tmp_path / "sbs.jpg").size == (24, 10)


def test_stylize_dir_reports_bad_files_and_resumes(stylizer, tmp_path):
    src = tmp_path / "in"
    (src / "deep").mkdir(parents=True)
    Image.new("RGB", (10, 8), (9, 99, 199)).save(src / "a.jpg")
    Image.new("RGB", (9, 9)).save(src / "deep" / "b.png")
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.txt").write_text("not an image, not listed")
    report = animegan2.stylize_dir(src, tmp_path / "out", style=stylizer.model, device="cpu", recursive=True, suffix="_anime")
    assert sorted(d for _, d in report.done) == [str(tmp_path / "out" / "a_anime.jpg"), str(tmp_path / "out" / "deep" / "b_anime.png")]
    assert [(s, why) for s, why, _ in report.failed] == [(str(src / "empty.jpg"), f"{src / 'empty.jpg'}: empty file (0 bytes)")]
    again = animegan2.stylize_dir(src, tmp_path / "out", style=stylizer.model, device="cpu", recursive=True, suffix="_anime", skip_existing=True)
    assert len(again.skipped) == 2 and not again.done
    refused = animegan2.stylize_dir(src, tmp_path / "out", style=stylizer.model, device="cpu", suffix="_anime")
    assert "already exists" in refused.failed[0][1]


def test_one_liner_on_a_file_and_light_import(weights, tmp_path):
    Image.new("RGB", (12, 10), (30, 60, 90)).save(tmp_path / "p.jpg")
    out = animegan2.stylize(tmp_path / "p.jpg", style=weights, device="cpu")
    assert isinstance(out, Image.Image) and out.size == (12, 10)
    import animegan2.stylize as module

    assert callable(module) and module.Stylizer is Stylizer
    code = "import sys, animegan2; print('animegan2.stylize' in sys.modules, 'PIL' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]


def test_working_size_output_resizes_alpha_and_side_by_side(weights, tmp_path):
    rgba = np.dstack([np.full((20, 30, 3), 128, np.uint8), np.full((20, 30), 255, np.uint8)])
    rgba[:10, :, 3] = 0
    s = Stylizer(weights, device="cpu", size=15, restore_size=False)
    out = s.stylize(rgba)
    assert out.shape == (10, 15, 4)
    assert out[:4, :, 3].max() == 0 and out[6:, :, 3].min() == 255  # 255 stays 255, away from the edge
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    report = s.stylize_files([(tmp_path / "a.png", tmp_path / "b.png")], side_by_side=True)
    assert report.ok and Image.open(tmp_path / "b.png").size == (30, 10)


def test_with_options_shares_the_prepared_model_and_checks_its_options():
    base = Stylizer(torch.nn.Identity(), device="cpu", precision="exact", progress=False)
    small = base.with_options(size=256, keep_color=True, batch_size=2)
    assert small.model is base.model and small.plan == base.plan
    assert (small.size, small.keep_color, small.batch_size, small.progress) == (256, True, 2, False)
    assert (base.size, base.keep_color, base.batch_size) == (None, False, 1)  # the original is left as it was
    assert small.working_size(512, 1024) == (128, 256)
    with pytest.raises(ConfigError, match="^size must be a positive number of pixels, got 0$"):
        base.with_options(size=0)
    with pytest.raises(ConfigError, match="^with_options takes size, max_pixels, x32, keep_color, batch_size, progress, restore_size; not precision$"):
        base.with_options(precision="fast")
