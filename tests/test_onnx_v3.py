"""AnimeGANv3 ONNX runner, against small graphs with the real models' interface.

The test graph computes tanh(x + blockmean_m(x)) in NHWC: the block mean (average pool
m x m, nearest upsampling x m) makes the Add fail unless both sides are multiples of m,
exactly as the real v3 graphs fail; for a constant image c the output is tanh(2c).
"""

import math

import numpy as np
import onnxruntime
import pytest
import torch

from animegan2.errors import ConfigError, ImageError, WeightsError
from animegan2.onnx_v3 import INPUT_NAME, OnnxGeneratorV3, onnx_providers
from tests.onnx_graphs import make_graph


@pytest.fixture
def v3(tmp_path):
    return make_graph(tmp_path / "AnimeGANv3_Stub_1.onnx")


def blockmean_tanh(x: torch.Tensor, m: int) -> torch.Tensor:
    block = torch.nn.functional.avg_pool2d(x, m).repeat_interleave(m, -2).repeat_interleave(m, -1)
    return torch.tanh(x + block)


def test_constant_image_gives_tanh_2c_at_the_input_size(v3):
    g = OnnxGeneratorV3(v3)
    x = torch.full((2, 3, 300, 261), 0.25)
    y = g(x)
    assert y.shape == (2, 3, 300, 261)
    assert torch.allclose(y, torch.full_like(y, math.tanh(0.5)), atol=1e-6)


def test_pads_bottom_right_by_reflection_and_crops(v3):
    g = OnnxGeneratorV3(v3)
    x = torch.rand(1, 3, 261, 258) * 2 - 1
    padded = torch.nn.functional.pad(x, (0, 6, 0, 3), mode="reflect")  # 264 x 264
    want = blockmean_tanh(padded, 8)[:, :, :261, :258]
    assert torch.allclose(g(x), want, atol=1e-6)


def test_the_stub_really_needs_multiples_of_8(v3):
    sess = onnxruntime.InferenceSession(str(v3), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="running Add node"):
        sess.run(None, {INPUT_NAME: np.zeros((1, 260, 256, 3), np.float32)})


def test_tiny_models_get_multiples_of_16(tmp_path):
    path = make_graph(tmp_path / "AnimeGANv3_tiny_Cute.onnx", multiple=16)
    x = torch.rand(1, 3, 264, 256) * 2 - 1  # a multiple of 8, not of 16
    padded = torch.nn.functional.pad(x, (0, 0, 0, 8), mode="reflect")
    assert torch.allclose(OnnxGeneratorV3(path)(x), blockmean_tanh(padded, 16)[:, :, :264], atol=1e-6)
    renamed = make_graph(tmp_path / "cute.onnx", multiple=16)
    with pytest.raises(ImageError, match="multiple=16"):
        OnnxGeneratorV3(renamed)(x)
    assert torch.allclose(OnnxGeneratorV3(renamed, multiple=16)(x), blockmean_tanh(padded, 16)[:, :, :264], atol=1e-6)


def test_small_sides_are_resized_to_256_and_back(v3):
    g = OnnxGeneratorV3(v3)
    y = g(torch.full((1, 3, 100, 60), -0.5))
    assert y.shape == (1, 3, 100, 60)
    assert torch.allclose(y, torch.full_like(y, math.tanh(-1.0)), atol=1e-6)


def test_fit_resize_floors_to_the_multiple_like_the_original(v3):
    g = OnnxGeneratorV3(v3, fit="resize")
    x = torch.rand(1, 3, 263, 270) * 2 - 1
    inner = torch.nn.functional.interpolate(x, size=(256, 264), mode="bilinear", antialias=True)
    want = torch.nn.functional.interpolate(blockmean_tanh(inner, 8), size=(263, 270), mode="bilinear")
    assert torch.allclose(g(x), want, atol=1e-5)
    with pytest.raises(ConfigError, match="fit must be"):
        OnnxGeneratorV3(v3, fit="crop")


def test_batches_with_a_fixed_batch_of_one_run_image_by_image(tmp_path):
    path = make_graph(tmp_path / "one.onnx", batch=1)
    x = torch.stack([torch.full((3, 256, 256), c) for c in (0.1, -0.3, 0.7)])
    y = OnnxGeneratorV3(path)(x.half())
    assert y.dtype == torch.float16
    assert [round(v, 3) for v in y[:, 0, 0, 0].float().tolist()] == [round(math.tanh(2 * c), 3) for c in (0.1, -0.3, 0.7)]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"input_name": "input_1"}, "expected one input 'AnimeGANv3_input:0'"),
        ({"output_name": "out"}, "expected output 'generator_1/main/out_layer:0'"),
        ({"layout": "NCHW"}, r"does not take NHWC RGB images: input shape \['N', 3, 'H', 'W'\]"),
    ],
)
def test_other_graphs_are_refused_with_what_was_found(tmp_path, kwargs, match):
    path = make_graph(tmp_path / "other.onnx", **kwargs)
    with pytest.raises(WeightsError, match=match):
        OnnxGeneratorV3(path)


def test_a_file_that_is_not_onnx_is_a_weights_error(tmp_path):
    bad = tmp_path / "AnimeGANv3_Hayao_36.onnx"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(WeightsError, match="cannot load .* as an ONNX model"):
        OnnxGeneratorV3(bad)


def test_providers_follow_the_device(monkeypatch):
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="cpu or cuda"):
        onnx_providers("mps")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        onnx_providers("cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
