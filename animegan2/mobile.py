"""Phone formats: LiteRT (``.tflite``), ExecuTorch (``.pte``, XNNPACK delegate) and Core ML
(``.mlpackage``), each with the weights' name, licence note and numerics recorded in the file.

The converters are extras, imported only when used: ``mobile`` (ExecuTorch, Core ML) and
``litert`` (litert-torch; its pins clash with the ``web`` extra, so it lives in its own
environment). All three trace the exporters' copy of the generator (each layer norm as two
passes of axis-by-axis means, see ``export._LayerNorm``) with one change more: the ``"tf"``
upsampling (TF1-legacy 2x bilinear) is written as nearest 2x, replicate-pad bottom/right by
one, 2x2 average at stride 1 -- the same weights (1, 1/2, 1/4) on the same neighbours, from
ops every converter knows.

>>> g = load_generator("hayao")                                        # doctest: +SKIP
>>> export_executorch(g, "hayao.pte", metadata=export_metadata(g))   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError, OutputExistsError, require
from .export import INPUT_NAME, OUTPUT_NAME, _check_generator, _exportable, _write_atomic
from .model import MIN_SIDE, upsample2x
from .resize import size_multiple

#: The largest side the dynamic-shape formats are built for: Core ML sizes buffers when it
#: runs, ExecuTorch plans its buffers for the largest input at export time.
MAX_SIDE = {"coreml": 4096, "executorch": 1024}
METADATA_NAME = "animegan2"  # the LiteRT metadata entry / ExecuTorch constant method


def upsample2x_tf_ops(x: Tensor) -> Tensor:
    """TF1-legacy 2x bilinear from nearest/pad/average ops: within 2.4e-7 of
    :func:`~animegan2.resize.upsample2x_tf` (the sum of four equal terms may round)."""
    y = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return F.avg_pool2d(F.pad(y, (0, 1, 0, 1), mode="replicate"), 2, stride=1)


def _upsample(x: Tensor, mode: str, align_size: tuple[int, int]) -> Tensor:
    return upsample2x_tf_ops(x) if mode == "tf" else upsample2x(x, mode, align_size)


def _module(model: nn.Module) -> nn.Module:
    return _exportable(model, _upsample)


def _dynamic_shapes(generator: nn.Module, max_side: int):
    # Sides run at the multiples the generator returns at their own size (Stylizer pads to them).
    side = size_multiple(generator.upsample)
    h = torch.export.Dim("h", min=-(-MIN_SIDE // side), max=max_side // side)
    w = torch.export.Dim("w", min=-(-MIN_SIDE // side), max=max_side // side)
    return ({2: side * h if side > 1 else h, 3: side * w if side > 1 else w},)


def _torch_export(model: nn.Module, size: tuple[int, int], max_side: int | None):
    generator = _check_generator(model)
    x = torch.zeros(1, 3, *size)
    shapes = _dynamic_shapes(generator, max_side) if max_side else None
    with torch.no_grad():
        return torch.export.export(_module(generator), (x,), dynamic_shapes=shapes)


def _with_sizes(metadata: dict[str, str] | None, size: tuple[int, int], max_side: int | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    shape = f"sides from {MIN_SIDE} to {max_side}" if max_side else f"fixed input 1 x 3 x {size[0]} x {size[1]}"
    return {**metadata, "input_sizes": f"{shape}; {metadata['input_sizes']}"}


# --- LiteRT ---

LITERT_PRECISIONS = ("float32", "float16", "int8")


def _tflite_with_metadata(flatbuffer: bytes, metadata: dict[str, str]) -> bytes:
    # LiteRT's Model table has named metadata buffers: one holds our JSON.
    schema = require("ai_edge_litert.schema_py_generated", "litert")
    flatbuffers = require("flatbuffers", "litert")
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata, sort_keys=True).encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _quantize_litert(flatbuffer: bytes, precision: str) -> bytes:
    quantizer = require("ai_edge_quantizer.quantizer", "litert")
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    q = quantizer.Quantizer(bytearray(flatbuffer))
    if precision == "float16":  # weight-only: float16 weights, widened before each op
        q.add_weight_only_config(".*", TFLOperationName.ALL_SUPPORTED, 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    else:  # dynamic range: int8 weights per output channel, inputs quantized as each op runs
        q.add_dynamic_config(".*", TFLOperationName.ALL_SUPPORTED, 8)
    # It prints a size report and progress bars that its flags do not all silence.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return bytes(q.quantize(enable_progress_bar=False, enable_progress_report=False).quantized_model)


def convert_litert(model: nn.Module, *, size: tuple[int, int]) -> bytes:
    """A generator converted to LiteRT by ``litert-torch``: the float32 flatbuffer, input
    ``1 x 3 x size`` float32 in [-1, 1] (fixed: litert-torch converts these graphs with
    static shapes only), output the same layout."""
    litert_torch = require("litert_torch", "litert")
    with torch.no_grad():
        edge = litert_torch.convert(_module(model), (torch.zeros(1, 3, *size),))
    with tempfile.TemporaryDirectory(prefix="animegan2-litert-") as tmp:
        edge.export(str(Path(tmp) / "model.tflite"))
        return (Path(tmp) / "model.tflite").read_bytes()


def export_litert(
    model: nn.Module | bytes,
    path: str | os.PathLike,
    *,
    size: tuple[int, int],
    precision: str = "float32",
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a generator as LiteRT (see :func:`convert_litert`) to ``path`` atomically (an
    existing file only with ``overwrite``). ``model``: the generator, or the flatbuffer
    :func:`convert_litert` made of it at ``size`` (several precisions from one conversion).
    ``precision``: ``"float32"``; ``"float16"`` (weights stored as float16, half the file;
    CPUs widen them and compute in float32); ``"int8"`` (dynamic range: convolution weights
    int8 per output channel, a quarter of the file, each convolution's input quantized to
    int8 as it runs). ``metadata`` goes into the model's metadata table under
    ``"animegan2"`` (JSON), with the precision."""
    if precision not in LITERT_PRECISIONS:
        raise ConfigError(f"LiteRT precision must be one of {LITERT_PRECISIONS}, got {precision!r}")
    data = model if isinstance(model, bytes) else convert_litert(model, size=size)
    if metadata:  # before quantizing: the quantizer moves buffers past the flatbuffer, keeping the table
        data = _tflite_with_metadata(data, {**_with_sizes(metadata, size, None), "precision": precision})
    if precision != "float32":
        data = _quantize_litert(data, precision)
    return _write_atomic(path, data, overwrite)


