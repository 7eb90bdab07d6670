"""The browser export: a static folder where a dropped photo is stylized in the page by
ONNX Runtime Web (WebGPU where the browser has it, WebAssembly otherwise).

The folder holds ``index.html``, ``app.js``, ``model.onnx`` and three files of the npm
package ``onnxruntime-web`` (:data:`ORT_WEB_VERSION`). That package is taken at export time:
``npm pack`` (the user's npm and registry settings) into the cache, checked against the
integrity hash pinned here -- or from a tarball given with ``ort_tarball``. Nothing in the
folder asks any other host for anything. Browsers refuse module imports and ``fetch`` from
``file://`` pages, so the folder is served: ``python -m http.server -d DIR``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

from torch import nn

from .download import cache_dir, is_offline
from .errors import ChecksumError, ConfigError, DownloadError
from .export import export_onnx

ORT_WEB_VERSION = "1.30.0"
#: ``dist.integrity`` of onnxruntime-web@1.30.0 in the npm registry (the tarball's SHA-512).
ORT_WEB_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
#: The WebGPU + WebAssembly build: its script, the Emscripten module it imports, the binary.
ORT_WEB_FILES = ("ort.webgpu.min.js", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
NPM_TIMEOUT_S = 600
PAGE_FILES = ("index.html", "app.js")


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def _check_tarball(path: Path) -> Path:
    found = _integrity(path)
    if found != ORT_WEB_INTEGRITY:
        raise ChecksumError(
            f"{path} is not onnxruntime-web@{ORT_WEB_VERSION} as the npm registry publishes it "
            f"(integrity {found}, expected {ORT_WEB_INTEGRITY}); delete it and export again"
        )
    return path


def onnxruntime_web_tarball(source: str | os.PathLike | None = None) -> Path:
    """The verified npm tarball of onnxruntime-web@:data:`ORT_WEB_VERSION`: ``source`` if
    given, else the cached copy, else one fetched with ``npm pack`` into the cache."""
    if source is not None:
        if not Path(source).is_file():
            raise ConfigError(f"{source} is not a file; pass the onnxruntime-web-{ORT_WEB_VERSION}.tgz from `npm pack`")
        return _check_tarball(Path(source))
    folder = cache_dir() / "npm"
    cached = folder / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    if cached.is_file():
        return _check_tarball(cached)
    if is_offline():
        raise DownloadError(f"onnxruntime-web {ORT_WEB_VERSION} is not cached and downloads are off (offline mode)")
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError(
            f"the web export vendors onnxruntime-web {ORT_WEB_VERSION} with `npm pack`: install Node.js (npm), "
            "or pass --onnxruntime-web TGZ (a tarball from `npm pack onnxruntime-web@" + ORT_WEB_VERSION + "`)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-", dir=folder) as tmp:
        try:
            subprocess.run(
                [npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--pack-destination", tmp, "--silent"],
                check=True, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise DownloadError(f"`npm pack onnxruntime-web@{ORT_WEB_VERSION}` took over {NPM_TIMEOUT_S} s") from exc
        except subprocess.CalledProcessError as exc:
            last = (exc.stderr or "").strip().splitlines()[-1:] or ["no message"]
            raise DownloadError(f"`npm pack onnxruntime-web@{ORT_WEB_VERSION}` failed: {last[0]}") from exc
        packed = Path(tmp) / cached.name
        if not packed.is_file():
            raise DownloadError(f"`npm pack` wrote no {cached.name}")
        _check_tarball(packed)
        os.replace(packed, cached)
    return cached


def _extract_ort(tarball: Path, dest: Path) -> None:
    with tarfile.open(tarball, "r:gz") as tar:
        for name in ORT_WEB_FILES:
            member = tar.extractfile(f"package/dist/{name}")
            if member is None:
                raise ChecksumError(f"{tarball} has no dist/{name}")
            with member, open(dest / name, "wb") as out:
                shutil.copyfileobj(member, out)


def export_web(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    metadata: dict[str, str],
    ort_tarball: str | os.PathLike | None = None,
    opset: int = 17,
) -> Path:
    """Write the web app for ``model`` into ``folder`` (which must not exist, or be empty): the
    ONNX model (dynamic sizes, ``metadata`` in its properties), the page and onnxruntime-web.
    The folder appears whole or not at all."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} exists and is not an empty folder; remove it or choose another")
    tarball = onnxruntime_web_tarball(ort_tarball)
    onnx_model = export_onnx(model, dynamic=True, opset=opset, metadata=metadata)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / "model.onnx").write_bytes(onnx_model)
        _extract_ort(tarball, tmp)
        page = resources.files("animegan2") / "web_static"
        for name in PAGE_FILES:
            text = (page / name).read_text(encoding="utf-8")
            if name == "index.html":
                text = text.replace("{{METADATA}}", json.dumps(metadata, sort_keys=True).replace("</", "<\\/"))
            (tmp / name).write_text(text, encoding="utf-8")
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
