"""Edge smoothing speed: the vectorised ``edge_smooth`` against the per-pixel reference loop,
on 256x256 crops of the shared test photos, in the same process.

    python benchmarks/bench_smooth.py [--size 256] [--repeats 5]

Prints the median time of each, the speed-up, the largest pixel difference and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animegan2.train.data import edge_smooth, list_images, read_bgr, resize_crop  # noqa: E402
from tests.reference_train import edge_smooth_reference  # noqa: E402


def median_time(fn, image, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "testdata")
    args = parser.parse_args()
    for path in list_images(args.photos):
        image = resize_crop(read_bgr(path), args.size)
        ref = median_time(edge_smooth_reference, image, args.repeats)
        fast = median_time(edge_smooth, image, args.repeats)
        diff = int(abs(edge_smooth(image).astype(int) - edge_smooth_reference(image).astype(int)).max())
        print(f"{path.name:12s} {args.size}x{args.size}: reference {ref * 1e3:8.1f} ms  "
              f"vectorised {fast * 1e3:6.2f} ms  speed-up {ref / fast:6.0f}x  max diff {diff}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
