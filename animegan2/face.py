"""face2paint: the established torch.hub drop-in, plus face detection, alignment and paste-back.

Without ``detect`` the function behaves exactly like the ``face2paint`` hub entry of the
published PyTorch port: centre crop to a square, Lanczos resize to ``size``, run the
model, clip. With ``detect=True`` the largest face is found with OpenCV's Haar cascades
(extra ``face``), the eye line is levelled, a square with ``margin`` around the face is
stylized, and with ``paste_back=True`` the result is blended back into the full photo
through a feathered mask.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from PIL import Image
from torch import nn

from .batch import BatchReport, skip_destination
from .errors import ConfigError, FaceNotFoundError, MissingDependencyError, OutputExistsError, require
from .imageio import DecodedImage, from_tensor, load_image, save_image, to_uint8
from .stylize import Stylizer

ON_MISSING = ("error", "center")
_DETECT_MAX_SIDE = 1024  # faces are found on a copy no larger than this: cascades scale badly
_EYE_SEARCH_WIDTH = 400  # eyes are searched on the face box resized to this width


@dataclass(frozen=True)
class Face:
    """A detected face in photo pixels.

    ``box`` is ``(x, y, w, h)``; ``eyes`` the centres of the eye on the image's left and
    the one on its right, or ``None`` when the eyes were not both found.
    """

    box: tuple[int, int, int, int]
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None

    @property
    def angle(self) -> float:
        """Tilt of the eye line in degrees (positive: the right-hand eye is lower); 0 without eyes."""
        if self.eyes is None:
            return 0.0
        (xl, yl), (xr, yr) = self.eyes
        return math.degrees(math.atan2(yr - yl, xr - xl))


@dataclass(frozen=True)
class FaceCrop:
    """The square that is stylized: ``matrix`` (2x3) maps photo pixels to crop pixels."""

    image: Image.Image
    matrix: np.ndarray
    face: Face

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` photo coordinates into the crop."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]


def _cascade(cv2, name: str):
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():  # an installation without its data files: no face search can run
        raise MissingDependencyError(
            f"OpenCV's {name} is missing from {cv2.data.haarcascades}: reinstall with "
            "pip install --force-reinstall 'animegan2[face]'"
        )
    return cascade


def _as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def detect_face(image: Image.Image | np.ndarray) -> Face | None:
    """Find the largest frontal face and, inside it, the two eyes; ``None`` if there is no face.

    >>> from PIL import Image
    >>> detect_face(Image.new("RGB", (64, 64))) is None
    True
    """
    cv2 = require("cv2", "face")
    full = cv2.cvtColor(_as_rgb_array(image), cv2.COLOR_RGB2GRAY)
    h, w = full.shape
    scale = min(1.0, _DETECT_MAX_SIDE / max(h, w))
    small = full if scale == 1.0 else cv2.resize(full, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    small = cv2.equalizeHist(small)
    min_side = max(24, min(small.shape) // 12)
    faces = _cascade(cv2, "haarcascade_frontalface_default.xml").detectMultiScale(
        small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    if len(faces) == 0:
        return None
    x, y, fw, fh = (round(int(v) / scale) for v in max(faces, key=lambda b: b[2] * b[3]))
    return Face(box=(x, y, fw, fh), eyes=_find_eyes(cv2, full, (x, y, fw, fh)))


def _find_eyes(cv2, gray: np.ndarray, box: tuple[int, int, int, int]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Eye centres in photo pixels, searched on the face box's upper part (no nostrils or
    mouth) at a fixed width with its own contrast stretch; ``None`` unless both are found."""
    x, y, fw, fh = box
    face = gray[y : y + fh, x : x + fw]
    k = _EYE_SEARCH_WIDTH / face.shape[1]
    upper = face[: face.shape[0] * 11 // 20]
    upper = cv2.equalizeHist(cv2.resize(upper, (_EYE_SEARCH_WIDTH, round(upper.shape[0] * k)), interpolation=cv2.INTER_AREA))
    n = _EYE_SEARCH_WIDTH
    found = _cascade(cv2, "haarcascade_eye.xml").detectMultiScale(
        upper, scaleFactor=1.1, minNeighbors=5, minSize=(n // 10, n // 10), maxSize=(n // 3, n // 3)
    )
    left = [e for e in found if e[0] + e[2] / 2 < n / 2]
    right = [e for e in found if e[0] + e[2] / 2 >= n / 2]
    if not (left and right):
        return None
    el, er = (max(side, key=lambda e: e[2] * e[3]) for side in (left, right))
    eyes = tuple((x + float((e[0] + e[2] / 2) / k), y + float((e[1] + e[3] / 2) / k)) for e in (el, er))
    return eyes if abs(Face(box, eyes).angle) <= 45 else None


def crop_face(image: Image.Image, face: Face, size: int | None = 512, margin: float = 0.5, align: bool = True) -> FaceCrop:
    """Cut the square around ``face``: the box grown by ``margin`` of its side on every side,
    rotated so the eye line is horizontal (``align``), resized with Lanczos to ``size``
    (``None``: the square's own side in photo pixels).

    The square stays inside the photo: where the margin would reach past an edge it is moved
    in, and shrunk when the photo is too small for it, so the crop never shows padding (a
    mirrored copy of hair along an edge)."""
    cv2 = require("cv2", "face")
    rgb = _as_rgb_array(image)
    height, width = rgb.shape[:2]
    x, y, w, h = face.box
    angle = face.angle if align else 0.0
    # The rotated square's bounding box is `spread` times its side; the last row/column (-1)
    # is the farthest a bilinear sample can sit without reading past the photo.
    spread = abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle)))
    side = max(1, math.floor(min(max(w, h) * (1 + 2 * margin), (min(width, height) - 1) / spread)))
    half = side * spread / 2
    centre = tuple(
        min(max(c, half), max(half, limit - 1 - half)) for c, limit in ((x + w / 2, width), (y + h / 2, height))
    )
    origin = (round(centre[0] - side / 2), round(centre[1] - side / 2))
    matrix = cv2.getRotationMatrix2D((origin[0] + side / 2, origin[1] + side / 2), angle, 1.0)
    matrix[:, 2] -= origin
    # Rounding the origin can move a sample by half a pixel past the edge: repeat the edge there.
    square = cv2.warpAffine(rgb, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    size = size or side
    crop = Image.fromarray(square)
    if size != side:
        crop = crop.resize((size, size), Image.LANCZOS)
    return FaceCrop(image=crop, matrix=matrix * (size / side), face=face)


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    return img.resize((size, size), Image.LANCZOS)


def _paint(model: nn.Module | Stylizer, img: Image.Image, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The hub entry's numerics: input and output CHW tensors in [-1, 1] on the CPU."""
    stylizer = model if isinstance(model, Stylizer) else Stylizer(model, device=device, progress=False)
    # The hub port scales bytes as x / 255 * 2 - 1, which is one float32 ulp away from
    # imageio.to_tensor's x / 127.5 - 1 for some values; the drop-in must match it bit for bit.
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255) * 2 - 1
    return x, stylizer.stylize_tensor(x)


def _to_pil(chw: torch.Tensor) -> Image.Image:
    return Image.fromarray(from_tensor(chw))


def paste_face(photo: Image.Image, styled: Image.Image, crop: FaceCrop, feather: float = 0.15) -> Image.Image:
    """Blend the stylized crop back into ``photo`` through a mask that fades to zero over
    ``feather`` of the crop's side at its edges; pixels outside the crop stay untouched."""
    cv2 = require("cv2", "face")
    base = _as_rgb_array(photo)
    size = styled.size[0]
    ramp = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)) / max(1e-6, feather * size)
    ramp = np.clip(ramp, 0.0, 1.0).astype(np.float32)
    mask_crop = np.minimum(ramp[:, None], ramp[None, :])
    inverse = cv2.invertAffineTransform(crop.matrix)
    out_size = (base.shape[1], base.shape[0])
    mask = cv2.warpAffine(mask_crop, inverse, out_size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    warped = cv2.warpAffine(np.asarray(styled.convert("RGB")), inverse, out_size, flags=cv2.INTER_CUBIC)
    inside = mask > 0
    blended = base.copy()
    m = mask[inside][:, None]
    blended[inside] = np.clip(base[inside] * (1 - m) + warped[inside] * m + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(blended)


def _side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    out = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    out.paste(left.convert("RGB"), (0, 0))
    out.paste(right, (left.width, 0))
    return out


@dataclass(frozen=True)
class FaceOptions:
    """How :func:`face2paint` frames the face: find it (``detect``), grow its box by ``margin``,
    level the eyes (``align``), blend the result back into the photo (``paste_back``, with a
    soft edge of ``feather``), and what to do without a face (``on_missing``)."""

    detect: bool = False
    margin: float = 0.5
    align: bool = True
    paste_back: bool = False
    feather: float = 0.15
    on_missing: str = "error"

    def __post_init__(self) -> None:
        if self.on_missing not in ON_MISSING:
            raise ConfigError(f"on_missing must be one of {ON_MISSING}, not {self.on_missing!r}")
        if self.margin < 0:
            raise ConfigError(f"margin must be >= 0 (a fraction of the face box), not {self.margin}")

    def updated(self, overrides: dict) -> FaceOptions:
        """These options with ``overrides`` (keyword arguments of a face2paint call) applied."""
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"face2paint got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        return replace(self, **overrides) if overrides else self


def face2paint(
    size: int = 512,
    device: str | torch.device = "cpu",
    side_by_side: bool = False,
    *,
    detect: bool = False,
    margin: float = 0.5,
    align: bool = True,
    paste_back: bool = False,
    feather: float = 0.15,
    on_missing: str = "error",
) -> Callable[..., Image.Image]:
    """Return ``f(model, img, size=..., side_by_side=...) -> PIL.Image``, the hub's face2paint.

    ``model`` is a generator module or a :class:`~animegan2.stylize.Stylizer` (which brings
    its own device and dtype).

    Without ``detect`` it is the established drop-in: centre crop to a square, Lanczos
    resize to ``size``, model, clip; ``side_by_side`` puts input and output next to each other.
    With ``detect=True`` (needs ``animegan2[face]``) the largest face is found, levelled by
    its eyes (``align``), cropped with ``margin`` (a fraction of the face box on each side)
    and, with ``paste_back``, blended into the full photo (``feather``: width of the soft
    edge as a fraction of the crop). No face: :class:`FaceNotFoundError`, or a centre crop
    when ``on_missing="center"``. The keyword options (:class:`FaceOptions`) may also be
    given to each call of ``f``.

    >>> import torch
    >>> from PIL import Image
    >>> from animegan2 import Generator
    >>> paint = face2paint(size=64)
    >>> paint(Generator().eval(), Image.new("RGB", (80, 60))).size
    (64, 64)
    """
    defaults = FaceOptions(detect=detect, margin=margin, align=align, paste_back=paste_back, feather=feather, on_missing=on_missing)

    def apply(
        model: nn.Module | Stylizer,
        img: Image.Image,
        size: int = size,
        side_by_side: bool = side_by_side,
        device: str | torch.device = device,
        **overrides,
    ) -> Image.Image:
        opts = defaults.updated(overrides)
        face = _find_face(img, opts)
        if face is None:
            return _paint_centre(model, img, size, side_by_side, device)
        return _paint_face(model, img, face, size, side_by_side, device, opts)

    return apply


def _find_face(img: Image.Image, opts: FaceOptions) -> Face | None:
    """The face to frame, or ``None`` for a centre crop (no detection, or none found and allowed)."""
    if not opts.detect:
        return None
    face = detect_face(img)
    if face is None and opts.on_missing == "error":
        raise FaceNotFoundError(
            "no face found in the image: use on_missing='center' (CLI: --on-missing center) "
            "for a centre crop, or crop the photo closer to the face"
        )
    return face


def _paint_centre(model: nn.Module | Stylizer, img: Image.Image, size: int, side_by_side: bool, device) -> Image.Image:
    """The hub drop-in: centre square, Lanczos to ``size``, model; input beside output on request."""
    crop_img = _center_crop(img.convert("RGB") if img.mode != "RGB" else img, size)
    x, y = _paint(model, crop_img, device)
    return _to_pil(torch.cat([x, y], dim=2) if side_by_side else y)


def _paint_face(
    model: nn.Module | Stylizer, img: Image.Image, face: Face, size: int, side_by_side: bool, device, opts: FaceOptions
) -> Image.Image:
    """Stylize the levelled square around ``face``; pasted back into ``img`` with ``paste_back``."""
    crop = crop_face(img, face, size=size, margin=opts.margin, align=opts.align)
    styled = _to_pil(_paint(model, crop.image, device)[1])
    if opts.paste_back:
        result = paste_face(img, styled, crop, feather=opts.feather)
        return _side_by_side(img, result) if side_by_side else result
    return _side_by_side(crop.image, styled) if side_by_side else styled


def paint_files(
    jobs: Iterable[tuple[str | os.PathLike, str | os.PathLike]],
    paint: Callable[..., Image.Image],
    model: nn.Module | Stylizer,
    *,
    progress: bool = True,
    overwrite: bool = False,
    skip_existing: bool = False,
) -> BatchReport:
    """Run ``paint`` (made by :func:`face2paint`) over (source, destination) files; a bad file
    or a photo without a face is reported in the returned :class:`BatchReport`, never stops
    the run. An existing destination is skipped with ``skip_existing``, replaced with
    ``overwrite``, and is a failure otherwise. Outputs are written atomically with the
    source's ICC profile and EXIF; alpha is kept when the output is the whole photo
    (paste-back)."""
    from tqdm.auto import tqdm

    report = BatchReport()
    for src, dst in tqdm(list(jobs), unit="img", disable=None if progress else True):
        try:
            if skip_destination(src, dst, overwrite=overwrite, skip_existing=skip_existing):
                report.skipped.append((str(src), str(dst)))
                continue
            image = load_image(src)
            out = np.asarray(paint(model, image.to_pil().convert("RGB")))
            alpha = to_uint8(image.alpha) if image.alpha is not None and out.shape[:2] == image.pixels.shape[:2] else None
            save_image(DecodedImage(out, alpha, image.icc_profile, image.exif), dst, overwrite=overwrite)
            report.done.append((str(src), str(dst)))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
            report.not_written(src, dst, exc, skip_existing=skip_existing)
    return report
