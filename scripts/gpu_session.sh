#!/usr/bin/env bash
# One device call of the 2026-12-02 (second) session: the throughput check of one 8k batch per method (plain
# attention on), then the resumed ruler-lite study; returns <= 8 files under $OUT.
# Run after `source scripts/gpu_env.sh`:  OUT=$OUT LIMIT=380 bash scripts/gpu_session.sh
set -uo pipefail
OUT="${OUT:?set OUT}"
if [ "${PROFILE:-1}" = 1 ]; then
  timeout 200 python3 benchmarks/profile_eval.py --task niah_single_1 --length 8k --batch-tokens 400000 \
    --methods string,rope,yarn,self_extend,dca,lm_infinite --plain-attention ropeshift --no-profile 2>&1 \
    | grep -v -E "FutureWarning|return forward_call|de-quantizing|clean_up|inv_freq, scaling|new = cls" \
    | tee "$OUT/profile.log"
fi
RUNS=/root/study OUT=/root/out/s WORKERS="${WORKERS:-6}" LIMIT="${LIMIT:-380}" BATCH_TOKENS="${BATCH_TOKENS:-400000}" \
  bash scripts/gpu_eval.sh > /root/out_s.log 2>&1
tail -60 /root/out_s.log
cp /root/out/s/records.tgz /root/out/s/reports.tgz /root/out/s/eval.log /root/out/s/report.md "$OUT"/ 2>/dev/null
ls -la "$OUT"
