#!/usr/bin/env bash
# Issue 9, eighth session: the Hopper (Gluon) decode for re-rotated far keys without K1 (kernels/_decode_hopper.py).
#   1. GPU tests: the new kernel against the fp64 reference (every served table, tile edges, GQA 1-16, padding),
#      the decode and table-attention grids (which now route their served cases to it), model.generate on CUDA;
#   2. decode at 64k and 128k, B = 1 and 8: every method beside our plain decode, the Hopper decode (default) and
#      the Triton split kernel ("[triton]") interleaved in one run;
#   3. Nsight Compute at 64k, B = NCU_BATCH (default 8), per method of NCU_METHODS (default: rerope self_extend
#      dca; "plain" = our plain decode): time, instructions, DRAM throughput, stalls.
# Run: OUT=$OUT LIMIT=560 [VARIANTS=triton] [DECODE_ONLY=1] [NCU_BATCH=8] [NCU_METHODS="..."] \
#        bash scripts/gpu_issue9_hopper_decode.sh
#   (files back: all.tgz, or decode.md / decode.log with DECODE_ONLY=1 (step 1 only); the summary is printed)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 560
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== decode 64k / 128k, Hopper decode vs Triton split kernel ($(left) s left)"
rest=280
[ "${DECODE_ONLY:-0}" = 1 ] && rest=5
timeout "$(cap 100 "$rest")" python3 benchmarks/bench_attention.py --no-prefill --no-compose --decode-lengths 64k,128k \
  --decode-batches 1,8 --decode-variants "${VARIANTS:-triton}" --methods string,rerope,rerope_leaky,self_extend,dca \
  --budget "$(cap 90 $((rest + 10)))" --md "$OUT/decode.md" > "$OUT/decode.log" 2>&1
grep "^| " "$OUT/decode.md" | grep -v "^| D \|^|---"
grep -i "error\|failed" "$OUT/decode.log" | head -5

[ "${DECODE_ONLY:-0}" = 1 ] && { echo "done in $(( $(date +%s) - start )) s"; exit 0; }

echo "== tests ($(left) s left)"
run_tests 250 110 tests/kernels/test_decode_hopper.py tests/kernels/test_decode.py tests/test_generate_gpu.py \
  tests/kernels/test_table_attention.py

echo "== ncu, 64k B = ${NCU_BATCH:-8}, the decode per method ($(left) s left)"
for m in ${NCU_METHODS:-rerope self_extend dca}; do
  timeout "$(cap 40 5)" ncu --nvtx --nvtx-include "profile/" --metrics \
    gpu__time_duration.sum,smsp__inst_executed.sum,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio \
    --csv python3 benchmarks/profile_kernel.py --method $m --n 64k --decode --batch "${NCU_BATCH:-8}" > "$OUT/ncu_$m.csv" 2> "$OUT/ncu_$m.err"
  ncu_table "$OUT/ncu_$m.csv" "$m" | grep -v combine | cut -c1-170
done
echo "done in $(( $(date +%s) - start )) s"
(cd "$OUT" && tar czf /tmp/all.tgz --exclude=all.tgz . && find . -type f ! -name versions.txt -delete && mv /tmp/all.tgz .)
