#!/usr/bin/env bash
# Issue 10, fourteenth session, a device call on the machine the study call left warm (no carry: the wheels
# are installed, the model joined; see scripts/gpu_env.sh), runs the evaluation tests that
# need CUDA and had not run on a GPU since their code changed (merged answer-budget buckets, cut_batches,
# perplexity's stride, make_samples' token counts), with the rest of tests/eval beside them.
# Run: source scripts/gpu_env.sh; OUT=$OUT LIMIT=300 bash scripts/gpu_issue10_tests.sh   (files back: tests.log; tests/eval took >140 s on 8 workers)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 150
# the files whose tests run on CUDA come first (a capped run reaches them; tests/eval after them adds the rest once)
run_tests $((LIMIT - 10)) 5 tests/eval/test_graph_decode.py tests/eval/test_graph_decode_memory.py \
  tests/eval/test_dense_compile.py tests/eval/test_row_compaction.py tests/eval/test_parallel.py tests/eval/test_runner.py \
  tests/eval/test_generation.py tests/eval/test_cli_report.py tests/eval/test_tune.py tests/eval/test_perplexity.py tests/eval
echo "done in $(( $(date +%s) - start )) s"
