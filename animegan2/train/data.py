"""Data for training: the original folder layout, edge smoothing, preparation, data mean,
and the unpaired dataset the trainer reads.

Layout (DESIGN.md 2.4)::

    DATA/train_photo/       real photos
    DATA/<style>/style/     anime frames
    DATA/<style>/smooth/    the same frames with edges blurred (``animegan2 data smooth``)
    DATA/val/               photos for the per-epoch sample grid (optional: train_photo is used)

Images are read with OpenCV (BGR); the tools skip unreadable files and report them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .._atomic import write_bytes_atomic
from ..errors import ConfigError, ImageError, WriteError, require
from ..imageio import IMAGE_SUFFIXES as _PHOTO_SUFFIXES
from ..imageio import check_not_bomb

#: Suffixes of the images a data set folder holds: those read as photos elsewhere, less GIF
#: (often animated; and OpenCV, which decodes the data sets as the original trainer does,
#: reads GIF by default only from 4.12 on, while the ``train`` extra allows 4.5).
DATASET_SUFFIXES = _PHOTO_SUFFIXES - {".gif"}
CANNY_THRESHOLDS = (100, 200)
SMOOTH_KERNEL = 5


@dataclass
class DataReport:
    """What a data tool did: files written and files skipped with the reason."""

    written: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line, then one line per skipped file."""
        lines = [f"{self.written} written, {len(self.skipped)} skipped"]
        lines += [f"  skipped {path}: {why}" for path, why in self.skipped]
        return "\n".join(lines)


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATASET_SUFFIXES)


def read_bgr(path: str | Path) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 BGR array; raises :class:`ImageError`, also for
    a possible decompression bomb (over ``PIL.Image.MAX_IMAGE_PIXELS``, as stylize refuses)."""
    cv2 = require("cv2", "train")
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc}") from exc
    check_not_bomb(raw.tobytes(), str(path))
    try:
        image = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    except cv2.error as exc:  # e.g. over OpenCV's own pixel limit
        raise ImageError(f"{path} cannot be decoded: {str(exc).strip().splitlines()[-1]}") from exc
    if image is None:
        raise ImageError(f"{path} is not a decodable image (corrupt or truncated?)")
    return image


def write_bgr(path: str | Path, image: np.ndarray) -> None:
    """Encode a BGR array by ``path``'s suffix (JPEG quality 95) and write it atomically."""
    cv2 = require("cv2", "train")
    ok, buf = cv2.imencode(Path(path).suffix, image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ImageError(f"cannot encode {path}")
    write_bytes_atomic(path, buf.tobytes())


def edge_smooth(bgr: np.ndarray) -> np.ndarray:
    """CartoonGAN's edge smoothing, vectorised: grayscale Canny (100/200), dilation with a
    5x5 ones kernel, and inside that mask the 5x5 Gaussian blur (sigma from OpenCV's
    default for size 5) of the reflect-padded colour image, truncated to uint8 like the
    original per-pixel loop.

    >>> edge_smooth(np.zeros((8, 8, 3), np.uint8)).shape
    (8, 8, 3)
    """
    cv2 = require("cv2", "train")
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    edges = cv2.Canny(gray, *CANNY_THRESHOLDS)
    mask = cv2.dilate(edges, np.ones((SMOOTH_KERNEL, SMOOTH_KERNEL), np.uint8)) != 0
    g = cv2.getGaussianKernel(SMOOTH_KERNEL, 0)
    blurred = cv2.filter2D(bgr.astype(np.float64), -1, g @ g.T, borderType=cv2.BORDER_REFLECT_101)
    out = bgr.copy()
    out[mask] = blurred[mask].astype(np.uint8)
    return out


def _smooth_file(job: tuple[Path, Path]) -> tuple[Path, str | None]:
    src, dst = job
    try:
        write_bgr(dst, edge_smooth(read_bgr(src)))
    except WriteError:  # a full disk or a read-only folder stops the run: it is not this file's fault
        raise
    except ImageError as exc:
        return src, str(exc)
    return src, None


def _make_folder(dst: Path) -> None:
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"-o {dst} is a file, but the outputs need a folder: give a folder (it is created if missing)") from None
    except OSError as exc:
        raise WriteError(f"cannot create the output folder {dst}: {exc.strerror or exc}", cause=exc, path=dst) from exc


