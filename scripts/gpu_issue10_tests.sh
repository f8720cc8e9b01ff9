#!/usr/bin/env bash
# Issue 10, fourteenth session, a device call on the machine the study call left warm (no carry: the wheels
# are installed, the model joined; see scripts/gpu_env.sh), runs the evaluation tests that
# need CUDA and had not run on a GPU since their code changed (merged answer-budget buckets, cut_batches,
# perplexity's stride, make_samples' token counts), with the rest of tests/eval beside them.
# Run: source scripts/gpu_env.sh; OUT=$OUT LIMIT=300 bash scripts/gpu_issue10_tests.sh   (files back: tests.log; tests/eval took >140 s on 8 workers)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 150
run_tests $((LIMIT - 10)) 5 tests/eval
echo "done in $(( $(date +%s) - start )) s"
