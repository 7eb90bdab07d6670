"""ONNX / TorchScript export, the ONNX Runtime backend and the int8 path."""

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from animegan2.cli import main
from animegan2.errors import ConfigError, OutputExistsError
from animegan2.export import OnnxRuntimeModel, export_onnx, export_torchscript
from animegan2.imageio import load_image, to_tensor
from animegan2.model import Generator
from animegan2.stylize import Stylizer
from tests.conftest import tf_generator
from tests.reference import random_state_dict, smooth_state_dict

MODES = ("tf", "align_corners", "half_pixel")


@pytest.fixture(scope="module")
def state():
    return random_state_dict(seed=7)


@pytest.fixture(scope="module")
def exported(state):
    """Each mode exported once with dynamic shapes (traced at 32 x 32)."""
    return {mode: export_onnx(tf_generator(state, mode), dynamic=True, size=(32, 32)) for mode in MODES}


@pytest.fixture(scope="module")
def weights(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("weights") / "random.pt"
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("mode", MODES)
def test_onnx_runtime_matches_pytorch_at_other_sizes_and_batches(state, exported, mode):
    g = tf_generator(state, mode)
    runner = OnnxRuntimeModel(exported[mode], upsample=mode)
    for shape in [(1, 3, 48, 40), (2, 3, 37, 51)]:
        x = torch.rand(shape) * 2 - 1
        with torch.inference_mode():
            want = g(x)
        got = runner(x)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("mode", ["tf", "align_corners"])
def test_onnx_runtime_matches_pytorch_with_image_like_weights_on_a_photo(testdata, mode):
    # Image-like weights make smooth maps whose layer-norm sums are long runs of like values:
    # a norm that sums a whole map in float32 (ONNX's InstanceNormalization, what the exporter
    # made of GroupNorm) drifts, 2.1-2.6e-5 here (3e-4 at 336 x 640); the exported two-pass,
    # axis-by-axis form is 1.1-1.5e-6 off, float32 rounding over ~20 layers.
    g = tf_generator(smooth_state_dict(0), mode)
    x = torch.nn.functional.interpolate(to_tensor(load_image(testdata / "street.jpg").pixels), size=(168, 320), mode="area")
    with torch.inference_mode():
        want = g(x)
    got = OnnxRuntimeModel(export_onnx(g, size=(168, 320)), upsample=mode)(x)
    assert (got - want).abs().max().item() <= 1e-5


def test_tf_mode_is_one_asymmetric_linear_resize_per_upsampling(exported):
    graph = onnx.load_from_string(exported["tf"]).graph
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    assert len(resizes) == 2
    for node in resizes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["coordinate_transformation_mode"] == b"asymmetric"
        assert attrs["mode"] == b"linear"


def test_static_export_fixes_the_input_shape_and_opset(state, tmp_path):
    out = tmp_path / "g.onnx"
    export_onnx(tf_generator(state, "tf"), out, opset=13, size=(40, 44))
    model = onnx.load(out)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 40, 44]
    assert model.opset_import[0].version == 13
    with pytest.raises(ConfigError, match="opset 10"):
        export_onnx(tf_generator(state, "tf"), opset=10)


@pytest.mark.parametrize("mode", ["tf", "align_corners"])
def test_torchscript_matches_pytorch_at_another_size(state, tmp_path, mode):
    g = tf_generator(state, mode)
    path = export_torchscript(g, tmp_path / "g.pt", size=(32, 32))
    loaded = torch.jit.load(str(path))
    x = torch.rand(2, 3, 45, 38) * 2 - 1
    with torch.inference_mode():
        want, got = g(x), loaded(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5


def test_exports_replace_a_file_only_when_asked(state, tmp_path):
    g = tf_generator(state, "tf")
    writers = {"onnx": lambda path, **kw: export_onnx(g, path, size=(16, 16), **kw),
               "torchscript": lambda path, **kw: export_torchscript(g, path, size=(16, 16), **kw)}  # fmt: skip
    for name, write in writers.items():
        existing = tmp_path / name
        existing.write_bytes(b"keep me")
        with pytest.raises(OutputExistsError, match=f"^{existing} already exists; overwrite it or choose another name$"):
            write(existing)
        assert existing.read_bytes() == b"keep me"
        write(existing, overwrite=True)
        assert existing.read_bytes() != b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(writers)  # no temporary left behind


@pytest.mark.slow
def test_stylizer_onnxruntime_backend_matches_torch(weights, testdata):
    photo = np.asarray(Image.open(testdata / "face_a.jpg").reduce(8))  # 88 x 88
    torch_out = Stylizer(weights, device="cpu", progress=False).stylize_arrays([photo])[0]
    ort = Stylizer(weights, device="cpu", progress=False, backend="onnxruntime")
    assert (ort.backend, ort.precision) == ("onnxruntime", "float32")
    ort_out = ort.stylize_arrays([photo])[0]
    assert np.abs(ort_out.astype(int) - torch_out.astype(int)).max() <= 1


@pytest.mark.slow
def test_int8_runs_reports_its_precision_and_stays_close(weights, testdata):
    with pytest.raises(ConfigError, match="precision 'int8' runs int8 on onnxruntime, not on backend 'torch'"):
        Stylizer(weights, device="cpu", progress=False, backend="torch", precision="int8")
    photo = testdata / "street.jpg"
    small = Image.open(photo).reduce(4)  # 320 x 168: one calibration crop, quick
    s = Stylizer(weights, device="cpu", progress=False, backend="onnxruntime", precision="int8", calibration=[small])
    assert s.precision == "int8" and s.model.precision == "int8"
    x = torch.nn.functional.interpolate(to_tensor(load_image(photo).pixels), size=(84, 160), mode="area")
    with torch.inference_mode():
        want = Stylizer(weights, device="cpu", progress=False).model(x)
    got = s.model(x)
    psnr = 10 * torch.log10(4 / ((got - want) ** 2).mean()).item()
    assert 20 < psnr < 100  # random weights: a loose sanity bound; the benchmark measures the real cost


@pytest.mark.slow
def test_cli_export_onnx_and_torchscript(weights, tmp_path, state, capsys):
    onnx_path, ts_path = tmp_path / "out" / "g.onnx", tmp_path / "g.pt"
    assert main(["export", "--onnx", str(onnx_path), "--weights", weights, "--dynamic", "--size", "32", "32", "--opset", "14"]) == 0
    assert "align_corners upsampling, float32" in capsys.readouterr().err
    assert onnx.load(onnx_path).opset_import[0].version == 14
    assert main(["export", "--torchscript", str(ts_path), "--weights", weights, "--size", "32", "32", "-q"]) == 0
    g = Generator(upsample="align_corners", norm_eps=1e-5)
    g.load_state_dict(state)
    x = torch.rand(1, 3, 36, 44) * 2 - 1
    with torch.inference_mode():
        want = g.eval()(x)
    assert (OnnxRuntimeModel(onnx_path)(x) - want).abs().max().item() <= 1e-4
    assert (torch.jit.load(str(ts_path))(x) - want).abs().max().item() <= 1e-5
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["g.onnx"]  # no temporary left behind


@pytest.mark.slow
def test_cli_stylize_says_which_precision_ran(weights, tmp_path, testdata, capsys):
    src = tmp_path / "small.png"
    Image.open(testdata / "face_b.jpg").reduce(8).save(src)
    out = tmp_path / "anime.png"
    assert main(["stylize", str(src), "-o", str(out), "--weights", weights, "--precision", "int8", "--device", "cpu"]) == 0
    assert "running int8 on onnxruntime" in capsys.readouterr().err
    assert Image.open(out).size == (88, 88)
