#!/usr/bin/env bash
# Issue 9, fifth session, third call (no model file needed): the Hopper prefill's prologue (Q1 / K1) with one
# cos/sin per rotary pair (HALVES: 72 registers instead of 159 on sm_90) and only the rows the kernel reads
# (TRIM: e.g. DCA's first chunk of queries and last chunk of keys are never made).
#   1. GPU tests: the Hopper kernel (every served method x offsets), the prologue trim, the K1 writes;
#   2. prefill at 32k, D = 128 and 64, every method against cuDNN causal, interleaved rounds;
#   3. Nsight Compute, 32k: the prologue and main kernels of self_extend and dca (call 1 of this session, before:
#      205 + 55 us of prologue against 16.1 ms);
#   4. end to end at 32k (bench_generate --graphs), every method with the defaults of this commit (K1 on).
# Run: OUT=$OUT LIMIT=430 bash scripts/gpu_issue9_prologue.sh   (files back: all.tgz; the summary is printed)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 430
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== tests ($(left) s left)"
run_tests 110 310 tests/kernels/test_hopper.py tests/kernels/test_prologue_trim.py tests/kernels/test_decode_k1.py

echo "== prefill 32k ($(left) s left)"
timeout "$(cap 190 120)" python3 benchmarks/bench_attention.py --lengths 32k --dims 128,64 --no-decode --no-compose \
  --no-portable --extra-lengths "" --budget "$(cap 180 130)" --md "$OUT/prefill.md" > "$OUT/prefill.log" 2>&1
grep "^| " "$OUT/prefill.md" | grep -v "^| D \|^|---"

echo "== ncu, prefill 32k ($(left) s left)"
for m in self_extend dca; do
  timeout "$(cap 25 95)" ncu --nvtx --nvtx-include "profile/" --metrics gpu__time_duration.sum \
    --csv python3 benchmarks/profile_kernel.py --method $m --n 32k > "$OUT/ncu_$m.csv" 2>&1
  ncu_table "$OUT/ncu_$m.csv" "$m"
done

echo "== end to end ($(left) s left)"
LIMIT="$(cap 120 3)" bash scripts/gpu_e2e.sh > /dev/null 2>&1
grep "^| 32k" "$OUT/e2e.log"
echo "done in $(( $(date +%s) - start )) s"
(cd "$OUT" && tar czf /tmp/all.tgz --exclude=all.tgz . && find . -type f ! -name versions.txt -delete && mv /tmp/all.tgz .)
