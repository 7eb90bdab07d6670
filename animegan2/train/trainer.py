"""The AnimeGANv2 trainer: the original recipe (DESIGN.md 2.4) on one CPU or many GPUs.

Read top to bottom: configuration -> set-up -> init phase (content loss only) -> adversarial
phase (one D step, then one G step) -> checkpoints, samples and logs. The same command runs
alone (``animegan2 train ...``) or under ``torchrun --nproc_per_node N`` (DDP; every rank
reads its share of each epoch through a ``DistributedSampler``; rank 0 writes all files).
``--batch-size`` is per process.

The generator trains with its architecture's native numerics (the registry's, in
:mod:`animegan2.architectures`: the original trainer's ``upsample="tf"`` and layer-norm epsilon
1e-12) unless ``--init-from`` weights say otherwise or the
config sets ``upsample``/``norm_eps``; those numerics are the model's own record
(:class:`GeneratorArgs`, kept in the checkpoint beside the settings, which ``train`` never
changes). At the end of every epoch the generator is written to
``generators/epoch_NNN.safetensors`` (as the original's ``Saver(max_to_keep=epoch)`` kept
every epoch) with both in its metadata, loadable wherever weights are; ``export`` copies one
out.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import random
import time
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .. import architectures, zoo
from .._atomic import write_bytes_atomic
from ..convert import save_weights
from ..errors import CheckpointError, ConfigError, TrainingError, require
from ..model import UPSAMPLE_MODES, Generator  # noqa: F401 (trainer.Generator: the class it trains, for callers)
from . import data, losses
from .discriminator import Discriminator
from .initializers import init_generator_
from .optim import TFAdam
from .presets import PRESETS, SOURCES, Preset, get_preset
from .vgg import NORMALIZATIONS, load_vgg19

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
GENERATORS = "generators"
AMP_MODES = ("auto", "fp16", "bf16", "off")
_WEIGHTS = ("con", "sty", "col", "tv", "adv", "d_real", "d_fake", "d_gray", "d_smooth")
_NATIVE = architectures.trained().native  # the generator's numerics unless a run sets its own


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a run; a YAML/TOML file and the command line override the defaults
    (the recipe's). Saved as ``config.yaml`` in the run folder."""

    data: str | None = _opt(None, "data set root (train_photo/, STYLE/style/, STYLE/smooth/, val/)")
    style: str | None = _opt(None, "style folder name under --data")
    out: str | None = _opt(None, "run folder for checkpoints, samples, logs")
    preset: str | None = _opt(None, f"loss weights: {'|'.join(PRESETS)} (default: --style if it names one)")
    preset_source: str = _opt(
        "code", "code: the weights the original code runs (D 1.7/1.7/1.7/1.0 for every style) | comments: its per-style comments"
    )
    vgg: str = _opt("vgg19", "VGG19 weights: zoo name or vgg19.npy / torchvision vgg19 file")
    vgg_normalization: str | None = _opt(None, f"{'|'.join(NORMALIZATIONS)} (default: the weights' own)")
    init_from: str | None = _opt(None, "start G from these weights (zoo name or file)")
    epochs: int = _opt(101, "total epochs, init epochs included")
    init_epochs: int = _opt(10, "epochs of content loss only")
    batch_size: int = _opt(12, "images per step and process")
    image_size: int = _opt(256, "training images are SIZE x SIZE (multiple of 4)")
    max_steps: int | None = _opt(None, "stop after this many steps in all")
    lr_init: float = _opt(2e-4, "generator learning rate in the init phase")
    lr_g: float = _opt(2e-5, "generator learning rate")
    lr_d: float = _opt(4e-5, "discriminator learning rate")
    beta1: float = _opt(0.5, "Adam beta1")
    beta2: float = _opt(0.999, "Adam beta2")
    upsample: str | None = _opt(None, f"generator upsampling {'|'.join(UPSAMPLE_MODES)} (default {_NATIVE.upsample})")
    norm_eps: float | None = _opt(None, f"generator layer-norm epsilon (default {_NATIVE.norm_eps!r})")
    w_con: float | None = _opt(None, "content weight (default: the preset's)")
    w_sty: float | None = _opt(None, "grayscale style weight")
    w_col: float | None = _opt(None, "colour weight")
    w_tv: float | None = _opt(None, "total-variation weight")
    w_adv: float | None = _opt(None, "adversarial weight of G and D")
    w_d_real: float | None = _opt(None, "D weight of real anime")
    w_d_fake: float | None = _opt(None, "D weight of G(photo)")
    w_d_gray: float | None = _opt(None, "D weight of grayscale anime")
    w_d_smooth: float | None = _opt(None, "D weight of grayscale smoothed anime")
    data_mean: list[float] | None = _opt(None, "B G R colour adjustment (default: computed, see `data mean`)")
    device: str = _opt("auto", "auto|cpu|cuda")
    amp: str = _opt("auto", "mixed precision: auto (CUDA: bf16 where the GPU has it, else fp16; CPU: off)|fp16|bf16|off")
    deterministic: bool = _opt(False, "deterministic algorithms (slower on GPU)")
    seed: int = _opt(0, "seed of weights init and data order")
    workers: int = _opt(2, "data-loading processes")
    checkpoint_every: int = _opt(500, "steps between checkpoints (and one each epoch)")
    grad_clip: float | None = _opt(None, "clip gradient norms to this (always checked for NaN/inf)")
    samples: int = _opt(8, "validation photos in each epoch's sample grid")
    keep_generators: int | None = _opt(None, "keep the generators of this many latest epochs (default: every epoch)")


