"""Fetching weight files into the cache: mirrors, retries, resume, verification, one lock.

:func:`fetch` is the one function that owns the lock, the partial file, the resume, the
verification and the atomic move, in named steps (lock, transfer, verify, pin, move);
everything else here is a transport (HTTP with ``requests``, Hugging Face with
``huggingface_hub``, a local copy for imports), a check, or a name in the cache. The
environment is read in :func:`cache_dir`, :func:`is_offline`, :func:`_timeout` and
:func:`_lock_timeout` only.

Every wait is bounded: a download must deliver each :data:`PROGRESS_BYTES` within
``ANIMEGAN2_TIMEOUT`` seconds (a trickling server cannot hold it open), never writes past
the declared size (or :data:`MAX_UNDECLARED_BYTES` when none is declared), and a process
waiting on another's lock says so and gives up after ``ANIMEGAN2_LOCK_TIMEOUT`` seconds.

Cache layout under :func:`cache_dir`::

    <key>/<file>            verified files (key = a manifest entry's name, or urls/<hash>)
    <key>/<file>.part       a partial download, resumed by the next attempt
    <key>/<file>.part.hf/   huggingface_hub's working folder for an hf:// source
    <key>.lock              the entry's lock: N processes -> one download
    pins/<key>/<file>.sha256  the digest seen on first download of a file without a published one
    converted/<entry>-<digest>.safetensors[.sha256]  TF conversions and their digests (see loading)

Every path in it is named here (:func:`cached_path`, :func:`pin_path`, :func:`url_key`,
:func:`converted_path`, :func:`lock_path`, :func:`digest_record`); other modules ask them.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from ._atomic import write_bytes_atomic
from .errors import ChecksumError, DownloadError, MissingDependencyError, WeightsError, WriteError, require

log = logging.getLogger("animegan2")

RETRIES = 4
"""Extra attempts per mirror after a connection error, a timeout or a 5xx answer."""
BACKOFF = 1.0
"""Seconds before the first retry; doubled at each further one (capped at 30 s)."""
CONNECT_TIMEOUT = 10.0
PROGRESS_BYTES = 1 << 16
"""A download that does not deliver this many more bytes within ``ANIMEGAN2_TIMEOUT`` seconds has stalled."""
MAX_UNDECLARED_BYTES = 1 << 30
"""The most a download of a file without a declared size may write (twice the largest known weights, vgg19.npy)."""
_CHUNK = 1 << 16
_OFFLINE_VARS = ("ANIMEGAN2_OFFLINE", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch: its name in the cache folder, its mirrors and what it must be.

    ``sha256`` shorter than 64 hex digits is a prefix (torch.hub's ``name-<sha256 prefix>.pt``
    convention). Without any digest, the file is pinned on first download (trust on first use).
    """

    name: str
    urls: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None
    sha1_git: str | None = None
    unverified: tuple[str, ...] = ()

    @property
    def has_digest(self) -> bool:
        """Whether a published digest identifies the file (else it is pinned on first use)."""
        return bool(self.sha256 or self.sha1_git)


class _NotFound(Exception):
    """This mirror does not have the file: try the next one."""


class _Retryable(Exception):
    """A transient failure (5xx, short read): retry the same mirror."""


def cache_dir() -> Path:
    """The cache root: ``$ANIMEGAN2_HOME``, else ``<torch.hub.get_dir()>/animegan2``.

    >>> cache_dir()  # doctest: +SKIP
    PosixPath('/root/.cache/torch/hub/animegan2')
    """
    home = os.environ.get("ANIMEGAN2_HOME")
    if home:
        return Path(home).expanduser()
    import torch.hub

    return Path(torch.hub.get_dir()) / "animegan2"


def is_offline() -> bool:
    """True when ``ANIMEGAN2_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value."""
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on") for var in _OFFLINE_VARS)


def _timeout() -> tuple[float, float]:
    """(connect, read) timeouts; ``ANIMEGAN2_TIMEOUT`` (default 30 s) sets the read timeout, which
    is also the longest a download may take to deliver each :data:`PROGRESS_BYTES`."""
    return CONNECT_TIMEOUT, float(os.environ.get("ANIMEGAN2_TIMEOUT", "30"))


def _lock_timeout() -> float:
    """Seconds to wait for another process's lock: ``ANIMEGAN2_LOCK_TIMEOUT``, default 600."""
    return float(os.environ.get("ANIMEGAN2_LOCK_TIMEOUT", "600"))


