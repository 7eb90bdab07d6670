"""Weights by any name -> verified state_dict + metadata; the single door to pretrained models.

This first version resolves local files only; the manifest, downloads and conversion
on the fly are added by the zoo work (issue 3) behind the same two functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import WeightsError
from .model import Generator


@dataclass(frozen=True)
class WeightsMeta:
    """What a weight file needs besides its tensors to be run correctly."""

    architecture: str = "animeganv2"
    upsample: str = "align_corners"
    norm_eps: float = 1e-5
    size: int | None = None
    style: str | None = None
    name: str | None = None
    license: str | None = None


def _load_file(path: Path) -> tuple[dict[str, Tensor], WeightsMeta]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        meta = WeightsMeta(
            architecture=raw.get("architecture", "animeganv2"),
            upsample=raw.get("upsample", "align_corners"),
            norm_eps=float(raw.get("norm_eps", 1e-5)),
            size=int(raw["size"]) if raw.get("size") else None,
            style=raw.get("style"),
            name=path.stem,
        )
        return state, meta
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot load {path} as a weights-only PyTorch file: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state_dict (found {type(state).__name__})")
    return state, WeightsMeta(name=path.stem)


def load_state_dict(weights: str | Path, *, progress: bool = True, check_hash: bool = True) -> tuple[dict[str, Tensor], WeightsMeta]:
    """Resolve ``weights`` (a name or path) to a state_dict and its :class:`WeightsMeta`."""
    path = Path(weights)
    if not path.exists():
        raise WeightsError(f"no weights named {weights!r}: give an existing file")
    return _load_file(path)


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
    overridden), load the tensors strictly, and return it in eval mode on ``device``."""
    state, meta = load_state_dict(weights, progress=progress, check_hash=check_hash)
    model = Generator(
        upsample=upsample or meta.upsample,
        norm_eps=norm_eps if norm_eps is not None else meta.norm_eps,
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{weights} is not an AnimeGANv2 generator state_dict: {exc}") from exc
    return model.to(device).eval()
