"""The GPU check's scripts (scripts/gpu_check.sh) run end to end on a CPU with tiny settings,
so they are ready when a GPU is: every mode trains without NaN, both inference paths run."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(script, *args):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, f"benchmarks/{script}", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_train_bench_reports_every_amp_mode_without_nan():
    out = bench("bench_train.py", "--device", "cpu", "--steps", "1", "--size", "32", "--batch-size", "1", "--amp", "off", "bf16")
    assert "--amp off (float32): " in out and "--amp bf16 (bfloat16): " in out
    assert out.count("no NaN/inf") == 2 and "WENT NaN" not in out


def test_inference_bench_times_the_strip_engine_and_the_module_path():
    # 164 x 164 is over the size from which the default path runs the strip engine
    out = bench("bench_infer.py", "--device", "cpu", "--height", "164", "--width", "164", "--runs", "1", "--dtypes", "float32")
    rows = [line.split() for line in out.splitlines() if line.startswith("float32")]
    assert [r[1] for r in rows] == ["nchw", "channels_last"] and all(len(r) == 6 for r in rows)
