#!/usr/bin/env bash
# CUDA-graph decode (issue 10): the static-decode and graph-loop tests on CUDA, then the benchmark
# (benchmarks/bench_graph_decode.py: model.generate vs the graph loop, SmolLM2-135M bf16, passkey 4k and
# niah_single_1 8k, rope(plain)/string/self_extend, then an fp32 equality cell for string). About 3.5 minutes on
# a fresh machine (Triton compiles; the model load is ~30 s); each step has a time limit, so the whole stays under 4.
# Run on the GPU machine after `source scripts/gpu_env.sh`:  OUT=/path bash scripts/gpu_graph_probe.sh
# Results: $OUT/graph_probe.log (everything), $OUT/graph_decode.md (the tables).
set -uo pipefail
OUT="${OUT:?set OUT}"
mkdir -p "$OUT"
{
  python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
  echo "== tests (CUDA) $(date +%T)"
  # the graph-loop tests (gpu-marked ones: capture + replay vs model.generate and vs eager steps) and the
  # model-level static decode through the kernels; the kernel's key_end grid (tests/kernels/test_decode_static.py,
  # ~2 min of Triton compilation on a fresh machine; passed on an H200) is left out for time
  timeout 55 python3 -m pytest -q -p no:cacheprovider tests/eval/test_graph_decode.py \
    tests/kernels/test_static_decode_model.py
  echo "== benchmark $(date +%T)"
  timeout 175 python3 benchmarks/bench_graph_decode.py --out "$OUT/graph_decode.md" --fp32-cell passkey:4k \
    ${BENCH_ARGS:-}
  echo "== done $(date +%T)"
} 2>&1 | grep --line-buffered -v -E "FutureWarning|return forward_call|de-quantizing" | tee "$OUT/graph_probe.log"
