"""Inference speed of each precision (the exact default path, ONNX Runtime float32,
bfloat16, float16, int8) against the straightforward eager baseline, with each one's
quality cost (PSNR against float32), peak RSS, the CPU's model and its ISA features.

    python benchmarks/bench_speed.py [--sizes 256 512 1024] [--runs 5] [--mode align_corners]
                                     [--weights FILE.pt] [--threads N] [--no-rss]

Baseline: ``tests/reference.py``'s ``ReferenceGenerator`` (GroupNorm(1), ReflectionPad2d,
F.interpolate), float32, eager, same threads, in this process. Each run times baseline and
candidates back to back (A B C D A B C D ...), so load from other processes hits them
alike; the table gives the median of the per-run ratios. Input: a real photo (street.jpg,
centre square) at each size. int8 is calibrated on the shared photos (256 x 256 crops);
each precision's PSNR is measured against the float32 output on all four photos (long
side 512). Precisions this device cannot run (``animegan2.precision.choose`` refuses
them) show as "-"; the "fast" line names the one ``precision="fast"`` picks here.
Peak RSS: one child process per case and size (its ``VmHWM``: imports + weights + one
forward pass; Linux). Random weights unless ``--weights`` (a state_dict file) is given.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animegan2.export import OnnxRuntimeModel, calibration_tensors, export_onnx, quantize_int8  # noqa: E402
from animegan2.imageio import load_image, to_tensor  # noqa: E402
from animegan2.errors import ConfigError  # noqa: E402
from animegan2.model import Generator  # noqa: E402
from animegan2.precision import LowPrecisionModel, choose, detect  # noqa: E402
from tests.reference import ReferenceGenerator, random_state_dict  # noqa: E402

TESTDATA = Path(os.environ.get("ANIMEGAN2_TESTDATA", ROOT.parent / "shared" / "testdata"))
CASES = ("baseline", "default", "onnxruntime", "bf16", "fp16", "int8")


def photo(size: int, name: str = "street.jpg") -> torch.Tensor:
    """The photo's centre square resized to ``size`` x ``size``, 1 x 3 x H x W in [-1, 1]."""
    x = to_tensor(load_image(TESTDATA / name).pixels)
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < s)


def build(case: str, state: dict, mode: str, eps: float, onnx_files: dict[str, Path], threads: int):
    if case == "baseline":
        model = ReferenceGenerator(upsample=mode, eps=eps)
    elif case in ("onnxruntime", "int8"):
        return OnnxRuntimeModel(onnx_files[case], upsample=mode, threads=threads, precision=case)
    else:
        model = Generator(upsample=mode, norm_eps=eps)
    model.load_state_dict(state)
    return LowPrecisionModel(model.eval(), case) if case in ("bf16", "fp16") else model.eval()


