#!/usr/bin/env bash
# One device call for issue 10: (a) finish the 2026-12-02 ruler-lite study (its records restored from
# .gpu/records.tgz = results/smollm2-135m_h200_2026-12-02.tgz; only cwe has cells left: 1,169 samples), then
# (b) a FRESH full ruler-lite study in the remaining time, to time the whole study with the CUDA-graph decode
# loop (eval/graph_decode.py), and the throughput table from its records (benchmarks/bench_eval.py --records).
#
# Device call (the last of scripts/gpu_env.sh's model calls: carry [.model1, .whl, .gpu]; earlier parts in /root/m):
#   source scripts/gpu_env.sh; OUT=$OUT LIMIT=560 bash scripts/gpu_study_call.sh
# Local side first: mkdir -p .gpu && cp results/smollm2-135m_h200_2026-12-02.tgz .gpu/records.tgz
#
# $OUT gets 6 files (the device returns at most 8):
#   records.tgz        the 2026-12-02 study resumed with (a): folder study/ (all of ruler-lite once cwe is done)
#   reports.tgz        its reports (report/ with plots + HTML, report_ruler/ at RULER's 85.6 mark)
#   report.md          its report's markdown (headline first)
#   fresh_records.tgz  (b)'s records: folder fresh/ (a fresh run, as far as the time went)
#   throughput.md      (b)'s samples/s per task and method and the whole study's extrapolated time, then its
#                      batch log's phases per bucket and length (benchmarks/batch_profile.py)
#   logs.tgz           call.log, a_eval.log / b_eval.log (eval output), a.log / b.log (script output),
#                      timeline.tsv (records over time during (b)), gpu.csv (nvidia-smi every 0.5 s: utilization
#                      and memory in use), cpu.tsv (/proc/stat every 1 s), ps.log (the processes with the most CPU
#                      time every 5 s for 90 s), versions.txt, report_ruler.md
# The complete study's report for docs/results.md, once records.tgz is back (saved as results/smollm2-135m_h200_$D.tgz,
# D the call's date):
#   rm -rf /tmp/st && mkdir -p /tmp/st && tar xzf results/smollm2-135m_h200_$D.tgz -C /tmp/st && PYTHONPATH=src python -m ropeshift.cli.main report /tmp/st/study --out /tmp/st/report > docs/results_${D}_report.md
# (its PNGs are in /tmp/st/report: copy them to docs/img/$D/ and point the links there, as for 2026-12-02;
# report.md and reports.tgz in $OUT hold the same report as made on the device).
#
# Environment (defaults for the device call; the CPU check sets small ones):
#   OUT (required), LIMIT (560: the whole script's seconds; (b) gets what (a) left, minus RESERVE)
#   OLD_RUNS (/root/study: where gpu_env.sh restores the records), FRESH_RUNS (/root/fresh; a new name if taken)
#   WORK (/root/call: scratch), BASE_TGZ (.gpu/records.tgz: the pre-(a) records, the extrapolation's baseline)
#   A_LIMIT (150), A_TASKS (cwe), RESERVE (45: for stopping (b), the table and the archives)
#   WORKERS (6: the 2026-12-02 second session's, which ran 400000-token batches in ~15 GB per process; 8 would
#            put ~120 of 141 GB in use), BATCH_TOKENS (400000, as gpu_session.sh)
#   B_TASKS (the suite's), and SAMPLES / LENGTHS / METHODS (passed to both runs; the suite's when unset)
set -uo pipefail
OUT="${OUT:?set OUT}"
LIMIT="${LIMIT:-560}"
T0=$(date +%s)
OLD_RUNS="${OLD_RUNS:-/root/study}"
FRESH_RUNS="${FRESH_RUNS:-/root/fresh}"
WORK="${WORK:-/root/call}"
BASE_TGZ="${BASE_TGZ:-.gpu/records.tgz}"
A_LIMIT="${A_LIMIT:-150}"
A_TASKS="${A_TASKS:-cwe}"
RESERVE="${RESERVE:-45}"
export WORKERS="${WORKERS:-6}" BATCH_TOKENS="${BATCH_TOKENS:-400000}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT" "$WORK"
say() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$WORK/call.log"; }

# (a) resume the old study, cwe only: eval (time-limited), reports of the whole study, records.tgz
if [ -f "$OLD_RUNS/smollm2-135m/run.json" ]; then
  say "(a) resume $OLD_RUNS: TASKS=$A_TASKS WORKERS=$WORKERS LIMIT=$A_LIMIT"
  RUNS="$OLD_RUNS" OUT="$WORK/a" TASKS="$A_TASKS" LIMIT="$A_LIMIT" bash scripts/gpu_eval.sh > "$WORK/a.log" 2>&1
  say "(a) done: $(grep -h 'eval exit status' "$WORK/a/eval.log" 2>/dev/null)"
  grep -h -A30 '^## Headline' "$WORK/a/report.md" 2>/dev/null | head -24
  cp "$WORK/a/records.tgz" "$WORK/a/reports.tgz" "$WORK/a/report.md" "$OUT"/ 2>/dev/null
else
  say "(a) SKIPPED: no restored records at $OLD_RUNS (carry .gpu with records.tgz; gpu_env.sh unpacks it)"
fi

