"""benchmarks/bench_prompt_phase.py: the prompt phase of a run (forked workers), its wall and the workers' CPU.
Run: pytest tests/eval/test_bench_prompt_phase.py -v"""
from __future__ import annotations


def test_prompt_phase_counts_every_job_and_the_workers_cpu(benchmarks_path, tok):
    import bench_prompt_phase

    got = bench_prompt_phase.measure(tok, ["passkey", "perplexity", "perplexity:single"], [256, 320], 2, workers=3,
                                     haystack="pydoc")
    assert got["cells"] == 6 and got["wall_s"] > 0 and got["workers_cpu_s"] > 0
