#!/usr/bin/env bash
# Issue 10, ninth session: where the evaluation's prefill goes against its compute floor (SmolLM2-135M's shape,
# random weights: no model file needed), eager and under torch.compile.
#   1. benchmarks/profile_prefill.py, eager: 48 x 8k, 96 x 4k, 192 x 2k, 384 x 1k (~400k tokens per forward, the
#      study's batches), plain and string;
#   2. the same under torch.compile (compile time in its last column) for COMPILE_SHAPES (default 48x8k,384x1k),
#      plain.
# Run: OUT=$OUT LIMIT=400 [COMPILE_SHAPES=48x8k] bash scripts/gpu_issue10_prefill.sh   (tables printed and in $OUT)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 400
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"
echo "== prefill, eager ($(left) s left)"
timeout "$(cap 200 120)" python3 benchmarks/profile_prefill.py --shapes 48x8k,96x4k,192x2k,384x1k \
  --methods plain,string --out "$OUT/prefill_eager.md" 2> "$OUT/prefill_eager.err" | grep "^|\|^#"
tail -3 "$OUT/prefill_eager.err"
echo "== prefill, torch.compile ($(left) s left)"
timeout "$(cap 300 5)" python3 benchmarks/profile_prefill.py --shapes "${COMPILE_SHAPES:-48x8k,384x1k}" \
  --methods plain --compile --out "$OUT/prefill_compile.md" 2> "$OUT/prefill_compile.err" | grep "^|\|^#"
tail -3 "$OUT/prefill_compile.err"
echo "done in $(( $(date +%s) - start )) s"