def runnable(case: str) -> bool:
    """Whether this machine's CPU runs ``case`` (the baseline and float32 paths always do)."""
    try:
        choose(case, detect("cpu"))
    except ConfigError:
        return False
    return True


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB for images in [-1, 1] (peak-to-peak 2)."""
    return 10 * torch.log10(4 / ((a - b) ** 2).mean()).item()


def child(args) -> None:
    torch.set_num_threads(args.threads)
    state = torch.load(args.state, weights_only=True)
    files = {"onnxruntime": Path(args.onnx_float), "int8": Path(args.onnx_int8)}
    model = build(args.child, state, args.mode, args.eps, files, args.threads)
    with torch.inference_mode():
        model(photo(args.child_size))
    # VmHWM: this process's own peak; ru_maxrss would include the parent's RSS at fork.
    status = Path("/proc/self/status").read_text()
    print(next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")))


def peak_rss(case: str, size: int, args, state_path: Path, files: dict[str, Path]) -> int:
    cmd = [
        sys.executable, __file__, "--child", case, "--child-size", str(size), "--state", str(state_path),
        "--onnx-float", str(files["onnxruntime"]), "--onnx-int8", str(files["int8"]),
        "--mode", args.mode, "--eps", str(args.eps), "--threads", str(args.threads),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mode", default="align_corners", choices=["tf", "align_corners", "half_pixel"])
    parser.add_argument("--eps", type=float, default=1e-5)
    parser.add_argument("--weights", help="a state_dict file (default: random weights, seed 0)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-rss", action="store_true", help="skip the child processes measuring peak RSS")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-float", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-int8", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # onnxruntime.quantization's pre-processing advice
    if args.child:
        return child(args)

    torch.set_num_threads(args.threads)
    state = torch.load(args.weights, weights_only=True) if args.weights else random_state_dict(0)
    photos = sorted(glob.glob(str(TESTDATA / "*.jpg")))
    caps = detect("cpu")
    cases = [c for c in CASES if c in ("baseline", "default", "onnxruntime") or runnable(c)]
    with tempfile.TemporaryDirectory(prefix="bench_speed-") as tmp:
        tmp = Path(tmp)
        state_path = tmp / "state.pt"
        torch.save(state, state_path)
        g = build("default", state, args.mode, args.eps, {}, args.threads)
        files = {"onnxruntime": tmp / "float32.onnx", "int8": tmp / "int8.onnx"}
        float_model = export_onnx(g, files["onnxruntime"], dynamic=True)
        quantize_int8(float_model, calibration_tensors(photos), files["int8"])
        models = {case: build(case, state, args.mode, args.eps, files, args.threads) for case in cases}

        print(f"# bench_speed: {args.mode} upsampling, eps {args.eps:g}, {args.threads} threads, "
              f"{'weights ' + args.weights if args.weights else 'random weights (seed 0)'}, torch {torch.__version__}")
        print(f"# CPU: {caps.cpu_name or 'unknown'} ({caps.architecture}); features: {caps.features()}; "
              f"torch kernels: {torch.backends.cpu.get_cpu_capability()}")
        print(f"# fast picks: {choose('fast', caps).describe()}")
        with torch.inference_mode():
            scores = {c: [] for c in cases if c not in ("baseline", "default")}
            for name in photos:
                x = to_tensor(load_image(name).pixels)
                h, w = x.shape[-2:]
                scale = 512 / max(h, w)
                x = F.interpolate(x, size=(round(h * scale) // 4 * 4, round(w * scale) // 4 * 4), mode="bilinear", antialias=True)
                want = models["default"](x)
                for case in scores:
                    scores[case].append(psnr(models[case](x), want))
            for case, values in scores.items():
                print(f"{case} PSNR vs float32 (dB): " + ", ".join(f"{Path(n).stem} {s:.2f}" for n, s in zip(photos, values))
                      + f"; min {min(values):.2f}")
            print()
            print("| size | baseline (s) | " + " | ".join(CASES[1:]) + " | peak RSS baseline | " + " | ".join(CASES[1:]) + " |")
            print("|---" * (2 * len(CASES) + 1) + "|")
            for size in args.sizes:
                x = photo(size)
                for model in [*models.values()] * 2:
                    model(x)  # warm-up: oneDNN/ORT kernel selection takes more than one call
                times = {case: [] for case in cases}
                for _ in range(args.runs):
                    for case, model in models.items():
                        start = time.perf_counter()
                        model(x)
                        times[case].append(time.perf_counter() - start)
                base = times["baseline"]
                ratios = {c: statistics.median(t / b for t, b in zip(times[c], base)) for c in cases[1:]}
                rss = {} if args.no_rss else {c: peak_rss(c, size, args, state_path, files) / 2**20 for c in cases}
                rss_cells = " | ".join(
                    "-" if c not in rss else f"{rss[c]:.0f} MB" if c == "baseline" else f"{rss[c] / rss['baseline']:.2f}x"
                    for c in CASES
                )
                print(f"| {size}x{size} | {statistics.median(base):.2f} | "
                      + " | ".join(f"{ratios[c]:.2f}x" if c in ratios else "-" for c in CASES[1:]) + f" | {rss_cells} |", flush=True)


if __name__ == "__main__":
    main()
