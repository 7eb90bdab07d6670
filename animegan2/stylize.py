"""Stylize images: the :class:`Stylizer` (weights, device, dtype, resize policy, batching),
the one-liner :func:`stylize`, and the file helpers :func:`stylize_file` / :func:`stylize_dir`.

>>> import animegan2
>>> anime = animegan2.stylize("photo.jpg", style="hayao")        # doctest: +SKIP
>>> anime.save("anime.png")                                      # doctest: +SKIP

The module itself is callable (:mod:`animegan2._callable`), so ``animegan2.stylize(...)``
works whether or not ``animegan2.stylize`` was imported as a module first. The report and
destination rules of runs over many files live in :mod:`animegan2.batch`, the colour
transfer in :mod:`animegan2.color`; their names stay importable from here.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ._callable import make_callable
from .batch import BatchReport, failure_reason, same_file, skip_destination  # noqa: F401 - also imported from here
from .color import transfer_chroma
from .errors import ConfigError, ImageError
from .lowmem import DEFAULT_MAX_MEMORY, MEMORY_MODES, parse_memory, run_low_memory, run_tiled
from .manifest import DEFAULT_WEIGHTS
from .imageio import IMAGE_SUFFIXES, DecodedImage, decode_pil, from_tensor, load_image, save_image, source_name, to_tensor
from .model import MIN_SIDE
from .precision import LowPrecisionModel, Plan, choose, detect, normalize
from .resize import size_multiple

logger = logging.getLogger("animegan2")

BACKENDS = ("torch", "onnxruntime")
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}  # fmt: skip
#: The colour transfer's older name, kept importable (``keep_color`` is the Stylizer's option).
keep_color = transfer_chroma


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else MPS, else CPU; an explicit device must exist.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but no CUDA GPU is available; use --device auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' asked for but MPS is not available; use --device auto or cpu")
    return dev


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")


def _precision_with_dtype(precision: str, dtype: str | torch.dtype | None) -> str:
    """``precision``, or the one ``dtype`` (its older spelling) names; both set differently
    is a :class:`ConfigError`."""
    named = {torch.float32: "exact", torch.bfloat16: "bf16", torch.float16: "fp16"}[_resolve_dtype(dtype)]
    if named == "exact" or named == normalize(precision):
        return precision
    if normalize(precision) != "exact":
        raise ConfigError(f"dtype {dtype!r} and precision {precision!r} disagree: give precision alone")
    return named


def pad_reflect(x: Tensor, bottom: int, right: int) -> Tensor:
    """Pad an N x C x H x W tensor at the bottom and right by mirroring, any amount (a 1-pixel
    side is repeated, since it has nothing to mirror).

    >>> pad_reflect(torch.tensor([[[[1.0, 2.0]]]]), 0, 3).flatten().tolist()
    [1.0, 2.0, 1.0, 2.0, 1.0]
    """
    while bottom > 0 or right > 0:
        h, w = x.shape[-2:]
        db, dr = min(bottom, h - 1), min(right, w - 1)
        if (bottom and h == 1) or (right and w == 1):
            db, dr = (bottom if h == 1 else 0), (right if w == 1 else 0)
            x = F.pad(x, (0, dr, 0, db), mode="replicate")
        else:
            x = F.pad(x, (0, dr, 0, db), mode="reflect")
        bottom, right = bottom - db, right - dr
    return x


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)


def _split_array(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """H x W, H x W x 1, x 3 or x 4 -> (H x W x 3 pixels, alpha or None)."""
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
        gray = array.reshape(array.shape[0], array.shape[1], 1)
        return np.repeat(gray, 3, axis=2), None
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return array[..., :3], (array[..., 3] if array.shape[2] == 4 else None)
    raise ImageError(f"expected an H x W x 3 (or x 1, x 4, or H x W) image array, got shape {array.shape}")


#: The Stylizer options that only shape images, not the model: :meth:`Stylizer.with_options`.
_IMAGE_OPTIONS = ("size", "max_pixels", "x32", "keep_color", "batch_size", "progress", "restore_size")


class Stylizer:
    """Turns images into anime with one generator.

    Args:
        weights: anything :func:`animegan2.zoo.load_generator` accepts (a zoo name, a local
            ``.pt``/``.safetensors`` file, a URL), or an already built generator module.
        device: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
        dtype: ``None``/``"float32"``, or ``"fp16"``/``"bf16"``: the same as ``precision``.
        size: resize so that the long side is ``size`` before stylizing.
        max_pixels: cap on height x width; larger images are reduced (with a notice).
        x32: the published rule, each side 256 if below 256, else floored to a multiple of 32.
        keep_color: keep the input's colours (chroma) and take the anime's luminance and texture.
        batch_size: images per forward pass (images of one size are batched together).
        progress: show download and per-file progress bars.
        restore_size: return the output at the input's size (default); ``False`` keeps the
            working size chosen by ``size``/``max_pixels``/``x32``.
        backend: ``"torch"`` or ``"onnxruntime"`` (the model is exported to ONNX and run by
            ONNX Runtime, the ``onnx`` extra); default: the one the precision runs on.
        precision: ``"exact"`` (default: float32, the reference path), ``"fast"`` (the
            fastest path this device offers that keeps PSNR >= 40 dB against float32; see
            :func:`animegan2.precision.choose`), or ``"fp32"``, ``"bf16"``, ``"fp16"``,
            ``"int8"`` (ONNX Runtime static int8 quantization, calibrated on ``calibration``
            photos, else on the first batch stylized); a precision the device cannot run is
            a :class:`ConfigError`. :attr:`plan` says which path runs.
        calibration: photos (paths, arrays, PIL images) to calibrate int8 on.
        memory: ``"normal"`` (whole image in memory), ``"low"`` (exact, layer by layer in
            strips, peak RSS under ``max_memory``; AnimeGANv2 models) or ``"tiled"``
            (approximate: overlapping tiles blended, peak of one tile).
        max_memory: the peak RSS ``"low"`` stays under, bytes or ``"2GB"`` (default 2GB).

    Images smaller than :data:`MIN_SIDE`, and, for the ``"tf"``/``"half_pixel"`` upsampling
    modes, sides that are not multiples of 4, are reflect-padded and cropped back, so every
    mode returns the input size.

    >>> s = Stylizer("hayao", size=512)                          # doctest: +SKIP
    >>> s.stylize(Image.open("photo.jpg")).save("anime.png")     # doctest: +SKIP
    """

    def __init__(
        self,
        weights: str | os.PathLike | nn.Module = DEFAULT_WEIGHTS,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        size: int | None = None,
        max_pixels: int | None = None,
        x32: bool = False,
        keep_color: bool = False,
        batch_size: int = 1,
        progress: bool = True,
        restore_size: bool = True,
        backend: str | None = None,
        precision: str = "exact",
        calibration: Iterable | None = None,
        memory: str = "normal",
        max_memory: int | str | None = None,
    ) -> None:
        self._set_options(size=size, max_pixels=max_pixels, x32=x32, keep_color=keep_color, batch_size=batch_size,
                          progress=progress, restore_size=restore_size)  # fmt: skip
        if memory not in MEMORY_MODES:
            raise ConfigError(f"memory must be one of {', '.join(MEMORY_MODES)}, got {memory!r}")
        self.memory = memory
        self.max_memory = parse_memory(max_memory or DEFAULT_MAX_MEMORY)
        self.device = resolve_device(device)
        precision = _precision_with_dtype(precision, dtype)
        if backend is not None and backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend is None and memory != "normal" and normalize(precision) == "fast":
            backend = "torch"  # the memory modes run the PyTorch model: fast picks among its paths
        caps = detect(self.device)
        #: The path that runs: precision, backend and, for ``"fast"``, why it was chosen.
        self.plan: Plan = choose(precision, caps, backend)  # refuses before any weights load
        if self.plan.backend == "onnxruntime" and memory != "normal":
            raise ConfigError(f"memory={memory!r} runs the PyTorch model layer by layer: use backend='torch' with it")
        if memory == "low" and self.plan.precision != "fp32":
            raise ConfigError(f"memory='low' runs in float32 only, not {self.plan.precision}: use precision='exact' with it")
        if isinstance(weights, nn.Module):
            self.model = weights.to(self.device).eval()
        else:
            from .zoo import load_generator

            self.model = load_generator(weights, device=self.device, progress=progress)
        self.plan = choose(precision, caps, backend, self.model)
        if self.plan.backend == "onnxruntime":
            from .export import OnnxRuntimeModel

            onnx_precision = "int8" if self.plan.precision == "int8" else "float32"
            self.model = OnnxRuntimeModel.from_generator(self.model, precision=onnx_precision, calibration=calibration, device=self.device)
        elif self.plan.precision in ("bf16", "fp16"):
            self.model = LowPrecisionModel(self.model, self.plan.precision)
        self.backend, self.precision = self.plan.backend, self.plan.name

    def _set_options(
        self, *, size: int | None, max_pixels: int | None, x32: bool, keep_color: bool, batch_size: int,
        progress: bool, restore_size: bool,
    ) -> None:  # fmt: skip
        if size is not None and size < 1:
            raise ConfigError(f"size must be a positive number of pixels, got {size}")
        if max_pixels is not None and max_pixels < 1:
            raise ConfigError(f"max_pixels must be positive, got {max_pixels}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.size, self.max_pixels, self.x32, self.keep_color = size, max_pixels, x32, keep_color
        self.batch_size, self.progress, self.restore_size = batch_size, progress, restore_size

    def with_options(self, **options: Any) -> Stylizer:
        """A Stylizer that shares this one's prepared model and precision (no reload, no
        re-calibration) with other image options: ``size``, ``max_pixels``, ``x32``,
        ``keep_color``, ``batch_size``, ``progress``, ``restore_size``.

        >>> s = Stylizer(torch.nn.Identity(), device="cpu")
        >>> s.with_options(size=256).working_size(512, 1024), s.size
        ((128, 256), None)
        """
        current = {name: getattr(self, name) for name in _IMAGE_OPTIONS}
        unknown = set(options) - set(current)
        if unknown:
            raise ConfigError(f"with_options takes {', '.join(_IMAGE_OPTIONS)}; not {', '.join(sorted(unknown))}")
        variant = copy.copy(self)
        variant._set_options(**{**current, **options})
        return variant

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image is stylized at: ``size`` (long side), then the
        ``max_pixels`` cap, then the ``x32`` rule; the native size when none is set.

        >>> s = Stylizer(torch.nn.Identity(), size=256, x32=True, device="cpu")
        >>> s.working_size(672, 1280)   # 256/1280 -> 134.4 x 256 -> x32: 256 x 256
        (256, 256)
        """
        h, w = height, width
        if self.size:
            scale = self.size / max(h, w)
            h, w = max(1, round(h * scale)), max(1, round(w * scale))
        if self.max_pixels and h * w > self.max_pixels:
            scale = math.sqrt(self.max_pixels / (h * w))
            h, w = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))
        if self.x32:
            h, w = (256 if side < 256 else side - side % 32 for side in (h, w))
        return h, w

    def _forward(self, x: Tensor) -> Tensor:
        """Run the generator on N x 3 x H x W in [-1, 1], padding to what the network needs and
        cropping back, in chunks of ``batch_size``."""
        h, w = x.shape[-2:]
        multiple = size_multiple(getattr(self.model, "upsample", "align_corners"))
        ph, pw = (-(-max(side, MIN_SIDE) // multiple) * multiple for side in (h, w))
        outputs = []
        with torch.inference_mode():
            for chunk in x.split(self.batch_size):
                padded = pad_reflect(chunk, ph - h, pw - w)
                if self.memory == "low":  # both return CPU tensors
                    y = run_low_memory(self.model, padded, max_memory=self.max_memory, progress=self.progress)
                    y = y.to(padded.device)
                elif self.memory == "tiled":
                    y = run_tiled(self.model, padded, progress=self.progress).to(padded.device)
                else:
                    y = self.model(padded)
                outputs.append(y[..., :h, :w].float())
        return torch.cat(outputs)

    def _stylize_batch(self, x: Tensor, label: str = "image") -> Tensor:
        x = x.to(self.device, torch.float32)
        height, width = x.shape[-2:]
        h, w = self.working_size(height, width)
        if self.max_pixels and height * width > self.max_pixels and h * w < height * width:
            logger.warning(f"{label}: {width}x{height} is over max_pixels={self.max_pixels}; stylized at {w}x{h}")
        with torch.inference_mode():
            work = _resize(x, (h, w))
            y = self._forward(work)
            if self.restore_size:
                y = _resize(y, (height, width))
            if self.keep_color:
                y = transfer_chroma(y, x if y.shape[-2:] == x.shape[-2:] else work)
        return y

    def stylize_tensor(self, x: Tensor) -> Tensor:
        """N x 3 x H x W (or 3 x H x W) float in [-1, 1] -> the same shape (at the working size
        when ``restore_size=False``), dtype and device."""
        if x.ndim not in (3, 4) or x.shape[-3] != 3:
            raise ImageError(f"expected a 3 x H x W or N x 3 x H x W tensor in [-1, 1], got shape {tuple(x.shape)}")
        y = self._stylize_batch(x.unsqueeze(0) if x.ndim == 3 else x, "tensor")
        return (y[0] if x.ndim == 3 else y).to(x.device, x.dtype)

    def stylize_arrays(self, arrays: Sequence[np.ndarray], labels: Sequence[str] | None = None) -> list[np.ndarray]:
        """Stylize H x W x 3 arrays (``uint8``, ``uint16`` or float in [0, 1]); images of one
        size and type are stacked into batches of ``batch_size``. Returns arrays of the same
        types. Video frames and face crops go through here.

        Also accepts H x W (x 1) grayscale, returned as H x W x 3, and H x W x 4 whose alpha
        channel is returned unchanged. ``labels`` name the images in notices.
        """
        split = [_split_array(np.asarray(a)) for a in arrays]
        results: list[np.ndarray | None] = [None] * len(split)
        groups: dict[tuple, list[int]] = {}
        for i, (pixels, _) in enumerate(split):
            groups.setdefault((pixels.shape, pixels.dtype.str), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                pixels = np.stack([split[i][0] for i in chunk])
                label = labels[chunk[0]] if labels else "image"
                out = from_tensor(self._stylize_batch(to_tensor(pixels, device=self.device), label), pixels.dtype)
                for i, y in zip(chunk, out):
                    alpha = split[i][1]
                    results[i] = y if alpha is None else np.dstack([y, _resize_array(alpha, y.shape[:2])])
        return results  # type: ignore[return-value]

    def stylize_decoded(self, images: Sequence[DecodedImage], labels: Sequence[str] | None = None) -> list[DecodedImage]:
        """Stylize decoded files, keeping alpha, bit depth, ICC profile and EXIF."""
        arrays = [im.pixels if im.alpha is None else np.dstack([im.pixels, im.alpha]) for im in images]
        outputs = self.stylize_arrays(arrays, labels)
        return [
            DecodedImage(out[..., :3], None if im.alpha is None else out[..., 3], im.icc_profile, im.exif, im.format)
            for im, out in zip(images, outputs)
        ]

    def stylize(self, image: Image.Image | np.ndarray | Tensor) -> Image.Image | np.ndarray | Tensor:
        """Stylize one image and return the same kind at the input's size.

        - PIL image (any mode) -> RGB PIL image (RGBA when the input has transparency; the
          alpha channel is carried over unchanged);
        - numpy H x W x 3 ``uint8``/``uint16``/float in [0, 1] -> the same dtype (grayscale
          H x W gives H x W x 3; H x W x 4 keeps its alpha);
        - tensor 3 x H x W or N x 3 x H x W in [-1, 1] -> a tensor of the same shape.
        """
        if isinstance(image, Tensor):
            return self.stylize_tensor(image)
        if isinstance(image, Image.Image):
            return self.stylize_decoded([decode_pil(image)])[0].to_pil()
        if isinstance(image, np.ndarray):
            return self.stylize_arrays([image])[0]
        raise ImageError(f"cannot stylize a {type(image).__name__}; give a PIL image, a numpy array or a tensor")

    def stylize_files(
        self,
        jobs: Iterable[tuple[str | os.PathLike | BinaryIO, str | os.PathLike | BinaryIO]],
        *,
        format: str | None = None,
        side_by_side: bool = False,
        overwrite: bool = False,
        skip_existing: bool = False,
    ) -> BatchReport:
        """Stylize (source, destination) pairs; never stops at a bad file.

        Sources and destinations are paths or binary streams (stdin/stdout). An existing
        destination is skipped with ``skip_existing``, replaced with ``overwrite``, and is a
        failure otherwise. Every output is written atomically. Returns a :class:`BatchReport`.
        """
        from tqdm import tqdm

        jobs = list(jobs)
        report = BatchReport()
        with tqdm(total=len(jobs), unit="img", disable=None if self.progress else True) as bar:
            for start in range(0, len(jobs), self.batch_size):
                decoded = []
                for src, dst in jobs[start : start + self.batch_size]:
                    label, dst_label = source_name(src), source_name(dst)
                    try:
                        if skip_destination(src, dst, overwrite=overwrite, skip_existing=skip_existing):
                            report.skipped.append((label, dst_label))
                            bar.update()
                            continue
                        decoded.append((src, dst, load_image(src)))
                    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                        report.fail(src, exc)
                        bar.update()
                if decoded:
                    self._stylize_and_save(decoded, report, bar, format, side_by_side, overwrite, skip_existing)
        return report

    def _stylize_and_save(
        self, items, report: BatchReport, bar, format: str | None, side_by_side: bool, overwrite: bool, skip_existing: bool
    ) -> None:
        try:
            results = self.stylize_decoded([image for _, _, image in items], [source_name(src) for src, _, _ in items])
        except Exception as exc:  # noqa: BLE001
            for src, _, _ in items:
                report.fail(src, exc)
                bar.update()
            return
        for (src, dst, image), result in zip(items, results):
            try:
                if side_by_side:
                    result = _side_by_side(image, result)
                save_image(result, dst, format=format, overwrite=overwrite)
                report.done.append((source_name(src), source_name(dst)))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                report.not_written(src, dst, exc, skip_existing=skip_existing)
            bar.update()


def _resize_array(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize H x W (x C) pixels of any supported dtype to ``size`` (bicubic, antialiased)."""
    if array.shape[:2] == tuple(size):
        return array
    x = torch.from_numpy(array.reshape(*array.shape[:2], -1).astype(np.float32)).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)[0].permute(1, 2, 0)
    if np.issubdtype(array.dtype, np.integer):
        y = y.round().clamp(0, np.iinfo(array.dtype).max)
    return y.numpy().astype(array.dtype).reshape(*size, *array.shape[2:])


def _side_by_side(before: DecodedImage, after: DecodedImage) -> DecodedImage:
    size = after.pixels.shape[:2]
    pixels = np.hstack([_resize_array(before.pixels, size), after.pixels])
    alpha = None if before.alpha is None else np.hstack([_resize_array(before.alpha, size), after.alpha])
    return DecodedImage(pixels, alpha, after.icc_profile, after.exif, after.format)


def find_images(directory: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files (by suffix) in ``directory``, sorted; hidden files and folders are left out.
    Devices, pipes and broken links with an image suffix are listed too, for the reader to refuse
    with its reason rather than be skipped unsaid."""
    root = Path(directory)
    found = root.rglob("*") if recursive else root.glob("*")
    return sorted(
        p for p in found
        if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )  # fmt: skip


def output_suffix(src: str | os.PathLike, format: str | None = None) -> str:
    """The output file suffix: ``format`` if given, else the input's when writable and lossless
    enough to be useful (GIF becomes PNG)."""
    if format:
        return "." + format.lower().lstrip(".")
    suffix = Path(src).suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES and suffix != ".gif" else ".png"


@functools.lru_cache(maxsize=2)
def _shared_stylizer(weights: str | os.PathLike, options: tuple[tuple[str, Any], ...]) -> Stylizer:
    return Stylizer(weights, **dict(options))


def _stylizer(style: str | os.PathLike | nn.Module, kwargs: dict) -> Stylizer:
    options = tuple(sorted(kwargs.items()))
    if isinstance(style, nn.Module) or not _hashable((style, options)):  # e.g. a list of calibration photos
        return Stylizer(style, **kwargs)
    return _shared_stylizer(style, options)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def stylize(
    image: str | os.PathLike | Image.Image | np.ndarray | Tensor, style: str | os.PathLike | nn.Module = DEFAULT_WEIGHTS, **kwargs: Any
) -> Image.Image | np.ndarray | Tensor:
    """The one-liner: stylize a file (returns a PIL image) or an in-memory image (returns the
    same kind). ``style`` is any weights name or file; ``kwargs`` go to :class:`Stylizer`. The
    last two stylizers are kept, so repeated calls do not reload the weights.

    >>> animegan2.stylize("photo.jpg", style="hayao").save("anime.png")   # doctest: +SKIP
    """
    stylizer = _stylizer(style, kwargs)
    if isinstance(image, (str, os.PathLike)):
        return stylizer.stylize_decoded([load_image(image)], [str(image)])[0].to_pil()
    return stylizer.stylize(image)


def stylize_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    style: str | os.PathLike | nn.Module = DEFAULT_WEIGHTS,
    *,
    format: str | None = None,
    side_by_side: bool = False,
    overwrite: bool = True,
    **kwargs: Any,
) -> Path:
    """Stylize one file into ``dst`` (atomically, keeping alpha, 16 bits, ICC and EXIF where
    the format allows). Raises the file's error.

    >>> stylize_file("photo.jpg", "anime.png", style="hayao")   # doctest: +SKIP
    """
    report = _stylizer(style, kwargs).stylize_files([(src, dst)], format=format, side_by_side=side_by_side, overwrite=overwrite)
    if report.failed:
        raise report.failed[0][2]
    return Path(dst)


def stylize_dir(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    style: str | os.PathLike | nn.Module = DEFAULT_WEIGHTS,
    *,
    recursive: bool = False,
    suffix: str = "",
    format: str | None = None,
    side_by_side: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
    **kwargs: Any,
) -> BatchReport:
    """Stylize every image in ``src_dir`` into ``dst_dir`` (same relative paths, ``suffix`` added
    to the stem, extension from ``format`` or the input). Bad files are reported, not raised.

    >>> report = stylize_dir("photos", "anime", style="hayao", skip_existing=True)   # doctest: +SKIP
    >>> [f"{src}: {why}" for src, why, _ in report.failed]                            # doctest: +SKIP
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if not src_dir.is_dir():
        raise ConfigError(f"{src_dir} is not a folder")
    jobs = [
        (p, dst_dir / p.relative_to(src_dir).parent / f"{p.stem}{suffix}{output_suffix(p, format)}")
        for p in find_images(src_dir, recursive)
    ]
    return _stylizer(style, kwargs).stylize_files(
        jobs, format=format, side_by_side=side_by_side, overwrite=overwrite, skip_existing=skip_existing
    )


# `import animegan2.stylize` gives the package's one-liner's name to this module: it must be callable.
make_callable(__name__, "stylize")
