"""The ``animegan2`` command. Parses arguments and calls the library; nothing imports this.

Each subcommand is one ``_add_<name>`` function that declares its arguments and sets
``func``; library errors become one line on stderr and exit status 1 (``--debug`` shows
the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import AnimeGANError


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars or notices")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return common


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = []


def subcommand(add: Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]):
    """Register a function that adds one subcommand's parser."""
    SUBCOMMANDS.append(add)
    return add


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animegan2", description="AnimeGANv2 for PyTorch")
    parser.add_argument("--version", action="version", version=f"animegan2 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    for add in SUBCOMMANDS:
        add(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AnimeGANError as exc:
        if args.debug:
            raise
        print(f"animegan2: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("animegan2: interrupted", file=sys.stderr)
        return 130


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
    from .train.trainer import TrainConfig, config_types

    p = sub.add_parser("train", parents=[common], help="train a style (AnimeGANv2 recipe); `train export` writes weights")
    p.add_argument("--config", help="YAML/TOML file of settings (command-line options override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
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
    p.set_defaults(func=_run_train)
    actions = p.add_subparsers(dest="train_action", metavar="[export]")
    e = actions.add_parser("export", parents=[common], help="write a run's generator as .safetensors with metadata")
    e.add_argument("run", help="run folder (or its checkpoint.pt)")
    e.add_argument("-o", "--output", required=True, help="output .safetensors")
    e.set_defaults(func=_run_train_export)


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

    print(trainer.export(args.run, args.output))
    return 0
