"""Precision choice and reduced-precision paths: ``animegan2.precision`` under mocked
capabilities, refusals, the CLI's line naming the path, and each precision's output against
float32 on a real photo with image-like weights."""

from __future__ import annotations

import types

import pytest
import torch
from PIL import Image

import animegan2.precision as precision
import animegan2.stylize as stylize_module
from animegan2.cli import main
from animegan2.errors import ConfigError
from animegan2.model import Generator
from animegan2.precision import Capabilities, LowPrecisionModel, choose, detect
from animegan2.stylize import Stylizer
from tests.reference import psnr, smooth_state_dict

X86 = {"cpu_name": "test CPU", "architecture": "x86_64", "avx2": True}
AMX = Capabilities(**X86, avx512=True, avx512_bf16=True, amx_bf16=True, vnni=True, onnxruntime=True)
ZEN5 = Capabilities(**X86, avx512=True, avx512_bf16=True, vnni=True, onnxruntime=True)
VNNI_ONLY = Capabilities(**X86, avx512=True, vnni=True, onnxruntime=True)
PLAIN = Capabilities(**X86)
CUDA = Capabilities(device="cuda", gpu_bf16=True, onnxruntime=True)


@pytest.mark.parametrize(
    ("caps", "want", "backend"),
    [
        (AMX, "bf16", "torch"),
        (ZEN5, "bf16", "torch"),  # measured: bf16 beats ONNX Runtime's int8 on AVX-512 BF16 without AMX (README)
        (Capabilities(**X86, avx512=True, avx512_bf16=True, vnni=True), "bf16", "torch"),
        (VNNI_ONLY, "int8", "onnxruntime"),
        (Capabilities(**X86, vnni=True, onnxruntime=False), "fp32", "torch"),  # int8 needs ONNX Runtime
        (PLAIN, "fp32", "torch"),
        (Capabilities(cpu_name="Apple M1", architecture="arm64"), "fp32", "torch"),
        (CUDA, "fp16", "torch"),
        (Capabilities(device="mps"), "fp16", "torch"),
    ],
)
def test_fast_picks_by_capabilities(caps, want, backend):
    plan = choose("fast", caps)
    assert (plan.precision, plan.backend, plan.requested) == (want, backend, "fast")
    long_name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}[want]
    assert plan.describe().startswith(f"{long_name} on {backend} ({caps.device}; fast: ")


@pytest.mark.parametrize("caps", [AMX, ZEN5, VNNI_ONLY, PLAIN, CUDA])
def test_exact_is_float32_on_torch_everywhere(caps):
    for name in ("exact", "fp32", "float32"):
        plan = choose(name, caps)
        assert (plan.precision, plan.backend) == ("fp32", "torch")
    assert choose("exact", caps, backend="onnxruntime").backend == "onnxruntime"


@pytest.mark.parametrize(
    ("name", "caps", "message"),
    [
        ("fp16", ZEN5, "fp16 needs a GPU or a CPU with AVX-512 FP16/AMX-FP16, which this CPU (test CPU: AVX2, AVX-512, AVX-512 BF16, VNNI) lacks"),
        ("bf16", Capabilities(cpu_name="old", architecture="arm64"), "bf16 needs a CPU with AVX2/AVX-512 or ARM BF16"),
        ("bf16", Capabilities(device="cuda"), "bf16 needs a CPU with AVX2/AVX-512 or ARM BF16, or a GPU with bfloat16; device 'cuda' has none"),
        ("int8", CUDA, "int8 runs on the CPU (ONNX Runtime), not on device 'cuda'"),
        ("int8", Capabilities(**X86, vnni=True), "int8 runs on ONNX Runtime, which is not installed: pip install 'animegan2[onnx]'"),
        ("int4", ZEN5, "precision must be one of exact, fast, fp32, bf16, fp16, int8, got 'int4'"),
    ],
)
def test_explicit_precisions_refuse_where_the_device_cannot_run_them(name, caps, message):
    with pytest.raises(ConfigError) as refused:
        choose(name, caps)
    assert str(refused.value).startswith(message)


def test_explicit_precisions_run_where_the_device_can():
    assert choose("bf16", PLAIN).precision == "bf16"  # slowly, but it runs on any AVX2 CPU
    assert choose("fp16", Capabilities(**X86, avx512_fp16=True)).precision == "fp16"
    assert choose("fp16", CUDA).precision == "fp16" and choose("bf16", CUDA).precision == "bf16"
    assert choose("int8", Capabilities(**X86, onnxruntime=True)).backend == "onnxruntime"


def test_backend_must_be_one_the_precision_runs_on():
    with pytest.raises(ConfigError, match="precision 'bf16' runs bfloat16 on torch, not on backend 'onnxruntime'"):
        choose("bf16", ZEN5, backend="onnxruntime")
    with pytest.raises(ConfigError, match="precision 'int8' runs int8 on onnxruntime, not on backend 'torch'"):
        choose("int8", ZEN5, backend="torch")
    assert choose("fast", ZEN5, backend="torch").precision == "bf16"  # fast skips what the backend cannot run
    assert choose("fast", AMX, backend="onnxruntime").precision == "int8"
    assert choose("fast", PLAIN, backend="onnxruntime").describe() == "float32 on onnxruntime (cpu; fast: no AMX, AVX-512 BF16 or VNNI)"


