"""benchmarks/estimate_prefix_sharing.py: repeated prefill work, counted by hand on small rows.
Run: pytest tests/eval/test_estimate_prefix_sharing.py -v"""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="module")
def est(benchmarks_path):
    import estimate_prefix_sharing
    return estimate_prefix_sharing


def test_shared_prefixes_count_each_prefix_once(est):
    """Sorted: [1,2,3,4] (first, 0), [1,2,3,9] (3 with it), [1,2,7] (2), [5,6] (0), whatever the input order."""
    rows = [[1, 2, 7], [5, 6], [1, 2, 3, 9], [1, 2, 3, 4]]
    assert est.shared_prefixes(rows) == [2, 0, 3, 0]
    distinct = {tuple(r[:k]) for r in rows for k in range(1, len(r) + 1)}  # the prefix tree's nodes
    assert sum(len(r) - s for r, s in zip(rows, est.shared_prefixes(rows))) == len(distinct)


def test_flops_sum_positions_and_their_keys(est):
    """Positions 2, 3, 4: 3 linear units and 3 + 4 + 5 visible keys."""
    assert est.flops(2, 5, 10.0, 1.0) == 3 * 10.0 + (3 + 4 + 5)
    assert est.flops(0, 4, 0.0, 1.0) + est.flops(4, 6, 0.0, 1.0) == est.flops(0, 6, 0.0, 1.0)


def test_shape_flops_of_a_llama_config(est):
    """SmolLM2-135M's shape: 30 layers of 576 wide, 9 x 64 query and 3 x 64 key heads, MLP 1536."""
    cfg = SimpleNamespace(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                          intermediate_size=1536, head_dim=64)
    linear, attention = est.shape_flops(cfg)
    assert linear == 2 * 30 * (576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536)
    assert attention == 4 * 576 * 30


def test_estimate_takes_the_larger_bound_and_skips_copied_cells(est):
    """Two rows sharing 3 tokens; method a is RoPE below T = 4, copied from rope at length 8 (left out there);
    each row's last position is never skipped."""
    cells = {("t", 6): [[1, 2, 3, 4, 5, 6], [1, 2, 3, 7, 8, 9]], ("t", 8): [[1] * 8]}
    got = est.estimate(cells, ["rope", "a"], {"rope": set(), "a": {8}}, {"rope": 0, "a": 4}, 1.0, 0.0)
    assert got["rope"]["total"] == 6 + 6 + 8
    assert got["rope"]["shared"] == 3           # the 8-token row is alone in its cell: it shares nothing
    assert got["a"]["total"] == 12 and got["a"]["rope"] == 4 + 4
    assert got["a"]["shared"] == 3 and got["a"]["both"] == 4 + 4


def test_method_params_read_from_records(est, tmp_path):
    """A records folder, and the same as a .tgz: one generation file per method; likelihood records and batch
    logs ignored."""
    for task, method, params in (("passkey", "string", {"shift": 2703}), ("passkey", "rope", {}),
                                 ("perplexity", "yarn", {"factor": 2.0})):
        d = tmp_path / "m" / task / method
        d.mkdir(parents=True)
        r = {"model": "m", "task": task, "length": 8192, "index": 0, "method": method, "prompt_hash": "h",
             "score": 1.0, "method_name": method, "params": params}
        if task == "perplexity":
            r["nll"], r["n_scored"] = 3.0, 10   # a likelihood record of the format before ``kind`` (records.Record.from_dict)
        (d / "8192.w0.jsonl").write_text(json.dumps(r) + "\n")
    (tmp_path / "m" / "_batches").mkdir()
    (tmp_path / "m" / "_batches" / "rank0.jsonl").write_text("{}\n")
    want = {"rope": ("rope", {}), "string": ("string", {"shift": 2703})}
    assert est.method_params(tmp_path) == want
    import tarfile
    with tarfile.open(tmp_path / "r.tgz", "w:gz") as tar:
        tar.add(tmp_path / "m", arcname="fresh/m")
    assert est.method_params(tmp_path / "r.tgz") == want


def test_plan_flops_prices_shared_prefills_plan(est):
    """Donor [1,2,3,4,5,6] shares 4 with row b and 2 with row c (suffixes 2 and 4): one group computes 4 positions
    of each, two groups 2 and 4 (linear units only); nothing shared enough: the plain prefill."""
    rows = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 9, 9], [1, 2, 7, 7, 7, 7]]
    assert est.plan_flops(rows, 1, 1.0, 0.0, min_shared=1) == (6 + 4 + 4, 18)
    assert est.plan_flops(rows, 2, 1.0, 0.0, min_shared=1) == (6 + 2 + 4, 18)
    assert est.plan_flops(rows, 2, 1.0, 0.0) == (18, 18)   # shares under shared_prefill.MIN_SHARED tokens
    assert est.plan_flops([[1, 2, 3]], 2, 1.0, 0.0) == (3, 3)
