"""Which numeric precision runs where: what the device offers, as torch reports it, and
for ``precision="fast"`` the fastest path that keeps PSNR >= :data:`FAST_MIN_PSNR` dB
against float32.

:func:`detect` reads the device's features (``torch.cpu.get_capabilities()``, so it works
on Linux, Windows and macOS alike); :func:`choose` is a pure function of them, so the
choice is testable with any capabilities.

>>> choose("fast", Capabilities(cpu_name="Xeon", avx2=True, avx512=True, avx512_bf16=True, amx_bf16=True, vnni=True)).precision
'bf16'
>>> choose("fast", Capabilities(cpu_name="Zen 5", avx2=True, avx512=True, avx512_bf16=True, vnni=True)).precision
'bf16'
>>> choose("fast", Capabilities(cpu_name="Ice Lake", avx2=True, avx512=True, vnni=True, onnxruntime=True)).precision
'int8'
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import ConfigError

#: What ``precision=`` accepts: ``exact`` (float32, the default path) and ``fast`` (the
#: fastest path here that keeps :data:`FAST_MIN_PSNR`), or one precision by name.
PRECISIONS = ("exact", "fast", "fp32", "bf16", "fp16", "int8")
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
FAST_MIN_PSNR = 40.0
_LONG_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}
_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Capabilities:
    """What a device offers for reduced precision (``False`` where unknown).

    ``vnni`` is AVX-512 VNNI or AVX-VNNI; ``avx512_fp16`` is AVX-512 FP16 or AMX-FP16;
    ``arm_bf16`` the ARMv8.6 BF16 extension; ``gpu_bf16`` a CUDA/MPS device with bfloat16.
    """

    device: str = "cpu"
    cpu_name: str = ""
    architecture: str = ""
    avx2: bool = False
    avx512: bool = False
    avx512_bf16: bool = False
    avx512_fp16: bool = False
    amx_bf16: bool = False
    vnni: bool = False
    arm_bf16: bool = False
    gpu_bf16: bool = False
    onnxruntime: bool = False

    def features(self) -> str:
        """The reduced-precision features present, e.g. ``"AVX2, AVX-512, AVX-512 BF16, VNNI"``."""
        names = {
            "avx2": "AVX2", "avx512": "AVX-512", "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16",
            "amx_bf16": "AMX", "vnni": "VNNI", "arm_bf16": "ARM BF16",
        }  # fmt: skip
        present = [label for key, label in names.items() if getattr(self, key)]
        return ", ".join(present) or "none of AVX2, AVX-512, AMX, VNNI"


def detect(device: torch.device | str = "cpu") -> Capabilities:
    """The capabilities of ``device`` (and of this machine's CPU), from what torch reports."""
    device = torch.device(device)
    caps = dict(torch.cpu.get_capabilities()) if hasattr(torch.cpu, "get_capabilities") else {}
    gpu_bf16 = False
    if device.type == "cuda":
        gpu_bf16 = torch.cuda.is_bf16_supported()
    elif device.type == "mps":
        gpu_bf16 = torch.backends.mps.is_macos_or_newer(14, 0)  # MPS has bfloat16 from macOS 14
    return Capabilities(
        device=device.type,
        cpu_name=str(caps.get("cpu_name", "")),
        architecture=str(caps.get("architecture", "")),
        avx2=bool(caps.get("avx2")),
        avx512=bool(caps.get("avx512_f")),
        avx512_bf16=bool(caps.get("avx512_bf16")),
        avx512_fp16=bool(caps.get("avx512_fp16") or caps.get("amx_fp16")),
        amx_bf16=bool(caps.get("amx_bf16") and caps.get("amx_tile")),
        vnni=bool(caps.get("avx512_vnni") or caps.get("avx_vnni")),
        arm_bf16=bool(caps.get("bf16")),
        gpu_bf16=gpu_bf16,
        onnxruntime=importlib.util.find_spec("onnxruntime") is not None,
    )


@dataclass(frozen=True)
class Plan:
    """The path a Stylizer runs: ``precision`` (``fp32``/``bf16``/``fp16``/``int8``) on
    ``backend`` (``torch``/``onnxruntime``), chosen for ``requested`` because of ``reason``."""

    requested: str
    precision: str
    backend: str
    device: str
    reason: str = ""

    @property
    def name(self) -> str:
        """The precision's long name: ``float32``, ``bfloat16``, ``float16`` or ``int8``."""
        return _LONG_NAMES[self.precision]

    def describe(self) -> str:
        """One line saying which path runs, e.g. ``"int8 on onnxruntime (cpu; fast: VNNI)"``."""
        detail = self.device + (f"; {self.requested}: {self.reason}" if self.requested == "fast" else "")
        return f"{self.name} on {self.backend} ({detail})"


def normalize(precision: str) -> str:
    """A precision name in its canonical spelling (``"float32"`` -> ``"fp32"``)."""
    name = _ALIASES.get(str(precision).lower(), str(precision).lower())
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return name


def _fast(caps: Capabilities) -> list[tuple[str, str]]:
    """(precision, reason) candidates for ``fast``, fastest first; float32 always closes it."""
    if caps.device == "cuda":
        return [("fp16", "CUDA GPU")]
    if caps.device == "mps":
        return [("fp16", "Apple GPU")]
    candidates = []
    if caps.amx_bf16:
        candidates.append(("bf16", "AMX"))
    elif caps.avx512_bf16:
        # Measured on a quiet Zen 5 (AVX-512 BF16 and VNNI, no AMX), 512x512, 2 threads:
        # bfloat16 0.24x of the baseline at 62 dB, ONNX Runtime's int8 0.32x at 41 dB
        # (README, "Precision: exact and fast").
        candidates.append(("bf16", "AVX-512 BF16, no AMX"))
    if caps.vnni and caps.onnxruntime:
        candidates.append(("int8", "VNNI"))
    why = "no AMX, AVX-512 BF16 or VNNI"
    if caps.vnni and not caps.onnxruntime:
        why = "VNNI, but int8 needs ONNX Runtime: pip install 'animegan2[onnx]'"
    return [*candidates, ("fp32", why)]


def _refusal(precision: str, caps: Capabilities) -> str | None:
    """Why ``caps`` cannot run ``precision``, or ``None`` if it can."""
    where = f"this CPU ({caps.cpu_name or 'unknown'}: {caps.features()})" if caps.device == "cpu" else f"device {caps.device!r}"
    if precision == "bf16":
        ok = caps.gpu_bf16 if caps.device != "cpu" else caps.avx2 or caps.avx512 or caps.arm_bf16
        return None if ok else f"bf16 needs a CPU with AVX2/AVX-512 or ARM BF16, or a GPU with bfloat16; {where} has none"
    if precision == "fp16":
        ok = caps.device != "cpu" or caps.avx512_fp16
        return None if ok else f"fp16 needs a GPU or a CPU with AVX-512 FP16/AMX-FP16, which {where} lacks; use bf16 or fast"
    if precision == "int8":
        if caps.device != "cpu":
            return f"int8 runs on the CPU (ONNX Runtime), not on {where}; use device 'cpu', or fp16/fast on the GPU"
        if not caps.onnxruntime:
            return "int8 runs on ONNX Runtime, which is not installed: pip install 'animegan2[onnx]'"
    return None


def choose(requested: str, caps: Capabilities, backend: str | None = None, model: nn.Module | None = None) -> Plan:
    """The path for ``requested`` (one of :data:`PRECISIONS` or an alias) on ``caps``.

    ``exact`` and ``fp32`` are the float32 default path; ``fast`` picks by the device
    (fp16 on GPUs; bf16 with AMX or AVX-512 BF16; int8 with VNNI and ONNX Runtime;
    float32 otherwise), skipping what ``backend`` or ``model`` cannot run; an explicit
    precision the device, ``backend`` (``"torch"``/``"onnxruntime"``) or ``model`` cannot
    run is a :class:`ConfigError`.
    """
    name = normalize(requested)
    if name in ("exact", "fp32"):
        return Plan(name, "fp32", backend or "torch", caps.device)
    if name == "fast":
        skipped = ""
        for precision, reason in _fast(caps):
            if _backend_refusal(requested, precision, backend):
                skipped = skipped or f"{_LONG_NAMES[precision]} runs on {_runs_on(precision)}, not on backend {backend}"
            elif model is not None and model_refusal(precision, model):
                skipped = skipped or f"{type(model).__name__} runs in float32 only"
            else:
                return Plan(name, precision, backend or _runs_on(precision), caps.device, skipped if precision == "fp32" and skipped else reason)
    refusal = (
        _refusal(name, caps)
        or _backend_refusal(requested, name, backend)
        or (model_refusal(name, model) if model is not None else None)
    )
    if refusal:
        raise ConfigError(refusal)
    return Plan(name, name, _runs_on(name), caps.device)


def _runs_on(precision: str) -> str:
    return "onnxruntime" if precision == "int8" else "torch"


def _backend_refusal(requested: str, precision: str, backend: str | None) -> str | None:
    if backend is None or backend == _runs_on(precision) or precision == "fp32":  # float32 runs on either
        return None
    return f"precision {requested!r} runs {_LONG_NAMES[precision]} on {_runs_on(precision)}, not on backend {backend!r}"


def model_refusal(precision: str, model: nn.Module) -> str | None:
    """Why ``model`` cannot run in ``precision`` (whatever the device), or ``None`` if it can:
    bf16/fp16 need a PyTorch network (not a published ONNX graph), int8 the AnimeGANv2
    generator (it is exported to ONNX and quantized)."""
    from .model import Generator

    name = type(model).__name__
    if precision in ("bf16", "fp16") and next(model.parameters(), None) is None:
        return f"{name} runs as published, in float32: {precision} needs a PyTorch network; use precision 'exact'"
    if precision == "int8" and not isinstance(model, Generator):
        return f"int8 quantizes the AnimeGANv2 generator only, not {name}; use precision 'exact', 'bf16' or 'fast'"
    return None


class LowPrecisionModel(nn.Module):
    """A generator run in bfloat16 or float16 behind the float32 call convention
    (N x 3 x H x W float32 in [-1, 1] -> float32).

    On the CPU it runs a copy of the weights in that dtype and ``channels_last``, module by
    module (``forward_layers``): measured faster than autocast (which casts every weight on
    every call) and than the strip engine (whose stored maps are float32 and NCHW, which
    oneDNN does not run in bfloat16 natively); README, "Precision". On GPUs it runs the
    model under autocast, which keeps the layer norms in float32.
    """

    def __init__(self, model: nn.Module, precision: str) -> None:
        super().__init__()
        self.dtype = _TORCH_DTYPES[precision]
        self.upsample = getattr(model, "upsample", "align_corners")  # callers size inputs by it
        self.device = next(model.parameters()).device
        if self.device.type == "cpu":
            model = copy.deepcopy(model).to(self.dtype).to(memory_format=torch.channels_last)
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        if self.device.type != "cpu":
            with torch.autocast(self.device.type, dtype=self.dtype):
                return self.model(x).float()
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return getattr(self.model, "forward_layers", self.model)(x).float()
