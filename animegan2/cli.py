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
