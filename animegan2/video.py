"""Stylize a video: streaming decode -> batched stylize -> encode, audio passed through.

Three stages run at once, joined by bounded queues so memory does not grow with the
clip's length: a thread demuxes and decodes, the caller's thread runs the model on
batches, and a thread encodes and muxes. Audio packets are remuxed untouched (no
re-encode). The output is written under a temporary name and renamed at the end, so an
interrupted run never leaves a broken file under the final name, and (unless asked to
overwrite) never replaces a file that exists by then.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import publish, temp_path
from .errors import ConfigError, OutputExistsError, VideoError, require

FramesFn = Callable[[list[np.ndarray]], list[np.ndarray]]

_CODECS = {".gif": "gif", ".webm": "libvpx", ".avi": "mpeg4"}
_DEFAULT_CODEC = "libx264"
_STOP = object()


@dataclass(frozen=True)
class VideoResult:
    """What was written: frame count, frame rate, size, and the audio packets copied."""

    path: Path
    frames: int
    fps: Fraction
    size: tuple[int, int]
    audio_packets: int
    seconds: float


def parse_time(value: str | float | None) -> float | None:
    """Seconds from ``12.5``, ``"12.5"``, ``"1:02.5"`` or ``"0:01:02.5"``.

    >>> parse_time("1:02.5")
    62.5
    """
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        seconds = 0.0
        for part in str(value).split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError:
        raise ConfigError(f"not a time: {value!r} (give seconds, mm:ss or hh:mm:ss)") from None
    return seconds


def _even_size(w: int, h: int, size: int | None) -> tuple[int, int]:
    if size is not None:
        scale = size / max(w, h)
        w, h = max(2, round(w * scale)), max(2, round(h * scale))
    return w - w % 2, h - h % 2  # yuv420p needs even sides; harmless for the others


class _Worker(threading.Thread):
    """A pipeline stage that records its exception instead of dying silently."""

    def __init__(self, target: Callable[[], None], name: str, cancel: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._cancel = cancel
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except _Cancelled:
            pass
        except BaseException as exc:  # re-raised in the caller's thread
            self.error = exc
            self._cancel.set()


class _Pipe:
    """A bounded queue whose ``put`` gives up once the pipeline is cancelled."""

    def __init__(self, maxsize: int, cancel: threading.Event) -> None:
        self.q: queue.Queue = queue.Queue(maxsize)
        self.cancel = cancel

    def put(self, item) -> None:
        while not self.cancel.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Cancelled

    def get(self):
        while True:
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                if self.cancel.is_set():
                    raise _Cancelled from None


class _Cancelled(Exception):
    pass


def _frame_ticks(times: Iterator[tuple[float, object]], fps: float | None, end_time: float | None) -> Iterator[tuple[object, int]]:
    """Yield ``(frame, repeats)``: every decoded frame once, or with ``fps`` each frame as
    often as output ticks fall before the next frame's time (dropping and repeating)."""
    if fps is None:
        for _, frame in times:
            yield frame, 1
        return
    tick = 0
    previous = None
    last_t = 0.0
    step = 0.0
    for t, frame in times:
        if previous is not None:
            n = 0
            while tick / fps < t - 1e-9:
                tick, n = tick + 1, n + 1
            if n:
                yield previous, n
            step = t - last_t
        previous, last_t = frame, t
    if previous is not None:
        stop = end_time if end_time is not None else last_t + (step or 1 / fps)
        n = 0
        while tick / fps < stop - 1e-9:
            tick, n = tick + 1, n + 1
        yield previous, max(n, 1 if tick == 0 else 0)


