#!/usr/bin/env bash
# Issue 9, eighth session: decode timings of the Hopper (Gluon) decode for re-rotated far keys without K1, default
# (3-stage ring, asynchronous P V, no register cap) beside its variants and the Triton split kernel, one run:
# 64k and 128k, B = 1 and 8, every method beside our plain decode.
# Run: OUT=$OUT LIMIT=300 bash scripts/gpu_issue9_hopper_decode_bench.sh [VARIANTS]   (default: triton,stages=2,stages=2+nreg=168)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 300
VARIANTS="${1:-triton,stages=2,stages=2+nreg=168}"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"
timeout "$(cap 290 5)" python3 benchmarks/bench_attention.py --no-prefill --no-compose --decode-lengths 64k,128k \
  --decode-batches 1,8 --decode-variants "$VARIANTS" --methods string,rerope,rerope_leaky,self_extend,dca \
  --budget "$(cap 280 10)" --md "$OUT/decode.md" > "$OUT/decode.log" 2>&1
grep "^| " "$OUT/decode.md" | grep -v "^| D \|^|---"
grep -i "error\|failed" "$OUT/decode.log" | head -5
echo "done in $(( $(date +%s) - start )) s"
