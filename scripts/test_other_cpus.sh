#!/usr/bin/env bash
# The exactness and training-equivalence tests as CPUs of other kinds compute them: oneDNN limited
# to AVX2 (a CPU without AVX-512) and to AVX512_CORE (AVX-512 without AMX or VNNI/BF16 kernels).
# The default run of the suite covers this machine's own ISA. The TF training step-parity test
# (tests/test_train_parity.py) runs both sides in float64, where oneDNN takes no part (it has no
# float64 kernels): its bars measure the formulas, not one set of kernels, and it runs here to keep
# it so (MKL_CBWR=COMPATIBLE, other summation orders for PyTorch's float64 BLAS, measured alike).
set -euo pipefail
cd "$(dirname "$0")/.."
for isa in AVX2 AVX512_CORE; do
    echo "== ONEDNN_MAX_CPU_ISA=$isa"
    ONEDNN_MAX_CPU_ISA=$isa python -m pytest -q -p no:cacheprovider \
        tests/test_fast_model.py tests/test_model.py tests/test_convert.py tests/test_convert_v1.py \
        tests/test_lowmem.py tests/test_train_parity.py \
        tests/test_train_trainer.py::test_torchrun_two_processes_equal_one_process_with_the_combined_batch
done
