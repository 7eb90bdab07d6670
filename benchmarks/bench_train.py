"""Training speed and mixed-precision safety: ``--steps`` adversarial steps of the recipe (G,
D, a full-width VGG19) per ``--amp`` mode on synthetic batches already on the device (data
loading is not measured), reporting steps per second, peak GPU memory, and whether any loss
or gradient went NaN/inf.

    python benchmarks/bench_train.py --device cuda --steps 300 --size 256 --batch-size 12 --amp fp16 bf16
    python benchmarks/bench_train.py --device cpu --steps 3 --size 64 --batch-size 2 --amp off bf16   # smoke run

The VGG has He-initialised random weights: its conv4_4 features come out at the recipe's
Caffe scale (tens to hundreds, printed), the range that overflowed float16 in the Gram. One
warm-up step per mode is not timed. Exit status 1 if any mode went NaN.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animegan2.errors import TrainingError  # noqa: E402
from animegan2.model import Generator  # noqa: E402
from animegan2.train import trainer  # noqa: E402
from animegan2.train.discriminator import Discriminator  # noqa: E402
from animegan2.train.vgg import VGG19  # noqa: E402


def caffe_scale_vgg(device: torch.device) -> VGG19:
    vgg = VGG19()
    for conv in vgg.features:
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            torch.nn.init.zeros_(conv.bias)
    return vgg.to(device)


def run_mode(amp: str, args: argparse.Namespace, device: torch.device, vgg: VGG19) -> dict:
    """Train ``args.steps`` adversarial steps under ``amp``; the numbers of the report."""
    torch.manual_seed(0)
    cfg = trainer.make_config({"data": "-", "style": "hayao", "out": "-", "batch_size": args.batch_size, "amp": amp})
    preset = trainer.preset_of(cfg)
    dtype = trainer.amp_dtype(amp, device)
    g, d = Generator().to(device), Discriminator().to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    stepper = trainer.Stepper(scaler, cfg, 1, Path("-"))
    gen = torch.Generator(device).manual_seed(0)
    shape = (args.batch_size, 3, args.size, args.size)
    batch = {k: torch.rand(shape, device=device, generator=gen) * 2 - 1 for k in ("photo", "anime", "anime_gray", "smooth_gray")}

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def step() -> dict[str, float]:
        logged = trainer.gan_step(g, d, vgg, batch, preset, opt_g, opt_d, stepper, autocast)
        scaler.update()
        stepper.step += 1
        return logged

    report = {"amp": amp, "dtype": str(dtype).replace("torch.", "") if dtype else "float32", "nan": None, "skipped": 0}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        step()  # warm-up: cuDNN autotuning, allocator
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            scale = scaler.get_scale() if scaler.is_enabled() else 1.0
            logged = step()
            report["skipped"] += scaler.is_enabled() and scaler.get_scale() < scale  # an inf gradient skips the step
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        report["steps_per_s"] = args.steps / (time.perf_counter() - start)
        report["last"] = {k: round(v, 4) for k, v in logged.items() if k in ("d_total", "g_style", "g_total")}
    except TrainingError as exc:
        report["nan"] = str(exc)
    if device.type == "cuda":
        report["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--steps", type=int, default=300, help="timed adversarial steps per mode")
    parser.add_argument("--amp", nargs="+", default=["fp16", "bf16"], choices=trainer.AMP_MODES)
    parser.add_argument("--photos", type=int, default=6656, help="photos per epoch (the original set: 6656)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    vgg = caffe_scale_vgg(device)
    with torch.no_grad():
        features = vgg(torch.rand(2, 3, args.size, args.size, device=device) * 2 - 1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{device} ({name}), torch {torch.__version__}: size {args.size}, batch {args.batch_size}, {args.steps} steps per mode")
    print(f"VGG conv4_4 features: mean {features.mean():.1f}, std {features.std():.1f}, max |x| {features.abs().max():.0f}")
    failed = False
    for amp in args.amp:
        r = run_mode(amp, args, device, vgg)
        memory = f", peak GPU memory {r['peak_gib']:.2f} GiB" if "peak_gib" in r else ""
        if r["nan"]:
            failed = True
            print(f"--amp {amp} ({r['dtype']}): WENT NaN/inf: {r['nan']}{memory}")
            continue
        epoch_min = args.photos // args.batch_size / r["steps_per_s"] / 60
        print(
            f"--amp {amp} ({r['dtype']}): {r['steps_per_s']:.2f} steps/s (an epoch of {args.photos} photos: {epoch_min:.1f} min), "
            f"no NaN/inf, {r['skipped']} steps skipped by loss scaling{memory}; last losses {r['last']}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
