"""Image decoding and encoding, and the conversion between pixels and network tensors.

Decoding applies the EXIF orientation, turns every colour mode into RGB (+ alpha),
keeps 16 bits per channel where the file has them, keeps the ICC profile (when it is an
RGB one) and the EXIF block, and refuses what Pillow calls a decompression bomb. Every
failure is an :class:`~animegan2.errors.ImageError` with a one-line message. Saving is
atomic: a temporary file in the destination's directory, then ``os.replace``.

>>> import numpy as np
>>> x = to_tensor(np.zeros((4, 6, 3), np.uint8))
>>> x.shape, x.min().item()
(torch.Size([1, 3, 4, 6]), -1.0)
>>> from_tensor(x[0]).shape
(4, 6, 3)
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ._atomic import write_bytes_atomic
from .errors import ImageError, OutputExistsError, WriteError

logger = logging.getLogger("animegan2")

#: Output formats by file suffix.
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".gif": "GIF",
}
#: Suffixes of the files read as photos (by :func:`load_image`) when a folder is listed; the
#: trainer's data sets take these less GIF (``train.data.DATASET_SUFFIXES``).
IMAGE_SUFFIXES = frozenset(FORMATS)
_KEEPS_METADATA = {"PNG", "JPEG", "WEBP", "TIFF"}
_KEEPS_ALPHA = {"PNG", "WEBP", "TIFF"}
_EXIF_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class DecodedImage:
    """Pixels and what must travel with them to the output file.

    ``pixels``: H x W x 3 RGB, ``uint8`` or ``uint16``; ``alpha``: H x W of the same dtype
    or ``None``; ``icc_profile`` (an RGB profile) and ``exif`` (orientation already
    applied and removed) are written back where the output format allows.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None

    @property
    def bit_depth(self) -> int:
        """8 or 16 bits per channel."""
        return 16 if self.pixels.dtype == np.uint16 else 8

    def to_pil(self) -> Image.Image:
        """An RGB or RGBA PIL image (16-bit pixels are reduced to 8 bits; Pillow has no 48-bit RGB)."""
        rgb = to_uint8(self.pixels)
        if self.alpha is None:
            image = Image.fromarray(rgb, "RGB")
        else:
            image = Image.fromarray(np.dstack([rgb, to_uint8(self.alpha)]), "RGBA")
        if self.icc_profile:
            image.info["icc_profile"] = self.icc_profile
        return image


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by rounding ``x / 257``; uint8 unchanged."""
    if pixels.dtype == np.uint8:
        return pixels
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def source_name(source: object) -> str:
    """A printable name for a path or stream (``"<stream>"`` when it has none)."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _read(source: str | os.PathLike | bytes | BinaryIO, label: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        if isinstance(source, (str, os.PathLike)):
            mode = os.stat(source).st_mode
            if not stat.S_ISREG(mode):  # reading /dev/zero or a pipe would not end
                kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
                raise ImageError(f"{label}: not a regular file but {kind}; give an image file")
            return Path(source).read_bytes()
        return source.read()
    except OSError as exc:
        raise ImageError(f"{label}: cannot read: {exc.strerror or exc}") from exc


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an H x W (x C) array, as ``ImageOps.exif_transpose`` does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(array)) if op else array


def _is_16bit_colour(data: bytes, image: Image.Image) -> bool:
    # Pillow decodes 16-bit RGB(A) at 8 bits, so such files are read with OpenCV instead.
    if data.startswith(_PNG_SIGNATURE) and len(data) > 25:
        return data[24] == 16 and data[25] in (2, 6)
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return image.tag_v2.get(277, 1) >= 3 and max(bits) == 16
    return False


def _rgb_profile(icc: bytes | None) -> bytes | None:
    # Bytes 16-19 of an ICC header name the colour space; a Gray or CMYK profile must not
    # be attached to the RGB output.
    return icc if icc and icc[16:20] == b"RGB " else None


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if icc:
        from PIL import ImageCms

        try:
            return ImageCms.profileToProfile(
                image, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
        except (ImageCms.PyCMSError, OSError):
            logger.debug("CMYK ICC profile unusable; converting without it")
    return image.convert("RGB")


def decode_pil(image: Image.Image) -> DecodedImage:
    """Split a PIL image of any mode into RGB pixels (+ alpha), keeping 16-bit grayscale at 16 bits.

    No EXIF orientation is applied here (:func:`load_image` does that for files).
    """
    icc = image.info.get("icc_profile")
    exif = image.info.get("exif")
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
        return DecodedImage(np.dstack([gray] * 3), None, _rgb_profile(icc), exif, image.format)
    if image.mode == "CMYK":
        return DecodedImage(np.asarray(_cmyk_to_rgb(image)), None, None, exif, image.format)
    if image.has_transparency_data:
        rgba = np.asarray(image.convert("RGBA"))
        return DecodedImage(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), _rgb_profile(icc), exif, image.format)
    return DecodedImage(np.asarray(image.convert("RGB")), None, _rgb_profile(icc), exif, image.format)


