"""Weights by any name -> verified state_dict + metadata -> model: the single door to pretrained models.

``weights`` may be a manifest name or alias (``"face_paint_512_v2"``, ``"webtoon"``), a local
file (``.pt``/``.pth``/``.safetensors``), a TF1 checkpoint (folder, prefix or ``.index``;
converted on the fly), an AnimeGANv3 ``.onnx`` file, an ``https://`` URL or
``hf://owner/repo/file``. Every one resolves to a verified local file
(:mod:`animegan2.resolve`), which :mod:`animegan2.loading` reads; :func:`load_generator`
builds the model its architecture needs (:func:`build_model`, from
:mod:`animegan2.architectures`; ONNX files become an :class:`~animegan2.onnx_v3.OnnxGeneratorV3`).
The manifest's schema lives in :mod:`animegan2.manifest`; its names are re-exported here, as
are the resolver's, for the import paths users have.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .architectures import ARCHITECTURES, Numerics, of_file, unbuildable
from .errors import WeightsError
from .loading import load_file, read_safetensors
from .manifest import (
    BUNDLED_MANIFEST,
    DEFAULT_WEIGHTS,
    WEIGHT_FORMATS,
    WeightSpec,
    WeightsMeta,
    get_spec,
    load_manifest,
    manifest_path,
)
from .resolve import cached_weights, check_weights, fetch_weights, import_weights, resolve, verify_cache

__all__ = [
    "BUNDLED_MANIFEST", "DEFAULT_WEIGHTS", "WEIGHT_FORMATS", "WeightSpec", "WeightsMeta", "build_model",
    "cached_weights", "check_weights", "fetch_weights", "get_spec", "import_weights", "load_generator",
    "load_manifest", "load_state_dict", "manifest_path", "read_safetensors", "verify_cache",
]  # fmt: skip


def load_state_dict(
    weights: str | Path, *, progress: bool = True, check_hash: bool = True
) -> tuple[dict[str, Tensor], WeightsMeta]:
    """Resolve ``weights`` to a verified state_dict and its :class:`WeightsMeta`.

    ``weights``: a manifest name or alias, a local ``.pt``/``.pth``/``.safetensors`` file, a TF1
    checkpoint (folder, prefix or ``.index``; converted on the fly), an ``https://`` URL or
    ``hf://owner/repo[@revision]/file``. ``check_hash`` re-hashes cached files before use (downloads
    are always verified) and, for URLs, checks torch.hub's ``-<sha256 prefix>.`` file-name convention.

    >>> state, meta = load_state_dict("face_paint_512_v2")  # doctest: +SKIP
    >>> meta.upsample, meta.norm_eps, meta.size
    ('align_corners', 1e-05, 512)
    """
    path, spec = resolve(weights, progress, check_hash)
    state, meta = load_file(path)
    return state, spec.meta if spec else meta


def build_model(meta: WeightsMeta, *, upsample: str | None = None, norm_eps: float | None = None) -> nn.Module:
    """An untrained generator of ``meta.architecture`` set up as ``meta`` says,
    ``upsample``/``norm_eps`` overriding it (where the architecture takes them: AnimeGAN v1
    fixes both).

    >>> build_model(WeightsMeta(architecture="animeganv1")).upsample
    'tf'
    """
    if meta.architecture not in ARCHITECTURES:
        raise unbuildable(meta.architecture)
    arch = ARCHITECTURES[meta.architecture]
    published = arch.published
    base = published and Numerics(meta.upsample or published.upsample, meta.norm_eps or published.norm_eps)
    return arch.build(upsample, norm_eps, base=base)


def load_generator(
    weights: str | Path,
    *,
    device: str | torch.device = "cpu",
    upsample: str | None = None,
    norm_eps: float | None = None,
    progress: bool = True,
    check_hash: bool = True,
) -> nn.Module:
    """Build the generator for ``weights`` with its metadata's upsampling and epsilon (unless
    overridden), load the tensors strictly, and return it in eval mode on ``device``.
    AnimeGANv3 ``.onnx`` files give an :class:`~animegan2.onnx_v3.OnnxGeneratorV3` (same call
    convention, run by ONNX Runtime on ``device``).

    >>> g = load_generator("face_paint_512_v2")  # doctest: +SKIP
    >>> g.upsample, g.norm_eps
    ('align_corners', 1e-05)
    """
    path, spec = resolve(weights, progress, check_hash)
    graph = of_file(path)
    if graph is not None:
        graph.check_overrides(upsample, norm_eps)
        return graph.module(path, device=device).eval()
    state, meta = load_file(path)
    meta = spec.meta if spec else meta
    model = build_model(meta, upsample=upsample, norm_eps=norm_eps)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{weights} is not an {ARCHITECTURES[meta.architecture].name} generator state_dict: {exc}") from exc
    return model.to(device).eval()
