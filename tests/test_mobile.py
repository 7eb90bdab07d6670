"""Phone exports (the mobile extra): each file run by its own runtime against PyTorch on a real photo."""

import sys

import pytest
import torch
import torch.nn.functional as F

from animegan2.cli import main
from animegan2.errors import MissingDependencyError
from animegan2.export import export_metadata
from animegan2.imageio import load_image, to_tensor
from animegan2.mobile import ExecuTorchModel, convert_coreml, export_executorch, upsample2x_tf_ops
from animegan2.resize import upsample2x_tf
from tests.conftest import tf_generator
from tests.reference import random_state_dict

MODES = ("tf", "align_corners", "half_pixel")
# float32 in both runtimes, kernels summing in other orders: ~2e-5 measured on these graphs;
# the bound for float32 is 1e-3.
FLOAT32_TOL = 1e-3


@pytest.fixture(scope="module")
def state():
    return random_state_dict(seed=5)


@pytest.fixture(scope="module")
def photos(testdata):
    """The street photo at two sizes (multiples of 4, as the tf/half_pixel files need)."""
    x = to_tensor(load_image(testdata / "street.jpg").pixels)
    return [F.interpolate(x, size=size, mode="area") for size in [(84, 160), (64, 120)]]


def test_tf_upsampling_from_converter_ops_equals_the_interleave():
    x = torch.randn(2, 8, 7, 5)
    assert (upsample2x_tf_ops(x) - upsample2x_tf(x)).abs().max().item() <= 4.8e-7  # 4 equal terms: 2 ulp


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_executorch_matches_pytorch_at_two_sizes_with_one_dynamic_program(state, photos, tmp_path, mode):
    g = tf_generator(state, mode)
    path = export_executorch(g, tmp_path / "g.pte", size=(32, 32), metadata=export_metadata(g, "random", "test only"))
    runner = ExecuTorchModel(path)
    for x in photos:
        with torch.inference_mode():
            want = g(x)
        got = runner(x)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= FLOAT32_TOL
    meta = runner.metadata
    assert (meta["weights"], meta["upsample"], meta["norm_eps"]) == ("random", mode, "1e-12")


@pytest.mark.slow
def test_coreml_program_ops_io_and_metadata(state):
    g = tf_generator(state, "tf")
    ml = convert_coreml(g, size=(32, 32), precision="float16", metadata=export_metadata(g, "random", "test only"))
    spec = ml.get_spec()
    (inp,), (out,) = spec.description.input, spec.description.output
    assert (inp.name, out.name) == ("image", "anime")
    ranges = inp.type.multiArrayType.shapeRange.sizeRanges
    assert [(r.lowerBound, r.upperBound) for r in ranges][2:] == [(8, 4096), (8, 4096)]
    blocks = spec.mlProgram.functions["main"].block_specializations.values()
    ops = {op.type for block in blocks for op in block.operations}
    assert {"conv", "upsample_nearest_neighbor", "avg_pool", "tanh"} <= ops
    assert not {op for op in ops if "bilinear" in op or "resize" in op}  # TF mode needs no resampling op
    assert ml.user_defined_metadata["upsample"] == "tf" and ml.user_defined_metadata["norm_eps"] == "1e-12"
    assert ml.license == "test only"


def test_cli_export_prints_the_licence_of_non_commercial_weights_and_records_it(state, tmp_path, capsys, monkeypatch):
    import onnx

    import animegan2.zoo as zoo

    weights = tmp_path / "nc.pt"
    torch.save(state, weights)
    note = "non-commercial use only; commercial use needs the authors' written authorization"
    real = zoo.load_state_dict
    monkeypatch.setattr(zoo, "load_state_dict", lambda *a, **k: (lambda s, m: (s, type(m)(**{**m.__dict__, "license": note})))(*real(*a, **k)))
    # ONNX: the quickest export; every format takes the same metadata and prints the same note.
    assert main(["export", "--onnx", str(tmp_path / "g.onnx"), "--weights", str(weights), "--size", "32", "32"]) == 0
    err = capsys.readouterr().err
    assert "wrote" in err and f"licence note for nc: {note}" in err
    props = {p.key: p.value for p in onnx.load(tmp_path / "g.onnx").metadata_props}
    assert (props["license"], props["weights"]) == (note, "nc")


def test_missing_extra_is_one_line_naming_it(tmp_path, capsys, monkeypatch, state):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # what an import finds when it is not installed
    weights = tmp_path / "w.pt"
    torch.save(state, weights)
    assert main(["export", "--coreml", str(tmp_path / "g.mlpackage"), "--weights", str(weights)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'animegan2[mobile]'" in err
    with pytest.raises(MissingDependencyError, match=r"animegan2\[mobile\]"):
        convert_coreml(tf_generator(state, "tf"))


@pytest.mark.parametrize("mode", MODES)
def test_litert_matches_pytorch(state, photos, tmp_path, mode):
    # The litert extra cannot share an environment with the test extra (see setup.py): this runs
    # where litert-torch is installed, e.g. `pip install -e .[litert]` in a separate venv.
    pytest.importorskip("litert_torch", reason="the litert extra is not installed (it conflicts with gradio's pydantic)")
    from animegan2.mobile import LiteRTModel, export_litert, read_litert_metadata

    g = tf_generator(state, mode)
    sizes = photos if mode == "tf" else photos[:1]  # litert-torch converts fixed sizes: one file per size
    for x in sizes:
        path = export_litert(g, tmp_path / "g.tflite", size=tuple(x.shape[-2:]), metadata=export_metadata(g, "random", "test only"))
        with torch.inference_mode():
            want = g(x)
        got = LiteRTModel(path)(x)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= FLOAT32_TOL
    meta = read_litert_metadata(path)
    assert (meta["weights"], meta["upsample"]) == ("random", mode)
    assert meta["input_sizes"].startswith(f"fixed input 1 x 3 x {x.shape[-2]} x {x.shape[-1]}")
