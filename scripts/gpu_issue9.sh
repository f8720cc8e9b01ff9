#!/usr/bin/env bash
# Issue 9 on one H200 in one call (~9 min): the Hopper kernel's GPU tests (its q1 variants) and generate() through
# the kernels vs the tiled path; the prefill table at 32k (D = 128 and 64; Hopper, portable, composed, q1 variants,
# interleaved rounds) and 128k (Hopper only); Nsight Compute on one 32k prefill call of plain / string / rerope and
# one 64k B = 8 decode call of plain / rerope; the decode table at 64k / 128k, B = 1 / 8.
# Stages in order of need, each under its own timeout (the 128k table gets what is left).
# Also copies the model's first half to /root/m when .model1 is carried (the next call assembles the model).
# Run: OUT=$OUT LIMIT=560 bash scripts/gpu_issue9.sh      (files back: tests.log, bench*.md, *.log, ncu.tgz)
set -uo pipefail
OUT="${OUT:?set OUT}"
LIMIT="${LIMIT:-560}"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
start=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - start) )); }
cap() { local want=$1 l; l=$(( $(left) - ${2:-0} )); [ "$l" -lt "$want" ] && want=$l; [ "$want" -lt 1 ] && want=1; echo "$want"; }
[ -f .model1/part_aa ] && mkdir -p /root/m && cp .model1/part_aa /root/m/ && echo "model part 1 copied"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none}" | tee -a "$OUT/versions.txt"

echo "== tests ($(left) s left)"
timeout "$(cap 110 450)" python3 -m pytest -q -p no:cacheprovider -n 14 tests/kernels/test_hopper.py \
  tests/test_generate_gpu.py -rs 2>&1 | tail -40 | tee "$OUT/tests.log"

echo "== prefill 32k ($(left) s left)"
timeout "$(cap 150 300)" python3 benchmarks/bench_attention.py --lengths 32k --d64-lengths 32k --extra-lengths= \
  --no-decode --hopper-qrot column,prologue --budget "$(cap 135 315)" --md "$OUT/bench32k.md" 2>&1 \
  | tee "$OUT/bench32k.log" | tail -45

echo "== decode ($(left) s left)"
timeout "$(cap 75 220)" python3 benchmarks/bench_attention.py --no-prefill --decode-lengths 64k,128k \
  --decode-batches 1,8 --budget "$(cap 65 230)" --md "$OUT/bench_decode.md" 2>&1 | tee "$OUT/bench_decode.log" | tail -30

echo "== ncu ($(left) s left)"
mkdir -p /root/ncu
SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy
  --section LaunchStats --section SchedulerStats --section WarpStateStats --section InstructionStats --section SourceCounters"
prof() {  # name, then profile_kernel.py arguments
  local name=$1; shift
  [ -z "$NCU" ] && return
  timeout "$(cap 32 20)" "$NCU" --nvtx --nvtx-include "profile/" $SECTIONS --import-source no -f -o "/root/ncu/$name" \
    python3 benchmarks/profile_kernel.py "$@" > "/root/ncu/$name.run.log" 2>&1
  "$NCU" -i "/root/ncu/$name.ncu-rep" --page details > "/root/ncu/$name.txt" 2>&1
  "$NCU" -i "/root/ncu/$name.ncu-rep" --page source --print-source sass --csv > "/root/ncu/$name.sass.csv" 2>&1
  grep -E "Duration|Registers Per|Spill|Achieved Occupancy|Warp Cycles Per Issued|Issue Slots Busy|Compute \(SM\) Thr" \
    "/root/ncu/$name.txt" | head -24 | sed "s/^/$name: /"
}
prof prefill_plain_32k --method plain --n 32k
prof prefill_string_32k --method string --n 32k
prof prefill_rerope_32k --method rerope --n 32k
prof decode_plain_64k_b8 --method plain --n 64k --decode --batch 8
prof decode_rerope_64k_b8 --method rerope --n 64k --decode --batch 8
tar czf "$OUT/ncu.tgz" -C /root ncu 2>/dev/null

echo "== prefill 128k, Hopper only ($(left) s left)"
[ "$(left)" -gt 60 ] && timeout "$(cap 200 10)" python3 benchmarks/bench_attention.py --lengths 128k --d64-lengths= --extra-lengths= \
  --no-decode --no-portable --no-compose --hopper-qrot column,prologue \
  --methods string,rerope,rerope_leaky,self_extend,dca --budget "$(cap 190 20)" \
  --md "$OUT/bench128k.md" 2>&1 | tee "$OUT/bench128k.log" | tail -30
echo "done in $(( $(date +%s) - start )) s"