def _run_jobs(fn, jobs: list, workers: int, progress: bool, desc: str) -> Iterator:
    if workers <= 1 or len(jobs) < 2:
        results = map(fn, jobs)
        yield from tqdm(results, total=len(jobs), desc=desc, disable=not progress, unit="img")
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fn, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
        yield from tqdm(results, total=len(jobs), desc=desc, disable=not progress, unit="img")


def smooth_folder(src: str | Path, dst: str | Path, *, workers: int | None = None, progress: bool = True) -> DataReport:
    """Edge-smooth every image of ``src`` into ``dst`` (same names), over ``workers`` processes
    (default: all CPUs). Unreadable images are skipped and reported.

    >>> smooth_folder("data/hayao/style", "data/hayao/smooth")  # doctest: +SKIP
    """
    files = list_images(src)
    if not files:
        raise ConfigError(f"no images in {src}")
    dst = Path(dst)
    _make_folder(dst)
    report = DataReport()
    jobs = [(f, dst / f.name) for f in files]
    for path, error in _run_jobs(_smooth_file, jobs, workers or os.cpu_count() or 1, progress, "smooth"):
        if error:
            report.skipped.append((path, error))
        else:
            report.written += 1
    return report


def resize_crop(bgr: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (area filter when shrinking, cubic when enlarging)
    and centre-crop to ``size`` x ``size``."""
    cv2 = require("cv2", "train")
    h, w = bgr.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    image = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[top : top + size, left : left + size]


def _video_frames(path: Path, fps: float) -> Iterator[tuple[int, np.ndarray]]:
    av = require("av", "video")
    from ..errors import VideoError

    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises many FFmpeg error types
        raise VideoError(f"cannot open {path} as a video: {exc}") from exc
    with container:
        next_time, count = 0.0, 0
        for frame in container.decode(video=0):
            if frame.time is None or frame.time + 1e-6 < next_time:
                continue
            yield count, frame.to_ndarray(format="bgr24")
            count += 1
            next_time += 1.0 / fps


def prepare(src: str | Path, dst: str | Path, *, size: int = 256, fps: float = 1.0, progress: bool = True) -> DataReport:
    """Resize and centre-crop a folder of photos, or frames taken from a video at ``fps``
    frames per second, into ``dst`` as ``size`` x ``size`` JPEGs. Unreadable images are
    skipped and reported.

    >>> prepare("film.mkv", "data/myfilm/style", size=256, fps=0.5)  # doctest: +SKIP
    """
    src, dst = Path(src), Path(dst)
    if size < 16:
        raise ConfigError(f"--size must be at least 16, got {size}")
    if not src.is_dir() and fps <= 0:
        raise ConfigError(f"--fps must be positive, got {fps}")
    _make_folder(dst)
    report = DataReport()
    if src.is_dir():
        files = list_images(src)
        for path in tqdm(files, desc="prepare", disable=not progress, unit="img"):
            try:
                write_bgr(dst / f"{path.stem}.jpg", resize_crop(read_bgr(path), size))
                report.written += 1
            except WriteError:  # not this file's fault: stop
                raise
            except ImageError as exc:
                report.skipped.append((path, str(exc)))
        return report
    for index, frame in tqdm(_video_frames(src, fps), desc="frames", disable=not progress, unit="frame"):
        write_bgr(dst / f"{src.stem}_{index:06d}.jpg", resize_crop(frame, size))
        report.written += 1
    return report


def data_mean(folder: str | Path, *, progress: bool = True) -> tuple[tuple[float, float, float], DataReport]:
    """The style set's colour adjustment (mean - B, mean - G, mean - R), where B, G, R are
    the channel means over all images and mean is their average; plus the skip report.
    The trainer adds it to the colour style images (DESIGN.md 2.4).
    """
    report, total = DataReport(), np.zeros(3)
    for path in tqdm(list_images(folder), desc="mean", disable=not progress, unit="img"):
        try:
            total += read_bgr(path).reshape(-1, 3).mean(axis=0)
            report.written += 1
        except ImageError as exc:
            report.skipped.append((path, str(exc)))
    if not report.written:
        raise ConfigError(f"no readable images in {folder}")
    bgr = total / report.written
    return tuple(float(v) for v in bgr.mean() - bgr), report


@dataclass(frozen=True)
class Layout:
    """The files of a checked data set."""

    photos: list[Path]
    style: list[Path]
    smooth: list[Path]
    val: list[Path]


def check_layout(root: str | Path, style: str) -> Layout:
    """Check ``root`` holds the training layout for ``style`` and that every image decodes;
    raise :class:`ConfigError` listing what is wrong and how to fix it.
    """
    root = Path(root)
    folders = {"train_photo": root / "train_photo", "style": root / style / "style", "smooth": root / style / "smooth"}
    missing = [str(p) for p in folders.values() if not p.is_dir()]
    if missing:
        raise ConfigError(
            f"data set {root} lacks {', '.join(missing)}: expected train_photo/, {style}/style/ and "
            f"{style}/smooth/ (make smooth/ with `animegan2 data smooth {root / style / 'style'} -o {folders['smooth']}`)"
        )
    found = {name: list_images(p) for name, p in folders.items()}
    for name, files in found.items():
        if not files:
            raise ConfigError(f"{folders[name]} has no images: fill it (see `animegan2 data prepare`)")
    style_names = {p.name for p in found["style"]}
    smooth_names = {p.name for p in found["smooth"]}
    if style_names != smooth_names:
        odd = sorted(style_names ^ smooth_names)
        raise ConfigError(
            f"{folders['style']} and {folders['smooth']} must hold the same file names; {len(odd)} differ "
            f"(e.g. {odd[0]}): re-run `animegan2 data smooth`"
        )
    val = list_images(root / "val") if (root / "val").is_dir() else []
    bad = []
    for path in [*found["train_photo"], *found["style"], *found["smooth"], *val]:
        try:
            read_bgr(path)
        except ImageError:
            bad.append(str(path))
    if bad:
        raise ConfigError(f"{len(bad)} unreadable image(s), e.g. {bad[0]}: remove or replace them before training")
    return Layout(found["train_photo"], found["style"], found["smooth"], val or found["train_photo"])


def bgr_to_tensor(bgr: np.ndarray) -> torch.Tensor:
    """HxWx3 BGR (uint8 or float, 0..255), as OpenCV reads the training images like the original
    trainer -> 3xHxW RGB float tensor in [-1, 1] (no clipping)."""
    rgb = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1) / 127.5 - 1.0


def load_training_image(path: Path, size: int) -> np.ndarray:
    """Decode and, if needed, resize to ``size`` x ``size`` (the recipe trains on squares)."""
    image = read_bgr(path)
    if image.shape[:2] != (size, size):
        image = resize_crop(image, size)
    return image


class UnpairedDataset(torch.utils.data.Dataset):
    """Item ``i``: photo ``i mod #photos`` and an anime frame chosen by a per-epoch
    permutation, as a dict of [-1, 1] tensors: ``photo``, ``anime`` (colour, plus the data
    mean adjustment), ``anime_gray`` and ``smooth_gray`` (grayscale as 3 channels).

    Its length is max(#photos, #anime frames), so an epoch covers the larger set once.
    Call :meth:`set_epoch` before each epoch, as for a ``DistributedSampler``.
    """

    def __init__(self, layout: Layout, size: int, mean_bgr: tuple[float, float, float], seed: int = 0) -> None:
        self.layout, self.size, self.seed = layout, size, seed
        self.mean_bgr = np.asarray(mean_bgr, np.float32)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Re-pair photos and anime frames for ``epoch`` (deterministic in seed and epoch)."""
        self.anime_order = np.random.default_rng((self.seed, epoch)).permutation(len(self.layout.style))

    def __len__(self) -> int:
        return max(len(self.layout.photos), len(self.layout.style))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        cv2 = require("cv2", "train")
        photo = load_training_image(self.layout.photos[i % len(self.layout.photos)], self.size)
        k = self.anime_order[i % len(self.layout.style)]
        anime = load_training_image(self.layout.style[k], self.size)
        smooth = load_training_image(self.layout.smooth[k], self.size)
        gray = cv2.cvtColor(anime, cv2.COLOR_BGR2GRAY)
        smooth_gray = cv2.cvtColor(smooth, cv2.COLOR_BGR2GRAY)
        return {
            "photo": bgr_to_tensor(photo),
            "anime": bgr_to_tensor(anime.astype(np.float32) + self.mean_bgr),
            "anime_gray": bgr_to_tensor(np.repeat(gray[:, :, None], 3, axis=2)),
            "smooth_gray": bgr_to_tensor(np.repeat(smooth_gray[:, :, None], 3, axis=2)),
        }
