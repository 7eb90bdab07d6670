"""Atomic file writes: the one way animegan2 puts a finished file under its final name."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``dest``, sync it, then ``os.replace`` it onto
    ``dest``; on any failure the temporary file is removed, so no half-written file ever
    carries ``dest``'s name. The file gets the usual umask permissions (``mkstemp`` gives 0600).

    >>> write_bytes_atomic("out.png", png_bytes)   # doctest: +SKIP
    """
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")  # same folder: os.replace is atomic
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
