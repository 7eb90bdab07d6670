"""The ``animegan2`` command. Parses arguments and calls the library; nothing imports this.

Each subcommand is one ``_add_<name>`` function that declares its arguments and sets
``func``; library errors become one line on stderr and exit status 1 (``--debug`` shows
the traceback). SIGTERM is handled as Ctrl-C is: temporary files are removed, exit 143.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .errors import AnimeGANError, ConfigError, WeightsError


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars or notices")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return common


_AddSubcommand = Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]
SUBCOMMANDS: list[_AddSubcommand] = []


def subcommand(add: _AddSubcommand) -> _AddSubcommand:
    """Register a function that adds one subcommand's parser."""
    SUBCOMMANDS.append(add)
    return add


class _Parser(argparse.ArgumentParser):
    """An argument parser whose arguments may be declared when it is first used (``declare``),
    so that building the whole command line does not import what one subcommand needs."""

    def __init__(self, *args, declare: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._declare = declare

    def _declared(self) -> None:
        if self._declare is not None:
            declare, self._declare = self._declare, None
            declare(self)

    def parse_known_args(self, args=None, namespace=None):
        self._declared()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._declared()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The ``animegan2`` parser with every registered subcommand."""
    parser = _Parser(prog="animegan2", description="AnimeGANv2 for PyTorch")
    parser.add_argument("--version", action="version", version=f"animegan2 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    for add in SUBCOMMANDS:
        add(sub, common)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so that the same clean-up runs."""


def _terminate(signum, frame) -> None:
    raise _Terminated


def _one_line(text: str) -> str:
    """``text`` with control characters (a newline in a file name) escaped, so one message is one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: signals are not ours to handle
        previous = None
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into a reader that stopped early, e.g. `| head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except (AnimeGANError, OSError) as exc:  # OSError: the file system's own words, e.g. a full disk
        if args.debug:
            raise
        print(f"animegan2: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"animegan2: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class _StderrHandler(logging.StreamHandler):
    """Writes notices to whatever ``sys.stderr`` is when they are emitted."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def _show_notices(quiet: bool, debug: bool) -> None:
    logger = logging.getLogger("animegan2")
    logger.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("animegan2: %(message)s"))
        logger.addHandler(handler)


def _add_existing_output_options(p: argparse.ArgumentParser) -> None:
    exists = p.add_mutually_exclusive_group()
    exists.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    exists.add_argument("--skip-existing", action="store_true", help="keep existing outputs (resume a run)")


def _keep_existing(src: str, out: str | Path, args) -> bool:
    """For a one-output command: True (say so) when ``out`` exists and --skip-existing keeps it;
    an error when it is the input or exists without --overwrite/--skip-existing."""
    from .stylize import skip_destination

    if skip_destination(src, out, overwrite=args.overwrite, skip_existing=args.skip_existing):
        if not args.quiet:
            print(f"animegan2: kept the existing {out} (--skip-existing)", file=sys.stderr)
        return True
    return False


# --- stylize ---


@subcommand
def _add_stylize(sub, common):
    p = sub.add_parser(
        "stylize",
        parents=[common],
        help="turn images, folders and globs into anime",
        description="Stylize images. A run over many files never stops at a bad one: failures are listed "
        "at the end and the exit status is 1. Outputs are written atomically.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, glob patterns, or - for stdin")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder; an image file name for a single input; - for stdout")  # fmt: skip
    _add_model_options(p)
    p.add_argument("--dtype", choices=["float32", "fp16", "bf16"], help="the older spelling of --precision fp32/fp16/bf16")
    p.add_argument("--batch-size", type=_positive_int, default=1, help="images per forward pass (same-size images)")
    p.add_argument("--format", choices=["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"],
                   help="output format (default: the input's; GIF becomes PNG)")  # fmt: skip
    p.add_argument("--suffix", default="", help="added to each output file's stem, e.g. _anime")
    _add_existing_output_options(p)
    p.add_argument("--side-by-side", action="store_true", help="write the input and the result side by side")
    p.add_argument("--size", type=_positive_int, help="stylize with this long side (the output keeps the input size)")
    p.add_argument("--max-pixels", type=_positive_int, help="reduce larger images to this many pixels to stylize them")
    p.add_argument("--x32", action="store_true", help="the published rule: sides < 256 -> 256, else floored to x32")
    p.add_argument("--keep-color", action="store_true", help="keep the input's colours, take the anime tones and texture")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders (and ** in globs)")
    _add_speed_options(p)
    p.add_argument("--memory", choices=["normal", "low", "tiled"], default="normal",
                   help="low: exact, layer by layer in bounded memory; tiled: approximate, blended tiles")  # fmt: skip
    p.add_argument("--max-memory", default="2GB", help="peak memory --memory low stays under (default 2GB)")
    p.set_defaults(func=_run_stylize)


