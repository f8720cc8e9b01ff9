#!/usr/bin/env bash
# Issue 10, fourteenth session, a device call (carry [.modelN, .whl]; see scripts/gpu_env.sh for the
# three-part model): keeps the carried model part in /root/m for the next call, then runs the evaluation tests that
# need CUDA and had not run on a GPU since their code changed (merged answer-budget buckets, cut_batches,
# perplexity's stride, make_samples' token counts), with the rest of tests/eval beside them.
# Run: source scripts/gpu_env.sh; OUT=$OUT LIMIT=200 bash scripts/gpu_issue10_tests.sh   (files back: tests.log)
set -uo pipefail
mkdir -p /root/m && cp .model*/part_* /root/m/ 2>/dev/null && echo "model parts copied to /root/m: $(ls /root/m)"
source "$(dirname "$0")/gpu_lib.sh" 200
run_tests 190 5 tests/eval
echo "done in $(( $(date +%s) - start )) s"
