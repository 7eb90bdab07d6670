"""Training step speed: seconds per init-phase step and per adversarial step of the recipe
(G, D, a full-width VGG19 with random weights -- same cost as the real ones), on synthetic
batches already on the device, so data loading is not measured.

    python benchmarks/bench_train.py --device cuda --size 256 --batch-size 12 [--no-amp]

Prints the median step times, the adversarial/init ratio, the estimated time of one epoch
of ``--photos`` photos (the original set: 6,656 -> 554 steps of 12), and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animegan2.model import Generator  # noqa: E402
from animegan2.train import trainer  # noqa: E402
from animegan2.train.discriminator import Discriminator  # noqa: E402
from animegan2.train.vgg import VGG19  # noqa: E402


def timed(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--photos", type=int, default=6656, help="photos per epoch (the original set: 6656)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    cfg = trainer.make_config({"data": "-", "style": "hayao", "out": "-", "batch_size": args.batch_size})
    preset = trainer.preset_of(cfg)
    g, d, vgg = Generator().to(device), Discriminator().to(device), VGG19().to(device)
    opt_init = torch.optim.Adam(g.parameters(), lr=cfg.lr_init, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
    amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    stepper = trainer.Stepper(scaler, cfg, 1, Path("-"))

    def autocast():
        return torch.autocast(device.type, dtype=torch.float16, enabled=amp)

    shape = (args.batch_size, 3, args.size, args.size)
    batch = {k: torch.rand(shape, device=device) * 2 - 1 for k in ("photo", "anime", "anime_gray", "smooth_gray")}

    def init():
        trainer.init_step(g, vgg, batch, preset, opt_init, stepper, autocast)
        scaler.update()

    def gan():
        trainer.gan_step(g, d, vgg, batch, preset, opt_g, opt_d, stepper, autocast)
        scaler.update()

    init(), gan()  # warm-up (cuDNN autotuning, allocator)
    t_init, t_gan = timed(init, args.repeats, device), timed(gan, args.repeats, device)
    print(f"{device} {torch.cuda.get_device_name(device) if device.type == 'cuda' else ''} "
          f"size {args.size} batch {args.batch_size} amp {amp}")
    print(f"init step {t_init * 1e3:8.1f} ms   adversarial step {t_gan * 1e3:8.1f} ms   ratio {t_gan / t_init:.2f}")
    steps = args.photos // args.batch_size
    print(f"epoch of {steps} steps: init {t_init * steps / 60:.1f} min, "
          f"adversarial {t_gan * steps / 60:.1f} min (data loading not included)")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
