"""benchmarks/bench_eval.py --records: samples/s and the whole study's time from stored records' seconds.
Run: pytest tests/eval/test_bench_eval_records.py -v"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_eval", ROOT / "benchmarks" / "bench_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(root: Path, task: str, method: str, length: int, seconds: list[float], rank: int = 0, kind="generation"):
    d = root / "m" / task.replace(":", "_") / method.replace("@", "_")
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{length}.w{rank}.jsonl", "a") as f:
        for i, s in enumerate(seconds):
            rec = {"kind": kind, "model": "m", "task": task, "length": length, "index": i + 100 * rank,
                   "method": method, "prompt_hash": f"h{i}", "score": 1.0, "seconds": s}
            if kind == "likelihood":
                rec.update(nll=1.0, n_scored=10)
            f.write(json.dumps(rec) + "\n")
    # prompts are never records
    (root / "m" / "_prompts" / task).mkdir(parents=True, exist_ok=True)
    (root / "m" / "_prompts" / task / f"{length}.jsonl").write_text('{"header": {}}\n')


def test_costs_per_cell_and_writer(bench, tmp_path):
    _write(tmp_path, "passkey", "rope", 1024, [0.5, 0.5], rank=0)
    _write(tmp_path, "passkey", "rope", 1024, [1.0], rank=1)
    cells, ranks = bench.record_costs(tmp_path)
    assert cells == {("passkey", "rope", 1024): [3, 2.0, "generation"]}
    assert ranks == {0: 1.0, 1: 1.0}


def test_timeline(bench, tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("# start 100.0\n101 0 0\n110 0 1\n120 5 1\n130 9 1\n140 9 1\n")
    assert bench.read_timeline(p) == {"start": 100.0, "loop": 110.0, "last": 130.0, "records": 9}
    p.write_text("# start 100.0\n101 0 0\n105 0 0\n120 5 0\n")  # one process: no _progress files
    assert bench.read_timeline(p)["loop"] == 105.0


def test_extrapolate_sources(bench, tmp_path):
    fresh = {("a", "rope", 1024): [2, 1.0, "generation"],      # complete at samples=2
             ("a", "string", 1024): [1, 1.0, "generation"]}    # partial
    base = {("a", "rope", 1024): [2, 4.0, "generation"],       # fresh is 4x cheaper per sample here
            ("a", "rope", 2048): [2, 8.0, "generation"],
            ("b", "rope", 1024): [2, 6.0, "likelihood"],
            ("a", "string", 2048): [2, 2.0, "generation"]}
    cells = [("a", "rope", 1024), ("a", "string", 1024), ("a", "rope", 2048), ("b", "rope", 1024),
             ("a", "dca", 2048), ("c", "rope", 1024)]
    est, missing = bench.extrapolate(fresh, base, cells, samples=2)
    assert est[("a", "rope", 1024)] == (1.0, "measured")
    assert est[("a", "string", 1024)] == (2.0, "scaled")
    # no fresh cell at 2048: the ratio over every generation cell both hold (1.0 / 4.0)
    assert est[("a", "rope", 2048)] == (pytest.approx(2.0), "baseline x 0.25")
    assert est[("b", "rope", 1024)] == (pytest.approx(6.0), "baseline x 1.00")  # no fresh likelihood cell
    # the baseline lacks a/dca/2048: its other methods' mean there ((8 + 2) / 4 per sample), times the ratio
    assert est[("a", "dca", 2048)] == (pytest.approx(2 * 2.5 * 0.25), "baseline (other methods) x 0.25")
    assert missing == [("c", "rope", 1024)]


def test_records_report_end_to_end(bench, tmp_path):
    fresh, base = tmp_path / "fresh", tmp_path / "base"
    _write(fresh, "passkey", "rope", 1024, [0.1] * 4)
    _write(fresh, "passkey", "string", 1024, [0.1] * 4, rank=1)
    for m in ("rope", "string"):
        _write(base, "passkey", m, 1024, [0.4] * 4)
        _write(base, "vt", m, 1024, [0.8] * 4)
    tl = tmp_path / "t.tsv"
    tl.write_text("# start 0\n1 0 0\n10 0 1\n11 4 1\n12 8 1\n")
    text = bench.records_report(fresh, base, tl, "ruler-lite", tasks=("passkey", "vt"), methods=("rope", "string"),
                                lengths=(1024,), samples=4)
    assert "8 records, 0.8 process-seconds, 2 writer(s)" in text
    assert "concurrency C = 0.40" in text  # 0.8 process-seconds over 2 s of loop
    assert "| passkey | 8 | 10.00 | 10.00 | 10.00 | 4.0 |" in text
    assert "passkey 4.00x" in text
    # vt from the baseline at the generation ratio 0.25: 2 x 4 x 0.8 x 0.25 = 1.6 process-s, + passkey 0.8 = 2.4
    assert "process-seconds 2.4 (measured cells 0.8, partial cells scaled 0.0, from the baseline's costs 1.6; 0 cells copied" in text
    assert "evaluation loop at C = 0.40: 6 s; + 10 s start-up (as measured) = 16 s" in text
    assert "target 5 GPU-minutes: met" in text


def test_live_cell_scores_a_likelihood_task_with_its_evaluate(bench, tok, tiny_llama):
    """The live path (a model, no --records) runs perplexity through ``evaluate`` (it compared the task's kind
    with a stale name, "loglik", and sent perplexity samples to generate())."""
    import math

    from ropeshift.eval.tasks import TaskOptions, resolve_task

    task = resolve_task("perplexity:single")
    samples = task.make_samples(tok, 128, 3, 0, TaskOptions(haystack="pydoc"))
    secs, scores, new_tokens = bench.run_cell(task, tiny_llama, tok, samples, batch_size=2, stop=True)
    direct = [r["score"] for r in task.evaluate(tiny_llama, tok, sorted(samples, key=lambda s: s.index))]
    assert secs > 0 and new_tokens == [] and len(scores) == 3
    assert all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(scores, direct))


def test_cells_exactly_rope_cost_nothing_in_the_estimate(bench, tmp_path):
    """STRING with shift 1500 is exactly RoPE at 1k, not at 2k: with a rope row its 1k cell is copied (0 s)."""
    for method, params in (("rope", {}), ("string", {"shift": 1500, "window": 128, "logit_scale": 1.0})):
        d = tmp_path / "m" / "a" / method
        d.mkdir(parents=True)
        for length in (1024, 2048):
            (d / f"{length}.w0.jsonl").write_text(json.dumps(
                {"kind": "generation", "model": "m", "task": "a", "length": length, "index": 0, "method": method,
                 "method_name": method, "params": params, "prompt_hash": "h", "score": 1.0, "seconds": 1.0}) + "\n")
    settings = bench.method_settings(tmp_path)
    assert settings["string"] == ("string", {"shift": 1500, "window": 128, "logit_scale": 1.0})
    copied = bench.copied_cells(settings, ("rope", "string"), (1024, 2048))
    assert copied == {("string", 1024)}
    assert bench.copied_cells(settings, ("string",), (1024, 2048)) == set()  # no rope row: nothing to copy
    fresh, _ = bench.record_costs(tmp_path)
    cells = [("a", m, n) for m in ("rope", "string") for n in (1024, 2048)]
    est, _ = bench.extrapolate(fresh, {}, cells, 1, copied)
    assert est[("a", "string", 1024)] == (0.0, "copied")
    assert est[("a", "string", 2048)] == (1.0, "measured") and est[("a", "rope", 1024)] == (1.0, "measured")
