"""Atomic file writes: the one way animegan2 puts a finished file under its final name.

A file is written under a temporary name beside its destination,
``.<name>.animegan2-<pid>-<random>.tmp<suffix>``, then published: renamed over the
destination, or, when the caller must not replace an existing file, hard-linked to it (which
fails if the name exists, so two runs never replace each other's files). A temporary file
whose process is gone (killed, or the machine lost power) is recognised by its name and
removed the first time this program writes into that folder again.

A write that fails raises :class:`~animegan2.errors.WriteError`, the one error of a failed
write; a destination that exists and must not be replaced raises :class:`FileExistsError`,
for the caller to word as the refusal it is.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import time
from pathlib import Path

from .errors import WriteError

_TEMP = re.compile(r"\..+\.animegan2-(\d+)-[0-9a-f]{8}\.tmp(\.[^.]*)?")
_WINDOWS_STALE_AFTER = 24 * 3600.0  # Windows cannot ask whether a PID lives without ctypes
_swept: set[str] = set()
_ADVICE = "check that its folder exists, is writable and has room"


def temp_path(dest: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``dest`` for this process (same folder: the final rename or
    link is atomic), ending in ``dest``'s suffix so that writers pick the right format."""
    dest = Path(dest)
    remove_stale(dest.parent)
    return dest.with_name(f".{dest.name}.animegan2-{os.getpid()}-{secrets.token_hex(4)}.tmp{dest.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove this program's temporary files in ``folder`` whose process no longer runs (on
    Windows: older than a day), once per folder and process; returns what was removed."""
    key = os.path.abspath(folder)
    if key in _swept:
        return []
    _swept.add(key)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # not there yet, or not a folder: nothing to remove
        return []
    for entry in entries:
        match = _TEMP.fullmatch(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(1))
        if os.name == "nt":
            stale = time.time() - entry.stat().st_mtime > _WINDOWS_STALE_AFTER
        else:
            stale = pid != os.getpid() and not _alive(pid)
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def write_error(exc: OSError, dest: str | os.PathLike, reason: str | None = None) -> WriteError:
    """The :class:`WriteError` for ``exc``, raised by the operating system while writing ``dest``."""
    if isinstance(exc, WriteError):
        return exc
    reason = reason or exc.strerror or str(exc)
    return WriteError(f"cannot write {dest}: {reason}; {_ADVICE}", cause=exc, path=dest, reason=reason)


def make_folder(folder: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Create ``folder`` (and its parents) to write ``dest`` into, or raise a :class:`WriteError`."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file holds a name the path needs
        raise write_error(exc, dest, f"{exc.filename} is a file, not a folder") from exc
    except OSError as exc:
        raise write_error(exc, dest) from exc


def publish(tmp: Path, dest: Path, *, replace: bool) -> None:
    """Give the finished file ``tmp`` the name ``dest``. With ``replace=False`` an existing
    ``dest`` is never replaced: :class:`FileExistsError`, even when another process creates
    it a moment earlier. Any other failure is a :class:`WriteError`. ``tmp`` is gone
    afterwards, except after an error."""
    try:
        _publish(tmp, dest, replace)
    except FileExistsError:
        raise
    except OSError as exc:
        raise write_error(exc, dest) from exc


def _publish(tmp: Path, dest: Path, replace: bool) -> None:
    if replace:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (FAT, some network shares)
        if os.name == "nt":
            os.rename(tmp, dest)  # Windows' rename refuses an existing name
            return
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dest)) from None
        os.replace(tmp, dest)  # checked, then renamed: the one gap left, on such file systems only
        return
    os.unlink(tmp)


def write_bytes_atomic(dest: str | os.PathLike, data: bytes, *, replace: bool = True, parents: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``dest``, sync it, then :func:`publish` it
    under ``dest`` (``replace=False``: :class:`FileExistsError` rather than replace a file);
    on any failure the temporary file is removed, so no half-written file ever carries
    ``dest``'s name, and the failure is a :class:`WriteError`. ``parents`` creates the
    missing folders first. The file gets the usual umask permissions (``mkstemp`` gives 0600).

    >>> write_bytes_atomic("out.png", png_bytes, replace=False)   # doctest: +SKIP
    """
    dest = Path(dest)
    if parents:
        make_folder(dest.parent, dest)
    tmp = temp_path(dest)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, dest, replace=replace)
    except FileExistsError:  # publish's refusal to replace ``dest``, for the caller to word
        raise
    except OSError as exc:
        raise write_error(exc, dest) from exc
    finally:
        tmp.unlink(missing_ok=True)