def _decode_16bit_colour(data: bytes, image: Image.Image) -> DecodedImage | None:
    try:
        import cv2
    except ImportError:
        logger.warning(
            "16-bit colour image read at 8 bits: install opencv-python-headless "
            "(pip install 'animegan2[face]') to keep 16 bits"
        )
        return None
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim != 3:
        return None
    pixels = np.ascontiguousarray(array[..., 2::-1])
    alpha = np.ascontiguousarray(array[..., 3]) if array.shape[2] == 4 else None
    return DecodedImage(pixels, alpha, _rgb_profile(image.info.get("icc_profile")), image.info.get("exif"), image.format)


_UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


def _open_guarded(data: bytes, label: str) -> Image.Image:
    """Open (not decode) ``data`` with Pillow, refusing sizes over ``PIL.Image.MAX_IMAGE_PIXELS``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{label}: refused as a possible decompression bomb ({exc}); "
            "if you trust it, raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from exc


def check_not_bomb(data: bytes, label: str) -> None:
    """Refuse ``data`` as :func:`load_image` does when its header declares more pixels than
    ``PIL.Image.MAX_IMAGE_PIXELS``, without decoding it: the guard for other decoders (OpenCV).
    Files Pillow cannot read are left to that decoder."""
    try:
        _open_guarded(data, label).close()
    except _UNREADABLE:
        pass


def load_image(source: str | os.PathLike | bytes | BinaryIO) -> DecodedImage:
    """Decode an image file (path, bytes or binary stream) into RGB pixels + alpha + metadata.

    The EXIF orientation is applied (and reset in the kept EXIF block); grayscale, palette,
    CMYK (through its ICC profile when it has one), LA/RGBA and 16-bit images are all
    returned as RGB ``uint8``/``uint16`` with the alpha channel apart. Images over Pillow's
    ``PIL.Image.MAX_IMAGE_PIXELS`` are refused as possible decompression bombs.

    >>> load_image(b"not an image")
    Traceback (most recent call last):
    ...
    animegan2.errors.ImageError: <stream>: not an image (no known image format); check the file
    """
    label = source_name(source)
    data = _read(source, label)
    if not data:
        raise ImageError(f"{label}: empty file (0 bytes)")
    try:
        image = _open_guarded(data, label)
        image.load()
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not an image (no known image format); check the file") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from exc
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        logger.warning(
            f"{label} is animated ({frames} frames): only its first frame is used; "
            f"`animegan2 video {label} -o OUT.gif` stylizes every frame"
        )
    decoded = (_decode_16bit_colour(data, image) if _is_16bit_colour(data, image) else None) or decode_pil(image)
    exif = image.getexif()
    orientation = exif.get(_EXIF_ORIENTATION, 1)
    if orientation != 1:
        decoded.pixels = _orient(decoded.pixels, orientation)
        decoded.alpha = None if decoded.alpha is None else _orient(decoded.alpha, orientation)
        del exif[_EXIF_ORIENTATION]
        decoded.exif = exif.tobytes() if len(exif) else None
    decoded.format = image.format
    return decoded


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png16(pixels: np.ndarray, alpha: np.ndarray | None = None, *, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A 16-bit RGB(A) PNG (Pillow cannot write one), with ``iCCP`` and ``eXIf`` chunks."""
    planes = pixels if alpha is None else np.dstack([pixels, alpha])
    height, width, channels = planes.shape
    rows = np.ascontiguousarray(planes, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()  # filter type 0 per row
    colour_type = 6 if channels == 4 else 2
    out = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))]
    if icc_profile:
        out.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out += [_png_chunk(b"IDAT", zlib.compress(raw, 6)), _png_chunk(b"IEND", b"")]
    return b"".join(out)


def encode_image(image: DecodedImage, format: str, *, quality: int = 95) -> bytes:
    """Encode to ``format`` (``"PNG"``, ``"JPEG"``, ...). 16 bits are kept in PNG (and TIFF when
    OpenCV is installed), reduced to 8 elsewhere; alpha is kept in PNG/WebP/TIFF and dropped in
    formats without it; ICC profile and EXIF are kept in PNG/JPEG/WebP/TIFF."""
    format = format.upper()
    alpha = image.alpha if format in _KEEPS_ALPHA else None
    icc, exif = (image.icc_profile, image.exif) if format in _KEEPS_METADATA else (None, None)
    if image.bit_depth == 16 and format == "PNG":
        return encode_png16(image.pixels, alpha, icc_profile=icc, exif=exif)
    if image.bit_depth == 16 and format == "TIFF":
        try:
            import cv2

            planes = image.pixels[..., ::-1] if alpha is None else np.dstack([image.pixels[..., ::-1], alpha])
            return cv2.imencode(".tif", np.ascontiguousarray(planes))[1].tobytes()
        except ImportError:
            logger.warning("16-bit TIFF written at 8 bits: install opencv-python-headless to keep 16 bits")
    rgb = to_uint8(image.pixels)
    pil = Image.fromarray(rgb, "RGB") if alpha is None else Image.fromarray(np.dstack([rgb, to_uint8(alpha)]), "RGBA")
    options: dict = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if format in ("JPEG", "WEBP"):
        options["quality"] = quality
    buffer = io.BytesIO()
    try:
        pil.save(buffer, format=format, **options)
    except (KeyError, ValueError, OSError) as exc:
        raise ImageError(f"cannot encode as {format}: {exc}") from exc
    return buffer.getvalue()