def read_litert_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``"animegan2"`` metadata a LiteRT file was written with (empty if none)."""
    schema = require("ai_edge_litert.schema_py_generated", "litert")
    data = Path(path).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            buffer = model.buffers[entry.buffer]
            if buffer.offset > 1:  # stored after the flatbuffer (files over 2 GB, quantizer output)
                return json.loads(data[buffer.offset : buffer.offset + buffer.size])
            return json.loads(bytes(buffer.data))
    return {}


class LiteRTModel(nn.Module):
    """A ``.tflite`` generator run by the LiteRT interpreter (``ai-edge-litert``), with the
    Generator's call convention for one image of the file's fixed size."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        interpreter = require("ai_edge_litert.interpreter", "litert")
        self.interpreter = interpreter.Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()

    def forward(self, x: Tensor) -> Tensor:
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self.interpreter.set_tensor(inp["index"], x.detach().float().contiguous().numpy())
        self.interpreter.invoke()
        return torch.from_numpy(self.interpreter.get_tensor(out["index"]).copy())


# --- ExecuTorch ---


def export_executorch(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    size: tuple[int, int] = (256, 256),
    dynamic: bool = True,
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Lower a generator to ExecuTorch with the XNNPACK delegate and write the ``.pte``
    atomically (an existing file only with ``overwrite``). ``dynamic``: height and width from :data:`MIN_SIDE` to ``MAX_SIDE["executorch"]``
    (multiples of 4 in the ``"tf"``/``"half_pixel"`` modes), else exactly ``size``.
    ``metadata`` is a constant method ``animegan2`` returning its JSON string."""
    require("executorch", "mobile")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    max_side = MAX_SIDE["executorch"] if dynamic else None
    program = _torch_export(model, size, max_side)
    metadata = _with_sizes(metadata, size, max_side)
    constants = {METADATA_NAME: json.dumps(metadata, sort_keys=True)} if metadata else None
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods=constants)
    return _write_atomic(path, edge.to_executorch().buffer, overwrite)


class ExecuTorchModel(nn.Module):
    """A ``.pte`` generator run by ExecuTorch's Python runtime (Generator call convention)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        require("executorch", "mobile")
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(Path(path))
        self.method = self.program.load_method("forward")

    @property
    def metadata(self) -> dict[str, str]:
        """The JSON recorded at export time (empty if none)."""
        if METADATA_NAME not in self.program.method_names:
            return {}
        return json.loads(self.program.load_method(METADATA_NAME).execute([])[0])

    def forward(self, x: Tensor) -> Tensor:
        return self.method.execute([x.detach().float().contiguous()])[0]


# --- Core ML ---

COREML_PRECISIONS = ("float32", "float16")


def convert_coreml(
    model: nn.Module,
    *,
    size: tuple[int, int] = (256, 256),
    dynamic: bool | None = None,
    precision: str = "float16",
    metadata: dict[str, str] | None = None,
):
    """Convert a generator to a Core ML ML Program (iOS 16 / macOS 13 or later) and return
    the ``coremltools`` model: input ``image`` 1 x 3 x H x W, output ``anime``; ``precision``
    the compute precision. ``dynamic`` (default: all but ``"align_corners"``, whose resize to
    a size known only at run time coremltools cannot map): sides from :data:`MIN_SIDE` to
    ``MAX_SIDE["coreml"]``, else exactly ``size``."""
    ct = require("coremltools", "mobile")
    if precision not in COREML_PRECISIONS:
        raise ConfigError(f"Core ML precision must be one of {COREML_PRECISIONS}, got {precision!r}")
    generator = _check_generator(model, "coreml")
    if dynamic is None:
        dynamic = generator.upsample != "align_corners"
    max_side = MAX_SIDE["coreml"] if dynamic else None
    metadata = _with_sizes(metadata, size, max_side)
    program = _torch_export(generator, size, max_side).run_decompositions({})
    mlmodel = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
        compute_precision=ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32,
        skip_model_load=True,  # Core ML runs on Apple systems only
    )
    spec = mlmodel.get_spec()
    ct.utils.rename_feature(spec, spec.description.input[0].name, INPUT_NAME)
    ct.utils.rename_feature(spec, spec.description.output[0].name, OUTPUT_NAME)
    mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    if metadata:
        mlmodel.short_description = f"AnimeGANv2 generator ({metadata.get('weights', 'unnamed weights')}): photo -> anime"
        mlmodel.license = metadata.get("license", "")
        mlmodel.user_defined_metadata.update({k: str(v) for k, v in metadata.items()})
    mlmodel.input_description[INPUT_NAME] = "1 x 3 x H x W float32 RGB in [-1, 1]"
    mlmodel.output_description[OUTPUT_NAME] = "1 x 3 x H' x W' float32 RGB in [-1, 1]"
    return mlmodel


def export_coreml(model: nn.Module, path: str | os.PathLike, *, overwrite: bool = False, **kwargs) -> Path:
    """:func:`convert_coreml` and save the ``.mlpackage`` folder under ``path`` (made beside it
    and renamed into place; an older package of that name is replaced only with ``overwrite``,
    else :class:`~animegan2.errors.OutputExistsError`)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; overwrite it or choose another name")
    mlmodel = convert_coreml(model, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        mlmodel.save(str(tmp / path.name))
        if path.exists() and overwrite:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.rename(tmp / path.name, path)  # refuses a file or a non-empty folder made meanwhile
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


__all__ = [
    "COREML_PRECISIONS", "LITERT_PRECISIONS", "ExecuTorchModel", "LiteRTModel", "convert_coreml", "convert_litert",
    "export_coreml", "export_executorch", "export_litert", "read_litert_metadata", "upsample2x_tf_ops",
]  # fmt: skip
