"""Export the generator to ONNX and TorchScript, and run exported graphs with ONNX Runtime,
in float32 or post-training int8.

All three upsampling modes export. ``"tf"`` becomes an ONNX ``Resize`` (linear,
``coordinate_transformation_mode="asymmetric"``): source = destination / 2, neighbours
clamped at the border, which is exactly TF1's legacy bilinear. The others become the
``Resize`` modes PyTorch's exporter emits for ``F.interpolate``.

>>> from animegan2 import Generator
>>> onnx_bytes = export_onnx(Generator(upsample="tf").eval(), dynamic=True)   # doctest: +SKIP
>>> runner = OnnxRuntimeModel(onnx_bytes, upsample="tf")                       # doctest: +SKIP
>>> runner(torch.rand(1, 3, 256, 256) * 2 - 1).shape                           # doctest: +SKIP
torch.Size([1, 3, 256, 256])

ONNX Runtime is the ``onnx`` extra, imported only when used.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import __version__, architectures
from ._atomic import write_bytes_atomic
from .errors import ConfigError, ImageError, OutputExistsError, WeightsError, require
from .model import Generator, upsample2x, upsample2x_tf
from .onnx_v3 import onnx_providers

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
PRECISIONS = ("float32", "int8")
INPUT_NAME, OUTPUT_NAME = "image", "anime"
CALIBRATION_SIDE = 256


class _ResizeTF2x(torch.autograd.Function):
    """TF1-legacy 2x bilinear that exports as one ONNX ``Resize`` node."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102 - torch.autograd.Function API
        return upsample2x_tf(x)

    @staticmethod
    def symbolic(g, x):  # noqa: D102 - TorchScript-based ONNX exporter API
        roi = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        scales = g.op("Constant", value_t=torch.tensor([1.0, 1.0, 2.0, 2.0]))
        return g.op(
            "Resize", x, roi, scales,
            coordinate_transformation_mode_s="asymmetric", mode_s="linear", nearest_mode_s="floor",
        )


def _export_upsample(x: Tensor, mode: str, align_size: tuple[int, int]) -> Tensor:
    return _ResizeTF2x.apply(x) if mode == "tf" else upsample2x(x, mode, align_size)


class _Exportable(nn.Module):
    # The generator's module-by-module path (traceable), with a chosen upsampling function.
    def __init__(self, generator: Generator, upsample=upsample2x) -> None:
        super().__init__()
        self.generator, self.upsample = generator, upsample

    def forward(self, x: Tensor) -> Tensor:
        return self.generator.forward_layers(x, upsample=self.upsample)