def stylize_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    frames_fn: FramesFn,
    *,
    size: int | None = None,
    fps: float | None = None,
    start: float | str | None = None,
    end: float | str | None = None,
    crf: int = 18,
    batch_size: int = 4,
    progress: bool = True,
    overwrite: bool = True,
) -> VideoResult:
    """Stylize every frame of ``src`` with ``frames_fn`` and write ``dst``; returns what was written.

    ``frames_fn`` maps a list of HWC uint8 RGB frames to stylized frames of the same size,
    e.g. ``Stylizer("hayao").stylize_arrays``. ``size`` is the output's long side (the
    model runs at it), ``fps`` resamples the frame rate (default: the input's), ``start``
    and ``end`` cut the clip (seconds or ``mm:ss``), ``crf`` is the H.264 quality (lower is
    better). The container follows ``dst``'s suffix (``.gif`` writes a GIF, without audio);
    audio streams are copied packet for packet. ``dst`` is never ``src`` (nor a link to it);
    without ``overwrite`` an existing ``dst`` is an :class:`OutputExistsError`, checked
    before and again when the finished file takes its name.

    >>> stylize_video("in.mp4", "out.mp4", Stylizer("hayao").stylize_arrays)  # doctest: +SKIP
    """
    av = require("av", "video")
    src, dst = Path(src), Path(dst)
    opts = _Options.checked(size=size, fps=fps, start=start, end=end, crf=crf, batch_size=batch_size, progress=progress)
    from .stylize import skip_destination

    skip_destination(src, dst, overwrite=overwrite, skip_existing=False)
    try:
        inp = av.open(str(src))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open {src} as a video: {exc}") from exc
    tmp = temp_path(dst)
    try:
        if not inp.streams.video:
            raise VideoError(f"{src} has no video stream: give a video file (mp4, mkv, mov, webm, gif, ...)")
        result = _run(av, inp, src, dst, tmp, frames_fn, opts)
        try:
            publish(tmp, dst, replace=overwrite)
        except FileExistsError as exc:
            raise OutputExistsError(f"{dst} already exists (another run wrote it meanwhile); it was left as it is") from exc
    except av.FFmpegError as exc:
        _remove(tmp)
        raise VideoError(f"{src} -> {dst}: {exc}") from exc
    except BaseException:
        _remove(tmp)
        raise
    finally:
        inp.close()
    return VideoResult(dst, *result)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # e.g. its folder is not a folder: then nothing was written either
        pass


@dataclass(frozen=True)
class _Options:
    """:func:`stylize_video`'s settings, checked; ``start`` and ``end`` in seconds."""

    size: int | None
    fps: float | None
    start: float | None
    end: float | None
    crf: int
    batch_size: int
    progress: bool

    @classmethod
    def checked(cls, *, start: float | str | None, end: float | str | None, **settings: Any) -> _Options:
        opts = cls(start=parse_time(start), end=parse_time(end), **settings)
        if opts.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, not {opts.batch_size}")
        if opts.start is not None and opts.end is not None and opts.end <= opts.start:
            raise ConfigError(f"--end ({opts.end}s) must come after --start ({opts.start}s)")
        return opts

    def in_cut(self, t: float) -> bool:
        """Whether an audio packet at ``t`` seconds falls between ``start`` and ``end``."""
        return (self.start is None or t >= self.start) and (self.end is None or t < self.end)


@dataclass(frozen=True)
class _Output:
    """The output file being written: its container, streams and frame geometry."""

    container: Any
    video: Any
    audio: dict[int, Any]  # input audio stream index -> its output stream
    audio_in: tuple[Any, ...]  # the input audio streams copied
    rate: Fraction
    width: int
    height: int
    turns: int  # counter-clockwise quarter turns that show the input upright
    is_gif: bool


def _run(av, inp, src: Path, dst: Path, tmp: Path, frames_fn: FramesFn, opts: _Options) -> tuple[int, Fraction, tuple[int, int], int, float]:
    """Stylize ``inp`` into ``tmp``; (frames written, frame rate, size, audio packets copied, seconds)."""
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    output = _open_output(av, inp, vin, src, dst, tmp, opts)
    try:
        pipeline = _Pipeline(av, inp, vin, output, opts)
        total = _expected_frames(vin, inp, output.rate, opts.start, opts.end)
        seconds = pipeline.run(frames_fn, total, src.name)
        if pipeline.written == 0:
            raise VideoError(f"{src} has no frames between the given --start and --end")
    finally:
        output.container.close()
    return pipeline.written, output.rate, (output.width, output.height), pipeline.copied, seconds


def _open_output(av, inp, vin, src: Path, dst: Path, tmp: Path, opts: _Options) -> _Output:
    """Open ``tmp`` for writing with a video stream of the output's rate and size and a copy of
    each audio stream (none in a GIF)."""
    rate = Fraction(opts.fps).limit_denominator(1001) if opts.fps else _input_rate(vin)
    turns = _quarter_turns(av, src)
    stored = (vin.codec_context.width, vin.codec_context.height)
    width, height = _even_size(*(stored if turns % 2 == 0 else stored[::-1]), opts.size)
    is_gif = tmp.suffix.lower() == ".gif"
    codec = _CODECS.get(tmp.suffix.lower(), _DEFAULT_CODEC)
    if codec not in av.codecs_available:
        codec = "mpeg4"
    try:
        out = av.open(str(tmp), "w")
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot write {dst}: {exc}") from exc
    audio_in = () if is_gif else tuple(inp.streams.audio)
    try:
        vout = out.add_stream(codec, rate=rate)
        vout.width, vout.height = width, height
        vout.pix_fmt = "pal8" if is_gif else "yuv420p"
        if codec == "libx264":
            vout.options = {"crf": str(opts.crf), "preset": "medium"}
        elif is_gif:
            vout.options = {"gifflags": "0"}  # its inter-frame diffs compare indices, wrong with a palette per frame
        audio_map = {a.index: _copy_stream(out, a, src, dst) for a in audio_in}
    except BaseException:
        out.close()
        raise
    return _Output(out, vout, audio_map, audio_in, rate, width, height, turns, is_gif)


