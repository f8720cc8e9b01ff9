#!/usr/bin/env bash
# Issue 10, fourteenth session: why a perplexity (likelihood) token costs ~2x a generation-prefill token in the
# study's batch log (4.3-5.1 vs 2.2-3.3 rank-us/token at 4k-8k). The same rows x tokens timed both ways by
# benchmarks/profile_prefill.py --likelihood (random SmolLM2-135M-shaped weights; no model file needed), eager
# and with the study's compiled layers, with the split by kernel family. 5 x 8k is what Perplexity.evaluate
# forwards per call at 8k (LOGITS_BYTES; all logits), 17 x 8k a strided batch (257 logits).
# Run (a call of a session carrying .model1 or .model2): OUT=$OUT LIMIT=110 bash scripts/gpu_likelihood_profile.sh
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 110
mkdir -p /root/m && cp .model*/part_* /root/m/ 2>/dev/null && echo "model parts copied to /root/m: $(ls /root/m)"
timeout "$(cap 100 2)" python3 benchmarks/profile_prefill.py --shapes 5x8k,17x8k --methods plain,string \
  --likelihood --compile --modes layers --out "$OUT/likelihood.md" > "$OUT/likelihood.log" 2>&1
grep "^|\|^#" "$OUT/likelihood.log"
echo "done in $(( $(date +%s) - start )) s"
