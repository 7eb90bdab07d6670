"""Test zoos: manifest entries for weights served by ``tests.weights_server``, and cache paths."""

import hashlib
from pathlib import Path

from animegan2 import download


def entry(urls, body=None, *, name="tiny.pt", digest=True, **fields):
    """A torch-state-dict manifest entry for ``body`` served at ``urls``."""
    file = {"name": name, "urls": urls}
    if body is not None and digest:
        file.update(size=len(body), sha256=hashlib.sha256(body).hexdigest())
    spec = {
        "description": "random test weights",
        "format": "torch-state-dict",
        "upsample": "align_corners",
        "norm_eps": 1e-5,
        "size": 512,
        "style": "test",
        "source": "tests",
        "license": "test data",
        "files": [file],
    }
    spec.update(fields)
    return spec


def cache(*parts) -> Path:
    """A path inside the weights cache (the test's own, see conftest's ``_isolated_cache``)."""
    return download.cache_dir().joinpath(*parts)
