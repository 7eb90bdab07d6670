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
from .errors import AnimeGANError, ConfigError, WeightsError


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
    actions.add_parser("verify", parents=[common], help="re-hash every cached file against the manifest")
    path = actions.add_parser("path", parents=[common], help="print the cached file of a named weight")
    path.add_argument("name", metavar="NAME")
    p.set_defaults(func=_run_weights)


def _run_weights(args) -> int:
    from . import zoo

    if args.action == "list":
        rows = [("NAME", "STYLE", "SIZE", "FORMAT", "CACHED", "ALIASES")]
        for spec in zoo.load_manifest().values():
            cached = "cached" if zoo.cached_weights(spec.name) else "-"
            rows.append((spec.name, spec.style, str(spec.size or "-"), spec.format, cached, ",".join(spec.aliases)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    elif args.action == "download":
        if not args.names and not args.all:
            raise ConfigError("name the weights to download, or give --all")
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
