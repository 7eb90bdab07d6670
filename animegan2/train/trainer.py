"""The AnimeGANv2 trainer: the original recipe (DESIGN.md 2.4) on one CPU or many GPUs.

Read top to bottom: configuration -> set-up -> init phase (content loss only) -> adversarial
phase (one D step, then one G step) -> checkpoints, samples and logs. The same command runs
alone (``animegan2 train ...``) or under ``torchrun --nproc_per_node N`` (DDP; every rank
reads its share of each epoch through a ``DistributedSampler``; rank 0 writes all files).
``--batch-size`` is per process.

The generator trains with ``Generator()``'s defaults (``upsample="tf"``, layer-norm epsilon
1e-12: the original trainer's numerics) unless ``--init-from`` weights say otherwise or the
config sets ``upsample``/``norm_eps``. At the end of every epoch the generator is written to
``generators/epoch_NNN.safetensors`` (as the original's ``Saver(max_to_keep=epoch)`` kept
every epoch) with both in its metadata, loadable wherever weights are; ``export`` copies one
out.
"""

from __future__ import annotations

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

from .. import zoo
from .._atomic import write_bytes_atomic
from ..convert import save_weights
from ..errors import CheckpointError, ConfigError, TrainingError, require
from ..model import UPSAMPLE_MODES, Generator
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
    upsample: str | None = _opt(None, f"generator upsampling {'|'.join(UPSAMPLE_MODES)} (default tf)")
    norm_eps: float | None = _opt(None, "generator layer-norm epsilon (default 1e-12)")
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


