"""Runs over many files, as stylize and face2paint do them: what happened to each file
(:class:`BatchReport`), whether an existing destination is skipped, replaced or refused
(:func:`skip_destination`), and the one-line reason a file failed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .errors import AnimeGANError, OutputExistsError
from .imageio import source_name


def failure_reason(exc: BaseException) -> str:
    """The one-line reason a file failed, as batch reports list it: our own messages as they
    are, anything else prefixed with its exception type."""
    return str(exc) if isinstance(exc, AnimeGANError) else f"{type(exc).__name__}: {exc}"


@dataclass
class BatchReport:
    """What a run over many files did: ``done``/``skipped`` are (source, destination) pairs,
    ``failed`` is (source, one-line reason, exception)."""

    done: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, BaseException]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def fail(self, src: object, exc: BaseException) -> None:
        """Record that the job reading ``src`` failed with ``exc``."""
        self.failed.append((source_name(src), failure_reason(exc), exc))

    def not_written(self, src: object, dst: object, exc: BaseException, *, skip_existing: bool) -> None:
        """Record a job whose output ``exc`` stopped: skipped when ``dst`` exists (another run
        wrote it since the check) and existing outputs are skipped, failed otherwise."""
        if skip_existing and isinstance(exc, OutputExistsError):
            self.skipped.append((source_name(src), source_name(dst)))
        else:
            self.fail(src, exc)


def skip_destination(
    src: str | os.PathLike | BinaryIO, dst: str | os.PathLike | BinaryIO, *, overwrite: bool, skip_existing: bool
) -> bool:
    """Whether a job's existing destination is to be skipped (``skip_existing``); an existing
    one is replaced only with ``overwrite`` and is an :class:`OutputExistsError` otherwise, as
    is a destination that is its own source (also through a symbolic or hard link). Streams
    always go ahead. Every writer checks again when it publishes the file (see ``_atomic``)."""
    if not isinstance(dst, (str, os.PathLike)):
        return False
    if isinstance(src, (str, os.PathLike)) and same_file(src, dst):
        raise OutputExistsError(f"{source_name(src)}: the output would replace its input; choose another name")
    if os.path.lexists(dst):
        if skip_existing:
            return True
        if not overwrite:
            raise OutputExistsError(f"{source_name(dst)} already exists; overwrite it or skip existing outputs")
    return False


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path, or links to one file."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()
