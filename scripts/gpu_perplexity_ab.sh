#!/usr/bin/env bash
# Issue 10, fourth session: perplexity's cost before / after its batching change (commit 629328e: rows per
# forward bound by the logits' own dtype, no KV cache, NLL summed on the device), side by side in one call.
# "before" runs the same benchmark over the tree of commit fc21854 (carried in .gpu/old/src: git archive fc21854
# src | tar -x -C .gpu/old), "after" over this checkout. SmolLM2-135M (model carried as scripts/gpu_env.sh says),
# rope and string, both protocols, 4k and 8k, 50 samples per cell, 97 rows per batch (the study's 800k tokens / 8k).
# Run: source scripts/gpu_env.sh; OUT=$OUT LIMIT=200 bash scripts/gpu_perplexity_ab.sh  (files back: ppl_*.md)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 200
args=(--tasks perplexity,perplexity:single --lengths 4k,8k --methods rope,string --samples 50 --batch-size 97
      --haystack kjv --out /root/bench_ppl)
for side in before after; do
  src="$PWD/src"; [ "$side" = before ] && src="$PWD/.gpu/old/src"
  echo "== $side ($(left) s left)"
  PYTHONPATH="$src:/root/pkgs:/tmp/site:$PWD/benchmarks" timeout "$(cap 90 5)" python3 benchmarks/bench_eval.py \
    "${args[@]}" > "$OUT/ppl_$side.md" 2>&1
  grep "^| \|^#" "$OUT/ppl_$side.md" | tail -12
done
echo "done in $(( $(date +%s) - start )) s"
