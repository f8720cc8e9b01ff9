#!/usr/bin/env bash
# Issue 9, fifth session, second call (no model file needed): the K1 cache with the step's slot written by the
# decode kernel itself (no separate launch per layer and step; ``key_cache.kernel_writes_slot``).
#   1. GPU tests of the K1 path, the static-decode model loop and the graph decode loop;
#   2. end to end at 32k (bench_generate --graphs --k1-variants): rerope, self_extend, dca with K1 off and on in
#      the same run, against SDPA;
#   3. decode at 64k and 128k, B = 1 and 8, the re-rotating methods with and without K1, interleaved;
#   4. Nsight Compute at 64k B = 8: the split and combine kernels of rerope and dca with K1 (the first call had
#      dca [k1] 1.051x plain against rerope [k1] 1.006x with the same kernel path).
# Run: OUT=$OUT LIMIT=400 bash scripts/gpu_issue9_k1_fused.sh   (files back: all.tgz; the summary is printed)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 400
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== tests ($(left) s left)"
run_tests 110 270 tests/kernels/test_decode_k1.py tests/kernels/test_k1_generate.py \
  tests/kernels/test_static_decode_model.py tests/eval/test_graph_decode.py

echo "== end to end, K1 off / on ($(left) s left)"
LIMIT="$(cap 110 160)" bash scripts/gpu_e2e.sh --methods rerope,self_extend,dca --k1-variants > /dev/null 2>&1
grep "^| 32k" "$OUT/e2e.log"

echo "== decode 64k / 128k with / without K1 ($(left) s left)"
timeout "$(cap 100 60)" python3 benchmarks/bench_attention.py --no-prefill --no-compose --decode-lengths 64k,128k \
  --decode-batches 1,8 --decode-variants k1 --methods rerope,rerope_leaky,self_extend,dca \
  --budget "$(cap 90 70)" --md "$OUT/decode.md" > "$OUT/decode.log" 2>&1
grep "^| " "$OUT/decode.md" | grep -v "^| D \|^|---"

echo "== ncu, 64k B = 8 with K1 ($(left) s left)"
for m in rerope dca plain; do
  timeout "$(cap 25 5)" ncu --nvtx --nvtx-include "profile/" --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --csv python3 benchmarks/profile_kernel.py --method $m --n 64k --decode --batch 8 --k1 > "$OUT/ncu_$m.csv" 2>&1
  ncu_table "$OUT/ncu_$m.csv" "$m"
done
echo "done in $(( $(date +%s) - start )) s"
(cd "$OUT" && tar czf /tmp/all.tgz --exclude=all.tgz . && find . -type f ! -name versions.txt -delete && mv /tmp/all.tgz .)