def _copy_stream(out, stream, src: Path, dst: Path):
    try:
        return out.add_stream_from_template(stream)
    except ValueError as exc:
        raise VideoError(
            f"a {dst.suffix} file cannot hold the {stream.codec_context.name} audio of {src} as it is ({exc}); "
            "write .mkv (takes any audio) or the input's own container"
        ) from exc


class _Pipeline:
    """Decode (a thread) -> stylize (the caller's thread: torch's thread settings are per
    thread) -> encode (a thread), joined by bounded queues; counts what it wrote."""

    def __init__(self, av, inp, vin, output: _Output, opts: _Options) -> None:
        self.av, self.inp, self.vin, self.output, self.opts = av, inp, vin, output, opts
        self.cancel = threading.Event()
        self.decoded = _Pipe(2 * opts.batch_size + 2, self.cancel)
        self.styled = _Pipe(2, self.cancel)
        self.written = 0  # video frames muxed (repeats included)
        self.copied = 0  # audio packets muxed
        self.bar = None

    def run(self, frames_fn: FramesFn, total: int | None, name: str) -> float:
        """Run the three stages to the end; the seconds they took. A stage's error is raised here."""
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="frame", desc=name, disable=not self.opts.progress, dynamic_ncols=True)
        workers = [_Worker(self._decode, "animegan2-decode", self.cancel), _Worker(self._encode, "animegan2-encode", self.cancel)]
        for w in workers:
            w.start()
        t0 = time.perf_counter()
        try:
            self._run_model(frames_fn)
        except _Cancelled:
            pass  # a worker failed; its error is raised below
        except BaseException:
            self.cancel.set()
            raise
        finally:
            for w in workers:
                w.join()
            self.bar.close()
        _raise_failed(workers)
        return time.perf_counter() - t0

    def _decode(self) -> None:
        out, opts = self.output, self.opts
        if opts.start:
            self.inp.seek(int(opts.start / self.vin.time_base), stream=self.vin, backward=True)
        clip_end = None if opts.end is None else opts.end - (opts.start or 0.0)
        for frame, repeats in _frame_ticks(self._timed_frames(), float(out.rate) if opts.fps else None, clip_end):
            self.decoded.put(("frame", _to_rgb(frame, out.width, out.height, out.turns), repeats))
        self.decoded.put(_STOP)

    def _timed_frames(self) -> Iterator[tuple[float, object]]:
        """(seconds from the cut's start, frame) of every video frame in the cut; the audio
        packets in it go to the queue as they are demuxed."""
        start, end = self.opts.start, self.opts.end
        for packet in self.inp.demux([self.vin, *self.output.audio_in]):
            if packet.stream.type == "audio":
                if packet.dts is not None and self.opts.in_cut(float(packet.pts * packet.time_base) if packet.pts is not None else 0.0):
                    self.decoded.put(("audio", packet))
                continue
            for frame in packet.decode():
                t = frame.time if frame.time is not None else 0.0
                if start is not None and t < start - 1e-6:
                    continue
                if end is not None and t >= end - 1e-6:
                    return
                yield t - (start or 0.0), frame

    def _run_model(self, frames_fn: FramesFn) -> None:
        """Batches of ``batch_size`` frames through the model, each with the audio demuxed meanwhile."""
        batch, repeats, audio = [], [], []
        while (item := self.decoded.get()) is not _STOP:
            if item[0] == "audio":
                audio.append(item[1])
                continue
            batch.append(item[1])
            repeats.append(item[2])
            if len(batch) == self.opts.batch_size:
                self.styled.put((_stylize(frames_fn, batch), repeats, audio))
                batch, repeats, audio = [], [], []
        self.styled.put((_stylize(frames_fn, batch) if batch else [], repeats, audio))
        self.styled.put(_STOP)

    def _encode(self) -> None:
        out = self.output
        while (item := self.styled.get()) is not _STOP:
            outs, repeats, audio = item
            for packet in audio:
                offset = int(round((self.opts.start or 0.0) / packet.time_base))
                packet.pts -= offset
                packet.dts -= offset
                packet.stream = out.audio[packet.stream.index]
                out.container.mux(packet)
                self.copied += 1
            for rgb, n in zip(outs, repeats):
                frame = _to_frame(self.av, rgb, out.is_gif, out.width, out.height)
                for _ in range(n):
                    frame.pts = self.written
                    out.container.mux(out.video.encode(frame))
                    self.written += 1
                self.bar.update(n)
        out.container.mux(out.video.encode(None))