class _LayerNorm(nn.Module):
    """``GroupNorm(1, C)`` as the exporters get it: two passes, each mean taken axis by axis
    (W, then H, then C), so no float32 sum runs over a whole map. Runtimes that sum the map
    in one run drift with photo-like weights: ExecuTorch's ``group_norm`` decomposition was
    8.6e-3 off at the output at 336 x 640, ONNX Runtime's ``InstanceNormalization`` (what the
    ONNX exporter makes of ``GroupNorm``) 3e-4; this form is about 1e-6 off in both."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    @staticmethod
    def _mean(x: Tensor) -> Tensor:
        return x.mean(3, keepdim=True).mean(2, keepdim=True).mean(1, keepdim=True)  # equal-size groups: exact

    def forward(self, x: Tensor) -> Tensor:
        d = x - self._mean(x)
        scale = self.weight.view(1, -1, 1, 1) / torch.sqrt(self._mean(d * d) + self.eps)
        return d * scale + self.bias.view(1, -1, 1, 1)


def _exportable(model: nn.Module, upsample) -> _Exportable:
    """An eval-mode copy of the generator as the exporters trace it: each ``GroupNorm(1)`` as
    :class:`_LayerNorm`, upsampling by ``upsample(x, mode, align_size)``."""
    generator = copy.deepcopy(_check_generator(model)).eval()
    norms = [(parent, name, child) for parent in generator.modules() for name, child in parent.named_children()
             if isinstance(child, nn.GroupNorm) and child.num_groups == 1]  # fmt: skip
    for parent, name, child in norms:
        setattr(parent, name, _LayerNorm(child))
    return _Exportable(generator, upsample).eval()


def _check_generator(model: nn.Module, export: str = "onnx") -> Generator:
    """``model``, if its architecture exports to ``export`` (the registry says which do)."""
    arch = architectures.of(model)
    if arch is None or export not in arch.exports:
        names = " and ".join(architectures.supporting(export))
        raise ConfigError(f"only the {names} Generator exports, got {type(model).__name__}")
    return model


def _write_atomic(path: str | os.PathLike, data: bytes, overwrite: bool) -> Path:
    # Exports may name a folder that does not exist yet.
    try:
        write_bytes_atomic(path, data, replace=overwrite, parents=True)
    except FileExistsError as exc:
        raise OutputExistsError(f"{path} already exists; overwrite it or choose another name") from exc
    return Path(path)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = False,
    size: tuple[int, int] = (256, 256),
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> bytes:
    """Export a :class:`~animegan2.model.Generator` to ONNX; returns the model's bytes and
    writes them atomically to ``path`` if given (an existing file only with ``overwrite``,
    else :class:`~animegan2.errors.OutputExistsError`).

    ``size`` is the (height, width) traced; with ``dynamic=True`` the batch, height and width
    are dynamic axes, otherwise the graph takes exactly 1 x 3 x ``size``. Input ``image``
    (N x 3 x H x W float32 in [-1, 1]), output ``anime``. ``opset`` 11 or later.
    ``metadata`` (see :func:`export_metadata`) goes into the model's ``metadata_props``.
    """
    generator = _check_generator(model)
    if opset < 11:
        raise ConfigError(f"opset {opset} has no Resize with asymmetric coordinates: use --opset 11 or later")
    dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            _exportable(generator, _export_upsample),
            (torch.zeros(1, 3, *size),),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes if dynamic else None,
        )
    data = buffer.getvalue()
    if metadata:
        onnx = require("onnx", "onnx")
        proto = onnx.load_from_string(data)
        onnx.helper.set_model_props(proto, metadata)
        data = proto.SerializeToString()
    if path is not None:
        _write_atomic(path, data, overwrite)
    return data


def export_metadata(model: nn.Module, name: str | None = None, license: str | None = None) -> dict[str, str]:
    """What an exported file records about its generator: the weights' ``name`` and
    ``license`` note, and the numerics that decide its output (upsampling mode, norm
    epsilon) with the input size rule that follows from them.

    >>> export_metadata(Generator(upsample="tf", norm_eps=1e-12), "hayao")["norm_eps"]
    '1e-12'
    """
    generator = _check_generator(model)
    if generator.upsample == "align_corners":
        sizes = "any height and width >= 8; the output has the input's size"
    else:
        sizes = (
            "height and width multiples of 4, >= 8: reflect-pad the bottom and right edges up to them "
            "and crop the output back (as animegan2's Stylizer does)"
        )
    return {
        "weights": name or "unnamed",
        "license": license or "not recorded: check where the weights came from",
        "upsample": generator.upsample,
        "norm_eps": repr(next(m.eps for m in generator.modules() if isinstance(m, nn.GroupNorm))),
        "input": f"{INPUT_NAME}: N x 3 x H x W float32 RGB, pixel / 127.5 - 1",
        "output": f"{OUTPUT_NAME}: N x 3 x H x W float32 RGB in [-1, 1]; pixel = uint8(clip((x + 1) * 127.5, 0, 255))",
        "input_sizes": sizes,
        "producer": f"animegan2 {__version__}",
    }


def export_torchscript(
    model: nn.Module, path: str | os.PathLike, *, size: tuple[int, int] = (256, 256), overwrite: bool = False
) -> Path:
    """Trace a :class:`~animegan2.model.Generator` to TorchScript and save it atomically
    (an existing file only with ``overwrite``, else :class:`~animegan2.errors.OutputExistsError`).

    The trace runs at ``size`` and works for any input size and batch; load it with
    ``torch.jit.load(path)`` (no animegan2 needed).
    """
    generator = _check_generator(model, "torchscript")
    with torch.no_grad():
        traced = torch.jit.trace(_Exportable(generator.eval()), torch.zeros(1, 3, *size), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return _write_atomic(path, buffer.getvalue(), overwrite)


def calibration_tensors(images: Iterable, side: int = CALIBRATION_SIDE) -> list[Tensor]:
    """Int8 calibration inputs, all 1 x 3 x ``side`` x ``side`` in [-1, 1]: for each image
    (a path, PIL image, HWC array or NCHW/CHW tensor in [-1, 1]) the centre square of the
    whole picture reduced to ``side``, plus a full-resolution centre crop when the image is
    larger, so the activation ranges cover both scales."""
    from .imageio import load_image, to_tensor

    out = []
    for image in images:
        if isinstance(image, Tensor):
            x = image.unsqueeze(0) if image.ndim == 3 else image
        else:
            pixels = load_image(image).pixels if isinstance(image, (str, os.PathLike)) else np.asarray(image)
            x = to_tensor(pixels[..., :3])
        x = x.float()
        h, w = x.shape[-2:]
        square = min(h, w)
        top, left = (h - square) // 2, (w - square) // 2
        whole = x[..., top : top + square, left : left + square]
        out.append(F.interpolate(whole, size=(side, side), mode="bilinear", align_corners=False, antialias=square > side))
        if square > side:
            top, left = (h - side) // 2, (w - side) // 2
            out.append(x[..., top : top + side, left : left + side].contiguous())
    if not out:
        raise ConfigError("int8 calibration needs at least one image")
    return [t[i : i + 1] for t in out for i in range(t.shape[0])]


def quantize_int8(
    onnx_model: bytes, calibration: Sequence[Tensor], path: str | os.PathLike | None = None, *, overwrite: bool = False
) -> bytes:
    """Post-training static int8 quantization of an exported generator with ONNX Runtime:
    QDQ format, per-channel int8 convolution weights, uint8 activations whose ranges are the
    99.99th percentiles seen running ``calibration`` (see :func:`calibration_tensors`; all
    of one size). The first and last convolutions (about 1% of the work, but straight on
    the pixels) stay float32. Returns the new model and writes it atomically to ``path``
    if given (an existing file only with ``overwrite``).

    The graph must have dynamic height and width (``export_onnx(..., dynamic=True)``) when
    the calibration tensors differ in size.
    """
    require("onnxruntime", "onnx")
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(calibration)

        def get_next(self):
            item = next(self._items, None)
            return None if item is None else {INPUT_NAME: item.detach().cpu().float().numpy()}

    convs = [node.name for node in onnx.load_from_string(onnx_model).graph.node if node.op_type == "Conv"]
    with tempfile.TemporaryDirectory(prefix="animegan2-int8-") as tmp:
        src, dst = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_model)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its calibration progress
            quantize_static(
                str(src), str(dst), _Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=[convs[0], convs[-1]],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": 99.99},
            )
        data = dst.read_bytes()
    if path is not None:
        _write_atomic(path, data, overwrite)
    return data


class OnnxRuntimeModel(nn.Module):
    """An exported generator run by ONNX Runtime behind the Generator's call convention:
    N x 3 x H x W tensor in [-1, 1] -> tensor in [-1, 1] (same size rules as the model).

    Args:
        model: ``.onnx`` path or bytes (from :func:`export_onnx`, dynamic or not).
        upsample: the exported model's upsampling mode (callers use it to size inputs).
        device: ``"cpu"`` or ``"cuda[:N]"``.
        threads: intra-op threads; default ONNX Runtime's (one per core).
        precision: what the graph computes in, reported by :attr:`precision`.

    Build one from a generator with :meth:`from_generator`.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        upsample: str = "align_corners",
        device: str | torch.device = "cpu",
        threads: int | None = None,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        self.upsample, self.precision, self.device, self.threads = upsample, precision, torch.device(device), threads
        self.session = None
        self._float_model: bytes | None = None  # set while int8 waits for its first input to calibrate on
        self._load(model)

    def _load(self, model: str | os.PathLike | bytes) -> None:
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = self.threads
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=onnx_providers(self.device))
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise WeightsError(f"cannot load the ONNX model: {exc}") from exc
        self._input = self.session.get_inputs()[0].name

    @classmethod
    def from_generator(
        cls,
        generator: nn.Module,
        *,
        precision: str = "float32",
        calibration: Iterable | None = None,
        device: str | torch.device = "cpu",
        opset: int = DEFAULT_OPSET,
        threads: int | None = None,
    ) -> OnnxRuntimeModel:
        """Export ``generator`` (dynamic shapes) and load it. ``precision="int8"`` quantizes
        it with :func:`quantize_int8`, calibrated on ``calibration`` (photos, see
        :func:`calibration_tensors`), or, when that is ``None``, on the first batch the
        model is called with (the export is kept until then)."""
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        onnx_model = export_onnx(generator, opset=opset, dynamic=True)
        runner = cls(onnx_model, upsample=generator.upsample, device=device, threads=threads, precision=precision)
        if precision == "int8":
            if calibration is None:
                runner._float_model = onnx_model
            else:
                runner._load(quantize_int8(onnx_model, calibration_tensors(calibration)))
        return runner

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ImageError(f"expected an N x 3 x H x W batch in [-1, 1], got shape {tuple(x.shape)}")
        if self._float_model is not None:
            log.info("int8: calibrating on the first input (%dx%d)", x.shape[-1], x.shape[-2])
            self._load(quantize_int8(self._float_model, calibration_tensors(x.split(1))))
            self._float_model = None
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run(None, {self._input: array})[0]
        return torch.from_numpy(out).to(x.device, x.dtype)