@contextmanager
def locked(lock_path: Path, doing: str) -> Iterator[None]:
    """Hold the file lock ``lock_path``; when another process holds it, say so (``doing`` says
    what that process is doing) and wait at most :func:`_lock_timeout` seconds for it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        wait = _lock_timeout()
        log.warning("another animegan2 process is %s (lock %s): waiting up to %g s for it", doing, lock_path, wait)
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise WeightsError(
                f"gave up after {wait:g} s waiting for another process {doing} (lock {lock_path}); "
                "let it finish, or stop it, then try again (ANIMEGAN2_LOCK_TIMEOUT sets the wait)"
            ) from None
    try:
        yield
    finally:
        lock.release()


def disk_error(exc: OSError, path: Path, needed: int | None = None) -> WriteError:
    """One line for a failed write into the cache: where, and, on a full disk, how much room is needed."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        need = f"{needed:,} bytes are needed, " if needed else ""
        try:
            free = f"{shutil.disk_usage(path.parent).free:,} bytes are free there"
        except OSError:
            free = "the disk is full"
        return WriteError(
            f"no space left to write {path}: {need}{free}; free some space, or set ANIMEGAN2_HOME to a folder on another disk",
            cause=exc, path=path,
        )  # fmt: skip
    return WriteError(f"cannot write {path}: {exc.strerror or exc}; set ANIMEGAN2_HOME to a writable folder", cause=exc, path=path)


def inside(root: Path, *parts: str) -> Path:
    """``root/parts...``, refusing anything that would leave ``root`` (``..``, absolute parts)."""
    path = root.joinpath(*parts)
    if any(p in ("", ".", "..") or "\\" in p or Path(p).is_absolute() for part in parts for p in part.split("/")):
        raise WeightsError(f"refusing cache path {'/'.join(parts)!r}: it would leave the cache {root}")
    return path


