#!/usr/bin/env bash
# Where the evaluation's GPU time goes (issue 10 throughput): one study batch per method and task, timed by phase
# (benchmarks/profile_eval.py), then the decode-step host/GPU split (benchmarks/profile_decode.py).
# Run on the GPU machine after `source scripts/gpu_env.sh`:  OUT=/path bash scripts/gpu_profile.sh
set -uo pipefail
OUT="${OUT:?set OUT}"
mkdir -p "$OUT"
CELLS="${CELLS:-niah_single_1:8k passkey:8k cwe:8k niah_single_1:2k}"
METHODS="${METHODS:-string,rope,yarn,string+yarn,rerope,self_extend,dca,lm_infinite}"
{
  python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
  first=1
  for spec in $CELLS; do
    python3 benchmarks/profile_eval.py --task "${spec%%:*}" --length "${spec##*:}" --methods "$METHODS" \
      --batch-tokens "${BATCH_TOKENS:-600000}" $( [ $first = 1 ] || echo --no-profile )
    first=0
  done
  python3 benchmarks/profile_decode.py --rows 73 --length 8k --steps 32 --methods rope,string,self_extend,dca
} 2>&1 | grep -v -E "FutureWarning|return forward_call|de-quantizing" | tee "$OUT/profile.log"
