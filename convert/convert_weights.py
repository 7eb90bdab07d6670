"""Convert an original TensorFlow 1 AnimeGAN checkpoint to PyTorch weights, without TensorFlow.

    python convert/convert_weights.py SRC -o OUT.safetensors   # or OUT.pt
    python convert/convert_weights.py SRC --list

SRC is a checkpoint directory (e.g. AnimeGANv2's checkpoint/generator_Hayao_weight), a
prefix (.../Hayao-64.ckpt) or its .index file. The same command as ``animegan2 convert``.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a clone as well
    sys.argv = ["animegan2", "convert", *sys.argv[1:]]
    runpy.run_module("animegan2", run_name="__main__")
