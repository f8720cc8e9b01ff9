#!/usr/bin/env bash
# Issue 10, twenty-ninth session: does writing the image's bytecode once (scripts/gpu_env.sh) make a process's imports
# faster on the GPU host? Times a fresh interpreter importing what a rank imports (torch, transformers' modeling
# utilities, the Llama model, ropeshift's evaluation) twice before and twice after the bytecode step, and the step.
# Needs no model. Run (one call, no carry):  bash scripts/gpu_bytecode_probe.sh
set -u
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
env | grep -E "^PYTHON(DONTWRITEBYTECODE|PYCACHEPREFIX)=" || echo "PYTHONDONTWRITEBYTECODE and PYTHONPYCACHEPREFIX unset"
imports() {
  local t0; t0=$(date +%s.%N)
  python3 -c "import torch, transformers.modeling_utils, transformers.models.llama.modeling_llama, ropeshift.eval.runner"
  awk "BEGIN {printf \"%.2f s\", $(date +%s.%N) - $t0}"
}
purelib=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
n_py=$(find "$purelib" -name '*.py' | wc -l); n_pyc=$(find "$purelib" -name '*.pyc' | wc -l)
echo "$purelib: $n_py .py, $n_pyc .pyc before"
echo "imports before the bytecode step: $(imports), $(imports)"
source scripts/gpu_env.sh 2>&1 | grep bytecode
echo "$(find "$purelib" -name '*.pyc' | wc -l) .pyc after"
echo "imports after the bytecode step: $(imports), $(imports)"
