#!/usr/bin/env bash
# The exactness and training-equivalence tests as CPUs of other kinds compute them: oneDNN limited
# to AVX2 (a CPU without AVX-512) and to AVX512_CORE (AVX-512 without AMX or VNNI/BF16 kernels).
# The default run of the suite covers this machine's own ISA. Not here yet: the TF training
# step-parity test (tests/test_train_parity.py), which passes at the native ISA but not with both
# TensorFlow and PyTorch limited to AVX2 (losses 7e-4, gradients up to 9% apart at 32x32 with the
# original's initialisation; measured on an AMD EPYC Zen 5): still to be explained.
set -euo pipefail
cd "$(dirname "$0")/.."
for isa in AVX2 AVX512_CORE; do
    echo "== ONEDNN_MAX_CPU_ISA=$isa"
    ONEDNN_MAX_CPU_ISA=$isa python -m pytest -q -p no:cacheprovider \
        tests/test_fast_model.py tests/test_model.py tests/test_convert.py tests/test_convert_v1.py \
        tests/test_lowmem.py \
        tests/test_train_trainer.py::test_torchrun_two_processes_equal_one_process_with_the_combined_batch
done
