"""VGG19 up to ``conv4_4`` before its ReLU: the content and style features of the recipe.

Two weight formats load into the same module:

* the original Caffe weights ``vgg19.npy`` (tensorflow-vgg): a NumPy file holding a pickled
  dict ``name -> [W (3, 3, in, out), b (out,)]`` whose ``conv1_1`` expects BGR input. It is
  read with a restricted unpickler that accepts NumPy arrays and nothing else, so a
  malicious file cannot run code;
* torchvision's ``vgg19`` state_dict (``features.N.weight`` as ``(out, in, 3, 3)``, RGB
  input), as ``.pt``/``.pth`` (loaded weights-only) or ``.safetensors``.

:func:`load_vgg19` takes either file, or a model-zoo name (``"vgg19"``, the Caffe file,
downloaded once and pinned by the zoo like any other weights).

Input normalisation (DESIGN.md 2.4): ``"caffe"`` maps [-1, 1] RGB to 0..255 BGR minus the
Caffe means (103.939, 116.779, 123.68), no std division -- the recipe's, the default for
``vgg19.npy``. ``"torchvision"`` maps to [0, 1] RGB with ImageNet mean/std -- how
torchvision's weights were trained, the default for its files. Those are a different
network; the recipe's loss weights were tuned on the Caffe features.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .. import zoo
from ..errors import ArgumentError, WeightsError

NORMALIZATIONS = ("caffe", "torchvision")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe layer name -> index in ``VGG19.features`` (the same indices as torchvision's vgg19).
CONV_INDEX = {
    "conv1_1": 0, "conv1_2": 2,
    "conv2_1": 5, "conv2_2": 7,
    "conv3_1": 10, "conv3_2": 12, "conv3_3": 14, "conv3_4": 16,
    "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25,
}  # fmt: skip
_INPUT_ORDER = {"caffe": "bgr", "torchvision": "rgb"}


class VGG19(nn.Module):
    """VGG19 ``features[:26]``: conv1_1 .. conv4_4, the last conv without its ReLU.

    ``widths`` are the four blocks' channel counts (64, 128, 256, 512 for the real
    network; tests use tiny ones). Max pooling rounds up like TF's ``SAME`` pooling.

    >>> VGG19(widths=(4, 4, 8, 8))(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 8, 4, 4])
    """

    def __init__(self, widths: tuple[int, int, int, int] = (64, 128, 256, 512), normalization: str = "caffe") -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ArgumentError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        layers: list[nn.Module] = []
        in_ch = 3
        for block, (width, convs) in enumerate(zip(widths, (2, 2, 4, 4)), start=1):
            if block > 1:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            for i in range(1, convs + 1):
                layers.append(nn.Conv2d(in_ch, width, 3, padding=1))
                if (block, i) != (4, 4):
                    layers.append(nn.ReLU(inplace=True))
                in_ch = width
        self.features = nn.Sequential(*layers)
        if normalization == "caffe":
            mean, scale = torch.tensor(CAFFE_MEAN_BGR[::-1]), torch.full((3,), 127.5)
        else:
            mean, scale = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def normalize(self, image: Tensor) -> Tensor:
        """[-1, 1] RGB -> the input the weights expect (see the module docstring)."""
        if self.normalization == "caffe":
            return ((image + 1.0) * self._scale - self._mean).flip(1)
        return ((image + 1.0) / 2.0 - self._mean) / self._scale

    def forward(self, image: Tensor) -> Tensor:
        """``conv4_4`` pre-activation features of an NCHW RGB image in [-1, 1]."""
        return self.features(self.normalize(image))


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays in plain containers; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise WeightsError(f"refusing to unpickle {module}.{name}: a vgg19.npy holds NumPy arrays only")


def read_caffe_npy(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read tensorflow-vgg's ``vgg19.npy`` safely: ``{"conv1_1": (W[3,3,in,out], b[out]), ...}``.

    The file is a NumPy object array around a pickled dict; only NumPy arrays, lists,
    tuples, dicts and strings are accepted inside it.
    """
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _, _, dtype = read_header(f)
            if dtype != np.dtype(object):
                raise WeightsError(f"{path} is a plain {dtype} array, not vgg19.npy's dict of layers")
            holder = _ArraysOnly(f, encoding="latin1").load()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise WeightsError(f"cannot read {path} as vgg19.npy: {exc}") from exc
    layers = holder.item() if isinstance(holder, np.ndarray) else holder
    if not isinstance(layers, dict):
        raise WeightsError(f"{path} holds a {type(layers).__name__}, not vgg19.npy's dict of layers")
    return {name: (np.asarray(wb[0]), np.asarray(wb[1])) for name, wb in layers.items()}


def _state_from_caffe(layers: dict[str, tuple[np.ndarray, np.ndarray]], source: Path) -> dict[str, Tensor]:
    state = {}
    for name, index in CONV_INDEX.items():
        if name not in layers:
            raise WeightsError(f"{source} has no layer {name}: not a VGG19 vgg19.npy")
        w, b = layers[name]
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1), dtype=np.float32))
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    return state


def _state_from_torchvision(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(path))
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"cannot load {path} as a weights-only PyTorch file: {exc}") from exc
    keys = [f"features.{i}.{p}" for i in CONV_INDEX.values() for p in ("weight", "bias")]
    missing = [k for k in keys if k not in raw]
    if missing:
        raise WeightsError(f"{path} is not a torchvision vgg19 state_dict: missing {missing[0]} and {len(missing) - 1} more")
    return {k: raw[k].float() for k in keys}


def load_vgg19(weights: str | Path, *, normalization: str | None = None, progress: bool = True) -> VGG19:
    """Build a frozen :class:`VGG19` from a ``vgg19.npy`` (Caffe) or torchvision state_dict
    file, or a model-zoo name (``"vgg19"``: downloaded once, digest-pinned, verified).

    ``normalization`` defaults to the one the format's weights were trained with
    (``"caffe"`` for ``.npy``, ``"torchvision"`` otherwise); ``conv1_1``'s input channels
    are reordered when the file's colour order (BGR / RGB) differs from the chosen one, so
    the same weights in either format give identical features.

    >>> vgg = load_vgg19("vgg19")  # doctest: +SKIP
    """
    path = Path(weights)
    if not path.is_file():
        path = zoo.fetch_weights(str(weights), progress=progress)
    if path.suffix == ".npy":
        state, order = _state_from_caffe(read_caffe_npy(path), path), "bgr"
    else:
        state, order = _state_from_torchvision(path), "rgb"
    normalization = normalization or ("caffe" if order == "bgr" else "torchvision")
    if _INPUT_ORDER.get(normalization) not in (None, order):
        state["features.0.weight"] = state["features.0.weight"].flip(1)
    widths = tuple(state[f"features.{CONV_INDEX[n]}.weight"].shape[0] for n in ("conv1_1", "conv2_1", "conv3_1", "conv4_1"))
    model = VGG19(widths, normalization=normalization)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not have VGG19's layer shapes: {exc}") from exc
    return model