def config_types() -> dict[str, tuple[type, bool]]:
    """Field name -> (base type, optional) of :class:`TrainConfig`, for parsers."""
    out = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if args else hint
        out[name] = (list if typing.get_origin(base) is list else base, type(None) in typing.get_args(hint))
    return out


def _toml():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return require("tomli", "train")
    return tomllib


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config into a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config {path} must end in .yaml, .yml or .toml")
    yaml = require("yaml", "train")
    try:
        values = _toml().loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
    except (ValueError, yaml.YAMLError) as exc:  # TOMLDecodeError is a ValueError
        raise ConfigError(f"config {path} is not valid: {' '.join(str(exc).split())}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"config {path} must be a mapping of setting -> value")
    return values


def make_config(values: dict[str, Any]) -> TrainConfig:
    """Build and check a :class:`TrainConfig`; unknown keys, wrong types and impossible
    values raise :class:`ConfigError` naming them.

    >>> make_config({"data": "d", "style": "hayao", "out": "r", "epochs": 2}).epochs
    2
    """
    types = config_types()
    if isinstance(values.get("amp"), bool):  # YAML reads `amp: off` as false; older runs saved true
        values = values | {"amp": "auto" if values["amp"] else "off"}
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(types)}")
    clean = {}
    for name, value in values.items():
        base, optional = types[name]
        if value is None and optional:
            clean[name] = None
        elif base is float and isinstance(value, int) and not isinstance(value, bool):
            clean[name] = float(value)
        elif base is list and isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            clean[name] = [float(v) for v in value]
        elif base is not list and isinstance(value, base) and not (base is int and isinstance(value, bool)):
            clean[name] = value
        else:
            raise ConfigError(f"setting {name} must be {'3 numbers' if base is list else base.__name__}, got {value!r}")
    cfg = TrainConfig(**clean)
    for name in ("data", "style", "out"):
        if not getattr(cfg, name):
            raise ConfigError(f"--{name} is required")
    checks = [
        (cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (cfg.image_size >= 32 and cfg.image_size % 4 == 0, "--image-size must be a multiple of 4, at least 32"),
        (0 <= cfg.init_epochs <= cfg.epochs, "--init-epochs must be between 0 and --epochs"),
        (cfg.max_steps is None or cfg.max_steps >= 1, "--max-steps must be at least 1"),
        (cfg.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
        (cfg.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda"),
        (cfg.upsample in (None, *UPSAMPLE_MODES), f"--upsample must be one of {UPSAMPLE_MODES}"),
        (cfg.amp in AMP_MODES, f"--amp must be one of {'|'.join(AMP_MODES)}"),
        (cfg.keep_generators is None or cfg.keep_generators >= 0, "--keep-generators must be 0 or more"),
        (cfg.vgg_normalization in (None, *NORMALIZATIONS), f"--vgg-normalization must be one of {NORMALIZATIONS}"),
        (cfg.preset_source in SOURCES, f"--preset-source must be one of {SOURCES}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    preset_of(cfg)
    return cfg


def resolve_config(config: str | Path | None = None, resume: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """The run's settings: defaults <- config file (or the resumed run's ``config.yaml``) <-
    ``overrides`` (the command line). With ``resume`` the output folder is that run."""
    values: dict[str, Any] = {}
    if resume is not None:
        values = read_config_file(Path(resume) / CONFIG)
        values["out"] = str(resume)
    if config is not None:
        values.update(read_config_file(config))
    values.update(overrides or {})
    return make_config(values)


def preset_of(cfg: TrainConfig) -> Preset:
    """The loss weights: the preset (``--preset`` or the style's name) with ``w_*`` overrides."""
    name = cfg.preset or (cfg.style.lower() if cfg.style.lower() in PRESETS else None)
    if name is None:
        raise ConfigError(f"style {cfg.style!r} has no preset of loss weights: give --preset {'|'.join(PRESETS)}")
    changes = {k: getattr(cfg, f"w_{k}") for k in _WEIGHTS if getattr(cfg, f"w_{k}") is not None}
    return dataclasses.replace(get_preset(name, cfg.preset_source), **changes)


# --- set-up --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Process:
    """This process's place in the run: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device
    started_group: bool  # whether this process started the process group (and so ends it)

    @property
    def master(self) -> bool:
        """Rank 0 writes every file."""
        return self.rank == 0


def _distributed(cfg: TrainConfig) -> _Process:
    """Join the ``torchrun`` process group when there is one, on this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA device")
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    started = world > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if cuda else "gloo")
    return _Process(dist.get_rank() if world > 1 else 0, world, device, started)


@contextlib.contextmanager
def _process_flags(deterministic: bool) -> Iterator[None]:
    """torch's process-wide algorithm flags for the run (``--deterministic``), as they were afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    benchmark = torch.backends.cudnn.benchmark
    set_cublas = deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    if set_cublas:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = benchmark
        if set_cublas:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``--amp`` means on ``device`` (None: float32). ``auto`` takes
    bfloat16 where the GPU supports it (float16's speed, float32's range, no loss scaling),
    else float16; on CPU float32, the exact and resumable reference."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use --amp fp16")
    return {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (a run folder or its ``checkpoint.pt``), weights-only."""
    path = Path(path)
    path = path / CHECKPOINT if path.is_dir() else path
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no training checkpoint at {path}: is it a run folder of `animegan2 train`?") from None
    except Exception as exc:
        raise CheckpointError(f"cannot read training checkpoint {path}: {exc}") from exc


def _save_torch(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


# --- steps ----------------------------------------------------------------------------------


class Stepper:
    """Backward, NaN/inf guards and optimiser step, shared by the three optimisers.

    ``step`` is the global step number used in error messages; ``checkpoint`` is the file
    named as the last good one when a guard stops the run.
    """

    def __init__(self, scaler: torch.amp.GradScaler, cfg: TrainConfig, world: int, checkpoint: Path) -> None:
        self.scaler, self.cfg, self.world, self.checkpoint = scaler, cfg, world, checkpoint
        self.step = 0

    def check(self, values: dict[str, Tensor]) -> dict[str, float]:
        """All-reduce the losses for the log and stop the run if any is NaN/inf."""
        stacked = torch.stack([v.detach().to(torch.promote_types(v.dtype, torch.float32)) for v in values.values()])
        if self.world > 1:
            dist.all_reduce(stacked)
            stacked /= self.world
        out = dict(zip(values, stacked.tolist()))
        for name, value in out.items():
            if not math.isfinite(value):
                self.fail(f"the {name} loss became {value}")
        return out

    def fail(self, what: str) -> typing.NoReturn:
        kept = f"the last good checkpoint {self.checkpoint} is kept" if self.checkpoint.exists() else "no checkpoint was written yet"
        raise TrainingError(f"step {self.step + 1}: {what}; stopped ({kept}). Lower the learning rates or set --grad-clip")

    def apply(self, loss: Tensor, optimizer: torch.optim.Optimizer, params: list[Tensor]) -> float:
        """Backward, unscale, clip (``--grad-clip``), check and step; returns the gradient norm."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip or math.inf)
        if not self.scaler.is_enabled() and not torch.isfinite(norm):  # AMP skips such steps itself
            self.fail(f"the gradient norm became {norm.item()}")
        self.scaler.step(optimizer)
        return float(norm)


def init_step(g, vgg, batch, preset, opt_init, stepper, autocast) -> dict[str, float]:
    """Init phase: content loss only, with the init optimiser."""
    photo = batch["photo"]
    with autocast():
        fake = g(photo)
        with torch.no_grad():
            photo_features = vgg(photo)
        loss = preset.con * losses.content_loss(photo_features, vgg(fake))
    logged = stepper.check({"init_content": loss})
    logged["g_grad_norm"] = stepper.apply(loss, opt_init, list(g.parameters()))
    return logged


def gan_step(g, d, vgg, batch, preset, opt_g, opt_d, stepper, autocast) -> dict[str, float]:
    """Adversarial phase: one discriminator step on (anime, G(photo), gray anime, gray
    smooth) in one batch, then one generator step with every loss of the recipe."""
    photo = batch["photo"]
    with autocast():
        fake = g(photo)
        # Four D applications one after the other, as TensorFlow runs the original's four on
        # one u variable: each advances u by a power iteration from where the previous one
        # left it (measured order: smooth, fake, gray, anime), so u leaves the step four
        # iterations on. A batched call would advance it once. (D's outputs and gradients do
        # not depend on u: see SpectralNormConv2d.)
        order = (batch["smooth_gray"], fake.detach(), batch["anime_gray"], batch["anime"])
        smooth_l, fake_l, gray_l, real_l = (d(x) for x in order)
        d_loss = losses.discriminator_loss(real_l, fake_l, gray_l, smooth_l, preset)
    logged = stepper.check({"d_total": d_loss})
    logged["d_grad_norm"] = stepper.apply(d_loss, opt_d, list(d.parameters()))

    d_raw = _unwrap(d)
    d_raw.requires_grad_(False)  # G's step needs gradients through D, not of D
    with autocast():
        with torch.no_grad():
            photo_features, gray_features = vgg(torch.cat([photo, batch["anime_gray"]])).chunk(2)
        terms = losses.generator_loss(photo, fake, photo_features, vgg(fake), gray_features, d_raw(fake), preset)
    d_raw.requires_grad_(True)
    logged |= stepper.check({f"g_{k}": v for k, v in terms.items()})
    logged["g_grad_norm"] = stepper.apply(terms["total"], opt_g, list(g.parameters()))
    return logged


# --- outputs --------------------------------------------------------------------------------


@torch.no_grad()
def save_samples(g: nn.Module, photos: list[Path], size: int, path: Path, device: torch.device) -> None:
    """A grid with one row per validation photo: photo | G(photo)."""
    x = torch.stack([data.bgr_to_tensor(data.load_training_image(p, size)) for p in photos]).to(device)
    y = g(x).float()
    pairs = torch.cat([x, y], dim=3)  # side by side
    grid = torch.cat(list(pairs), dim=1)  # rows
    rgb = ((grid + 1) * 127.5).clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
    data.write_bgr(path, np.ascontiguousarray(rgb[:, :, ::-1]))


class _Log:
    """Per-epoch losses to ``log.jsonl`` and ``log.csv`` (and TensorBoard if installed)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        path = self.out / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "step", "phase", "seconds", *_LOSS_COLUMNS], extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(record)
        if self.tb is not None:
            for key in _LOSS_COLUMNS:
                if key in record:
                    self.tb.add_scalar(f"loss/{key}", record[key], record["step"])
            self.tb.flush()


_LOSS_COLUMNS = [
    "init_content", "d_total", "g_content", "g_style", "g_color", "g_tv", "g_adv", "g_total", "g_grad_norm", "d_grad_norm",
]  # fmt: skip


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorArgs:
    """The generator's numerics: the model's own record, kept apart from the run's settings as
    nanoGPT keeps ``model_args`` (a checkpoint holds both; ``export`` reads these)."""

    upsample: str
    norm_eps: float

    @classmethod
    def of(cls, g: Generator) -> GeneratorArgs:
        return cls(g.upsample, g.norm_eps)


def build_generator(cfg: TrainConfig, state: dict[str, Any] | None, *, progress: bool) -> tuple[Generator, GeneratorArgs]:
    """G as the original initialises it, or from ``--init-from`` weights (a new run only), with
    its numerics: the config's, else those weights', else the architecture's native ones."""
    init_meta = None
    g = init_generator_(architectures.trained().build())
    if cfg.init_from and state is None:  # a resumed run's G comes from its checkpoint
        weights, init_meta = zoo.load_state_dict(cfg.init_from, progress=progress)
        g.load_state_dict(weights, strict=True)
    upsample = cfg.upsample or (init_meta.upsample if init_meta else g.upsample)
    norm_eps = cfg.norm_eps if cfg.norm_eps is not None else (init_meta.norm_eps if init_meta else g.norm_eps)
    g.upsample, g.norm_eps = upsample, norm_eps
    return g, GeneratorArgs.of(g)


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train (or, with ``resume``, continue) the run in ``cfg.out``; returns the run folder.

    Every check of data and settings happens before the first step; a NaN/inf loss or
    gradient raises :class:`TrainingError` leaving the last checkpoint intact. ``cfg`` is
    not changed: what the run resolves (the data mean, the generator's numerics) is written
    to the run's ``config.yaml`` and checkpoint.
    """
    proc = _distributed(cfg)
    out = Path(cfg.out)
    state = _previous_state(out, resume)
    preset = preset_of(cfg)
    layout = data.check_layout(cfg.data, cfg.style)
    data_mean = cfg.data_mean
    if data_mean is None:
        data_mean = list(data.data_mean(Path(cfg.data) / cfg.style / "style", progress=progress and proc.master)[0])
    with _process_flags(cfg.deterministic):
        torch.manual_seed(cfg.seed)
        g, model_args = build_generator(cfg, state, progress=progress and proc.master)
        settings = dataclasses.replace(cfg, data_mean=data_mean, **asdict(model_args))
        _Run(settings, model_args, proc, g, state, layout, preset, progress=progress and proc.master).fit()
    if proc.world > 1:
        dist.barrier()
    if proc.started_group:
        dist.destroy_process_group()
    return out


def _previous_state(out: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (``None``: start at step 0); an error rather than train over a run."""
    ckpt_path = out / CHECKPOINT
    if resume and not ckpt_path.exists():  # stopped before its first checkpoint: nothing to lose
        logging.getLogger("animegan2").warning("%s has no checkpoint yet: starting the run from step 0", out)
    if not resume and ckpt_path.exists():
        raise ConfigError(f"{out} already holds a run: continue it with --resume {out} or choose another --out")
    return load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None


@dataclass
class _Position:
    """Where the run is, and the running sums of the epoch's log row (kept across resumes)."""

    step: int = 0
    epoch: int = 0
    done_in_epoch: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    steps_done: int = 0  # steps summed in ``sums``
    seconds_before: float = 0.0  # of this epoch, spent before a resume

    @classmethod
    def restored(cls, state: dict[str, Any]) -> _Position:
        position = cls(state["step"], state["epoch"], state["done_in_epoch"])
        if "epoch_log" in state:  # absent in checkpoints written before it was kept
            log = state["epoch_log"]
            position.sums, position.steps_done, position.seconds_before = dict(log["sums"]), log["steps"], log["seconds"]
        return position

    def add(self, logged: dict[str, float]) -> None:
        """Count one step and its losses."""
        self.step, self.done_in_epoch, self.steps_done = self.step + 1, self.done_in_epoch + 1, self.steps_done + 1
        for k, v in logged.items():
            self.sums[k] = self.sums.get(k, 0.0) + v


@dataclass
class _Optimisers:
    """The three optimisers of the recipe (init phase, G, D) and the AMP loss scaler."""

    init: torch.optim.Optimizer
    g: torch.optim.Optimizer
    d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler

    @classmethod
    def create(cls, g: nn.Module, d: nn.Module, cfg: TrainConfig, device: torch.device, dtype: torch.dtype | None) -> _Optimisers:
        betas = (cfg.beta1, cfg.beta2)
        return cls(
            TFAdam(g.parameters(), lr=cfg.lr_init, betas=betas),
            TFAdam(g.parameters(), lr=cfg.lr_g, betas=betas),
            TFAdam(d.parameters(), lr=cfg.lr_d, betas=betas),
            torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),  # bfloat16 has float32's range
        )

    def state_dict(self) -> dict[str, Any]:
        return {"opt_init": self.init.state_dict(), "opt_g": self.g.state_dict(), "opt_d": self.d.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for opt, key in ((self.init, "opt_init"), (self.g, "opt_g"), (self.d, "opt_d")):
            opt.load_state_dict(state[key])
        self.scaler.load_state_dict(state["scaler"])


class _Run:
    """One run from its set-up to its last step: models, optimisers, data and outputs.

    ``cfg`` is the run's settings as resolved (the data mean and the generator's numerics
    filled in), ``model_args`` the generator's numerics.
    """

    def __init__(
        self, cfg: TrainConfig, model_args: GeneratorArgs, proc: _Process, g: Generator,
        state: dict[str, Any] | None, layout: data.Layout, preset: Preset, *, progress: bool,
    ) -> None:  # fmt: skip
        self.cfg, self.model_args, self.proc, self.layout, self.preset, self.progress = cfg, model_args, proc, layout, preset, progress
        self.out = Path(cfg.out)
        device = proc.device
        d = Discriminator()
        self.vgg = load_vgg19(cfg.vgg, normalization=cfg.vgg_normalization, progress=progress).to(device)
        self.g_raw, self.d_raw = g.to(device), d.to(device)
        self.dtype = amp_dtype(cfg.amp, device)
        self.opt = _Optimisers.create(self.g_raw, self.d_raw, cfg, device, self.dtype)
        self.position = _Position()
        if state is not None:
            self._restore(state)
        self.g, self.d = self.g_raw, self.d_raw
        if proc.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.g, self.d = DistributedDataParallel(self.g, device_ids=ids), DistributedDataParallel(self.d, device_ids=ids)
        self.dataset = data.UnpairedDataset(layout, cfg.image_size, tuple(cfg.data_mean), seed=cfg.seed)
        self.sampler = DistributedSampler(self.dataset, num_replicas=proc.world, rank=proc.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{len(self.dataset)} images cannot fill one batch of {cfg.batch_size} on each of {proc.world} process(es)"
            )
        self.stepper = Stepper(self.opt.scaler, cfg, proc.world, self.out / CHECKPOINT)
        self.log = self._open_outputs() if proc.master else None

    def _restore(self, state: dict[str, Any]) -> None:
        self.g_raw.load_state_dict(state["generator"])
        self.d_raw.load_state_dict(state["discriminator"])
        self.opt.load_state_dict(state)
        _set_rng_state(state["rng"])
        self.position = _Position.restored(state)

    def _open_outputs(self) -> _Log:
        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.out / CONFIG, require("yaml", "train").safe_dump(asdict(self.cfg), sort_keys=False).encode())
        return _Log(self.out)

    def autocast(self):
        return torch.autocast(self.proc.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def fit(self) -> None:
        """Epochs until ``epochs`` (or ``max_steps``), a checkpoint after each and every ``checkpoint_every`` steps."""
        cfg, pos = self.cfg, self.position
        self.epoch_clock = time.perf_counter() - pos.seconds_before
        while pos.epoch < cfg.epochs and not (cfg.max_steps and pos.step >= cfg.max_steps):
            phase = "init" if pos.epoch < cfg.init_epochs else "gan"
            self._run_epoch(phase)
            if pos.done_in_epoch == self.steps_per_epoch:
                self._end_epoch(phase)
            self._save_checkpoint()

    def _run_epoch(self, phase: str) -> None:
        """This epoch's remaining steps (all of them, unless resumed mid-epoch), to ``max_steps`` at most."""
        cfg, pos, device = self.cfg, self.position, self.proc.device
        self.sampler.set_epoch(pos.epoch)
        self.dataset.set_epoch(pos.epoch)
        indices = list(self.sampler)[pos.done_in_epoch * cfg.batch_size :]
        loader = DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=True,
            num_workers=cfg.workers, pin_memory=device.type == "cuda",
        )  # fmt: skip
        bar = tqdm(loader, desc=f"epoch {pos.epoch + 1}/{cfg.epochs} {phase}", disable=not self.progress, unit="step")
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            self.stepper.step = pos.step
            if phase == "init":
                logged = init_step(self.g, self.vgg, batch, self.preset, self.opt.init, self.stepper, self.autocast)
            else:
                logged = gan_step(self.g, self.d, self.vgg, batch, self.preset, self.opt.g, self.opt.d, self.stepper, self.autocast)
            self.opt.scaler.update()
            pos.add(logged)
            bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items() if k in ("init_content", "d_total", "g_total")})
            if pos.step % cfg.checkpoint_every == 0:
                self._save_checkpoint()
            if cfg.max_steps and pos.step >= cfg.max_steps:
                break

    def _end_epoch(self, phase: str) -> None:
        """Samples, the epoch's generator and its log row (rank 0); the next epoch's sums start at zero."""
        cfg, pos = self.cfg, self.position
        pos.epoch, pos.done_in_epoch = pos.epoch + 1, 0
        if self.proc.master:
            samples = self.out / "samples" / f"epoch_{pos.epoch:03d}.jpg"
            save_samples(self.g_raw, self.layout.val[: cfg.samples], cfg.image_size, samples, self.proc.device)
            save_epoch_generator(self.g_raw, asdict(cfg), self.out, pos.step, pos.epoch)
            record = {"epoch": pos.epoch, "step": pos.step, "phase": phase, "seconds": round(time.perf_counter() - self.epoch_clock, 3)}
            self.log.write(record | {k: v / pos.steps_done for k, v in pos.sums.items()})
        pos.sums, pos.steps_done, self.epoch_clock = {}, 0, time.perf_counter()

    def _save_checkpoint(self) -> None:
        if not self.proc.master:
            return
        pos = self.position
        _save_torch(
            {
                "step": pos.step, "epoch": pos.epoch, "done_in_epoch": pos.done_in_epoch,
                "generator": self.g_raw.state_dict(), "discriminator": self.d_raw.state_dict(),
                **self.opt.state_dict(), "rng": _rng_state(),
                "config": asdict(self.cfg), "model_args": asdict(self.model_args),
                "epoch_log": {"sums": pos.sums, "steps": pos.steps_done, "seconds": time.perf_counter() - self.epoch_clock},
            },  # fmt: skip
            self.out / CHECKPOINT,
        )


def _metadata(model_args: GeneratorArgs, cfg: dict[str, Any], step: int, epoch: int) -> dict[str, str]:
    """The safetensors metadata of a run's generator after ``step`` steps and ``epoch``
    completed epochs, as :func:`animegan2.zoo.load_generator` reads it."""
    return {
        "architecture": architectures.trained().id,
        "upsample": model_args.upsample,
        "norm_eps": repr(model_args.norm_eps),
        "size": str(cfg["image_size"]),
        "style": cfg["style"],
        "epoch": str(epoch),
        "step": str(step),
        "source": f"animegan2 train, epoch {epoch}, step {step}",
    }


def epoch_generator(run: str | Path, epoch: int) -> Path:
    """The path of ``run``'s generator after ``epoch`` (``generators/epoch_NNN.safetensors``)."""
    return Path(run) / GENERATORS / f"epoch_{epoch:03d}.safetensors"


def kept_generators(run: str | Path) -> dict[int, Path]:
    """Epoch -> generator file of every epoch ``run`` keeps, in epoch order."""
    found = {int(p.stem[len("epoch_") :]): p for p in (Path(run) / GENERATORS).glob("epoch_[0-9]*.safetensors")}
    return dict(sorted(found.items()))


def save_epoch_generator(g: nn.Module, cfg: dict[str, Any], out: Path, step: int, epoch: int) -> Path:
    """Write the generator after ``epoch`` (about 8.6 MB) and delete the oldest beyond
    ``keep_generators``."""
    path = epoch_generator(out, epoch)
    keep = cfg["keep_generators"]
    if keep != 0:
        path.parent.mkdir(exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in g.state_dict().items()}
        save_weights(weights, _metadata(GeneratorArgs.of(g), cfg, step, epoch), path)
    if keep is not None:
        kept = list(kept_generators(out).values())
        for old in kept[: max(0, len(kept) - keep)]:
            old.unlink()
    return path


def export(run: str | Path, out_path: str | Path, epoch: int | None = None) -> Path:
    """Write a run's generator as ``.safetensors`` with metadata (style, upsample, norm_eps,
    size, epoch) for :func:`animegan2.zoo.load_generator`: the latest (the checkpoint's), or
    the one kept after ``epoch``.

    >>> export("runs/myfilm", "myfilm.safetensors", epoch=37)  # doctest: +SKIP
    """
    if Path(out_path).suffix != ".safetensors":
        raise ConfigError(f"export writes .safetensors (it carries the metadata), not {Path(out_path).name}")
    if epoch is None:
        state = load_checkpoint(run)
        # Checkpoints written before the numerics had their own record hold them in the config.
        numerics = state.get("model_args", state["config"])
        model_args = GeneratorArgs(numerics["upsample"], numerics["norm_eps"])
        weights, metadata = state["generator"], _metadata(model_args, state["config"], state["step"], state["epoch"])
    else:
        folder = Path(run).parent if Path(run).is_file() else Path(run)
        path = epoch_generator(folder, epoch)
        if not path.is_file():
            kept = list(kept_generators(folder)) or "none"
            raise CheckpointError(f"{path} does not exist; the run keeps the generators of epochs {kept}")
        weights, metadata = zoo.read_safetensors(path)
    return save_weights({k: v.contiguous() for k, v in weights.items()}, metadata, out_path)
