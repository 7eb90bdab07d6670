"""Phone exports (the mobile extra): each file run by its own runtime against PyTorch on a real photo."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from animegan2.cli import main
from animegan2.errors import MissingDependencyError, OutputExistsError
from animegan2.export import export_metadata
from animegan2.imageio import load_image, to_tensor
from animegan2.mobile import (
    LITERT_PRECISIONS, ExecuTorchModel, LiteRTModel, convert_coreml, export_coreml, export_executorch, read_litert_metadata,
    upsample2x_tf_ops,
)  # fmt: skip
from animegan2.model import Generator
from animegan2.resize import upsample2x_tf
from tests.conftest import REPO, tf_generator
from tests.reference import psnr, random_state_dict, smooth_state_dict

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


def test_coreml_export_keeps_an_existing_package(state, tmp_path):
    existing = tmp_path / "g.mlpackage"
    existing.mkdir()
    (existing / "Manifest.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="g.mlpackage already exists; overwrite it or choose another name"):
        export_coreml(tf_generator(state, "tf"), existing)  # refused before converting
    assert [p.name for p in existing.iterdir()] == ["Manifest.json"]


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


# LiteRT's converter cannot share the test environment (setup.py, extra litert):
# scripts/setup_dev.sh makes this venv, the files are converted there and run here by
# ai-edge-litert (which installs anywhere).
LITERT_PYTHON = REPO / ".venv-litert" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
# One conversion per mode, written in every precision (a conversion takes most of a minute).
CONVERT_IN_EVERY_PRECISION = """
import sys, torch
from animegan2.export import export_metadata
from animegan2.mobile import LITERT_PRECISIONS, convert_litert, export_litert
from tests.conftest import tf_generator
weights, mode, out, size = sys.argv[1], sys.argv[2], sys.argv[3], (int(sys.argv[4]), int(sys.argv[5]))
g = tf_generator(torch.load(weights, weights_only=True), mode)
flatbuffer, metadata = convert_litert(g, size=size), export_metadata(g, "smooth", "test only")
for precision in LITERT_PRECISIONS:
    export_litert(flatbuffer, f"{out}/{precision}.tflite", size=size, precision=precision, metadata=metadata)
"""
# Against float32 PyTorch with image-like weights. float16 weights are each off by up to
# 2^-11 of themselves (rms ~2^-11/sqrt(3)); over ~20 normalised layers the output (std ~0.5)
# moves by ~0.5 * 2.8e-4 * sqrt(20) ~ 6e-4: 10 log10(4 / 6e-4^2) ~ 70 dB, so 60 leaves room.
# int8 rounds weights and each convolution's input to 1/255 of their range: the 35 dB.
PSNR_BARS = {"float16": 60.0, "int8": 35.0}


def _in_litert_env(*args: str) -> None:
    assert LITERT_PYTHON.is_file(), f"{LITERT_PYTHON} is missing: run scripts/setup_dev.sh (it makes LiteRT's venv)"
    done = subprocess.run(
        [str(LITERT_PYTHON), *args], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def smooth(tmp_path_factory):
    """Image-like weights (see tests/reference.py) and a file of them."""
    state = smooth_state_dict(0)
    path = tmp_path_factory.mktemp("smooth") / "smooth.pt"
    torch.save(state, path)
    return state, path


@pytest.mark.parametrize("mode", MODES)
def test_litert_matches_pytorch_in_every_precision(smooth, photos, tmp_path, mode):
    state, weights = smooth
    x = photos[0]
    _in_litert_env("-c", CONVERT_IN_EVERY_PRECISION, str(weights), mode, str(tmp_path), *map(str, x.shape[-2:]))
    with torch.inference_mode():
        want = tf_generator(state, mode)(x)
    got = {precision: LiteRTModel(tmp_path / f"{precision}.tflite")(x) for precision in LITERT_PRECISIONS}
    assert got["float32"].shape == want.shape
    assert (got["float32"] - want).abs().max().item() <= FLOAT32_TOL
    scores = {precision: psnr(got[precision], want) for precision in PSNR_BARS}
    assert all(scores[precision] >= bar for precision, bar in PSNR_BARS.items()), scores
    sizes = {precision: (tmp_path / f"{precision}.tflite").stat().st_size for precision in LITERT_PRECISIONS}
    assert sizes["float16"] < 0.55 * sizes["float32"] and sizes["int8"] < 0.3 * sizes["float32"], sizes
    meta = read_litert_metadata(tmp_path / "int8.tflite")
    assert (meta["weights"], meta["upsample"], meta["norm_eps"], meta["precision"]) == ("smooth", mode, "1e-12", "int8")
    assert meta["input_sizes"].startswith(f"fixed input 1 x 3 x {x.shape[-2]} x {x.shape[-1]}")


def test_cli_litert_export_at_another_size(smooth, photos, tmp_path):
    state, weights = smooth
    x, out = photos[1], tmp_path / "g.tflite"
    _in_litert_env("-m", "animegan2", "export", "--litert", str(out), "--weights", str(weights), "--upsample", "tf",
                   "--size", *map(str, x.shape[-2:]), "-q")  # fmt: skip
    g = Generator(upsample="tf", norm_eps=1e-5)  # a .pt file gets the published PyTorch weights' epsilon
    g.load_state_dict(state)
    with torch.inference_mode():
        want = g.eval()(x)
    got = LiteRTModel(out)(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= FLOAT32_TOL
    assert read_litert_metadata(out)["norm_eps"] == "1e-05"


def test_cli_litert_precisions_and_the_missing_converter(weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # as in the test environment
    out = tmp_path / "g.tflite"
    for precision in ("float16", "int8"):
        assert main(["export", "--litert", str(out), "--weights", weights, "--precision", precision]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "pip install 'animegan2[litert]'" in err
    assert main(["export", "--executorch", str(out), "--weights", weights, "--precision", "int8"]) == 1
    assert capsys.readouterr().err == "animegan2: error: --executorch export takes --precision float32, not int8\n"
    assert not out.exists()
