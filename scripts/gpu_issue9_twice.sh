#!/usr/bin/env bash
# Issue 9, the sixth session's call: the Hopper prefill with edge tiles visited twice (one dot per step, no K1
# slot; _hopper_steps._step_tile) instead of both dots in one synchronous edge step.
#   1. GPU tests of the Hopper kernel and the table-attention grid it serves (4097 included), the prologue trim
#      and generate through the K1 cache;
#   2. prefill at 32k and 128k (D = 128) and 32k (D = 64), every method beside cuDNN causal and our causal;
#   3. Nsight Compute, duration / instructions / cycles of one 32k prefill call of plain, string and rerope.
# Run: OUT=$OUT LIMIT=580 bash scripts/gpu_issue9_twice.sh   (files back: all.tgz; the summary is printed)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 580
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== tests ($(left) s left)"
run_tests 200 330 tests/kernels/test_hopper.py tests/kernels/test_table_attention.py tests/kernels/test_prologue_trim.py \
  tests/kernels/test_k1_generate.py

echo "== prefill 32k (D = 128) ($(left) s left)"
timeout "$(cap 110 200)" python3 benchmarks/bench_attention.py --lengths 32k --dims 128 --no-decode --no-compose \
  --no-portable --extra-lengths "" --budget "$(cap 100 210)" --md "$OUT/prefill32k.md" > "$OUT/prefill32k.log" 2>&1
grep "^| " "$OUT/prefill32k.md" | grep -v "^| D \|^|---"

echo "== prefill 128k (D = 128), 32k (D = 64) ($(left) s left)"
timeout "$(cap 150 45)" python3 benchmarks/bench_attention.py --lengths 128k --dims 128,64 --d64-lengths 32k \
  --no-decode --no-compose --no-portable --extra-lengths "" --budget "$(cap 140 55)" --md "$OUT/prefill_more.md" \
  > "$OUT/prefill_more.log" 2>&1
grep "^| " "$OUT/prefill_more.md" | grep -v "^| D \|^|---"

echo "== ncu: duration, instructions, cycles, 32k prefill ($(left) s left)"
for m in plain string rerope; do
  timeout "$(cap 25 2)" ncu --nvtx --nvtx-include "profile/" --csv \
    --metrics gpu__time_duration.sum,smsp__inst_executed.sum,sm__cycles_elapsed.max,launch__registers_per_thread \
    python3 benchmarks/profile_kernel.py --method $m --n 32k > "$OUT/ncu_$m.csv" 2>"$OUT/ncu_$m.err"
  ncu_table "$OUT/ncu_$m.csv" "$m" | cut -c1-200
done
echo "done in $(( $(date +%s) - start )) s"
(cd "$OUT" && tar czf /tmp/all.tgz --exclude=all.tgz . && find . -type f ! -name versions.txt -delete && mv /tmp/all.tgz .)
