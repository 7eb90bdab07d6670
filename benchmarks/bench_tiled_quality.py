"""How close the approximate ``memory="tiled"`` mode comes to the exact output: PSNR (dB,
values in [-1, 1]) of tiled against exact, per photo of the shared test set and upsampling
mode, for a few tile sizes. Random weights in the published layout (seed 0).

    python benchmarks/bench_tiled_quality.py
    python benchmarks/bench_tiled_quality.py --photos face_a.jpg --modes tf --tiles 256,512
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from animegan2.lowmem import run_tiled  # noqa: E402
from animegan2.model import Generator  # noqa: E402
from tests.reference import random_state_dict  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two tensors in [-1, 1]."""
    return 10 * math.log10(4 / ((a - b) ** 2).mean().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testdata", type=Path, default=REPO.parent / "shared" / "testdata")
    parser.add_argument("--photos", default="face_a.jpg,street.jpg")
    parser.add_argument("--modes", default="tf,align_corners,half_pixel")
    parser.add_argument("--tiles", default="256,512", help="tile sides; overlap is tile/8")
    args = parser.parse_args()
    tiles = [int(t) for t in args.tiles.split(",")]
    print("| photo | upsample | " + " | ".join(f"tile {t} (overlap {t // 8})" for t in tiles) + " |")
    print("|---|---|" + "---|" * len(tiles))
    for name in args.photos.split(","):
        image = np.array(Image.open(args.testdata / name).convert("RGB"))
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
        for mode in args.modes.split(","):
            g = Generator(upsample=mode, norm_eps=1e-5).eval()
            g.load_state_dict(random_state_dict(0))
            with torch.inference_mode():
                exact = g(x)
            cells = [f"{psnr(run_tiled(g, x, tile=t, overlap=t // 8), exact):.1f} dB" for t in tiles]
            print(f"| {name} {image.shape[1]}x{image.shape[0]} | {mode} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
