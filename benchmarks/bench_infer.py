"""Inference throughput of the default path -- ``Generator.forward`` under inference mode,
i.e. the strip engine (``animegan2.layerwise``; whole maps on a GPU) -- against the module
path (``forward_layers``, module by module) at 1920 x 1080: float32 and float16 (autocast,
what ``--dtype fp16`` runs), NCHW-contiguous and ``channels_last``; with the two paths'
largest difference on the same input.

    python benchmarks/bench_infer.py --device cuda [--height 1080 --width 1920 --runs 10]
    python benchmarks/bench_infer.py --device cpu --height 168 --width 176 --runs 1 --dtypes float32   # smoke run

Random weights in the published layout (``tests/reference.py``; speed does not depend on
them), TF upsampling, batch 1; one warm-up call per case; the median of ``--runs`` calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animegan2.model import Generator  # noqa: E402
from tests.reference import random_state_dict  # noqa: E402


def timed(fn, runs: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """The median seconds of ``runs`` calls of ``fn`` after one warm-up, and its output."""
    out = fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    g = Generator(upsample="tf", norm_eps=1e-12)
    g.load_state_dict(random_state_dict(seed=0))
    g = g.to(device).eval()
    x = torch.rand(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{device} ({name}), torch {torch.__version__}: {args.width}x{args.height}, batch 1, median of {args.runs}")
    print(f"{'dtype':8} {'layout':14} {'default img/s':>13} {'module img/s':>12} {'ratio':>6} {'max |diff|':>10}")
    for dtype in (getattr(torch, name) for name in args.dtypes):
        autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
        for layout_name, layout in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            model, inp = g.to(memory_format=layout), x.contiguous(memory_format=layout)
            with torch.inference_mode(), autocast:
                t_default, y_default = timed(lambda: model(inp), args.runs, device)
                t_module, y_module = timed(lambda: model.forward_layers(inp), args.runs, device)
            diff = (y_default.float() - y_module.float()).abs().max().item()
            print(
                f"{str(dtype)[6:]:8} {layout_name:14} {1 / t_default:13.2f} {1 / t_module:12.2f} "
                f"{t_module / t_default:6.2f} {diff:10.2e}"
            )
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
