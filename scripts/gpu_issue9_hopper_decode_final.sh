#!/usr/bin/env bash
# Issue 9, eighth session, last call: the Hopper (Gluon) decode's final timings and the CUDA tests not yet run
# against it.
#   1. decode at 64k and 128k, B = 1 and 8, every method beside our plain decode, the Hopper decode (default) and
#      the Triton split kernel ("[triton]"): CUDA graphs replayed in interleaved rounds;
#   2. GPU tests: the dynamic-cache paths that now take the Hopper decode (padding cache, bad inputs, API errors)
#      and the static / K1 / graph paths that must not.
# Run: OUT=$OUT LIMIT=420 bash scripts/gpu_issue9_hopper_decode_final.sh   (files back: all.tgz; summary printed)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 420
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== decode 64k / 128k, interleaved rounds ($(left) s left)"
timeout "$(cap 150 220)" python3 benchmarks/bench_attention.py --no-prefill --no-compose --decode-lengths 64k,128k \
  --decode-batches 1,8 --decode-variants triton --methods string,rerope,rerope_leaky,self_extend,dca,lm_infinite \
  --budget "$(cap 140 230)" --md "$OUT/decode.md" > "$OUT/decode.log" 2>&1
grep "^| " "$OUT/decode.md" | grep -v "^| D \|^|---"
grep -i "error\|failed" "$OUT/decode.log" | head -5

echo "== tests ($(left) s left)"
run_tests 220 5 tests/test_padding_cache_gpu.py tests/test_bad_inputs.py tests/test_api_errors.py \
  tests/test_static_decode.py tests/eval/test_graph_decode.py tests/kernels/test_decode_static.py \
  tests/kernels/test_decode_k1.py tests/kernels/test_k1_generate.py tests/kernels/test_decode_hopper.py
echo "done in $(( $(date +%s) - start )) s"
(cd "$OUT" && tar czf /tmp/all.tgz --exclude=all.tgz . && find . -type f ! -name versions.txt -delete && mv /tmp/all.tgz .)
