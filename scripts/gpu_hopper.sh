#!/usr/bin/env bash
# Issue 9, the Hopper prefill kernel on one sm_90 GPU in one short call: its GPU tests (served methods on the
# 4097-key grid case, offsets / HF layout, causal) and then bench_attention's prefill table at 32k (every method:
# Hopper, portable Triton, composed vendor route, cuDNN causal; VARIANTS: the Hopper kernel switches).
# Run: OUT=... LIMIT=280 bash scripts/gpu_hopper.sh
set -uo pipefail
OUT="${OUT:?set OUT}"
LIMIT="${LIMIT:-280}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
start=$(date +%s)
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
timeout $(( LIMIT * 2 / 5 )) python3 -m pytest -q -p no:cacheprovider -n 14 tests/kernels/test_hopper.py \
  tests/kernels/test_table_attention.py -k "test_hopper or (gpu_grid and 4097x4097)" 2>&1 | tail -25 | tee "$OUT/tests.log"
left=$(( LIMIT - ($(date +%s) - start) - 10 ))
timeout "$left" python3 benchmarks/bench_attention.py --lengths 32k --d64-lengths= --extra-lengths=128k --no-decode \
  --hopper-variants "${VARIANTS:-nofold,fold}" --budget $(( left - 15 )) --md "$OUT/bench.md" 2>&1 | grep -v "^#.*skipped" | tee "$OUT/bench.log" | tail -40