def _stylize(frames_fn: FramesFn, batch: list[np.ndarray]) -> list[np.ndarray]:
    outs = frames_fn(batch)
    if len(outs) != len(batch):
        raise VideoError(f"the stylizer returned {len(outs)} frames for {len(batch)}")
    return outs


def _quarter_turns(av, src: Path) -> int:
    """Counter-clockwise quarter turns that show the video upright (phones store a display
    rotation instead of turning the pixels); read from the first frame."""
    with av.open(str(src)) as probe:
        first = next(probe.decode(video=0), None)
    return round((first.rotation if first is not None else 0) / 90) % 4


def _to_rgb(frame, width: int, height: int, turns: int = 0) -> np.ndarray:
    """The frame upright as ``height`` x ``width`` RGB: the output has no display rotation."""
    w, h = (width, height) if turns % 2 == 0 else (height, width)
    rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _raise_failed(workers: list[_Worker]) -> None:
    for w in workers:
        if w.error is not None:
            raise w.error


def _to_frame(av, rgb: np.ndarray, is_gif: bool, width: int, height: int):
    if rgb.shape[:2] != (height, width):
        raise VideoError(f"the stylizer returned a {rgb.shape[1]}x{rgb.shape[0]} frame for {width}x{height}")
    if not is_gif:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    from PIL import Image

    # A palette per frame (median cut) keeps far more colour than the fixed rgb8 palette.
    indexed = Image.fromarray(rgb).quantize(256)
    colours = np.asarray(indexed.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256]
    argb = np.zeros((256, 4), dtype=np.uint8)
    argb[:, 0] = 255  # opaque: a transparent entry would make FFmpeg diff frames by palette index
    argb[: len(colours), 1:] = colours
    return av.VideoFrame.from_ndarray((np.asarray(indexed), argb), format="pal8")


def _duration(vin, inp) -> float | None:
    if vin.duration is not None and vin.time_base is not None:
        return float(vin.duration * vin.time_base)
    if inp.duration is not None:
        return inp.duration / 1_000_000
    return None


@dataclass(frozen=True)
class ClipInfo:
    """What a probe finds: length in seconds (0.0 when unknown), the upright (width, height)
    and the expected frame count (``None`` when unknown)."""

    seconds: float
    size: tuple[int, int]
    frames: int | None


def probe_video(path: str | os.PathLike) -> ClipInfo:
    """Length, upright size and frame count of the first video stream of ``path``, without decoding it all.

    >>> probe_video("clip.mp4")  # doctest: +SKIP
    ClipInfo(seconds=2.0, size=(64, 48), frames=24)
    """
    av = require("av", "video")
    try:
        with av.open(str(path)) as inp:
            if not inp.streams.video:
                raise VideoError(f"{path} has no video stream: give a video file (mp4, mkv, mov, webm, gif, ...)")
            vin = inp.streams.video[0]
            stored = (vin.codec_context.width, vin.codec_context.height)
            frames = _expected_frames(vin, inp, _input_rate(vin), None, None)
            seconds = _duration(vin, inp) or 0.0
        size = stored if _quarter_turns(av, Path(path)) % 2 == 0 else stored[::-1]
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open {path} as a video: {exc}") from exc
    return ClipInfo(seconds, size, frames)


def _input_rate(vin) -> Fraction:
    return Fraction(vin.average_rate or vin.guessed_rate or Fraction(25))


def _expected_frames(vin, inp, rate: Fraction, start_s: float | None, end_s: float | None) -> int | None:
    duration = _duration(vin, inp)
    if duration is None:
        return vin.frames or None
    stop = min(duration, end_s) if end_s is not None else duration
    return max(0, round((stop - (start_s or 0.0)) * float(rate)))
