#!/usr/bin/env bash
# Issue 10, third session, one H200 call (~9 min): what row compaction and bigger batches do to the study's
# throughput.
#   1. GPU tests of the decode loop (graph capture with and without compaction, the memory test);
#   2. benchmarks/bench_graph_decode.py --compaction: the loop with and without row compaction on the same
#      study batches (the NIAH + cwe bucket at 8k and 4k, vt / kv_retrieval at 8k), rope and string;
#   3. a FRESH ruler-lite study in the remaining time with fewer, larger batches (WORKERS=3 processes,
#      BATCH_TOKENS=800000 each instead of 6 x 400000: each rank gets 1/world of a cell, so fewer ranks hold
#      bigger batches and decode fewer steps), timed by scripts/gpu_study_call.sh's step (b) and priced by
#      benchmarks/bench_eval.py --records against the complete 2026-12-03 study (.gpu/records.tgz).
# Device call (the last of scripts/gpu_env.sh's model calls: carry [.model1, .whl, .gpu]; earlier parts in /root/m):
#   source scripts/gpu_env.sh; OUT=$OUT LIMIT=560 bash scripts/gpu_issue10_call.sh
# Local side first: cp results/smollm2-135m_h200_2026-12-03.tgz .gpu/records.tgz
# Files back: tests.log, compaction.md, compaction.log, throughput.md, fresh_records.tgz, logs.tgz
set -uo pipefail
OUT="${OUT:?set OUT}"
LIMIT="${LIMIT:-560}"
T0=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
mkdir -p "$OUT"

echo "== tests ($(left) s left)"
timeout 70 python3 -m pytest -q -p no:cacheprovider tests/eval/test_graph_decode.py tests/eval/test_row_compaction.py \
  tests/eval/test_graph_decode_memory.py -rs > "$OUT/tests.log" 2>&1
tail -3 "$OUT/tests.log"; grep -E "^FAILED|^ERROR" "$OUT/tests.log" | head

echo "== compaction on / off ($(left) s left)"
timeout "${COMPACT_LIMIT:-110}" python3 benchmarks/bench_graph_decode.py --compaction --methods rope,string \
  --repeats 1 --out "$OUT/compaction.md" > "$OUT/compaction.log" 2>&1
grep "^|" "$OUT/compaction.md" 2>/dev/null || tail -5 "$OUT/compaction.log"

echo "== fresh study ($(left) s left)"
OLD_RUNS=/nonexistent WORKERS="${WORKERS:-3}" BATCH_TOKENS="${BATCH_TOKENS:-800000}" LIMIT="$(( $(left) - 5 ))" \
  OUT="$OUT" bash scripts/gpu_study_call.sh > "$OUT/study_call.log" 2>&1
tail -30 "$OUT/study_call.log"
echo "done in $(( $(date +%s) - T0 )) s"
