"""Atomic file writes: the one way animegan2 puts a finished file under its final name."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``dest`` to write to; it replaces ``dest`` when the block ends
    without error and is removed otherwise, so no half-written file ever carries ``dest``'s name.

    >>> with atomic_path("out.pt") as tmp:      # doctest: +SKIP
    ...     torch.save(state, tmp)
    """
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")  # same folder: os.replace is atomic
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` through :func:`atomic_path`, synced to disk before the rename.
    The file gets the usual umask permissions (``mkstemp`` would give 0600)."""
    with atomic_path(dest) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
