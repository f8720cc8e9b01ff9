"""benchmarks/solo_work.py: a study's batches priced at single-process rates, and the decode fit.
Run: pytest tests/eval/test_solo_work.py -v"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def solo(benchmarks_path):
    import solo_work
    return solo_work


def _gen(length, rows, steps, decode_steps, decode_s=1.0):
    return {"kind": "generation", "length": length, "rows": rows, "tokens": rows * length, "steps": steps,
            "decode_steps": decode_steps, "decode_s": decode_s}


def test_price_counts_each_part_by_hand(solo):
    """One 8k generation batch of 2 rows (ends 10 and 128 of 128 steps, 124 of them in the loop) and one 1k
    likelihood batch of 4 rows (2 documents x 5 windows of 1024 tokens)."""
    gen, lik = _gen(8192, 2, 128, 124), {"kind": "likelihood", "length": 1024, "rows": 4, "tokens": 4096}
    got = solo.price([gen, lik], [[10, 200], None])
    assert got["generation prefill"] == pytest.approx(2 * 8192 * 1.29e-6)
    assert got["likelihood"] == pytest.approx(2 * 5 * 1024 * 0.76e-6 * 1.06)
    assert got["decode, fixed part"] == pytest.approx(124 * 1.75e-3)
    kv = (10 + 128) * (124 / 128) * 8192 * (30 * 2 * 3 * 64 * 2)  # an end past the steps counts the steps
    assert got["decode, KV reads"] == pytest.approx(kv / (3.35e12 / 1.13))
    assert solo._near(solo.PREFILL_US, 5000) == solo.PREFILL_US[4096]


def test_fit_recovers_the_step_and_kv_costs(solo):
    """Batches whose decode seconds are exactly 20 ms a step + 0.5 s a KV TB give back those coefficients."""
    batches, ends = [], []
    for length, rows, steps, end in ((1024, 500, 128, 40), (8192, 70, 128, 128), (4096, 140, 64, 20),
                                     (8192, 70, 30, 10), (2048, 290, 100, 100)):
        b = _gen(length, rows, steps, steps - 2)
        e = [end] * rows
        b["decode_s"] = 0.02 * b["decode_steps"] + 0.5 * solo.kv_bytes(b, e) / 1e12
        batches.append(b)
        ends.append(e)
    batches.append({"kind": "likelihood", "length": 1024, "rows": 2, "tokens": 2048})
    ends.append(None)
    coef, r2, parts = solo.fit(batches, ends)
    assert coef == pytest.approx([0.02, 0.5], rel=1e-6) and r2 == pytest.approx(1.0)
    assert sum(parts) == pytest.approx(sum(b["decode_s"] for b in batches[:-1]))


def test_batches_find_their_rows_in_the_records(solo, tmp_path, tok, tiny_llama):
    """A tiny CPU study (2 methods; needle and passkey in shared batches, perplexity): every generation batch of
    the log gets one end per row, within its task's budget; likelihood batches get none."""
    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.runner import RunConfig, run
    from ropeshift.eval.tasks import TaskOptions

    cfg = RunConfig(model="tiny", tasks=("needle", "passkey", "perplexity"), lengths=(256,), samples=3,
                    out=tmp_path, batch_size=2, options=TaskOptions(depths=3),
                    methods=(MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16})))
    run(cfg, tiny_llama, tok, progress=False)
    batches, ends = solo.read_batches_and_ends(tmp_path, tok)
    gen = [(b, e) for b, e in zip(batches, ends) if b["kind"] == "generation"]
    assert gen and all(e is None for b, e in zip(batches, ends) if b["kind"] != "generation")
    assert sum(b["rows"] for b, _ in gen) == 2 * 2 * 3  # 2 tasks x 2 methods x 3 samples
    assert all(len(e) == b["rows"] and all(1 <= x <= 24 for x in e) for b, e in gen)
