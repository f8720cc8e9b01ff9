"""benchmarks/estimate_buckets.py: the retire schedule it prices and the batches it replays.
Run: pytest tests/eval/test_estimate_buckets.py -v"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def est(benchmarks_path):
    import estimate_buckets
    return estimate_buckets


def test_a_row_reads_its_keys_until_the_check_after_its_end(est):
    """Checks after the prefill (token 1), after the 2 warm-up steps (token 3), then every 4 (7, 11, ...): a row
    ended at token e reads its keys in the forwards before the first check at or after e."""
    assert [est.retired_after(e) for e in (1, 2, 3, 4, 7, 8, 11, 12)] == [0, 2, 2, 6, 6, 10, 10, 14]


def test_merged_buckets_cut_fewer_batches_and_forwards(est):
    """One rank, one length: 4 NIAH rows (128 budget, ending at 40) and 4 passkey rows (6, ending at 5). With 6
    rows a batch, power-of-4 buckets cut 4 NIAH + 4 passkey, merged 6 + 2 (the passkey tail stops at its end): the
    same forwards. With 8, merged is one batch: the passkey batch's forwards are gone, and its rows read their keys
    until the check after their end (token 7: one forward more than their own batch, which stopped at 6)."""
    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.runner import RunConfig
    from ropeshift.eval.tasks import resolve_task

    tasks = {name: resolve_task(name) for name in ("niah_single_1", "passkey")}
    recs = {(name, "rope", 1024, i): (1000, end) for name, end in (("niah_single_1", 40), ("passkey", 5))
            for i in range(4)}
    got = {}
    for rows, merged in ((6, False), (6, True), (8, False), (8, True)):
        cfg = RunConfig(model="m", tasks=tuple(tasks), lengths=(1024,), methods=(MethodSpec("rope"),), samples=4,
                        batch_tokens=rows * 1024)
        cut = list(est.batches(recs, tasks, cfg, 1, merged))
        priced = [est.price(r, 1024) for _, _, r in cut]
        got[rows, merged] = ([len(r) for _, _, r in cut], sum(f for f, _ in priced), sum(k for _, k in priced))
    assert got[6, False] == ([4, 4], 42 + 5, 4 * 42 * 1024 + 4 * 5 * 1024) == got[8, False]
    assert got[6, True] == ([6, 2], 42 + 5, 4 * 42 * 1024 + 2 * 6 * 1024 + 2 * 5 * 1024)
    assert got[8, True] == ([8], 42, 4 * 42 * 1024 + 4 * 6 * 1024)


def test_replay_batches_counts_whole_chunks_and_the_refill_floor(benchmarks_path):
    """benchmarks/replay_batches.py: 2 ranks, one length, 10 NIAH rows (ends 40, one at its budget 128) and 10
    passkey rows (ends 5), 4 rows a batch: whole 4-row chunks (NIAH first) -> 5 batches; each decodes to its
    longest row; the refill floor packs every row's own steps into 4-row batches."""
    import replay_batches

    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.runner import RunConfig
    from ropeshift.eval.tasks import resolve_task

    tasks = {name: resolve_task(name) for name in ("niah_single_1", "passkey")}
    recs = {("niah_single_1", "rope", 1024, i): (1000, 128 if i == 0 else 40) for i in range(10)}
    recs.update({("passkey", "rope", 1024, i): (1000, 5) for i in range(10)})
    cfg = RunConfig(model="m", tasks=tuple(tasks), lengths=(1024,), methods=(MethodSpec("rope"),), samples=10,
                    batch_size=4)
    got = replay_batches.replay(recs, tasks, cfg, workers=2)[1024]
    assert got["batches"] == 5 and got["rows"] == 20
    # chunks of 4 by budget: NIAH 4 (one at 128) | NIAH 4 | NIAH 2 + passkey 2 | passkey 4 | passkey 4
    assert got["steps"] == 128 + 40 + 40 + 5 + 5
    assert got["row_steps"] == 128 + 9 * 40 + 10 * 5
    assert got["refill_steps"] == -(-(128 + 9 * 40 + 10 * 5) // 4)
    # refilling within each rank's one entry: between the packed floor and the whole batches' steps
    assert got["refill_steps"] <= got["entry_refill_steps"] <= got["steps"]
    # a slot takes the next row as soon as its own row ends; the loop lasts until the last slot is done
    assert replay_batches.refill_loop_steps([128, 40, 40, 40, 40], 4) == 128
    assert replay_batches.refill_loop_steps([10] * 5, 2) == 30 and replay_batches.refill_loop_steps([7], 4) == 7
    assert replay_batches.refill_loop_steps([], 4) == 0
