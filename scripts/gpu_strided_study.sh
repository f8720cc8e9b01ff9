#!/usr/bin/env bash
# Issue 10, twentieth session, one call: the Hopper prefill's GPU tests with token-major operands read in place
# (``_Rows``; scripts/gpu_strided.sh BENCH=0), then the whole ruler-lite study timed (scripts/gpu_study_call.sh, part (b)
# only). If a test fails, the study runs on the previous commit's src (OLD_SRC, carried) and says so.
# Twenty-first session: the ranks claim one method's batch at a time (batching.claim_queues), and 640k-token batches
# (600k before: 8k and 4k then take 6 and 3 chunks a method instead of 7 and 4; ~21 GiB a process).
# Run (the last of scripts/gpu_env.sh's model calls, carry [.model1, .whl, .old]):
#   source scripts/gpu_env.sh; OUT=$OUT OLD_SRC=.old/src LIMIT=590 bash scripts/gpu_strided_study.sh
# Twenty-third session: a failure among only the tests of a switched feature (tests/eval/test_shared_prefill.py:
# ROPESHIFT_SHARE_PREFIX unset; tests/eval/test_warm_up.py: ROPESHIFT_WARM_UP=0) keeps this src with the feature
# off (any other failure: OLD_SRC). CHECK_WARM_UP=1 runs benchmarks/check_warm_up.py before the study.
# Twenty-fourth session: tests/eval/test_parallel.py's test_cuda_forked_workers is switched too (ROPESHIFT_FORK_RANKS=0).
# Twenty-fifth session: TESTS=0 runs the study alone (the GPU tests passed in an earlier call of the same kernels).
# Twenty-sixth session: ranks > 0 compile on a model without weights (ropeshift.skeleton); run with
#   SWITCHED="test_shared_prefill|test_warm_up" TEST_K="cuda_warm_up or cuda_forked"
# Twenty-eighth session: rank 0 leads eagerly (dense_compile.lead_others); then the kernel warm-up helpers
# (eval/kernel_warm.py). Next call pair (cold machine; batch_profile's "First batch ... beyond its cell's median"
# line says what Triton's first launches still cost: 28.1 rank-s cold, 1.6 warm in that session):
#   call 1, carry [.model1]: mkdir -p /root/m && cp .model1/part_* /root/m/
#   call 2 at once, carry [.model2, .whl, .old]:
#   source scripts/gpu_env.sh; TESTS=0 BASE_TGZ=results/smollm2-135m_h100_2026-12-07c.tgz OUT=$OUT OLD_SRC=.old/src \
#     LIMIT=480 bash scripts/gpu_strided_study.sh
# (with ROPESHIFT_KERNEL_WARM=0 for the same code without the helpers)
# Twenty-ninth session: that call pair on two cold machines took 299 and 302 s (runs 9, 10). Since then the helpers
# take the methods in run order and gpu_env.sh writes the image's bytecode once before anything is timed
# (BYTECODE=0: not), and rank 0's joins run their checks on its GPU (report_headline.checks_on; b.log warns if
# one fell back to the CPU); b.log's "kernel compiled (...)" lines name every ropeshift kernel a process compiled.
# Next: the same call pair, unchanged (a pair costs ~430 s of device time: start ~90 s, call 2 ~340 s).
# Earlier "next call" (twenty-sixth session):
#   source scripts/gpu_env.sh; TESTS=1 TEST_LIMIT=200 TEST_K="offsets_and_layout or cuda_warm_up or cuda_forked" \
#     BASE_TGZ=results/smollm2-135m_h100_2026-12-07c.tgz OUT=$OUT OLD_SRC=.old/src LIMIT=580 bash scripts/gpu_strided_study.sh
set -uo pipefail
OUT="${OUT:?set OUT}"
OLD_SRC="${OLD_SRC:?set OLD_SRC}"
LIMIT="${LIMIT:-590}"
start=$(date +%s)
failed() { grep -E "^(FAILED|ERROR) " "$OUT/tests.log" | grep -vE "${1:-^$}"; }  # failures (but those matching $1)
# tests of a feature with its own switch: a failure among only these turns the feature off instead of OLD_SRC
SWITCHED="${SWITCHED:-test_shared_prefill|test_warm_up|test_cuda_forked}"  # SWITCHED=...: fewer (a failure of the
# others sends the study to OLD_SRC; 26th session: test_cuda_forked also runs the ranks' skeleton, which has no switch)
if [ "${TESTS:-1}" = 0 ]; then  # TESTS=0: the study only (its kernels' GPU tests passed in an earlier call)
  echo "tests skipped (TESTS=0)" > "$OUT/tests.log"
else
  OUT="$OUT" OLD_SRC="$OLD_SRC" BENCH=0 bash scripts/gpu_strided.sh > /dev/null 2>&1  # writes $OUT/tests.log
  if ! grep -qE "[0-9]+ passed" "$OUT/tests.log" || failed "$SWITCHED" >/dev/null; then
    echo "TESTS FAILED or timed out ($(( $(date +%s) - start )) s): the study runs on OLD_SRC" | tee -a "$OUT/tests.log"
    rm -rf src && cp -r "$OLD_SRC" src
  else
    if failed >/dev/null; then echo "SWITCHED FEATURE TESTS FAILED ($(( $(date +%s) - start )) s)" | tee -a "$OUT/tests.log"; fi
    if failed | grep -q test_shared_prefill; then unset ROPESHIFT_SHARE_PREFIX; fi
    if failed | grep -q test_warm_up; then export ROPESHIFT_WARM_UP=0; fi
    if failed | grep -q test_cuda_forked; then export ROPESHIFT_FORK_RANKS=0; fi
    echo "tests passed or only switched features failed ($(( $(date +%s) - start )) s): this commit's src" | tee -a "$OUT/tests.log"
  fi
fi
tail -8 "$OUT/tests.log"
echo "ROPESHIFT_SHARE_PREFIX=${ROPESHIFT_SHARE_PREFIX:-unset} ROPESHIFT_WARM_UP=${ROPESHIFT_WARM_UP:-unset} ROPESHIFT_FORK_RANKS=${ROPESHIFT_FORK_RANKS:-unset}" | tee -a "$OUT/tests.log"
# CHECK_WARM_UP=1: first benchmarks/check_warm_up.py (~1-2 min, no model files): what the warm-up leaves to compile
if [ "${CHECK_WARM_UP:-0}" = 1 ]; then
  TORCH_LOGS=recompiles PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" timeout 180 \
    python3 benchmarks/check_warm_up.py > "$OUT/check_warm_up.log" 2>&1
  grep -E "^\||Recompiling|triggered by|- " "$OUT/check_warm_up.log" | grep -v "^- Docs" | head -40
fi
# dynamo says which guard failed for any compile inside the loop (the warm-up should leave none: eval/warm_up.py)
export TORCH_LOGS="${TORCH_LOGS:-recompiles}"
# twenty-eighth session: the kernel warm-up helpers (eval/kernel_warm.py) print their seconds per method
export ROPESHIFT_KERNEL_WARM_LOG="${ROPESHIFT_KERNEL_WARM_LOG:-1}"
MPS=1 OLD_RUNS=/nonexistent BASE_TGZ=${BASE_TGZ:-results/smollm2-135m_h100_2026-12-05.tgz} WORKERS=3 BATCH_TOKENS=${BATCH_TOKENS:-640000} \
  OUT="$OUT" LIMIT=$(( LIMIT - ($(date +%s) - start) )) bash scripts/gpu_study_call.sh
