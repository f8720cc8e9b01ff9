#!/usr/bin/env bash
# Issue 9, fifth session, first call (no model file needed):
#   1. GPU tests of the decode kernels (the q1 rows now merged in the split kernel), the K1 path (the fourth
#      session's three test fixes were not re-run on a GPU) and the graph decode loop;
#   2. decode at 64k, B = 1 and 8: every re-rotating method with and without K1, each with the in-kernel row
#      merge (default) and without it ("[nomerge]"), beside our plain decode, interleaved in one run;
#   3. Nsight Compute, kernel by kernel (gpu__time_duration): decode 64k B = 1 for plain / string / rerope with
#      K1 (split vs combine kernel), prefill 32k for self_extend / dca (prologue vs main kernel);
#   4. end to end at 32k (bench_generate --graphs --k1-variants): rerope and self_extend with K1 off and on in
#      the same run, against SDPA.
# Run: OUT=$OUT LIMIT=420 bash scripts/gpu_issue9_merge.sh   (at commit 5ef1395: the nomerge variant and the
#   unmerged layout were removed after this call measured them, benchmarks/RESULTS.md)
#   (files back: versions.txt, tests.log, decode.md/.log, ncu_*.csv, e2e.log)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 420
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== tests ($(left) s left)"
run_tests 100 300 tests/kernels/test_decode.py tests/kernels/test_decode_static.py tests/kernels/test_decode_k1.py \
  tests/kernels/test_k1_generate.py tests/eval/test_graph_decode.py

echo "== decode 64k, merge / nomerge x K1 ($(left) s left)"
timeout "$(cap 110 190)" python3 benchmarks/bench_attention.py --no-prefill --no-compose --decode-lengths 64k \
  --decode-batches 1,8 --decode-variants k1,nomerge --methods string,rerope,rerope_leaky,self_extend,dca \
  --budget "$(cap 100 200)" --md "$OUT/decode.md" > "$OUT/decode.log" 2>&1
grep "^| " "$OUT/decode.md" | grep -v "^| D \|^|---"

echo "== ncu, kernel by kernel ($(left) s left)"
ncu_one() {  # name, then profile_kernel.py arguments
  local name=$1
  shift
  timeout "$(cap 25 100)" ncu --nvtx --nvtx-include "profile/" --metrics gpu__time_duration.sum --csv \
    python3 benchmarks/profile_kernel.py "$@" > "$OUT/ncu_$name.csv" 2> "$OUT/ncu_$name.err"
  echo "-- $name"
  grep '"gpu__time_duration.sum"' "$OUT/ncu_$name.csv" | awk -F'","' '{print $5 " | " $(NF)}' | cut -c1-150
}
ncu_one dec_plain --method plain --n 64k --decode --k1
ncu_one dec_string --method string --n 64k --decode --k1
ncu_one dec_rerope_k1 --method rerope --n 64k --decode --k1
ncu_one pre_self_extend --method self_extend --n 32k
ncu_one pre_dca --method dca --n 32k

echo "== end to end, K1 off / on ($(left) s left)"
LIMIT="$(cap 160 3)" bash scripts/gpu_e2e.sh --methods rerope,self_extend --k1-variants > /dev/null 2>&1
grep "^| 32k" "$OUT/e2e.log"
echo "done in $(( $(date +%s) - start )) s"
