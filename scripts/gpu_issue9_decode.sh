#!/usr/bin/env bash
# Issue 9, third session, one H200 call (~9 min), stages in order of need, each under its own timeout:
#   1. GPU tests: the decode kernel (every key path, static decode), the Hopper prefill kernel, generate()
#      through the kernels vs the tiled path;
#   2. decode at 64k, B = 1 and 8: the wave split rule (default) vs the old one (sms4) and tile configs side by
#      side (bench_attention --decode-variants), then 128k with the defaults;
#   3. prefill at 32k, D = 128 (every method, interleaved with cuDNN causal);
#   4. end to end (bench_generate --graphs, 32k, every method vs SDPA) with the peak memory of each phase.
# Also copies the model's first half to /root/m when .model1 is carried (a next call assembles the model).
# Run: OUT=$OUT LIMIT=540 bash scripts/gpu_issue9_decode.sh
#   (files back: versions.txt, tests.log, decode64k.md/.log, decode128k.md/.log, bench32k.md/.log, e2e.log)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 540
VARIANTS="${VARIANTS:-sms4,cfg=32.4.3,cfg=32.4.4,cfg=64.4.4,cfg=64.8.3}"
[ -f .model1/part_aa ] && mkdir -p /root/m && cp .model1/part_aa /root/m/ && echo "model part 1 copied"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== tests ($(left) s left)"
timeout "$(cap 150 380)" python3 -m pytest -v -p no:cacheprovider -n 14 tests/kernels/test_decode.py \
  tests/kernels/test_decode_static.py tests/kernels/test_occupancy.py tests/kernels/test_hopper.py \
  tests/test_generate_gpu.py -rs > "$OUT/tests.log" 2>&1
grep -E "passed|failed|error" "$OUT/tests.log" | tail -3; grep -E "FAILED|ERROR" "$OUT/tests.log" | head -20

echo "== decode 64k ($(left) s left)"
timeout "$(cap 170 200)" python3 benchmarks/bench_attention.py --no-prefill --decode-lengths 64k \
  --decode-batches 1,8 --decode-variants "$VARIANTS" --budget "$(cap 160 210)" \
  --md "$OUT/decode64k.md" > "$OUT/decode64k.log" 2>&1
grep "^| " "$OUT/decode64k.md" | grep -v "^| N \|^|---"

echo "== decode 128k ($(left) s left)"
timeout "$(cap 50 150)" python3 benchmarks/bench_attention.py --no-prefill --decode-lengths 128k \
  --decode-batches 1,8 --budget "$(cap 45 155)" --md "$OUT/decode128k.md" > "$OUT/decode128k.log" 2>&1
grep "^| " "$OUT/decode128k.md" | grep -v "^| N \|^|---"

echo "== prefill 32k ($(left) s left)"
timeout "$(cap 60 100)" python3 benchmarks/bench_attention.py --lengths 32k --d64-lengths= --extra-lengths= \
  --no-decode --no-portable --no-compose --budget "$(cap 55 105)" \
  --md "$OUT/bench32k.md" > "$OUT/bench32k.log" 2>&1
grep "^| " "$OUT/bench32k.md" | grep -v "^| N \|^|---\|^| D "

echo "== end to end ($(left) s left)"
LIMIT="$(cap 600 5)" bash scripts/gpu_e2e.sh > /dev/null 2>&1
grep "^| \|^#" "$OUT/e2e.log" | tail -20
echo "done in $(( $(date +%s) - start )) s"
