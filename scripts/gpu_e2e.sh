#!/usr/bin/env bash
# Issue 5, end to end on one GPU in one call: benchmarks/bench_generate.py at 32k on 8 Llama-3-8B-width layers,
# static cache + CUDA graphs on both sides, SDPA's default backend as the baseline (measured once), then every
# method of benchmarks/_settings.py (string, rerope, rerope_leaky, self_extend, dca, lm_infinite) with impl auto.
# Each row is printed as soon as it is measured; no new measurement starts after LIMIT - 30 s, and the whole run
# is cut at LIMIT s, so the rows finished by then are in $OUT/e2e.log whatever happens.
# Run (repository root, on the GPU machine): OUT=... LIMIT=540 bash scripts/gpu_e2e.sh [more bench_generate args]
#   e.g. ... bash scripts/gpu_e2e.sh --methods string,plain   (a later flag overrides the one here)
# CPU check of the same script: PYTHONPATH=src python benchmarks/bench_generate.py --device cpu --tiny --graphs
set -uo pipefail
OUT="${OUT:?set OUT}"
LIMIT="${LIMIT:-540}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
mkdir -p "$OUT"
timeout "$LIMIT" python3 benchmarks/bench_generate.py --graphs --lengths 32k --layers 8 --sdpa-backends default \
  --budget $(( LIMIT - 30 )) "$@" 2>&1 | tee "$OUT/e2e.log"
