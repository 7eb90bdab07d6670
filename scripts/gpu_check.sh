#!/usr/bin/env bash
# The GPU check of issue 14: 300 adversarial training steps at 256x256, batch 12, under
# float16 and bfloat16 AMP (steps/s, peak GPU memory, NaN/inf or not), then inference at
# 1920x1080 in float32/float16, NCHW and channels_last, the strip engine against the module
# path. A few minutes on one recent GPU. Paste its output into README.md's GPU section.
#
#   bash scripts/gpu_check.sh           # on a CUDA machine
#   bash scripts/gpu_check.sh --smoke   # CPU, tiny settings: proves the scripts run
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--smoke" ]; then
    python benchmarks/bench_train.py --device cpu --steps 1 --size 32 --batch-size 1 --amp off bf16
    python benchmarks/bench_infer.py --device cpu --height 168 --width 176 --runs 1 --dtypes float32
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python benchmarks/bench_train.py --device cuda --steps 300 --size 256 --batch-size 12 --amp fp16 bf16
    python benchmarks/bench_infer.py --device cuda --height 1080 --width 1920 --runs 10
fi
