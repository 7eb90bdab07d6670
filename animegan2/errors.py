"""The exceptions animegan2 raises: one hierarchy, rooted at :class:`AnimeGANError`.

Every message says what was wrong and what to do about it; the CLI prints it as one
line and exits non-zero.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class AnimeGANError(Exception):
    """Base class of every error raised by animegan2."""


class WeightsError(AnimeGANError):
    """Weights could not be found, fetched, parsed or loaded."""


class ChecksumError(WeightsError):
    """A file's size or digest differs from what the manifest (or the cache's pin) holds."""


class DownloadError(WeightsError):
    """Every mirror of a file failed, or the network may not be used (offline mode)."""


class ManifestError(WeightsError):
    """The weights manifest is malformed."""


class CheckpointError(AnimeGANError):
    """A TensorFlow checkpoint is unreadable, corrupt, or not of a known network."""


class ImageError(AnimeGANError):
    """An image could not be decoded, encoded, or is outside the supported limits."""


class VideoError(AnimeGANError):
    """A video could not be decoded or encoded."""


class FaceNotFoundError(ImageError):
    """No face was found where face detection was asked for."""


class OutputExistsError(AnimeGANError):
    """An output exists (or is the input itself) and was not to be replaced."""


class ConfigError(AnimeGANError):
    """An option, a config file or a data set does not make sense."""


class ArgumentError(ConfigError, ValueError):
    """A function got an argument value it does not accept (also a ``ValueError``, as Python's own are)."""


class WriteError(ConfigError, ImageError, WeightsError, OSError):
    """A file could not be written: its folder is missing or read-only, or the disk is full.

    The one type of every failed write (raised by :mod:`animegan2._atomic`). It is also each
    type such a failure had before (``ConfigError``, ``ImageError``, ``WeightsError``, and
    ``OSError`` with the operating system's ``errno``, ``strerror`` and ``filename``), so
    handlers written for those still catch it; ``reason`` says why in a few words.
    """

    def __init__(self, message: str, *, cause: OSError | None = None, path: object = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.errno = cause.errno if cause is not None else None
        self.strerror = (cause.strerror or str(cause)) if cause is not None else None
        self.filename = str(path) if path is not None else None
        self.reason = reason or self.strerror

    def __str__(self) -> str:
        return self.args[0]


class TrainingError(AnimeGANError):
    """Training stopped because a loss or gradient became NaN/inf; the last good checkpoint is kept."""


class MissingDependencyError(AnimeGANError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or raise :class:`MissingDependencyError` naming the extra.

    >>> np = require("numpy", "core")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is needed for this feature but is not installed: "
            f"pip install 'animegan2[{extra}]'"
        ) from exc