def _stylize_sources(args) -> tuple[list[tuple[object, Path]], list[tuple[str, str]]]:
    """(source, name to build the output from) for every input, and the inputs that matched nothing."""
    from .stylize import find_images

    sources: list[tuple[object, Path]] = []
    missing: list[tuple[str, str]] = []
    for item in args.inputs:
        path = Path(item)
        if item == "-":
            sources.append((sys.stdin.buffer, Path("stdin.png")))
        elif path.is_dir():
            found = find_images(path, args.recursive)
            sources += [(p, p.relative_to(path)) for p in found]
            if not found:
                missing.append((item, "no images in this folder" + ("" if args.recursive else " (--recursive for sub-folders)")))
        elif path.exists():  # a file, or a device or pipe, which reading refuses with its reason
            sources.append((path, Path(path.name)))
        elif any(c in item for c in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=args.recursive)) if not Path(m).is_dir()]
            sources += [(m, Path(m.name)) for m in matches]
            if not matches:
                missing.append((item, "no file matches this pattern"))
        else:
            missing.append((item, "a broken link" if path.is_symlink() else "no such file or folder"))
    return sources, missing


def _output_folder(out: Path) -> Path:
    """``out`` as the folder that outputs go into; a ConfigError before any work if it is a file."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} is a file, but the outputs need a folder: give a folder (it is created if missing)")
    return out


def _folder_jobs(sources, out: Path, suffix: str, fmt: str | None, failed: list) -> list:
    """(source, destination) for every source, all inside ``out``; two sources that would
    write one file are failures, not a silent replacement."""
    from .imageio import source_name
    from .stylize import output_suffix

    if "/" in suffix or "\\" in suffix:
        raise ConfigError(f"--suffix {suffix!r} would leave the output folder: give letters to append, e.g. _anime")
    jobs, seen = [], {}
    _output_folder(out)
    for src, name in sources:
        dst = out / name.parent / f"{name.stem}{suffix}{output_suffix(name, fmt)}"
        key = os.path.normcase(os.path.abspath(dst))
        if key in seen:
            failed.append((source_name(src), f"same output name as {seen[key]} ({dst}); use separate runs"))
            continue
        seen[key] = source_name(src)
        jobs.append((src, dst))
    return jobs


def _run_stylize(args) -> int:
    from .imageio import IMAGE_SUFFIXES
    from .shard import Shard
    from .stylize import output_suffix, resolve_device

    _show_notices(args.quiet, args.debug)
    shard = Shard.from_env()
    if shard.world > 1 and "-" in (args.output, *args.inputs):
        raise ConfigError("under torchrun every process would read stdin or write stdout: name files or folders instead")
    sources, failed = _stylize_sources(args)
    out, fmt = args.output, args.format
    if out == "-":
        if len(sources) != 1:
            raise ConfigError(f"-o - writes one image to stdout, but {len(sources)} inputs were found")
        fmt = fmt or output_suffix(sources[0][1]).lstrip(".")
        jobs = [(sources[0][0], sys.stdout.buffer)]
    elif len(sources) == 1 and len(args.inputs) == 1 and Path(out).suffix.lower() in IMAGE_SUFFIXES and not Path(out).is_dir():
        jobs = [(sources[0][0], Path(out))]
    else:
        jobs = _folder_jobs(sources, Path(out), args.suffix, fmt, failed)
    # Every process listed the same jobs and reports the inputs that matched nothing; rank 0 does.
    jobs, failed = shard.take(jobs), failed if shard.lead else []
    quiet = args.quiet or not shard.lead
    stylizer = _open_stylizer(
        args, quiet, shard.device(resolve_device(args.device)),
        dtype=args.dtype, size=args.size, max_pixels=args.max_pixels, x32=args.x32, keep_color=args.keep_color,
        batch_size=args.batch_size, **_speed_kwargs(args, [src for src, _ in jobs if isinstance(src, Path)]),
        memory=args.memory, max_memory=args.max_memory,
    )  # fmt: skip
    report = stylizer.stylize_files(
        jobs, format=fmt, side_by_side=args.side_by_side, overwrite=args.overwrite, skip_existing=args.skip_existing
    )
    failed += _reported(report, args.debug)
    _print_failures(failed)
    done, skipped, failures = shard.sum([len(report.done), len(report.skipped), len(failed)])
    if not quiet:
        print(f"animegan2: {done} stylized, {skipped} skipped, {failures} failed", file=sys.stderr)
    return 1 if failures else 0


def _open_stylizer(args, quiet: bool, device, **options):
    """The Stylizer of ``--style``/``--weights`` (default: the zoo's default weights) on
    ``device``, after saying which precision path it runs (unless ``quiet``)."""
    from .stylize import DEFAULT_WEIGHTS, Stylizer

    stylizer = Stylizer(args.weights or args.style or DEFAULT_WEIGHTS, device=device, progress=not quiet, **options)
    _say_precision(stylizer, quiet)
    return stylizer


def _reported(report, debug: bool) -> list[tuple[str, str]]:
    """(source, reason) of a batch report's failures; with ``--debug`` each traceback is printed first."""
    if debug:
        for _, _, exc in report.failed:
            traceback.print_exception(exc)
    return [(src, reason) for src, reason, _ in report.failed]


def _print_failures(failed: list[tuple[str, str]]) -> None:
    for src, reason in failed:
        reason = reason[len(src) + 2 :] if reason.startswith(f"{src}: ") else reason
        print(_one_line(f"animegan2: failed: {src}: {reason}"), file=sys.stderr)


# --- weights ---


@subcommand
def _add_weights(sub, common):
    p = sub.add_parser("weights", parents=[common], help="list, download, import, verify the model zoo's weights")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="every named weight: style, size, format, cached or not")
    dl = actions.add_parser("download", parents=[common], help="download and verify named weights into the cache")
    dl.add_argument("names", nargs="*", metavar="NAME")
    dl.add_argument("--all", action="store_true", help="every entry of the manifest")
    imp = actions.add_parser("import", parents=[common], help="verify a file obtained elsewhere and put it in the cache")
    imp.add_argument("name", metavar="NAME")
    imp.add_argument("source", metavar="FILE_OR_DIR")
    actions.add_parser("verify", parents=[common], help="re-hash every cached file against the manifest and re-check TF conversions")
    path = actions.add_parser("path", parents=[common], help="print the cached file of a named weight")
    path.add_argument("name", metavar="NAME")
    p.set_defaults(func=_run_weights)


