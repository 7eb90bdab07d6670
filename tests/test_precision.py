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
from tests.reference import random_state_dict

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
        (ZEN5, "bf16", "torch"),  # measured: bf16 beats ONNX Runtime int8 without AMX (README)
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
    assert plan.describe().startswith(f"{ {'fp32': 'float32', 'bf16': 'bfloat16', 'fp16': 'float16', 'int8': 'int8'}[want]} on {backend} (")
    assert "fast: " in plan.describe()


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
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        choose(name, caps)


def test_explicit_precisions_run_where_the_device_can():
    assert choose("bf16", PLAIN).precision == "bf16"  # slowly, but it runs on any AVX2 CPU
    assert choose("fp16", Capabilities(**X86, avx512_fp16=True)).precision == "fp16"
    assert choose("fp16", CUDA).precision == "fp16" and choose("bf16", CUDA).precision == "bf16"
    assert choose("int8", PLAIN.__class__(**X86, onnxruntime=True)).backend == "onnxruntime"


def test_backend_must_be_one_the_precision_runs_on():
    with pytest.raises(ConfigError, match="precision 'bf16' runs bfloat16 on torch, not on backend 'onnxruntime'"):
        choose("bf16", ZEN5, backend="onnxruntime")
    with pytest.raises(ConfigError, match="precision 'int8' runs int8 on onnxruntime, not on backend 'torch'"):
        choose("int8", ZEN5, backend="torch")


def test_detect_reads_what_torch_reports(monkeypatch):
    reported = {"cpu_name": "Xeon", "architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bf16": True,
                "amx_bf16": True, "amx_tile": True, "avx512_vnni": False, "avx_vnni": True}  # fmt: skip
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: types.MappingProxyType(reported))
    caps = detect("cpu")
    assert (caps.cpu_name, caps.device, caps.amx_bf16, caps.avx512_bf16, caps.vnni, caps.avx512_fp16) == ("Xeon", "cpu", True, True, True, False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: types.MappingProxyType({**reported, "amx_tile": False}))
    assert not detect("cpu").amx_bf16  # AMX's bf16 instructions need its tile unit
    assert detect("cpu").features() == "AVX2, AVX-512, AVX-512 BF16, VNNI"
