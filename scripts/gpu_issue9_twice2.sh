#!/usr/bin/env bash
# Issue 9, the seventh session's second call: the Hopper prefill with edge tiles twice, after the empty-row fix
# (the first call failed 6 grid cases with NaN: 1025 rows at D = 64).
#   1. GPU tests of the Hopper kernel, the table-attention grid, the prologue trim, generate through K1;
#   2. prefill at 32k (D = 128) twice, then 128k (D = 128) and 32k (D = 64), every method beside cuDNN causal;
#   3. end to end (bench_generate.py, 32k, 8 layers, CUDA graphs) for every method, as long as time is left.
# Run: OUT=$OUT LIMIT=580 bash scripts/gpu_issue9_twice2.sh   (files back: all.tgz; the summary is printed)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 580
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== tests ($(left) s left)"
run_tests 180 380 tests/kernels/test_hopper.py tests/kernels/test_table_attention.py tests/kernels/test_prologue_trim.py \
  tests/kernels/test_k1_generate.py

for r in 1 2; do
  echo "== prefill 32k (D = 128), run $r ($(left) s left)"
  timeout "$(cap 60 300)" python3 benchmarks/bench_attention.py --lengths 32k --dims 128 --no-decode --no-compose \
    --no-portable --extra-lengths "" --budget "$(cap 50 310)" --md "$OUT/prefill32k_$r.md" > "$OUT/prefill32k_$r.log" 2>&1
  grep "^| " "$OUT/prefill32k_$r.md" | grep -v "^| D \|^|---"
done

echo "== prefill 128k (D = 128), 32k (D = 64) ($(left) s left)"
timeout "$(cap 110 190)" python3 benchmarks/bench_attention.py --lengths 128k --dims 128,64 --d64-lengths 32k \
  --no-decode --no-compose --no-portable --extra-lengths "" --budget "$(cap 100 200)" --md "$OUT/prefill_more.md" \
  > "$OUT/prefill_more.log" 2>&1
grep "^| " "$OUT/prefill_more.md" | grep -v "^| D \|^|---"

echo "== end to end ($(left) s left)"
LIMIT="$(cap 200 15)" bash scripts/gpu_e2e.sh > /dev/null 2>&1
grep "^| " "$OUT/e2e.log" | head -20
echo "done in $(( $(date +%s) - start )) s"
(cd "$OUT" && tar czf /tmp/all.tgz --exclude=all.tgz . && find . -type f ! -name versions.txt -delete && mv /tmp/all.tgz .)
