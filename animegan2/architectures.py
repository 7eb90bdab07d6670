"""The architecture registry: one entry per network whose weights the package knows, as data.

An :class:`Architecture` says how to build the network (:meth:`Architecture.build`), how the
original TensorFlow 1 checkpoints' variables map onto its ``state_dict``, the numerics it
runs with (upsampling mode, norm epsilon) and what it supports (the row-strip engine, export
formats). The zoo, the converter, the exporters, the strip engine, the trainer and hubconf ask
here; nothing else knows an architecture's name. A new network is one more entry in
:data:`ARCHITECTURES` plus the module that defines it (the models of torchvision's
``Weights`` and timm's ``build_model_with_cfg``: configurations as data, one door).

>>> ARCHITECTURES["animeganv2"].native
Numerics(upsample='tf', norm_eps=1e-12)
>>> sorted(a for a in ARCHITECTURES if ARCHITECTURES[a].strip_engine)
['animeganv2']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from torch import nn

from .errors import ConfigError, WeightsError
from .model import Generator
from .model_v1 import CONV_NORM_EPS, SEPARABLE_NORM_EPS, GeneratorV1
from .onnx_v3 import OnnxGeneratorV3

TFMapping = dict[str, tuple[str, tuple[int, ...]]]
"""PyTorch ``state_dict`` key -> (TF variable name under ``generator/G_MODEL/``, transpose)."""

# TF layout -> PyTorch layout, as a numpy transpose
CONV = (3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
DEPTHWISE = (2, 3, 0, 1)  # [kh, kw, C, 1] -> [C, 1, kh, kw]
VECTOR = (0,)


@dataclass(frozen=True)
class Numerics:
    """What decides a generator's output besides its weights. ``norm_eps`` is a tuple where
    the architecture fixes different epsilons per kind of layer."""

    upsample: str
    norm_eps: float | tuple[float, ...]

    def record(self) -> dict[str, str]:
        """As string metadata (what converted weights store), e.g. ``norm_eps: "1e-5,1e-6"``."""
        eps = self.norm_eps if isinstance(self.norm_eps, tuple) else (self.norm_eps,)
        return {"upsample": self.upsample, "norm_eps": ",".join(_short(e) for e in eps)}


def _short(x: float) -> str:
    mantissa, exponent = f"{x:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


@dataclass(frozen=True)
class Architecture:
    """A network the package runs.

    ``native`` are the original graph's numerics (TF-converted checkpoints, fresh generators
    for training); ``published`` what a weights file without metadata runs with, or None
    where the architecture fixes its numerics (``fixed`` then says so, and no override is
    taken). ``signature`` is a TF variable found in this network's checkpoints only and
    ``mapping()`` its :data:`TFMapping`; ``state_key`` a ``state_dict`` key only its plain
    files hold; ``file_suffix`` marks networks whose weights are a whole graph file that
    ``module(path, device=...)`` runs. Features: ``strip_engine`` (the row-strip engine and
    ``memory="low"``), ``exports`` (formats :mod:`animegan2.export` and friends write),
    ``trains`` (what :mod:`animegan2.train` trains).
    """

    id: str
    name: str
    module: type[nn.Module] | None
    weight_formats: tuple[str, ...]
    native: Numerics | None = None
    published: Numerics | None = None
    fixed: str = ""
    signature: str | None = None
    mapping: Callable[[], TFMapping] | None = None
    state_key: str | None = None
    file_suffix: str | None = None
    strip_engine: bool = False
    exports: tuple[str, ...] = ()
    trains: bool = False

    def check_overrides(self, upsample: str | None, norm_eps: float | None) -> None:
        """Refuse ``upsample``/``norm_eps`` for a network that fixes its numerics."""
        native_upsample = self.native.upsample if self.native else None
        if self.published is None and (upsample not in (None, native_upsample) or norm_eps is not None):
            raise ConfigError(f"{self.fixed}: drop upsample/norm_eps")

    def build(self, upsample: str | None = None, norm_eps: float | None = None, *, base: Numerics | None = None) -> nn.Module:
        """An untrained network: ``upsample``/``norm_eps`` where given, else ``base`` (default
        :attr:`native`).

        >>> ARCHITECTURES["animeganv2"].build(norm_eps=1e-5).upsample
        'tf'
        """
        if self.module is None or self.file_suffix is not None:
            raise unbuildable(self.id)
        self.check_overrides(upsample, norm_eps)
        if self.published is None:
            return self.module()
        base = base or self.native
        return self.module(upsample=upsample or base.upsample, norm_eps=base.norm_eps if norm_eps is None else norm_eps)


def unbuildable(architecture: str) -> WeightsError:
    """The error for weights of an architecture that no entry builds as a module."""
    files = "; ".join(f"{a.id} comes as an {a.file_suffix} file" for a in ARCHITECTURES.values() if a.file_suffix)
    return WeightsError(
        f"weights of architecture {architecture!r} cannot be built here (known: {', '.join(ARCHITECTURES)}; {files})"
    )


def of(model: nn.Module) -> Architecture | None:
    """The entry whose module ``model`` is an instance of, or None."""
    return next((a for a in ARCHITECTURES.values() if a.module is not None and isinstance(model, a.module)), None)


def of_state_dict(state: Mapping[str, object]) -> Architecture:
    """The network a plain ``state_dict`` (no metadata) is for: the one whose ``state_key``
    it holds, else :data:`DEFAULT`."""
    return next((a for a in ARCHITECTURES.values() if a.state_key and a.state_key in state), ARCHITECTURES[DEFAULT])


def of_file(path: Path) -> Architecture | None:
    """The network whose weights are whole graph files named like ``path``, or None."""
    return next((a for a in ARCHITECTURES.values() if a.file_suffix and path.suffix == a.file_suffix), None)


def generators() -> list[str]:
    """The ids of the networks that stylize (every entry but the trainer's feature network)."""
    return [a.id for a in ARCHITECTURES.values() if a.module is not None]


def trained() -> Architecture:
    """The network :mod:`animegan2.train` trains."""
    return next(a for a in ARCHITECTURES.values() if a.trains)


def supporting(feature: str) -> list[str]:
    """The names of the networks with ``feature``: ``"strip_engine"`` or an export format."""
    return [a.name for a in ARCHITECTURES.values() if (a.strip_engine if feature == "strip_engine" else feature in a.exports)]


# --- TF1 variable layouts ---


def _v2_mapping() -> TFMapping:
    """AnimeGANv2 (DESIGN.md 2.2 -> 2.3)."""
    mapping: TFMapping = {}

    def conv_norm(key: str, scope: str, conv: str, norm: str) -> None:
        mapping[f"{key}.1.weight"] = (f"{scope}/{conv}/weights", CONV)
        mapping[f"{key}.2.weight"] = (f"{scope}/{norm}/gamma", VECTOR)
        mapping[f"{key}.2.bias"] = (f"{scope}/{norm}/beta", VECTOR)

    def nth(name: str, i: int) -> str:
        return name if i == 0 else f"{name}_{i}"

    def plain_block(block: str, scope: str, count: int) -> None:
        for i in range(count):
            conv_norm(f"{block}.{i}", scope, nth("Conv", i), nth("LayerNorm", i))

    plain_block("block_a", "A", 3)
    plain_block("block_b", "B", 2)
    conv_norm("block_c.0", "C", "Conv", "LayerNorm")
    for k in range(1, 5):
        key, scope = f"block_c.{k}.layers", f"C/r{k}"
        conv_norm(f"{key}.0", scope, "Conv", "LayerNorm")
        mapping[f"{key}.1.1.weight"] = (f"{scope}/r{k}/w", DEPTHWISE)
        mapping[f"{key}.1.1.bias"] = (f"{scope}/r{k}/bias", VECTOR)
        mapping[f"{key}.1.2.weight"] = (f"{scope}/1/gamma", VECTOR)
        mapping[f"{key}.1.2.bias"] = (f"{scope}/1/beta", VECTOR)
        mapping[f"{key}.2.weight"] = (f"{scope}/Conv_1/weights", CONV)
        mapping[f"{key}.3.weight"] = (f"{scope}/2/gamma", VECTOR)
        mapping[f"{key}.3.bias"] = (f"{scope}/2/beta", VECTOR)
    conv_norm("block_c.5", "C", "Conv_1", "LayerNorm_1")
    plain_block("block_d", "D", 2)
    plain_block("block_e", "E", 3)
    mapping["out_layer.0.weight"] = ("out_layer/Conv/weights", CONV)
    return mapping


def _v1_mapping() -> TFMapping:
    """AnimeGAN v1 (DESIGN.md 2.5). The original names its layers by TF1's default scope
    numbering (``Conv``, ``Conv_1``, ..., ``SeparableConv2d_1``) in the order it creates them,
    so the scopes are numbered here in that same order. It matters: b1's and b2's two
    downsampling branches have equal shapes, and only the order tells them apart (the
    stride-2 branch is created first, as the left operand of their sum)."""
    mapping: TFMapping = {}
    created: Counter[tuple[str, str]] = Counter()

    def new_scope(scope: str, base: str) -> str:
        n = created[scope, base]
        created[scope, base] += 1
        return f"{scope}/{base}_{n}" if n else f"{scope}/{base}"

    def norm(key: str, scope: str) -> None:
        mapping[f"{key}.weight"] = (f"{scope}/gamma", VECTOR)
        mapping[f"{key}.bias"] = (f"{scope}/beta", VECTOR)

    def conv(key: str, scope: str) -> None:
        mapping[f"{key}.1.weight"] = (new_scope(scope, "Conv") + "/weights", CONV)
        norm(f"{key}.2", new_scope(scope, "InstanceNorm"))

    def sep(key: str, scope: str) -> None:
        sc = new_scope(scope, "SeparableConv2d")
        mapping[f"{key}.1.weight"] = (f"{sc}/depthwise_weights", DEPTHWISE)
        mapping[f"{key}.2.weight"] = (f"{sc}/pointwise_weights", CONV)
        norm(f"{key}.3", f"{sc}/InstanceNorm")

    conv("b1.0", "b1"), conv("b1.1", "b1"), sep("b1.2.strided", "b1"), sep("b1.2.resized.conv", "b1")
    conv("b2.0", "b2"), sep("b2.1", "b2"), sep("b2.2.strided", "b2"), sep("b2.2.resized.conv", "b2")
    conv("m.0", "m")
    for k in range(1, 9):
        key, scope = f"m.{k}.layers", f"m/r{k}"
        conv(f"{key}.0", scope)
        mapping[f"{key}.2.weight"] = (f"{scope}/r{k}/w", DEPTHWISE)
        norm(f"{key}.3", f"{scope}/1")
        mapping[f"{key}.5.weight"] = (new_scope(scope, "Conv") + "/weights", CONV)
        norm(f"{key}.6", f"{scope}/2")
    conv("m.9", "m")
    sep("u2.0.conv", "u2"), sep("u2.1", "u2"), conv("u2.2", "u2")
    sep("u1.0.conv", "u1"), conv("u1.1", "u1"), conv("u1.2", "u1")
    mapping["out_layer.0.weight"] = ("Conv/weights", CONV)
    return mapping


# --- the registry ---

_TF_AND_TORCH = ("torch-state-dict", "tf1-checkpoint")

ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType({
    a.id: a
    for a in (
        Architecture(
            "animeganv2", "AnimeGANv2", Generator, _TF_AND_TORCH,
            native=Numerics("tf", 1e-12),  # TF1 legacy bilinear, tf.contrib layer_norm's epsilon (DESIGN.md 2.1)
            published=Numerics("align_corners", 1e-5),  # bryandlee/animegan2-pytorch's port (DESIGN.md 2.3)
            signature="C/r1/r1/w", mapping=_v2_mapping, strip_engine=True, trains=True,
            exports=("onnx", "torchscript", "litert", "executorch", "coreml", "web"),
        ),
        Architecture(
            "animeganv1", "AnimeGAN v1", GeneratorV1, _TF_AND_TORCH,
            native=Numerics("tf", (CONV_NORM_EPS, SEPARABLE_NORM_EPS)),  # conv blocks, separable convs
            fixed="AnimeGAN v1 weights run with TF1 bilinear upsampling and their own norm epsilons only",
            signature="b1/SeparableConv2d/depthwise_weights", mapping=_v1_mapping, state_key="b1.0.1.weight",
        ),
        Architecture(
            "animeganv3", "AnimeGANv3", OnnxGeneratorV3, ("onnx",), file_suffix=".onnx",
            fixed="AnimeGANv3 ONNX models fix their own upsampling and norms",
        ),
        Architecture("vgg19", "VGG19 (training features, animegan2.train)", None, ("numpy", "torch-state-dict")),
    )
})  # fmt: skip
"""id (what the manifest and weights' metadata store) -> :class:`Architecture`."""

DEFAULT = "animeganv2"
"""The architecture of weights that do not say theirs."""