def check_url(url: str) -> None:
    """Accept ``https://`` anywhere and ``http://`` only to a loopback host; raise otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return
    raise DownloadError(f"refusing to download {url}: only https:// URLs are accepted (http:// only to a loopback host)")


def parse_hf(url: str) -> tuple[str, str, str | None]:
    """``hf://owner/repo[@revision]/path/in/repo`` -> (repo_id, filename, revision).

    >>> parse_hf("hf://user/animegan2@v1/weights/a.pt")
    ('user/animegan2', 'weights/a.pt', 'v1')
    """
    parts = url[len("hf://") :].split("/")
    if not url.startswith("hf://") or len(parts) < 3 or not all(parts):
        raise WeightsError(f"malformed Hugging Face address {url!r}: expected hf://owner/repo[@revision]/file")
    repo, _, revision = parts[1].partition("@")
    return f"{parts[0]}/{repo}", "/".join(parts[2:]), revision or None


def file_digests(path: Path) -> dict[str, str]:
    """sha256 and git blob SHA-1 (``sha1(b"blob <size>\\0" + bytes)``) of a file, in one read."""
    sha256 = hashlib.sha256()
    sha1_git = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha256.update(chunk)
            sha1_git.update(chunk)
    return {"sha256": sha256.hexdigest(), "sha1_git": sha1_git.hexdigest()}


def pin_path(key: str, name: str) -> Path:
    """Where the trust-on-first-use sha256 of ``<key>/<name>`` is kept."""
    return inside(cache_dir(), "pins", *key.split("/"), name + ".sha256")


def cached_path(key: str, name: str) -> Path:
    """Where :func:`fetch` keeps the verified file ``name`` of ``key``."""
    return inside(cache_dir(), *key.split("/"), name)


def url_key(url: str) -> str:
    """The cache key of a file fetched by its URL alone: ``urls/<hash of the URL>``."""
    return "urls/" + hashlib.sha256(url.encode()).hexdigest()[:16]


def converted_path(key: str, files: Sequence[FileSpec]) -> Path:
    """Where a conversion of the cached ``files`` of ``key`` is kept: named by ``key`` and
    their digests (published, else pinned), so new sources never meet an old conversion."""
    digests = []
    for spec in files:
        pin = pin_path(key, spec.name)
        digests.append(spec.sha256 or spec.sha1_git or (pin.read_text().strip() if pin.exists() else ""))
    digest = hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]
    return inside(cache_dir(), "converted", f"{key}-{digest}.safetensors")


def lock_path(path: Path) -> Path:
    """The lock that guards writing ``path`` (a cache folder or file): ``<path>.lock``."""
    return Path(str(path) + ".lock")


def digest_record(path: Path) -> Path:
    """Where the sha256 of a cached file we made ourselves is recorded: ``<path>.sha256``."""
    return path.with_name(path.name + ".sha256")


def verify_file(path: Path, spec: FileSpec, key: str, origin: str) -> None:
    """Check ``path`` against ``spec``'s size and digests (or its trust-on-first-use pin).

    Raises :class:`ChecksumError` naming expected and actual values and ``origin``.
    """
    size = path.stat().st_size
    unverified = " (the manifest marks this value unverified)"
    if spec.size is not None and size != spec.size:
        note = unverified if "size" in spec.unverified else ""
        raise ChecksumError(f"{spec.name} from {origin}: expected {spec.size} bytes, got {size}{note}")
    actual = file_digests(path)
    for algo in ("sha256", "sha1_git"):
        expected = getattr(spec, algo)
        if expected and not actual[algo].startswith(expected.lower()):
            note = unverified if algo in spec.unverified else ""
            raise ChecksumError(f"{spec.name} from {origin}: expected {algo} {expected}, got {actual[algo]}{note}")
    pin = pin_path(key, spec.name)
    if not spec.has_digest and pin.exists() and pin.read_text().strip() != actual["sha256"]:
        raise ChecksumError(
            f"{spec.name} from {origin}: sha256 {actual['sha256']} differs from {pin.read_text().strip()}, "
            f"pinned when it was first downloaded; refusing it (delete {pin} only if the publisher changed the file)"
        )


def _open(session, url: str, headers: dict[str, str]):
    """GET ``url`` (streamed), following redirects ourselves so every hop is checked before use."""
    for _ in range(10):
        resp = session.get(url, headers=headers, stream=True, timeout=_timeout(), allow_redirects=False)
        if not resp.is_redirect:
            return resp
        resp.close()
        url = urljoin(url, resp.headers["Location"])
        check_url(url)
    raise DownloadError(f"{url}: too many redirects")


def _copy_body(resp, fh, limit: int, bar) -> None:
    """Write ``resp``'s body into ``fh``: at most ``limit`` bytes, each :data:`PROGRESS_BYTES`
    within the timeout. ``read1`` returns whatever has arrived, so a trickle cannot keep one
    read, or the deadline, open."""
    window = _timeout()[1]
    received, mark, deadline = 0, PROGRESS_BYTES, time.monotonic() + window
    while chunk := resp.raw.read1(_CHUNK, decode_content=True):
        received += len(chunk)
        if received > limit:
            raise _TooLarge("the server sent more; stopped there and discarded it")
        fh.write(chunk)
        bar.update(len(chunk))
        now = time.monotonic()
        if received >= mark:
            mark, deadline = received + PROGRESS_BYTES, now + window
        elif now > deadline:
            raise _Retryable(f"stalled: less than {PROGRESS_BYTES} bytes in {window:g} s (ANIMEGAN2_TIMEOUT)")


class _TooLarge(Exception):
    """The server sent more than the file may hold."""


def _start_offset(part: Path, size: int | None, cap: int) -> int:
    """How much of ``part`` a resumed download keeps (a partial over the cap is dropped), after
    checking the disk has room for the rest."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > cap:
        part.unlink()
        offset = 0
    if size is not None and shutil.disk_usage(part.parent).free < size - offset:
        raise disk_error(OSError(errno.ENOSPC, "no space"), part, size - offset)
    return offset


def _check_status(resp, part: Path, offset: int) -> bool:
    """Sort the answer to a (Range) request into a retry, another mirror, or go; True when the
    server resumes at ``offset``."""
    status = resp.status_code
    if status in (404, 410):
        raise _NotFound(f"HTTP {status}")
    if status == 416 and offset:
        part.unlink()  # our partial is not a prefix of what the server has
        raise _Retryable("HTTP 416 for the resumed range")
    if status >= 500 or status == 429:
        raise _Retryable(f"HTTP {status}")
    if status >= 400:
        raise _NotFound(f"HTTP {status}")
    return status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-")


def _receive(resp, part: Path, offset: int, size: int | None, cap: int, progress: bool, label: str) -> None:
    """Write the body of an accepted answer into ``part``: appended at ``offset`` when it
    resumes there, from the first byte when ``offset`` is 0."""
    from tqdm.auto import tqdm

    length = resp.headers.get("Content-Length")
    total = offset + int(length) if length and length.isdigit() else size
    if total is not None and total > cap:
        raise _TooLarge(f"the server announces {total:,}; not downloaded")
    try:
        with open(part, "ab" if offset else "wb") as fh, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=label, disable=not progress, leave=False
        ) as bar:
            _copy_body(resp, fh, cap - offset, bar)
    except OSError as exc:
        raise disk_error(exc, part, None if size is None else size - offset) from exc
    got = part.stat().st_size
    if size is not None and got < size:
        raise _Retryable(f"connection closed after {got} of {size} bytes")


