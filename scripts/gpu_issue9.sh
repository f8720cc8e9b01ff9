#!/usr/bin/env bash
# Issue 9 on one H200 in one call (~9 min), stages in order of need, each under its own timeout:
#   1. GPU tests: the Hopper kernel (every served method, its switches, offsets, HF layout), the 4097-key grid
#      cases it serves (against the fp64 reference), generate() through the kernels vs the tiled path;
#   2. the prefill table at 32k, D = 128 and 64 (Hopper kernel with its switches, cuDNN causal, our causal;
#      interleaved rounds), then 128k at D = 128;
#   3. end to end (benchmarks/bench_generate.py --graphs, 32k, every method vs SDPA) with what is left.
# Also copies the model's first half to /root/m when .model1 is carried (a next call assembles the model).
# Run: OUT=$OUT LIMIT=560 bash scripts/gpu_issue9.sh
#   (files back: versions.txt, tests.log, bench32k.md/.log, bench128k.md/.log, e2e.log)
# The 2026-12-03 first call ran this script's previous version (commit cd1280f: q1 variants, decode table, ncu).
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 560
[ -f .model1/part_aa ] && mkdir -p /root/m && cp .model1/part_aa /root/m/ && echo "model part 1 copied"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== tests ($(left) s left)"
timeout "$(cap 210 330)" python3 -m pytest -v -p no:cacheprovider -n 14 tests/kernels/test_hopper.py \
  tests/test_generate_gpu.py tests/kernels/test_table_attention.py -k "test_hopper or test_generate_gpu or (gpu_grid and 4097x4097)" \
  -rs > "$OUT/tests.log" 2>&1
grep -E "passed|failed|error" "$OUT/tests.log" | tail -3; grep -E "FAILED|ERROR" "$OUT/tests.log" | head -20

echo "== prefill 32k ($(left) s left)"
timeout "$(cap 120 200)" python3 benchmarks/bench_attention.py --lengths 32k --d64-lengths 32k --extra-lengths= \
  --no-decode --no-portable --no-compose --hopper-variants nofold,fold --budget "$(cap 110 210)" \
  --md "$OUT/bench32k.md" > "$OUT/bench32k.log" 2>&1
grep "^| " "$OUT/bench32k.md"

echo "== prefill 128k ($(left) s left)"
timeout "$(cap 75 130)" python3 benchmarks/bench_attention.py --lengths 128k --d64-lengths= --extra-lengths= \
  --no-decode --no-portable --no-compose --methods string,rerope,rerope_leaky,self_extend,dca \
  --budget "$(cap 65 140)" --md "$OUT/bench128k.md" > "$OUT/bench128k.log" 2>&1
grep "^| " "$OUT/bench128k.md" | grep -v "^| N \|^|---"

echo "== end to end ($(left) s left)"
LIMIT="$(cap 600 5)" bash scripts/gpu_e2e.sh > /dev/null 2>&1
grep "^| \|^#" "$OUT/e2e.log" | tail -20
echo "done in $(( $(date +%s) - start )) s"