# (b) a fresh full study under the remaining time, records counted every 2 s
B_LIMIT=$((LIMIT - ($(date +%s) - T0) - RESERVE))
[ -e "$FRESH_RUNS" ] && FRESH_RUNS="${FRESH_RUNS}_$(date +%H%M%S)"
if [ "$B_LIMIT" -ge 30 ]; then
  say "(b) fresh study in $FRESH_RUNS: WORKERS=$WORKERS BATCH_TOKENS=$BATCH_TOKENS LIMIT=$B_LIMIT"
  mkdir -p "$FRESH_RUNS"
  (
    echo "# start $(date +%s.%N)"
    while :; do  # <epoch s> <records so far> <evaluation loop started: a rank's _progress file exists>
      n=$(timeout 10 sh -c "find '$FRESH_RUNS' -name '*.jsonl' -not -path '*/_prompts/*' -not -path '*/_batches/*' -print0 | xargs -0 -r cat | wc -l")
      loop=0; compgen -G "$FRESH_RUNS/*/_progress/*/rank*.json" > /dev/null && loop=1
      [ -n "$n" ] && echo "$(date +%s.%N) $n $loop"
      sleep 2
    done
  ) > "$WORK/timeline.tsv" 2>/dev/null &
  sampler=$!
  # the card every 0.5 s: <time>, <% of the period a kernel ran>, <MiB in use> (idle share and memory headroom)
  smi=""
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
      > "$WORK/gpu.csv" 2>/dev/null &
    smi=$!
  fi
  # the host's CPUs every second (/proc/stat's first line: jiffies user nice system idle iowait ...) and, for the
  # first 90 s, the processes that used the most CPU time every 5 s: what the start-up's processes contend for
  ( while :; do echo "$(date +%s.%N) $(head -1 /proc/stat)"; sleep 1; done ) > "$WORK/cpu.tsv" 2>/dev/null &
  cpus=$!
  ( for _ in $(seq 18); do sleep 5; echo "# $(date +%s.%N)"
      ps -eo pid,ppid,time,etimes,args --sort=-time 2>/dev/null | head -45 | cut -c1-160; done ) > "$WORK/ps.log" 2>&1 &
  pss=$!
  RUNS="$FRESH_RUNS" OUT="$WORK/b" TASKS="${B_TASKS:-}" LIMIT="$B_LIMIT" REPORT=0 bash scripts/gpu_eval.sh \
    > "$WORK/b.log" 2>&1
  sleep 2; kill "$sampler" $smi $cpus $pss 2>/dev/null; wait "$sampler" $smi $cpus $pss 2>/dev/null
  [ -s "$WORK/gpu.csv" ] && say "(b) card: $(awk -F', *' '{n++; u+=$2; if ($2 < 50) low++; if ($3 > m) m = $3}
    END {if (n) printf "%d samples, utilization mean %.1f %%, %.1f %% of samples under 50 %%, most memory %d MiB", n, u / n, 100 * low / n, m}' "$WORK/gpu.csv")"
  say "(b) done: $(grep -h 'eval exit status' "$WORK/b/eval.log" 2>/dev/null)"
  # the tail: from the last batch's end (the batch logs' latest "t") to the command's exit (gpu_eval.sh's "ended at")
  end=$(grep -ho 'ended at [0-9.]*' "$WORK/b/eval.log" 2>/dev/null | tail -1 | awk '{print $3}')
  last=$(cat "$FRESH_RUNS"/*/_batches/rank*.jsonl 2>/dev/null | "$PYTHON" -c \
    'import json, sys; print(max((json.loads(l)["t"] for l in sys.stdin if l.strip()), default=""))' 2>/dev/null)
  [ -n "$end" ] && [ -n "$last" ] && say "(b) tail: $(awk "BEGIN {printf \"%.1f\", $end - $last}") s from the last batch's end to the command's exit"
  cp "$WORK/b/records.tgz" "$OUT/fresh_records.tgz" 2>/dev/null
  base=()
  if [ -f "$BASE_TGZ" ]; then
    rm -rf "$WORK/base" && mkdir -p "$WORK/base" && tar xzf "$BASE_TGZ" -C "$WORK/base" \
      && base=(--baseline "$WORK/base/$(tar tzf "$BASE_TGZ" | head -1 | cut -d/ -f1)")
  fi
  narrow=()
  [ -n "${B_TASKS:-}" ] && narrow+=(--tasks "$B_TASKS")
  [ -n "${METHODS:-}" ] && narrow+=(--methods "$METHODS")
  [ -n "${LENGTHS:-}" ] && narrow+=(--lengths "$LENGTHS")
  [ -n "${SAMPLES:-}" ] && narrow+=(--samples "$SAMPLES")
  PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" benchmarks/bench_eval.py --records "$FRESH_RUNS" \
    "${base[@]}" --timeline "$WORK/timeline.tsv" --suite "${SUITE:-ruler-lite}" "${narrow[@]}" \
    > "$OUT/throughput.md" 2> "$WORK/throughput.err" || say "throughput table failed: $(tail -3 "$WORK/throughput.err")"
  { echo; echo "## Batch log (benchmarks/batch_profile.py)"; echo
    PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" benchmarks/batch_profile.py --records "$FRESH_RUNS"
  } >> "$OUT/throughput.md" 2>> "$WORK/throughput.err"
  cat "$OUT/throughput.md"
else
  say "(b) SKIPPED: $B_LIMIT s left"
fi

# logs: one archive
for f in a/eval.log:a_eval.log b/eval.log:b_eval.log b/versions.txt:versions.txt a/versions.txt:versions.txt \
         a/report_ruler.md:report_ruler.md; do
  [ -f "$WORK/${f%%:*}" ] && cp "$WORK/${f%%:*}" "$WORK/${f##*:}"
done
say "total $(($(date +%s) - T0)) s of LIMIT=$LIMIT"
(cd "$WORK" && tar czf "$OUT/logs.tgz" --ignore-failed-read call.log a.log b.log a_eval.log b_eval.log \
  versions.txt report_ruler.md timeline.tsv gpu.csv cpu.tsv ps.log throughput.err 2>/dev/null)
ls -la "$OUT"
