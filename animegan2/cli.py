"""The ``animegan2`` command. Parses arguments and calls the library; nothing imports this.

Each subcommand is one ``_add_<name>`` function that declares its arguments and sets
``func``; library errors become one line on stderr and exit status 1 (``--debug`` shows
the traceback).
"""

from __future__ import annotations

import argparse
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
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint, describe, save_weights
    from .errors import ConfigError

    if args.list:
        print(describe(args.src))
        return 0
    if not args.output:
        raise ConfigError("convert needs an output file: -o OUT.safetensors (or OUT.pt), or --list")
    state, metadata = convert_checkpoint(args.src)
    out = save_weights(state, metadata, args.output)
    if not args.quiet:
        print(f"wrote {out} ({metadata['architecture']}, {len(state)} tensors, upsample={metadata['upsample']}, "
              f"norm_eps={metadata['norm_eps']})")
    return 0
