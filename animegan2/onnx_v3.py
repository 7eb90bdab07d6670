"""AnimeGANv3 models (published only as ONNX files) run by ONNX Runtime behind the
:class:`~animegan2.model.Generator` call convention: NCHW tensor in [-1, 1] -> NCHW tensor
in [-1, 1] at the input's size.

The graphs take NHWC float32 RGB in [-1, 1] on input ``AnimeGANv3_input:0`` and give
``generator_1/main/out_layer:0``. Their sides must be multiples of 8 (16 for the ``tiny``
models, otherwise an Add inside fails on mismatched shapes) and at least 256. The runner
meets that rule and restores the input's size: ``fit="pad"`` (default) reflect-pads the
bottom/right up to the next multiple and crops it away afterwards, so no pixel is
resampled; ``fit="resize"`` resizes as the authors' scripts do (down to a multiple,
bilinear) and back. Sides under 256 are resized to 256 and back in both cases.

Needs the ``onnx`` extra (onnxruntime).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError, ImageError, WeightsError, require

INPUT_NAME = "AnimeGANv3_input:0"
OUTPUT_NAME = "generator_1/main/out_layer:0"
#: Sides under this are resized up to it to run the graph (as the authors' scripts do).
MIN_WORKING_SIDE = 256
FITS = ("pad", "resize")


def size_multiple(path: str | Path) -> int:
    """The side multiple a v3 model needs: 16 for the ``tiny`` models (named so), else 8.

    >>> size_multiple("AnimeGANv3_tiny_Cute.onnx"), size_multiple("AnimeGANv3_Hayao_36.onnx")
    (16, 8)
    """
    return 16 if "tiny" in Path(path).name.lower() else 8


def onnx_providers(device: str | torch.device) -> list:
    """ONNX Runtime execution providers for a torch device: CUDA (with its index) then CPU
    for ``cuda[:N]``, CPU alone for ``cpu``."""
    ort = require("onnxruntime", "onnx")
    device = torch.device(device)
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise ConfigError(f"ONNX models run on cpu or cuda, not {device.type!r}: pass --device cpu or cuda")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ConfigError(
            "CUDA was asked for but this onnxruntime has no CUDAExecutionProvider: "
            "pip install onnxruntime-gpu, or run with --device cpu"
        )
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def _plan(side: int, multiple: int, fit: str) -> tuple[int, int]:
    """(side after resizing, side after padding) for one side of the input."""
    if side < MIN_WORKING_SIDE:
        return MIN_WORKING_SIDE, MIN_WORKING_SIDE
    if fit == "resize":
        return side - side % multiple, side - side % multiple
    return side, -(-side // multiple) * multiple


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


class OnnxGeneratorV3(nn.Module):
    """An AnimeGANv3 ONNX model as a module with the Generator's call convention.

    Args:
        path: the ``.onnx`` file.
        device: ``"cpu"`` or ``"cuda[:N]"`` (picks the execution provider; fixed at
            construction, ``.to()`` does not move the session).
        multiple: side multiple the graph needs; default from the file name (16 if it
            contains ``tiny``, else 8).
        fit: ``"pad"`` or ``"resize"`` (see the module's docstring).

    Example (with a downloaded model)::

        g = OnnxGeneratorV3("AnimeGANv3_Hayao_36.onnx")
        g(torch.rand(1, 3, 300, 401) * 2 - 1).shape   # torch.Size([1, 3, 300, 401])
    """

    architecture = "animeganv3"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        multiple: int | None = None,
        fit: str = "pad",
    ) -> None:
        super().__init__()
        if fit not in FITS:
            raise ConfigError(f"fit must be one of {FITS}, got {fit!r}")
        ort = require("onnxruntime", "onnx")
        self.path = Path(path)
        self.device = torch.device(device)
        self.multiple = multiple or size_multiple(self.path)
        self.fit = fit
        try:
            self.session = ort.InferenceSession(str(self.path), providers=onnx_providers(self.device))
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise WeightsError(f"cannot load {self.path} as an ONNX model: {exc}") from exc
        self._input, self._output, self._one_per_run = self._check_io()

    def _check_io(self) -> tuple[str, str, bool]:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        found = f"inputs {[(i.name, i.shape) for i in inputs]}, outputs {[o.name for o in outputs]}"
        if len(inputs) != 1 or inputs[0].name.lower() != INPUT_NAME.lower():
            raise WeightsError(
                f"{self.path.name} is not an AnimeGANv3 model: expected one input {INPUT_NAME!r}, found {found}"
            )
        shape = inputs[0].shape
        if len(shape) != 4 or shape[3] != 3:
            raise WeightsError(
                f"{self.path.name} does not take NHWC RGB images: input shape {shape}, expected [N, H, W, 3]"
            )
        names = [o.name for o in outputs]
        if OUTPUT_NAME not in names:
            raise WeightsError(
                f"{self.path.name} is not an AnimeGANv3 model: expected output {OUTPUT_NAME!r}, found {found}"
            )
        return inputs[0].name, OUTPUT_NAME, shape[0] == 1

    def _run(self, nhwc: Tensor) -> Tensor:
        try:
            out = self.session.run([self._output], {self._input: nhwc.numpy()})[0]
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise ImageError(
                f"{self.path.name} failed on a {nhwc.shape[2]}x{nhwc.shape[1]} input ({exc}); if it is a "
                f"tiny model not named so, pass multiple=16"
            ) from exc
        return torch.from_numpy(out)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ImageError(f"expected an NCHW RGB batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        (rh, ph), (rw, pw) = _plan(h, self.multiple, self.fit), _plan(w, self.multiple, self.fit)
        y = _resize(x.detach().to("cpu", torch.float32), (rh, rw))
        y = F.pad(y, (0, pw - rw, 0, ph - rh), mode="reflect")
        nhwc = y.permute(0, 2, 3, 1).contiguous()
        chunks = nhwc.split(1) if self._one_per_run else [nhwc]
        out = torch.cat([self._run(c) for c in chunks]).permute(0, 3, 1, 2)
        return _resize(out[:, :, :rh, :rw], (h, w)).to(x.device, x.dtype)
