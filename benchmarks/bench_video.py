"""End-to-end video throughput against model-only throughput on the same frames.

    python benchmarks/bench_video.py [--frames 48] [--width 320] [--height 180] [--runs 3] [--batch-size 4]
                                     [--precision exact|fast|fp32|bf16|fp16|int8]

Model-only: the frames, already decoded into memory, through ``Stylizer.stylize_arrays``
in batches. End-to-end: ``stylize_video`` on the same clip (decode + stylize + H.264 encode
+ audio remux). Both in this process with the same random weights; median of ``--runs``.
A ratio near 1.0 means decoding and encoding hide behind the model's compute.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animegan2.stylize import Stylizer  # noqa: E402
from animegan2.video import stylize_video  # noqa: E402
from tests.reference import random_state_dict  # noqa: E402


def make_clip(path: Path, frames: int, width: int, height: int, fps: int = 24) -> None:
    """A moving gradient with a 440 Hz AAC track."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=44100)
        a.layout = "mono"
        for i in range(frames):
            c.mux(v.encode(av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")))
        c.mux(v.encode(None))
        t = np.arange(44100 * frames // fps) / 44100
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(0, len(samples), 1024):
            f = av.AudioFrame.from_ndarray(samples[None, k : k + 1024], format="fltp", layout="mono")
            f.sample_rate = 44100
            c.mux(a.encode(f))
        c.mux(a.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="exact", help="as the Stylizer's (int8 calibrates on the first batch)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "random.pt"
        torch.save(random_state_dict(), weights)
        clip = tmp / "clip.mp4"
        make_clip(clip, args.frames, args.width, args.height)
        with av.open(str(clip)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        stylizer = Stylizer(weights, device=args.device, batch_size=args.batch_size, precision=args.precision, progress=False)
        stylizer.stylize_arrays(frames[: args.batch_size])  # warm-up

        def model_only() -> float:
            t0 = time.perf_counter()
            for i in range(0, len(frames), args.batch_size):
                stylizer.stylize_arrays(frames[i : i + args.batch_size])
            return time.perf_counter() - t0

        def end_to_end() -> float:
            t0 = time.perf_counter()
            stylize_video(clip, tmp / "out.mp4", stylizer.stylize_arrays, batch_size=args.batch_size, progress=False)
            return time.perf_counter() - t0

        model_s, e2e_s = [], []
        for _ in range(args.runs):  # interleaved, so drift in machine load hits both alike
            model_s.append(model_only())
            e2e_s.append(end_to_end())
    n = len(frames)
    model_fps, e2e_fps = n / statistics.median(model_s), n / statistics.median(e2e_s)
    print(f"{stylizer.plan.describe()}, {n} frames {args.width}x{args.height}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, median of {args.runs}")
    print(f"model only:  {model_fps:8.2f} frames/s")
    print(f"end to end:  {e2e_fps:8.2f} frames/s")
    print(f"ratio end-to-end / model-only: {e2e_fps / model_fps:.3f}")
    print(f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
