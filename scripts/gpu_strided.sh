#!/usr/bin/env bash
# Issue 10, twentieth session: the Hopper prefill reads transformers' token-major q, k, v in place and writes
# out token-major (``_prefill_hopper_ws._Rows``). One call on one sm_90 GPU:
#   (1) the Hopper kernel's GPU tests (HF layout = token-major q, k, v; head-major DCA), the CUDA grid's 4097-key
#       case of every method, the compiled-layers CUDA tests (texts equal the eager model's)
#   (2) the evaluation's compiled-layers prefill (bench_inductor_knobs, default inductor settings) before (OLD_SRC:
#       the previous commit's src, `git archive`d into a git-ignored folder and carried) and after (src; and with
#       ROPESHIFT_HOPPER_IN_PLACE=q: K and V copied), plain and STRING, each in its own process, one after the other.
# Run: OUT=... OLD_SRC=.old/src LIMIT=300 [SHAPES=48x8k,17x8k:lik] [BENCH=0: (1) only] [TESTS=0: (2) only]
#      [TEST_K=...: pytest -k of (1), default the whole named list; TEST_LIMIT=150: its seconds]
#      [METHODS=plain] [SIDES="new new_q": no before side, OLD_SRC unused] bash scripts/gpu_strided.sh
set -uo pipefail
OUT="${OUT:?set OUT}"
OLD_SRC="${OLD_SRC:?set OLD_SRC}"
LIMIT="${LIMIT:-300}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
start=$(date +%s)
python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee "$OUT/versions.txt"
# only the GPU tests, named (-rA): on 2026-12-06 "-k test_hopper" took the module's CPU tests too and the run
# was cut at 110 s after 61 tests
[ "${TESTS:-1}" = 0 ] || PYTHONPATH="$PWD/src" timeout "${TEST_LIMIT:-150}" python3 -m pytest -q -rA -p no:cacheprovider -n 14 \
  tests/kernels/test_hopper.py tests/kernels/test_table_attention.py tests/eval/test_dense_compile.py \
  tests/eval/test_shared_prefill.py tests/eval/test_warm_up.py tests/eval/test_parallel.py \
  -k "${TEST_K:-offsets_and_layout or dca_chunk or causal_entry or (gpu_grid and 4097x4097) or cuda_compiled or cuda_shared_prefill or cuda_warm_up or cuda_forked}" 2>&1 \
  | grep -v -e PytestBenchmarkWarning -e "warner(" | tail -150 | tee "$OUT/tests.log"
[ "${BENCH:-1}" = 0 ] && exit 0  # the tests only (scripts/gpu_strided_study.sh)
for method in ${METHODS:-plain string}; do
  for side in ${SIDES:-old new new_q}; do  # new_q: q in place, K and V copied (ROPESHIFT_HOPPER_IN_PLACE=q)
    src="$PWD/src"; [ "$side" = old ] && src="$OLD_SRC"
    inplace=qkv; [ "$side" = new_q ] && inplace=q
    left=$(( LIMIT - ($(date +%s) - start) - 5 ))
    [ "$left" -lt 20 ] && { echo "out of time before $method/$side"; break 2; }
    echo "== $method $side ($src)"
    ROPESHIFT_HOPPER_IN_PLACE=$inplace PYTHONPATH="$src:$PWD/benchmarks" timeout "$left" \
      python3 benchmarks/bench_inductor_knobs.py --knobs default --shapes "${SHAPES:-48x8k,17x8k:lik}" \
      --method "$method" --top 12 --out "$OUT/${method}_${side}.md" 2>&1 | tail -40 | tee "$OUT/${method}_${side}.log"
  done
done
echo "total $(( $(date +%s) - start )) s"
