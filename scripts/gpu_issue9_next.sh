#!/usr/bin/env bash
# Issue 9, the next call after the fifth session (no model file needed):
#   1. GPU tests of what the fifth session changed after its last call (the K1 OOM fallback, the never-read-slot
#      test, the _rotary / _prologue split): kernels and the static-decode loops;
#   2. decode at 64k, B = 1 and 8, with K1 now including the kernel's slot write (bench_attention's K1 columns);
#   3. prefill at 32k, D = 128, every method in the default tile order and with EDGE_FIRST (a program's edge
#      tiles first, then a main loop without the edge path; compiled here: main loop 630-669 SASS instructions
#      against the merged loop's 1,294, but 32 PRMT per iteration in one of the two consumer warpgroups), to
#      decide whether it becomes the default;
#   4. Nsight Compute, full set with source counters, of one 32k prefill call each of plain (our causal) and
#      string: where the two-region Hopper kernel's ~1.15x per tile goes (warp stalls per SASS line of the
#      consumer loop, the loader's K / K1 choice, the k1 slot handshake). Reports: $OUT/ncu_{plain,string}.ncu-rep
#      (open with ncu-ui, or `ncu --import FILE --page source --csv`).
# Run: OUT=$OUT LIMIT=540 bash scripts/gpu_issue9_next.sh   (files back: all.tgz; the summary is printed)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 540
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

echo "== tests ($(left) s left)"
run_tests 150 380 tests/kernels/test_hopper.py tests/kernels/test_prologue_trim.py tests/kernels/test_decode.py \
  tests/kernels/test_decode_k1.py tests/kernels/test_k1_generate.py tests/kernels/test_static_decode_model.py \
  tests/eval/test_graph_decode.py

echo "== decode 64k with K1 and its slot write ($(left) s left)"
timeout "$(cap 80 300)" python3 benchmarks/bench_attention.py --no-prefill --no-compose --decode-lengths 64k \
  --decode-batches 1,8 --decode-variants k1 --methods rerope,rerope_leaky,self_extend,dca \
  --budget "$(cap 70 310)" --md "$OUT/decode.md" > "$OUT/decode.log" 2>&1
grep "^| " "$OUT/decode.md" | grep -v "^| D \|^|---"

echo "== prefill 32k, default order and edge first ($(left) s left)"
timeout "$(cap 120 95)" python3 benchmarks/bench_attention.py --lengths 32k --dims 128 --no-decode --no-compose \
  --no-portable --extra-lengths "" --hopper-variants edgefirst --budget "$(cap 110 100)" --md "$OUT/prefill.md" \
  > "$OUT/prefill.log" 2>&1
grep "^| " "$OUT/prefill.md" | grep -v "^| D \|^|---"

echo "== ncu, full set with source, prefill 32k ($(left) s left)"
for m in plain string; do
  timeout "$(cap 85 5)" ncu --nvtx --nvtx-include "profile/" --set full --import-source yes \
    -o "$OUT/ncu_$m" python3 benchmarks/profile_kernel.py --method $m --n 32k > "$OUT/ncu_$m.log" 2>&1
  ncu --import "$OUT/ncu_$m.ncu-rep" --page details --csv 2>/dev/null \
    | grep -E '"Duration"|"Issue Slots Busy"|"Registers Per Thread"|"Achieved Occupancy"|"No Eligible"' \
    | sed "s/^/$m /" | cut -c1-220 | head -20
done
echo "done in $(( $(date +%s) - start )) s"
(cd "$OUT" && tar czf /tmp/all.tgz --exclude=all.tgz . && find . -type f ! -name versions.txt -delete && mv /tmp/all.tgz .)