def format_for(path: str | os.PathLike, format: str | None = None) -> str:
    """The output format for ``path``: ``format`` if given (``"png"``, ``"jpg"``...), else from the suffix."""
    suffix = "." + format.lower().lstrip(".") if format else Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ImageError(f"{path}: unknown output format {suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def save_image(
    image: DecodedImage, dest: str | os.PathLike | BinaryIO, *, format: str | None = None, quality: int = 95, overwrite: bool = True
) -> None:
    """Encode ``image`` and write it to ``dest`` atomically (temp file, then rename), creating
    missing parent folders; a failure leaves nothing under ``dest``. Without ``overwrite`` an
    existing ``dest`` is never replaced (:class:`OutputExistsError`, even if another process
    creates it meanwhile). ``dest`` may also be a binary stream (e.g. ``sys.stdout.buffer``),
    in which case ``format`` is required."""
    if not isinstance(dest, (str, os.PathLike)):
        if format is None:
            raise ImageError("format is needed to write an image to a stream")
        dest.write(encode_image(image, format_for("stream", format), quality=quality))
        dest.flush()
        return
    dest = Path(dest)
    data = encode_image(image, format_for(dest, format), quality=quality)
    try:
        write_bytes_atomic(dest, data, replace=overwrite, parents=True)
    except FileExistsError as exc:
        raise OutputExistsError(f"{dest} already exists (another run wrote it meanwhile); it was left as it is") from exc
    except WriteError as exc:  # worded for batch reports, which name the source first
        raise WriteError(f"{dest}: cannot write: {exc.reason}", cause=exc, path=dest, reason=exc.reason) from exc


def to_tensor(pixels: np.ndarray, *, device: str | torch.device | None = None) -> Tensor:
    """H x W x 3 or N x H x W x 3 RGB pixels (``uint8``, ``uint16``, or float in [0, 1]) -> N x 3 x H x W
    RGB float32 in [-1, 1], as the original scripts scale (``x / 127.5 - 1`` for 8 bits). (The
    trainer's OpenCV images are BGR: ``train.data.bgr_to_tensor``.)

    >>> to_tensor(np.array([[[0, 255, 51]]], np.uint8)).flatten().tolist()
    [-1.0, 1.0, -0.6000000238418579]
    """
    array = np.asarray(pixels)
    if not array.flags.writeable:  # e.g. np.asarray of a PIL image; torch wants writable memory
        array = array.copy()
    if array.ndim == 3:
        array = array[None]
    if array.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(array)).to(device).permute(0, 3, 1, 2).float()
        return (x / 127.5 - 1.0).contiguous()
    if array.dtype == np.uint16:
        x = torch.from_numpy(array.astype(np.float32)).to(device).permute(0, 3, 1, 2)
        return (x / 32767.5 - 1.0).contiguous()
    if np.issubdtype(array.dtype, np.floating):
        x = torch.from_numpy(array.astype(np.float32)).to(device).permute(0, 3, 1, 2)
        return (x * 2.0 - 1.0).contiguous()
    raise ImageError(f"unsupported pixel type {array.dtype}; use uint8, uint16 or float in [0, 1]")


def from_tensor(x: Tensor, dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """N x 3 x H x W (or 3 x H x W) in [-1, 1] -> N x H x W x 3 (or H x W x 3) pixels of ``dtype``.

    Integer outputs are clipped and truncated like the original ``inverse_transform``
    (``uint8(clip((x + 1) / 2 * 255))``); floats are clipped to [0, 1].

    >>> from_tensor(torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1)).flatten().tolist()
    [0, 127, 255]
    """
    dtype = np.dtype(dtype)
    x = x.detach().float()
    unit = (x + 1.0) / 2.0
    if dtype == np.uint8:
        out = (unit * 255.0).clamp(0, 255).to(torch.uint8)
    elif dtype == np.uint16:
        out = (unit * 65535.0).clamp(0, 65535).to(torch.int32)
    elif np.issubdtype(dtype, np.floating):
        out = unit.clamp(0, 1)
    else:
        raise ImageError(f"unsupported pixel type {dtype}; use uint8, uint16 or a float type")
    out = out.movedim(-3, -1).cpu().numpy()
    return out.astype(dtype, copy=False)