def _run_weights(args) -> int:
    from . import zoo

    _show_notices(args.quiet, args.debug)
    if args.action == "list":
        specs = zoo.load_manifest().values()
        rows = [("NAME", "STYLE", "SIZE", "FORMAT", "CACHED", "ALIASES")]
        for spec in specs:
            cached = "cached" if zoo.cached_weights(spec.name) else "-"
            rows.append((spec.name, spec.style, str(spec.size or "-"), spec.format, cached, ",".join(spec.aliases)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        print("\nLICENCES")
        for spec in specs:
            print(f"{spec.name}: {spec.license}")
    elif args.action == "download":
        if bool(args.names) == args.all:
            raise ConfigError("name the weights to download, or give --all (not both)")
        for name in list(zoo.load_manifest()) if args.all else args.names:
            print(zoo.fetch_weights(name, progress=not args.quiet))
    elif args.action == "import":
        print(zoo.import_weights(args.name, args.source, progress=not args.quiet))
    elif args.action == "verify":
        report = zoo.verify_cache()
        for entry, name, problem in report:
            print(f"{entry}/{name}: " + (f"BAD ({problem})" if problem else "ok"))
        if not report:
            print("no cached weights to verify")
        return int(any(problem for _, _, problem in report))
    elif args.action == "path":
        path = zoo.cached_weights(args.name)
        if path is None:
            raise WeightsError(f"{args.name} is not in the cache: run `animegan2 weights download {args.name}`")
        print(path)
    return 0


# --- serve ---


@subcommand
def _add_serve(sub, common):
    p = sub.add_parser("serve", parents=[common], help="open the web app (extra: web)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=7860, help="TCP port, 1-65535 (default 7860)")
    p.add_argument("--weights", "--styles", dest="weights", action="append", default=[], metavar="NAME_OR_FILE",
                   help="a style to offer (zoo name or local file); repeatable; default: the whole zoo")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--examples", help="folder of photos for the style thumbnails shown at start-up")
    p.add_argument("--max-upload-mb", type=_positive_float, default=20.0)
    p.add_argument("--max-pixels", type=_positive_int, default=2_000_000, help="largest image stylized at full size")
    p.add_argument("--max-video-seconds", type=_positive_float, default=15.0)
    p.add_argument("--concurrency", type=_positive_int, default=1, help="requests stylized at once")
    p.add_argument("--queue-size", type=_positive_int, default=16, help="requests waiting at most")
    p.set_defaults(func=_run_serve)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {text}")
    return value


def _run_serve(args) -> int:
    from .web import WebApp

    _show_notices(args.quiet, args.debug)  # licence notes and trust-on-first-use pins of the styles it fetches
    app = WebApp(
        weights=args.weights, device=args.device, examples=args.examples, max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels, max_video_seconds=args.max_video_seconds, concurrency=args.concurrency,
        queue_size=args.queue_size, progress=not args.quiet,
    )
    app.launch(args.host, args.port, quiet=args.quiet)


# --- face and video ---


def _add_model_options(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--style", help="a model zoo name (default: face_paint_512_v2)")
    which.add_argument("--weights", help="a weights file, URL or anything else the zoo accepts")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])


@subcommand
def _add_face(sub, common):
    p = sub.add_parser("face", parents=[common], help="find, level and stylize the face in portraits")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photo files, folders, glob patterns, or - for stdin")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder, or a file name for one input")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders (and ** in globs)")
    _add_model_options(p)
    p.add_argument("--size", type=_positive_int, default=512, help="side of the stylized square (default 512)")
    p.add_argument("--margin", type=float, default=0.5, help="room around the face box, a fraction of its side (default 0.5)")
    p.add_argument("--paste-back", action="store_true", help="blend the stylized face back into the whole photo")
    p.add_argument("--no-align", action="store_true", help="do not rotate to level the eyes")
    p.add_argument("--on-missing", choices=["error", "center"], default="error",
                   help="no face found: report the file (default) or stylize a centre crop")
    p.add_argument("--side-by-side", action="store_true", help="write the input and the result side by side")
    _add_existing_output_options(p)
    _add_precision_option(p)
    p.set_defaults(func=_run_face)


def _run_face(args) -> int:
    from .face import face2paint, paint_files
    from .imageio import IMAGE_SUFFIXES

    _show_notices(args.quiet, args.debug)
    sources, failed = _stylize_sources(args)
    out = Path(args.output)
    if len(sources) == 1 and len(args.inputs) == 1 and out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir():
        jobs = [(sources[0][0], out)]
    else:
        jobs = _folder_jobs(sources, out, "", None, failed)
    paint = face2paint(
        size=args.size, side_by_side=args.side_by_side, detect=True, margin=args.margin,
        align=not args.no_align, paste_back=args.paste_back, on_missing=args.on_missing,
    )
    stylizer = _open_stylizer(args, args.quiet, args.device, precision=args.precision)
    report = paint_files(
        jobs, paint, stylizer, progress=not args.quiet, overwrite=args.overwrite, skip_existing=args.skip_existing
    )
    failed += _reported(report, args.debug)
    _print_failures(failed)
    return 1 if failed else 0


@subcommand
def _add_video(sub, common):
    p = sub.add_parser("video", parents=[common], help="stylize a video or GIF, keeping its audio, frame count and rate")
    p.add_argument("inputs", nargs="+", metavar="IN", help="video files (mp4, mkv, mov, webm, gif, ...)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (its suffix picks the container) or folder (an existing one for many inputs)")  # fmt: skip
    _add_model_options(p)
    p.add_argument("--size", type=_positive_int, help="long side of the output frames (default: the input's)")
    p.add_argument("--fps", type=float, help="output frame rate (default: the input's)")
    p.add_argument("--start", help="start time, seconds or [hh:]mm:ss")
    p.add_argument("--end", help="end time, seconds or [hh:]mm:ss")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (default 18)")
    p.add_argument("--batch-size", type=_positive_int, default=4, help="frames per forward pass (default 4)")
    _add_existing_output_options(p)
    _add_precision_option(p)
    p.set_defaults(func=_run_video)


def _run_video(args) -> int:
    from .shard import Shard
    from .stylize import resolve_device
    from .video import stylize_video

    _show_notices(args.quiet, args.debug)
    out = Path(args.output)
    if len(args.inputs) > 1 and not out.is_dir():
        raise ConfigError(f"{len(args.inputs)} videos need an existing output folder, and {out} is not one")
    jobs = [(src, out / Path(src).name if out.is_dir() else out) for src in args.inputs]
    jobs = [(src, dst) for src, dst in jobs if not _keep_existing(src, dst, args)]
    if len({dst for _, dst in jobs}) < len(jobs):
        raise ConfigError("two input videos have the same file name and would write the same output; use separate runs")
    shard = Shard.from_env()
    quiet = args.quiet or not shard.lead
    device = shard.device(resolve_device(args.device))
    stylizer = _open_stylizer(args, quiet, device, batch_size=args.batch_size, precision=args.precision)
    failed = 0
    for src, dst in shard.take(jobs):
        try:
            result = stylize_video(
                src, dst, stylizer.stylize_arrays, size=args.size, fps=args.fps, start=args.start, end=args.end,
                crf=args.crf, batch_size=args.batch_size, progress=not quiet, overwrite=args.overwrite,
            )
        except AnimeGANError as exc:
            if len(jobs) == 1:
                raise
            failed += 1  # one bad clip must not stop the others
            print(f"animegan2: failed: {src}: {exc}", file=sys.stderr)
            continue
        if not args.quiet:
            print(
                f"animegan2: wrote {result.path}: {result.frames} frames at {float(result.fps):g} fps, "
                f"{result.size[0]}x{result.size[1]}, {result.audio_packets} audio packets copied",
                file=sys.stderr,
            )
    written, failed = shard.sum([len(shard.take(jobs)) - failed, failed])
    if len(jobs) > 1 and not quiet:
        print(f"animegan2: {written} videos written, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


# --- convert ---


@subcommand
def _add_convert(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "convert",
        parents=[common],
        help="convert an original TensorFlow 1 checkpoint to .pt or .safetensors",
        description="Convert an original TensorFlow 1 AnimeGAN generator checkpoint (no TensorFlow needed).",
    )
    p.add_argument("src", help="checkpoint directory, prefix (.../Hayao-64.ckpt) or its .index file")
    p.add_argument("-o", "--output", help="output file: .pt (plain state_dict) or .safetensors (with metadata)")
    p.add_argument("--list", action="store_true", help="list the checkpoint's tensors and exit")
    _add_existing_output_options(p)
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint, describe, save_weights

    if args.list:
        print(describe(args.src))
        return 0
    if not args.output:
        raise ConfigError("convert needs an output file: -o OUT.safetensors (or OUT.pt), or --list")
    if _keep_existing(args.src, args.output, args):
        return 0
    state, metadata = convert_checkpoint(args.src)
    out = save_weights(state, metadata, args.output, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {out} ({metadata['architecture']}, {len(state)} tensors, upsample={metadata['upsample']}, "
              f"norm_eps={metadata['norm_eps']})")
    return 0


# --- data ---


@subcommand
def _add_data(sub, common):
    p = sub.add_parser("data", parents=[common], help="prepare a training data set")
    actions = p.add_subparsers(dest="data_action", required=True, metavar="ACTION")
    s = actions.add_parser("smooth", parents=[common], help="edge-smooth anime frames (STYLE/style -> STYLE/smooth)")
    s.add_argument("src", help="folder of anime frames")
    s.add_argument("-o", "--output", required=True, help="output folder (same file names)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    s.set_defaults(func=_run_data_smooth)
    r = actions.add_parser("prepare", parents=[common], help="resize/crop photos or video frames into a folder")
    r.add_argument("src", help="folder of images, or a video file")
    r.add_argument("-o", "--output", required=True, help="output folder")
    r.add_argument("--size", type=int, default=256, help="output side in pixels (default 256)")
    r.add_argument("--fps", type=float, default=1.0, help="frames per second taken from a video (default 1)")
    r.set_defaults(func=_run_data_prepare)
    m = actions.add_parser("mean", parents=[common], help="print a style set's colour adjustment (B G R)")
    m.add_argument("src", help="folder of anime frames (STYLE/style)")
    m.set_defaults(func=_run_data_mean)


def _report(report, quiet: bool) -> int:
    if report.skipped or not quiet:
        print(report.summary(), file=sys.stderr)
    return 0


def _run_data_smooth(args) -> int:
    from .train import data

    return _report(data.smooth_folder(args.src, args.output, workers=args.workers, progress=not args.quiet), args.quiet)


def _run_data_prepare(args) -> int:
    from .train import data

    return _report(data.prepare(args.src, args.output, size=args.size, fps=args.fps, progress=not args.quiet), args.quiet)


def _run_data_mean(args) -> int:
    from .train import data

    adjust, report = data.data_mean(args.src, progress=not args.quiet)
    print(" ".join(f"{v:.4f}" for v in adjust))
    return _report(report, True)


# --- train ---


@subcommand
def _add_train(sub, common):
    p = sub.add_parser(
        "train", parents=[common], declare=_add_train_settings,
        help="train a style (AnimeGANv2 recipe); `train export` writes weights",
    )  # fmt: skip
    p.add_argument("--config", help="YAML/TOML file of settings (command-line options override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.set_defaults(func=_run_train)
    actions = p.add_subparsers(dest="train_action", metavar="[export]")
    e = actions.add_parser("export", parents=[common], help="write a run's generator as .safetensors with metadata")
    e.add_argument("run", help="run folder (or its checkpoint.pt)")
    e.add_argument("-o", "--output", required=True, help="output .safetensors")
    _add_existing_output_options(e)
    e.add_argument("--epoch", type=_positive_int, help="the generator kept after this epoch (default: the latest)")
    e.set_defaults(func=_run_train_export)


def _add_train_settings(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field; declared only when ``train`` runs (it imports the trainer)."""
    from .train.trainer import TrainConfig, config_types

    types = config_types()
    for f in dataclasses.fields(TrainConfig):
        base, _ = types[f.name]
        flag = "--" + f.name.replace("_", "-")
        if base is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f.metadata["help"])
        elif base is list:
            p.add_argument(flag, type=float, nargs=3, default=None, help=f.metadata["help"])
        else:
            p.add_argument(flag, type=base, default=None, help=f.metadata["help"])


def _run_train(args) -> int:
    from .train import trainer

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(trainer.TrainConfig) if getattr(args, f.name) is not None}
    cfg = trainer.resolve_config(args.config, args.resume, overrides)
    out = trainer.train(cfg, resume=args.resume is not None, progress=not args.quiet)
    if not args.quiet:
        print(f"run saved in {out}; export it with: animegan2 train export {out} -o {cfg.style}.safetensors", file=sys.stderr)
    return 0


def _run_train_export(args) -> int:
    from .train import trainer

    if _keep_existing(args.run, args.output, args):
        return 0
    print(trainer.export(args.run, args.output, epoch=args.epoch))
    return 0


# --- export ---


def _add_precision_option(p: argparse.ArgumentParser) -> None:
    # The names are animegan2.precision.PRECISIONS; the library checks them (importing it here would load torch for --help).
    p.add_argument("--precision", default="exact", metavar="{exact,fast,fp32,bf16,fp16,int8}",
                   help="exact (default): float32; fast: the fastest path this device offers with PSNR >= 40 dB "
                   "vs float32 (bf16 on AMX/AVX-512 BF16 CPUs, int8 on VNNI CPUs, fp16 on GPUs); or one by name. "
                   "A line says which path runs")


def _add_speed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["torch", "onnxruntime"],
                   help="run the model with PyTorch or ONNX Runtime (the onnx extra); default: what --precision runs on")
    _add_precision_option(p)
    p.add_argument("--calibration", nargs="+", metavar="PHOTO",
                   help="photos to calibrate int8 on (default: the first inputs)")


def _speed_kwargs(args, inputs: list[Path]) -> dict:
    """Stylizer keyword arguments for --backend/--precision/--calibration."""
    kwargs = {"backend": args.backend, "precision": args.precision}
    if args.precision in ("int8", "fast"):  # fast may pick int8; other paths ignore calibration
        kwargs["calibration"] = args.calibration or inputs[:4] or None
    return kwargs


def _say_precision(stylizer, quiet: bool) -> None:
    if not quiet:
        print(f"animegan2: running {stylizer.plan.describe()}", file=sys.stderr)


@subcommand
def _add_export(sub, common):
    p = sub.add_parser("export", parents=[common], help="export a generator for ONNX, TorchScript, phones or the browser")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--onnx", metavar="OUT.onnx", help="write an ONNX model")
    what.add_argument("--torchscript", metavar="OUT.pt", help="write a traced TorchScript module")
    what.add_argument("--litert", metavar="OUT.tflite", help="write a LiteRT model, fixed --size (the litert extra)")
    what.add_argument("--executorch", metavar="OUT.pte", help="write an ExecuTorch program, XNNPACK (the mobile extra)")
    what.add_argument("--coreml", metavar="OUT.mlpackage", help="write a Core ML package (the mobile extra)")
    what.add_argument("--web", metavar="DIR", help="write a static web app (ONNX Runtime Web) into a new folder")
    p.add_argument("--weights", required=True, help="a zoo name, weights file or URL")
    p.add_argument("--upsample", choices=["tf", "align_corners", "half_pixel"], help="override the weights' upsampling mode")
    p.add_argument("--opset", type=_positive_int, default=17, help="ONNX opset (11 or later, default 17)")
    p.add_argument("--dynamic", action="store_true", help="ONNX: dynamic batch, height and width")
    p.add_argument("--size", type=_positive_int, nargs=2, default=[512, 512], metavar=("H", "W"),
                   help="input size traced (the fixed input size of ONNX without --dynamic, LiteRT, and Core ML "
                        "with align_corners upsampling; default 512 512)")
    p.add_argument("--precision", choices=["float32", "int8", "float16"], default=None,
                   help="ONNX: int8 static quantization (needs --calibration, implies --dynamic); "
                        "LiteRT: float16 weights or int8 dynamic range; Core ML: float16 (default) or float32")
    p.add_argument("--calibration", nargs="+", metavar="PHOTO", help="photos to calibrate int8 on")
    p.add_argument("--onnxruntime-web", metavar="TGZ",
                   help="--web: the onnxruntime-web npm tarball to vendor (default: `npm pack` into the cache)")
    _add_existing_output_options(p)
    p.set_defaults(func=_run_export)


def _export_precision(args) -> str:
    allowed = {"coreml": ("float16", "float32"), "onnx": ("float32", "int8"), "litert": ("float32", "float16", "int8")}
    kind = next(k for k in ("onnx", "torchscript", "litert", "executorch", "coreml", "web") if getattr(args, k))
    precision = args.precision or allowed.get(kind, ("float32",))[0]
    if precision not in allowed.get(kind, ("float32",)):
        raise ConfigError(f"--{kind} export takes --precision {' or '.join(allowed.get(kind, ('float32',)))}, not {precision}")
    return precision


def _run_export(args) -> int:
    from .export import calibration_tensors, export_metadata, export_onnx, export_torchscript, quantize_int8
    from .zoo import build_model, load_state_dict

    destination = args.onnx or args.torchscript or args.litert or args.executorch or args.coreml
    if destination and _keep_existing(args.weights, destination, args):  # --web refuses a folder in use itself
        return 0
    state, meta = load_state_dict(args.weights, progress=not args.quiet)
    model = build_model(meta, upsample=args.upsample)
    model.load_state_dict(state, strict=True)
    model.eval()
    name = meta.name or Path(str(args.weights)).name
    metadata = export_metadata(model, name, meta.license)
    precision = _export_precision(args)
    size = tuple(args.size)
    if args.torchscript:
        path = export_torchscript(model, args.torchscript, size=size, overwrite=args.overwrite)
    elif args.litert:
        from .mobile import export_litert

        path = export_litert(model, args.litert, size=size, precision=precision, metadata=metadata, overwrite=args.overwrite)
    elif args.executorch:
        from .mobile import export_executorch

        path = export_executorch(model, args.executorch, metadata=metadata, overwrite=args.overwrite)
    elif args.coreml:
        from .mobile import export_coreml

        path = export_coreml(
            model, args.coreml, size=size, precision=precision, metadata=metadata, overwrite=args.overwrite
        )
    elif args.web:
        from .webexport import export_web

        path = export_web(model, args.web, metadata=metadata, ort_tarball=args.onnxruntime_web, opset=args.opset)
    else:
        if precision == "int8" and not args.calibration:
            raise ConfigError("--precision int8 needs --calibration PHOTO... (a few real photos)")
        if precision == "int8":
            float_model = export_onnx(model, opset=args.opset, dynamic=True, metadata=metadata)
            quantize_int8(float_model, calibration_tensors(args.calibration), args.onnx, overwrite=args.overwrite)
        else:
            export_onnx(
                model, args.onnx, opset=args.opset, dynamic=args.dynamic, size=size, metadata=metadata,
                overwrite=args.overwrite,
            )
        path = Path(args.onnx)
    if not args.quiet:
        print(f"animegan2: wrote {path} ({model.upsample} upsampling, {precision})", file=sys.stderr)
        if "non-commercial" in metadata["license"]:
            print(f"animegan2: licence note for {name}: {metadata['license']}", file=sys.stderr)
        if args.web:
            print(f"animegan2: serve it with: python -m http.server -d {path} (then open http://127.0.0.1:8000/)", file=sys.stderr)
    return 0
