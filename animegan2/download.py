"""Fetching weight files into the cache: mirrors, retries, resume, verification, one lock.

:func:`fetch` is the one function that owns the cache layout, the lock, the partial file,
the resume, the verification and the atomic move; everything else here is a transport
(HTTP with ``requests``, Hugging Face with ``huggingface_hub``, a local copy for imports)
or a check. The environment is read in :func:`cache_dir`, :func:`is_offline` and
:func:`_timeout` only.

Cache layout under :func:`cache_dir`::

    <key>/<file>            verified files (key = a manifest entry's name, or urls/<hash>)
    <key>/<file>.part       a partial download, resumed by the next attempt
    <key>/<file>.part.hf/   huggingface_hub's working folder for an hf:// source
    <key>.lock              the entry's lock: N processes -> one download
    pins/<key>/<file>.sha256  the digest seen on first download of a file without a published one
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from ._atomic import write_bytes_atomic
from .errors import ChecksumError, DownloadError, MissingDependencyError, WeightsError, require

log = logging.getLogger("animegan2")

RETRIES = 4
"""Extra attempts per mirror after a connection error, a timeout or a 5xx answer."""
BACKOFF = 1.0
"""Seconds before the first retry; doubled at each further one (capped at 30 s)."""
CONNECT_TIMEOUT = 10.0
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
    """(connect, read) timeouts; ``ANIMEGAN2_TIMEOUT`` sets the read timeout (seconds between bytes)."""
    return CONNECT_TIMEOUT, float(os.environ.get("ANIMEGAN2_TIMEOUT", "30"))


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


def _http_get(url: str, part: Path, size: int | None, progress: bool, label: str) -> None:
    """Stream ``url`` into ``part``, resuming it with a Range request; retries transient failures."""
    import requests
    from tqdm.auto import tqdm

    check_url(url)
    failures = 0
    with requests.Session() as session:
        while True:
            offset = part.stat().st_size if part.exists() else 0
            if size is not None and offset > size:
                part.unlink()
                offset = 0
            if size is not None and offset == size:
                return
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                with _open(session, url, headers) as resp:
                    if resp.status_code in (404, 410):
                        raise _NotFound(f"HTTP {resp.status_code}")
                    if resp.status_code == 416 and offset:
                        part.unlink()  # our partial is not a prefix of what the server has
                        raise _Retryable("HTTP 416 for the resumed range")
                    if resp.status_code >= 500 or resp.status_code == 429:
                        raise _Retryable(f"HTTP {resp.status_code}")
                    if resp.status_code >= 400:
                        raise _NotFound(f"HTTP {resp.status_code}")
                    resumed = resp.status_code == 206 and resp.headers.get("Content-Range", "").startswith(
                        f"bytes {offset}-"
                    )
                    if not resumed:
                        offset = 0  # the server ignored the Range: start again from the first byte
                    length = resp.headers.get("Content-Length")
                    total = offset + int(length) if length and length.isdigit() else size
                    with open(part, "ab" if resumed else "wb") as fh, tqdm(
                        total=total, initial=offset, unit="B", unit_scale=True, desc=label, disable=not progress, leave=False
                    ) as bar:
                        for chunk in resp.iter_content(_CHUNK):
                            fh.write(chunk)
                            bar.update(len(chunk))
                got = part.stat().st_size
                if size is not None and got < size:
                    raise _Retryable(f"connection closed after {got} of {size} bytes")
                return
            except (_Retryable, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                failures += 1
                if failures > RETRIES:
                    raise DownloadError(f"{url}: {exc} (gave up after {failures} attempts)") from exc
                delay = min(BACKOFF * 2 ** (failures - 1), 30.0)
                log.debug("retrying %s in %.1fs after: %s", url, delay, exc)
                time.sleep(delay)


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
        shutil.copyfile(source, part)
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


def fetch(
    key: str,
    files: Sequence[FileSpec],
    *,
    progress: bool = True,
    check_hash: bool = True,
    check: Callable[[Path], None] | None = None,
    sources: Mapping[str, Path] | None = None,
    pin_unknown: bool = True,
    offline_hint: str = "",
) -> dict[str, Path]:
    """Make every file of ``files`` present and verified under ``<cache>/<key>/``; return their paths.

    One lock per ``key`` makes concurrent processes wait for a single download. A cached file
    is re-hashed when ``check_hash`` (an altered one is fetched again). Missing files come from
    their mirrors in order (or from ``sources``, local files to import), are verified against
    their size and digests, and move into place only once all of them are complete. Files
    without a published digest must pass ``check(folder)`` (the format's own integrity check,
    given a folder holding every file under its name) and get their sha256 pinned unless
    ``pin_unknown`` is False (arbitrary URLs, which carry no promise of identity).

    >>> fetch("face_paint_512_v2", [FileSpec("w.pt", ("https://example.org/w.pt",))])  # doctest: +SKIP
    {'w.pt': PosixPath('/root/.cache/torch/hub/animegan2/face_paint_512_v2/w.pt')}
    """
    from filelock import FileLock

    root = cache_dir()
    folder = inside(root, *key.split("/"))
    final = {spec.name: inside(folder, spec.name) for spec in files}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(
            f"cannot create the weights cache folder {folder}: {exc.strerror}; set ANIMEGAN2_HOME to a writable folder"
        ) from exc
    with FileLock(str(folder) + ".lock"):
        missing = []
        for spec in files:
            path = final[spec.name]
            if sources is None and path.exists():
                if not check_hash:
                    continue
                try:
                    verify_file(path, spec, key, f"the cache ({path})")
                    continue
                except ChecksumError as exc:
                    log.warning("cached file altered, fetching it again: %s", exc)
                    path.unlink()
            missing.append(spec)
        if not missing:
            return final
        if sources is None and is_offline():
            raise DownloadError(
                f"offline mode ({' or '.join(_OFFLINE_VARS)} is set) and {key} is not in the cache {folder}. "
                + (offline_hint or "Unset the variable to download it.")
            )
        parts = {spec.name: folder / (spec.name + ".part") for spec in missing}
        try:
            for spec in missing:
                _fetch_one(spec, parts[spec.name], key, progress, [sources[spec.name]] if sources else spec.urls)
        except WeightsError:
            if sources:  # a failed import leaves nothing; a download keeps its partials to resume
                for part in parts.values():
                    part.unlink(missing_ok=True)
            raise
        unpinned = [spec for spec in missing if not spec.has_digest] if pin_unknown else []
        if unpinned:
            if check is not None:
                try:
                    _run_check(check, {**final, **parts})
                except MissingDependencyError:
                    raise
                except Exception as exc:
                    for part in parts.values():
                        part.unlink(missing_ok=True)
                    raise ChecksumError(f"{key}: the downloaded files fail their integrity check: {exc}") from exc
            for spec in unpinned:
                pin = pin_path(key, spec.name)
                digest = file_digests(parts[spec.name])["sha256"]
                if not pin.exists():
                    pin.parent.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(pin, (digest + "\n").encode())
                    log.warning("no published digest for %s/%s: pinned sha256 %s on first use", key, spec.name, digest)
        for spec in missing:
            os.replace(parts[spec.name], final[spec.name])
        return final

