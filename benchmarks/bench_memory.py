"""Peak memory and time of the default path, exact low-memory mode (and the approximate tiled mode) against
the straightforward eager baseline (``tests/reference.py``), each case in its own child
process so the OS measures its peak RSS (``wait4`` / ``ru_maxrss``).

    python benchmarks/bench_memory.py                      # 1024, 2048, then 6000x4000 low only
    python benchmarks/bench_memory.py --sizes 1024 --big none --repeat 1

Prints a markdown table: per size and mode, median seconds, peak RSS, and both as ratios
to the baseline of the same size. Random weights in the published layout; same threads
everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(args: argparse.Namespace) -> None:
    import torch

    sys.path.insert(0, str(REPO))
    from animegan2.lowmem import run_low_memory, run_tiled
    from animegan2.model import Generator
    from tests.reference import ReferenceGenerator, random_state_dict

    torch.set_num_threads(args.threads)
    h, w = args.case_size
    net = (ReferenceGenerator(upsample="align_corners") if args.case == "baseline" else Generator("align_corners", 1e-5))
    net.load_state_dict(random_state_dict(0))
    net.eval()
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        if args.case in ("baseline", "default"):
            with torch.inference_mode():
                y = net(x)
        elif args.case == "low":
            y = run_low_memory(net, x, max_memory=args.max_memory)
        else:
            y = run_tiled(net, x)
        times.append(time.perf_counter() - start)
        del y
    print(json.dumps({"times": times}))


def _run_case(case: str, size: tuple[int, int], args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--case-size", f"{size[1]}x{size[0]}",
           "--repeat", str(args.repeat if max(size) <= 2048 else 1), "--threads", str(args.threads),
           "--max-memory", args.max_memory]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"case {case} {size} failed with status {status}")
    times = json.loads(out.strip().splitlines()[-1])["times"]
    return {"case": case, "size": size, "seconds": statistics.median(times), "runs": len(times),
            "peak": usage.ru_maxrss * 1024}


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(h or w), int(w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024,2048", help="square sizes (or WxH) run in every mode ('none' to skip)")
    parser.add_argument("--big", default="6000x4000", help="WxH run in low mode only ('none' to skip)")
    parser.add_argument("--modes", default="baseline,default,low,tiled")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (the big case runs once)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--max-memory", default="2GB")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--case-size", type=_size, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.case = args.child
        _child(args)
        return
    rows = []
    for text in filter(None, args.sizes.replace("none", "").split(",")):
        size = _size(text)
        results = {case: _run_case(case, size, args) for case in args.modes.split(",")}
        base = results.get("baseline")
        for r in results.values():
            rows.append((r, base))
            _print_row(r, base)
    if args.big != "none":
        r = _run_case("low", _size(args.big), args)
        rows.append((r, None))
        _print_row(r, None)


def _print_row(r: dict, base: dict | None) -> None:
    h, w = r["size"]
    ratio = (f"{r['seconds'] / base['seconds']:.2f}x | {r['peak'] / base['peak']:.2f}x" if base else "- | -")
    if not hasattr(_print_row, "done"):
        print("| input | mode | median s (runs) | peak RSS MiB | time vs baseline | peak vs baseline |")
        print("|---|---|---|---|---|---|")
        _print_row.done = True
    print(f"| {w}x{h} | {r['case']} | {r['seconds']:.1f} ({r['runs']}) | {r['peak'] / 2**20:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