def test_detect_reads_what_torch_reports(monkeypatch):
    reported = {"cpu_name": "Xeon", "architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bf16": True,
                "amx_bf16": True, "amx_tile": True, "avx512_vnni": False, "avx_vnni": True}  # fmt: skip
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: types.MappingProxyType(reported))
    caps = detect("cpu")
    assert (caps.cpu_name, caps.device, caps.amx_bf16, caps.avx512_bf16, caps.vnni, caps.avx512_fp16) == ("Xeon", "cpu", True, True, True, False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: types.MappingProxyType({**reported, "amx_tile": False}))
    assert not detect("cpu").amx_bf16  # AMX's bf16 instructions need its tile unit
    assert detect("cpu").features() == "AVX2, AVX-512, AVX-512 BF16, VNNI"


@pytest.fixture(scope="module")
def smooth_generator() -> Generator:
    g = Generator(upsample="align_corners", norm_eps=1e-5)
    g.load_state_dict(smooth_state_dict(0))
    return g.eval()


@pytest.fixture(scope="module")
def photos(testdata) -> list[torch.Tensor]:
    """The shared photos, long side 96 (sides cropped to multiples of 4), 1 x 3 x H x W in [-1, 1]."""
    from animegan2.imageio import load_image, to_tensor

    out = []
    for path in sorted(testdata.glob("*.jpg")):
        x = to_tensor(load_image(path).pixels)
        scale = 96 / max(x.shape[-2:])
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True)
        out.append(x[..., : x.shape[-2] // 4 * 4, : x.shape[-1] // 4 * 4])
    return out


# What each precision keeps against float32 (min over the four photos at long side 96).
# bf16 keeps 8 significant bits: each stored activation is off by ~2^-9 of itself, and over
# the network's ~20 normalised layers the output (std ~0.5) by ~0.5 * 2^-9 * sqrt(20),
# about 4e-3: 10 log10(4 / 4e-3^2) ~ 54 dB (measured 53.5-56.3). fp16 keeps 3 bits more,
# +18 dB (measured 71.5-73.6). Both must hold the fast bar, 40 dB. int8 rounds activations
# to 1/255 of their calibrated range: 40-43 dB on trained-like proxy weights (README), and
# on these synthetic ones 36.8-41.0, so 35 here.
@pytest.mark.slow
@pytest.mark.parametrize(("name", "bar"), [("bf16", precision.FAST_MIN_PSNR), ("fp16", precision.FAST_MIN_PSNR), ("int8", 35.0)])
def test_each_precision_keeps_its_psnr_on_real_photos(smooth_generator, photos, name, bar):
    exact = Stylizer(smooth_generator, device="cpu", progress=False)
    if name == "int8":
        model = Stylizer(smooth_generator, device="cpu", precision="int8", calibration=photos, progress=False).model
    else:  # fp16 is refused on CPUs without AVX-512 FP16, but runs (slowly) on any
        model = LowPrecisionModel(smooth_generator, name)
    with torch.inference_mode():
        scores = [psnr(model(x), exact.model(x)) for x in photos]
    assert min(scores) >= bar, scores


@pytest.mark.slow
def test_exact_stays_the_default_and_unchanged(smooth_generator, photos):
    x = photos[1]
    default, exact = Stylizer(smooth_generator, device="cpu"), Stylizer(smooth_generator, device="cpu", precision="exact")
    assert default.plan == exact.plan and (default.precision, default.backend) == ("float32", "torch")
    assert default.model is smooth_generator  # no copy, no wrapper: the float32 path as it was
    with torch.inference_mode():
        assert torch.equal(default.stylize(x), smooth_generator(x)) and torch.equal(exact.stylize(x), default.stylize(x))


def test_stylizer_runs_what_fast_picks(smooth_generator, photos, monkeypatch):
    monkeypatch.setattr(stylize_module, "detect", lambda device: AMX)
    s = Stylizer(smooth_generator, device="cpu", precision="fast")
    assert s.plan.describe() == "bfloat16 on torch (cpu; fast: AMX)"
    assert isinstance(s.model, LowPrecisionModel) and s.model.model is not smooth_generator  # a bf16 copy
    assert next(smooth_generator.parameters()).dtype == torch.float32  # the caller's model is left as it was
    monkeypatch.setattr(stylize_module, "detect", lambda device: PLAIN)
    assert Stylizer(smooth_generator, device="cpu", precision="fast").model is smooth_generator


def test_stylizer_dtype_is_the_older_spelling_of_precision(smooth_generator):
    assert Stylizer(smooth_generator, device="cpu", dtype="bf16").plan.precision == "bf16"
    with pytest.raises(ConfigError, match="dtype 'bf16' and precision 'int8' disagree: give precision alone"):
        Stylizer(smooth_generator, device="cpu", dtype="bf16", precision="int8")
    with pytest.raises(ConfigError, match="memory='low' runs in float32 only, not bf16: use precision='exact' with it"):
        Stylizer(smooth_generator, device="cpu", precision="bf16", memory="low")



def test_fast_with_tiles_picks_among_the_pytorch_paths(smooth_generator, monkeypatch):
    monkeypatch.setattr(stylize_module, "detect", lambda device: VNNI_ONLY)  # fast is int8, on ONNX Runtime
    tiled = Stylizer(smooth_generator, device="cpu", precision="fast", memory="tiled")
    assert tiled.plan.describe() == "float32 on torch (cpu; fast: int8 runs on onnxruntime, not on backend torch)"
    monkeypatch.setattr(stylize_module, "detect", lambda device: ZEN5)
    assert Stylizer(smooth_generator, device="cpu", precision="fast", memory="tiled").plan.precision == "bf16"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "smooth.pt"
    torch.save(smooth_state_dict(0), path)
    return str(path)


@pytest.mark.slow
def test_cli_says_which_path_ran_and_quiet_silences_it(weights, testdata, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(stylize_module, "detect", lambda device: AMX)
    src = tmp_path / "small.png"
    Image.open(testdata / "face_a.jpg").reduce(8).save(src)
    base = ["--weights", weights, "--device", "cpu"]
    assert main(["stylize", str(src), "-o", str(tmp_path / "a.png"), *base, "--precision", "fast"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "animegan2: running bfloat16 on torch (cpu; fast: AMX)"
    assert main(["face", str(testdata / "face_a.jpg"), "-o", str(tmp_path / "f.png"), *base, "--size", "64", "--precision", "fast"]) == 0
    assert "animegan2: running bfloat16 on torch (cpu; fast: AMX)" in capsys.readouterr().err
    assert main(["stylize", str(src), "-o", str(tmp_path / "b.png"), *base, "--precision", "exact"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == "animegan2: running float32 on torch (cpu)"
    assert main(["stylize", str(src), "-o", str(tmp_path / "c.png"), *base, "--precision", "fast", "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert Image.open(tmp_path / "a.png").size == Image.open(src).size


@pytest.mark.slow
def test_cli_video_says_which_path_ran(weights, tmp_path, capsys, monkeypatch):
    from tests.clips import make_clip

    monkeypatch.setattr(stylize_module, "detect", lambda device: PLAIN)
    clip = make_clip(tmp_path / "clip.mp4", audio=False, n=4)
    assert main(["video", str(clip), "-o", str(tmp_path / "out.mp4"), "--weights", weights, "--device", "cpu", "--precision", "fast"]) == 0
    assert "animegan2: running float32 on torch (cpu; fast: no AMX, AVX-512 BF16 or VNNI)" in capsys.readouterr().err


def test_cli_refuses_a_precision_the_device_cannot_run(weights, testdata, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(stylize_module, "detect", lambda device: ZEN5)
    out = tmp_path / "x.png"
    for command in (["stylize", str(testdata / "face_a.jpg")], ["face", str(testdata / "face_a.jpg")]):
        assert main([*command, "-o", str(out), "--weights", weights, "--device", "cpu", "--precision", "fp16"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("animegan2: error: fp16 needs a GPU or a CPU with AVX-512 FP16/AMX-FP16") and err.count("\n") == 1
        assert not out.exists()


def test_models_that_cannot_run_a_precision(monkeypatch):
    from animegan2.model_v1 import GeneratorV1

    monkeypatch.setattr(stylize_module, "detect", lambda device: VNNI_ONLY)
    graph = torch.nn.Tanh()  # no PyTorch weights, as a published ONNX graph (AnimeGANv3) has none
    with pytest.raises(ConfigError, match="^Tanh runs as published, in float32: bf16 needs a PyTorch network; use precision 'exact'$"):
        Stylizer(graph, device="cpu", precision="bf16")
    with pytest.raises(ConfigError, match="^int8 quantizes the AnimeGANv2 generator only, not GeneratorV1; use precision"):
        Stylizer(GeneratorV1(), device="cpu", precision="int8")
    fast = Stylizer(GeneratorV1(), device="cpu", precision="fast")  # VNNI picks int8, which v1 cannot run
    assert fast.plan.describe() == "float32 on torch (cpu; fast: GeneratorV1 runs in float32 only)"
    monkeypatch.setattr(stylize_module, "detect", lambda device: ZEN5)
    assert Stylizer(GeneratorV1(), device="cpu", precision="fast").plan.describe() == "bfloat16 on torch (cpu; fast: AVX-512 BF16, no AMX)"
    assert Stylizer(graph, device="cpu", precision="fast").plan.precision == "fp32"