def _back_off(url: str, failures: int, exc: Exception) -> None:
    """Wait before retry number ``failures``, or give up after :data:`RETRIES` of them."""
    if failures > RETRIES:
        raise DownloadError(f"{url}: {exc} (gave up after {failures} attempts)") from exc
    delay = min(BACKOFF * 2 ** (failures - 1), 30.0)
    log.debug("retrying %s in %.1fs after: %s", url, delay, exc)
    time.sleep(delay)


def _http_get(url: str, part: Path, size: int | None, progress: bool, label: str) -> None:
    """Stream ``url`` into ``part``, resuming it with a Range request; retries transient failures.
    Never writes past ``size`` (or :data:`MAX_UNDECLARED_BYTES` when it is None)."""
    import requests
    import urllib3

    check_url(url)
    transient = (
        _Retryable, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
    )
    declared = "its declared size" if size is not None else "the limit for a file of unknown size"
    cap = size if size is not None else MAX_UNDECLARED_BYTES
    failures = 0
    with requests.Session() as session:
        while True:
            offset = _start_offset(part, size, cap)
            if size is not None and offset == size:
                return
            headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
            try:
                with _open(session, url, headers) as resp:
                    resumed = _check_status(resp, part, offset)  # else the server ignored the Range
                    _receive(resp, part, offset if resumed else 0, size, cap, progress, label)
                return
            except _TooLarge as exc:
                part.unlink(missing_ok=True)
                raise ChecksumError(f"{label} from {url}: expected at most {cap:,} bytes ({declared}), {exc}") from None
            except transient as exc:
                failures += 1
                _back_off(url, failures, exc)


def _hf_get(url: str, part: Path) -> None:
    """Fetch ``hf://owner/repo/file`` with huggingface_hub (honours ``HF_ENDPOINT``) into ``part``.

    It downloads into a scratch folder beside ``part`` (huggingface_hub resumes there), so the
    file is stored once, in our cache, and verified like any other.
    """
    hub = require("huggingface_hub", "hf")
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    repo_id, filename, revision = parse_hf(url)
    scratch = part.with_name(part.name + ".hf")
    try:
        local = hub.hf_hub_download(
            repo_id, filename, revision=revision, local_dir=scratch, endpoint=os.environ.get("HF_ENDPOINT") or None
        )
        os.replace(local, part)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise _NotFound(type(exc).__name__) from exc
    except Exception as exc:  # huggingface_hub raises httpx and OS errors of many kinds
        raise DownloadError(f"{url}: {exc}") from exc
    shutil.rmtree(scratch, ignore_errors=True)


def _transfer(source: str | Path, part: Path, spec: FileSpec, progress: bool) -> None:
    if isinstance(source, Path):
        try:
            shutil.copyfile(source, part)
        except OSError as exc:
            raise disk_error(exc, part, source.stat().st_size) from exc
    elif source.startswith("hf://"):
        _hf_get(source, part)
    else:
        _http_get(source, part, spec.size, progress, spec.name)


def _fetch_one(spec: FileSpec, part: Path, key: str, progress: bool, sources: Sequence[str | Path]) -> None:
    """Get one verified file into ``part``, trying ``sources`` in order."""
    failures: list[str] = []
    checksum: ChecksumError | None = None
    for source in sources:
        try:
            _transfer(source, part, spec, progress)
            verify_file(part, spec, key, str(source))
            return
        except ChecksumError as exc:
            part.unlink(missing_ok=True)
            checksum = checksum or exc
            failures.append(str(exc))
        except _NotFound as exc:
            failures.append(f"{source}: {exc}")
        except DownloadError as exc:
            failures.append(str(exc))
    detail = "; ".join(failures) or "no mirror listed"
    if checksum is not None:
        raise ChecksumError(str(checksum) if len(failures) == 1 else f"{checksum} [all sources: {detail}]")
    raise DownloadError(f"could not download {spec.name}: {detail}")


def _run_check(check: Callable[[Path], None], paths: Mapping[str, Path]) -> None:
    """Run a format check on the files under their real names (partials keep a ``.part`` suffix)."""
    with tempfile.TemporaryDirectory(prefix="animegan2-check-") as tmp:
        for name, path in paths.items():
            link = Path(tmp) / name
            try:
                link.symlink_to(path.resolve())
            except OSError:
                shutil.copyfile(path, link)
        check(Path(tmp))


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(
            f"cannot create the weights cache folder {folder}: {exc.strerror}; set ANIMEGAN2_HOME to a writable folder",
            cause=exc, path=folder,
        ) from exc  # fmt: skip