def _distributed(cfg: TrainConfig) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call started the process group)."""
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
    return (dist.get_rank() if world > 1 else 0), world, device, started


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
    x = torch.stack([data.to_tensor(data.load_training_image(p, size)) for p in photos]).to(device)
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


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train (or, with ``resume``, continue) the run in ``cfg.out``; returns the run folder.

    Every check of data and settings happens before the first step; a NaN/inf loss or
    gradient raises :class:`TrainingError` leaving the last checkpoint intact.
    """
    rank, world, device, started_group = _distributed(cfg)
    master = rank == 0
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if resume and not ckpt_path.exists():  # stopped before its first checkpoint: nothing to lose
        logging.getLogger("animegan2").warning("%s has no checkpoint yet: starting the run from step 0", out)
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if not resume and ckpt_path.exists():
        raise ConfigError(f"{out} already holds a run: continue it with --resume {out} or choose another --out")
    preset = preset_of(cfg)
    layout = data.check_layout(cfg.data, cfg.style)
    if cfg.data_mean is None:
        cfg.data_mean = list(data.data_mean(Path(cfg.data) / cfg.style / "style", progress=progress and master)[0])
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not cfg.deterministic
    torch.manual_seed(cfg.seed)

    init_meta = None
    g = init_generator_(Generator())
    if cfg.init_from and state is None:  # a resumed run's G comes from its checkpoint
        weights, init_meta = zoo.load_state_dict(cfg.init_from, progress=progress and master)
        g.load_state_dict(weights, strict=True)
    cfg.upsample = cfg.upsample or (init_meta.upsample if init_meta else g.upsample)
    cfg.norm_eps = cfg.norm_eps if cfg.norm_eps is not None else (init_meta.norm_eps if init_meta else g.norm_eps)
    g.upsample, g.norm_eps = cfg.upsample, cfg.norm_eps
    d = Discriminator()
    vgg = load_vgg19(cfg.vgg, normalization=cfg.vgg_normalization, progress=progress and master).to(device)
    g, d = g.to(device), d.to(device)

    betas = (cfg.beta1, cfg.beta2)
    opt_init = TFAdam(g.parameters(), lr=cfg.lr_init, betas=betas)
    opt_g = TFAdam(g.parameters(), lr=cfg.lr_g, betas=betas)
    opt_d = TFAdam(d.parameters(), lr=cfg.lr_d, betas=betas)
    dtype = amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # bfloat16 has float32's range
    step, epoch, done_in_epoch = 0, 0, 0
    # The epoch row of the log averages every step of the epoch, across resumes.
    sums: dict[str, float] = {}
    steps_done, seconds_before = 0, 0.0
    if state is not None:
        g.load_state_dict(state["generator"])
        d.load_state_dict(state["discriminator"])
        for opt, key in ((opt_init, "opt_init"), (opt_g, "opt_g"), (opt_d, "opt_d")):
            opt.load_state_dict(state[key])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        step, epoch, done_in_epoch = state["step"], state["epoch"], state["done_in_epoch"]
        if "epoch_log" in state:  # absent in checkpoints written before it was kept
            sums, steps_done, seconds_before = dict(state["epoch_log"]["sums"]), state["epoch_log"]["steps"], state["epoch_log"]["seconds"]
    g_raw, d_raw = g, d
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        g, d = DistributedDataParallel(g, device_ids=ids), DistributedDataParallel(d, device_ids=ids)

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    dataset = data.UnpairedDataset(layout, cfg.image_size, tuple(cfg.data_mean), seed=cfg.seed)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(dataset)} images cannot fill one batch of {cfg.batch_size} on each of {world} process(es)")
    stepper = Stepper(scaler, cfg, world, ckpt_path)
    log = None
    if master:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out / CONFIG, require("yaml", "train").safe_dump(asdict(cfg), sort_keys=False).encode())
        log = _Log(out)

    def save_checkpoint() -> None:
        if master:
            _save_torch(
                {
                    "step": step, "epoch": epoch, "done_in_epoch": done_in_epoch,
                    "generator": g_raw.state_dict(), "discriminator": d_raw.state_dict(),
                    "opt_init": opt_init.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                    "scaler": scaler.state_dict(), "rng": _rng_state(), "config": asdict(cfg),
                    "epoch_log": {"sums": sums, "steps": steps_done, "seconds": time.perf_counter() - epoch_clock},
                },  # fmt: skip
                ckpt_path,
            )

    epoch_clock = time.perf_counter() - seconds_before
    while epoch < cfg.epochs and not (cfg.max_steps and step >= cfg.max_steps):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        indices = list(sampler)[done_in_epoch * cfg.batch_size :]
        loader = DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=True,
            num_workers=cfg.workers, pin_memory=device.type == "cuda",
        )  # fmt: skip
        phase = "init" if epoch < cfg.init_epochs else "gan"
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs} {phase}", disable=not (progress and master), unit="step")
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            stepper.step = step
            if phase == "init":
                logged = init_step(g, vgg, batch, preset, opt_init, stepper, autocast)
            else:
                logged = gan_step(g, d, vgg, batch, preset, opt_g, opt_d, stepper, autocast)
            scaler.update()
            step, done_in_epoch, steps_done = step + 1, done_in_epoch + 1, steps_done + 1
            for k, v in logged.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items() if k in ("init_content", "d_total", "g_total")})
            if step % cfg.checkpoint_every == 0:
                save_checkpoint()
            if cfg.max_steps and step >= cfg.max_steps:
                break
        if done_in_epoch == steps_per_epoch:
            epoch, done_in_epoch = epoch + 1, 0
            if master:
                save_samples(g_raw, layout.val[: cfg.samples], cfg.image_size, out / "samples" / f"epoch_{epoch:03d}.jpg", device)
                save_epoch_generator(g_raw, asdict(cfg), out, step, epoch)
                record = {"epoch": epoch, "step": step, "phase": phase, "seconds": round(time.perf_counter() - epoch_clock, 3)}
                log.write(record | {k: v / steps_done for k, v in sums.items()})
            sums, steps_done, epoch_clock = {}, 0, time.perf_counter()
        save_checkpoint()
    if world > 1:
        dist.barrier()
    if started_group:
        dist.destroy_process_group()
    return out


def _metadata(cfg: dict[str, Any], step: int, epoch: int) -> dict[str, str]:
    """The safetensors metadata of a run's generator after ``step`` steps and ``epoch``
    completed epochs, as :func:`animegan2.zoo.load_generator` reads it."""
    return {
        "architecture": "animeganv2",
        "upsample": cfg["upsample"],
        "norm_eps": repr(cfg["norm_eps"]),
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
        save_weights({k: v.detach().cpu().contiguous() for k, v in g.state_dict().items()}, _metadata(cfg, step, epoch), path)
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
        weights, metadata = state["generator"], _metadata(state["config"], state["step"], state["epoch"])
    else:
        folder = Path(run).parent if Path(run).is_file() else Path(run)
        path = epoch_generator(folder, epoch)
        if not path.is_file():
            kept = list(kept_generators(folder)) or "none"
            raise CheckpointError(f"{path} does not exist; the run keeps the generators of epochs {kept}")
        weights, metadata = zoo.read_safetensors(path)
    return save_weights({k: v.contiguous() for k, v in weights.items()}, metadata, out_path)
