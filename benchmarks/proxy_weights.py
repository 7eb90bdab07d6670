"""Proxy weights for quality measurements when no published weights can be fetched
(offline machines): the generator fitted to OpenCV's ``cv2.stylization`` filter, a
painterly edge-preserving smoothing, on 128 x 128 crops of the shared test photos.

    python benchmarks/proxy_weights.py OUT.pt [--steps 175] [--init OUT.pt]

Random weights give noise-like outputs whose int8 PSNR says little about a trained model;
these weights give smooth, image-like activations, as trained AnimeGAN weights do. They are
a stand-in only: int8 quality on real weights should be re-measured with
``bench_speed.py --weights``. Fitting: L1 loss, Adam (lr 2e-3, betas 0.5/0.999), batch 4,
one thread, ``--steps`` steps; ``--init`` continues from earlier weights. The README's
int8 figures used 175 steps (85, then 90 more with ``--init``), a few minutes of CPU.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animegan2.errors import require  # noqa: E402
from animegan2.model import Generator  # noqa: E402
from benchmarks.bench_speed import TESTDATA  # noqa: E402
from tests.reference import random_state_dict  # noqa: E402


def crops(count: int = 96, side: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(photo crops, their cv2.stylization) as N x 3 x side x side in [-1, 1]."""
    cv2 = require("cv2", "face")
    photos = []
    for path in sorted(TESTDATA.glob("*.jpg")):
        image = cv2.imread(str(path))
        scale = 384 / max(image.shape[:2])
        photos.append(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    xs, ys = [], []
    for _ in range(count):
        image = random.choice(photos)
        top, left = random.randint(0, image.shape[0] - side), random.randint(0, image.shape[1] - side)
        crop = np.ascontiguousarray(image[top : top + side, left : left + side])
        xs.append(crop[:, :, ::-1])
        ys.append(cv2.stylization(crop, sigma_s=30, sigma_r=0.3)[:, :, ::-1])
    to = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a))).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    return to(xs), to(ys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=175)
    parser.add_argument("--init", help="continue from these weights")
    args = parser.parse_args()
    random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y = crops()
    g = Generator("align_corners", 1e-5)
    g.load_state_dict(torch.load(args.init, weights_only=True) if args.init else random_state_dict(0))
    g.train()
    opt = torch.optim.Adam(g.parameters(), 2e-3, betas=(0.5, 0.999))
    start = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(x), (4,))
        loss = (g(x[idx]) - y[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0:
            print(f"step {step}, {time.time() - start:.0f} s, L1 {loss.item():.4f}", flush=True)
    torch.save(g.state_dict(), args.out)
    print(f"wrote {args.out} after {step} steps, L1 {loss.item():.4f}")


if __name__ == "__main__":
    main()