def _missing(key: str, files: Sequence[FileSpec], final: Mapping[str, Path], check_hash: bool, importing: bool) -> list[FileSpec]:
    """The files to fetch: absent ones, cached ones that fail verification (removed), or all
    of them for an import."""
    missing = []
    for spec in files:
        path = final[spec.name]
        if not importing and path.exists():
            if not check_hash:
                continue
            try:
                verify_file(path, spec, key, f"the cache ({path})")
                continue
            except ChecksumError as exc:
                log.warning("cached file altered, fetching it again: %s", exc)
                path.unlink()
        missing.append(spec)
    return missing


def _transfer_all(key: str, missing: Sequence[FileSpec], parts: Mapping[str, Path], progress: bool, sources: Mapping[str, Path] | None) -> None:
    """Get every missing file, verified, into its partial file."""
    try:
        for spec in missing:
            _fetch_one(spec, parts[spec.name], key, progress, [sources[spec.name]] if sources else spec.urls)
    except WeightsError:
        if sources:  # a failed import leaves nothing; a download keeps its partials to resume
            for part in parts.values():
                part.unlink(missing_ok=True)
        raise


def _check_format(key: str, check: Callable[[Path], None], paths: Mapping[str, Path], parts: Mapping[str, Path]) -> None:
    """Run the format's own integrity check; on failure the partial files go."""
    try:
        _run_check(check, paths)
    except MissingDependencyError:
        raise
    except Exception as exc:
        for part in parts.values():
            part.unlink(missing_ok=True)
        raise ChecksumError(f"{key}: the downloaded files fail their integrity check: {exc}") from exc


def _pin(key: str, spec: FileSpec, part: Path) -> None:
    """Record the sha256 of a file without a published digest, unless one is recorded already."""
    pin = pin_path(key, spec.name)
    digest = file_digests(part)["sha256"]
    if not pin.exists():
        pin.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(pin, (digest + "\n").encode())
        log.warning("no published digest for %s/%s: pinned sha256 %s on first use", key, spec.name, digest)


def _pin_and_move(key: str, missing: Sequence[FileSpec], parts: Mapping[str, Path], final: Mapping[str, Path], folder: Path) -> None:
    """Pin the files without a published digest, then move every partial file into place."""
    try:
        for spec in missing:
            if not spec.has_digest:
                _pin(key, spec, parts[spec.name])
        for spec in missing:
            os.replace(parts[spec.name], final[spec.name])
    except OSError as exc:
        raise disk_error(exc, Path(exc.filename or folder)) from exc


def fetch(
    key: str,
    files: Sequence[FileSpec],
    *,
    progress: bool = True,
    check_hash: bool = True,
    check: Callable[[Path], None] | None = None,
    sources: Mapping[str, Path] | None = None,
    offline_hint: str = "",
) -> dict[str, Path]:
    """Make every file of ``files`` present and verified under ``<cache>/<key>/``; return their paths.

    One lock per ``key`` makes concurrent processes wait for a single download. A cached file
    is re-hashed when ``check_hash`` (an altered one is fetched again). Missing files come from
    their mirrors in order (or from ``sources``, local files to import), are verified against
    their size and digests, and move into place only once all of them are complete. Files
    without a published digest must pass ``check(folder)`` (the format's own integrity check,
    given a folder holding every file under its name) and get their sha256 pinned, which the
    cached file is then checked against. Waiting on another process's lock is announced and
    bounded (:func:`locked`); a full disk is one :class:`WeightsError` saying how much room is needed.

    >>> fetch("face_paint_512_v2", [FileSpec("w.pt", ("https://example.org/w.pt",))])  # doctest: +SKIP
    {'w.pt': PosixPath('/root/.cache/torch/hub/animegan2/face_paint_512_v2/w.pt')}
    """
    folder = inside(cache_dir(), *key.split("/"))
    final = {spec.name: inside(folder, spec.name) for spec in files}
    _make_folder(folder)
    with locked(lock_path(folder), f"downloading {key}"):
        missing = _missing(key, files, final, check_hash, sources is not None)
        if not missing:
            return final
        if sources is None and is_offline():
            raise DownloadError(
                f"offline mode ({' or '.join(_OFFLINE_VARS)} is set) and {key} is not in the cache {folder}. "
                + (offline_hint or "Unset the variable to download it.")
            )
        parts = {spec.name: folder / (spec.name + ".part") for spec in missing}
        _transfer_all(key, missing, parts, progress, sources)
        if check is not None and any(not spec.has_digest for spec in missing):
            _check_format(key, check, {**final, **parts}, parts)
        _pin_and_move(key, missing, parts, final, folder)
        return final
