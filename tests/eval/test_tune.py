"""``ropeshift tune``: search spaces, successive halving within its budget, split hygiene, the settings file.

Run: pytest tests/eval/test_tune.py -v
"""
from __future__ import annotations

import json
import math

import pytest
import torch

import ropeshift
from ropeshift.api import model_info
from ropeshift.eval.records import iter_records, read_jsonl
from ropeshift.eval.runner import RunConfig, prepare_samples
from ropeshift.eval.tune import Split, TuneConfig, check_disjoint, default_lengths, heldout_hashes
from ropeshift.eval.tune_search import Budget, halving_plan
from ropeshift.eval.tune_space import SPACES, allowed_params, candidates, parse_grid, space_for
from ropeshift.settings import method_settings, write_settings

TUNABLE = [m for m in SPACES.names() if m != "longrope"]


@pytest.mark.parametrize("method", TUNABLE)
def test_settings_round_trip_into_apply(method, tiny_llama, tmp_path):
    info = model_info(tiny_llama)
    cands, _ = candidates(method, space_for(method), info)
    assert cands[0].default and len(cands) > 1
    chosen = cands[-1]
    path = write_settings(tmp_path / "s.json", method, chosen.resolved)
    saved = json.loads(path.read_text())[method]
    try:
        ropeshift.apply(tiny_llama, config=path)
        via_file = ropeshift.describe(tiny_llama)
        ropeshift.remove(tiny_llama)
        ropeshift.apply(tiny_llama, method, **saved)  # the documented equivalent
        via_kwargs = ropeshift.describe(tiny_llama)
    finally:
        ropeshift.remove(tiny_llama)
    assert via_file["method"] == method and via_file == via_kwargs
    shown = via_file["params"]
    assert {k: shown[k] for k in saved} == {k: list(v) if isinstance(v, tuple) else v for k, v in saved.items()}


def test_config_keywords_win_and_multi_entry_files_need_a_name(tiny_llama, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"string": {"shift": 200, "window": 16}, "rerope": {"window": 100}}))
    with pytest.raises(ValueError, match="holds settings for string, rerope; pass the method name"):
        ropeshift.apply(tiny_llama, config=path)
    try:
        ropeshift.apply(tiny_llama, "string", config=path, window=32)
        assert ropeshift.describe(tiny_llama)["params"]["shift"] == 200
        assert ropeshift.describe(tiny_llama)["params"]["window"] == 32
    finally:
        ropeshift.remove(tiny_llama)
    with pytest.raises(ValueError, match="no settings for 'dca'"):
        method_settings(path, "dca")
    with pytest.raises(FileNotFoundError, match="settings file not found"):
        ropeshift.apply(tiny_llama, config=tmp_path / "missing.json")


def test_spaces_cover_every_method_with_parameters():
    from ropeshift.methods.registry import METHODS

    # plain's one parameter is logit_scale, searched only when asked (--logit-scales)
    assert set(SPACES.names()) == {n for n in METHODS.names() if set(allowed_params(n)) - {"logit_scale"}}
    for name in SPACES.names():
        for axis in SPACES[name].axes:
            assert axis.name in allowed_params(name), (name, axis.name)


def test_space_errors_name_the_parameter():
    with pytest.raises(ValueError, match="string has no parameter shfit; parameters are: shift, window"):
        space_for("string", "shfit=0.2")
    with pytest.raises(KeyError, match="Did you mean: string"):
        space_for("strng")
    with pytest.raises(ValueError, match="yarn has no parameter logit_scale"):
        space_for("yarn", logit_scales=(1.0, 1.1))
    with pytest.raises(ValueError, match="bad axis"):
        parse_grid("shift")
    assert parse_grid("shift=0.25,512;leaky=none,16") == {"shift": (0.25, 512), "leaky": (None, 16)}


def test_candidates_are_concrete_and_include_the_paper_default():
    from ropeshift.methods.base import ModelInfo

    info = ModelInfo("llama", 8192, "default", 64, 64)
    cands, dropped = candidates("string", space_for("string", "shift=0.33,0.25;window=128,4096"), info)
    assert cands[0].default and cands[0].resolved["shift"] == round(0.33 * 8192) and cands[0].resolved["window"] == 128
    assert [c.params for c in cands[1:]] == [{"shift": 2048, "window": 128}]  # 0.33/128 is the default: not twice
    assert len(dropped) == 2 and all("W must be < shift S" in reason for _, reason in dropped)
    yarn, _ = candidates("yarn", space_for("yarn"), info)
    assert yarn[0].default and yarn[0].params == {"factor": 1.5, "train_length": 5461}  # fair protocol


def test_halving_plan_keeps_the_budget():
    for n in (1, 2, 5, 20, 40):
        for cells in (1, 3, 9):
            for eta in (2, 3, 4):
                for budget in (50, 200, 1000, 5000):
                    try:
                        plan = halving_plan(n, cells, budget, eta)
                    except ValueError as e:
                        assert "too small" in str(e)
                        continue
                    assert plan.cost <= budget
                    bigger = halving_plan(n, cells, 10**9, eta)
                    assert [r.candidates for r in plan.rungs] == [r.candidates for r in bigger.rungs]
                    counts = [r.candidates for r in plan.rungs]
                    assert counts[0] == n and all(b == math.ceil(a / eta) for a, b in zip(counts, counts[1:]))
                    assert all(b.samples == eta * a.samples for a, b in zip(plan.rungs, plan.rungs[1:]))
                    # the next rung-0 size would not fit: the plan uses the budget
                    k = plan.rungs[0].samples
                    assert plan.cost * (k + 1) // k > budget
    with pytest.raises(ValueError, match="needs 52; raise --budget"):
        halving_plan(20, 1, 10, 3)
    assert Budget.parse("300s") == Budget(300, seconds=True) and Budget.parse("2000") == Budget(2000)
    with pytest.raises(ValueError, match="--budget"):
        Budget.parse("lots")


def test_splits_must_differ():
    base = dict(model="m", method="string", budget=Budget(100))
    with pytest.raises(ValueError, match="--heldout-tasks must differ"):
        TuneConfig(**base, tuning=Split(("passkey",), 1, "pydoc"), heldout=Split(("passkey",), 2, "kjv"))
    with pytest.raises(ValueError, match="--heldout-seed must differ"):
        TuneConfig(**base, tuning=Split(("passkey",), 1, "pydoc"), heldout=Split(("vt",), 1, "kjv"))
    with pytest.raises(ValueError, match="--heldout-haystack must differ"):
        TuneConfig(**base, tuning=Split(("passkey",), 1, "pydoc"), heldout=Split(("vt",), 2, "pydoc"))
    assert default_lengths(8192) == (4096, 6144, 8192)


def test_check_disjoint_catches_a_shared_prompt(tok, tmp_path):
    from ropeshift.eval.options import MethodSpec

    held = RunConfig(model="tiny", tasks=("passkey",), lengths=(256,), methods=(MethodSpec("rope"),), samples=2,
                     seed=3, out=tmp_path, workers=1)
    prepare_samples(held, tok, progress=False)
    hashes = heldout_hashes(held)
    assert len(hashes) == 2
    check_disjoint({"0" * 16}, held)
    with pytest.raises(RuntimeError, match="1 held-out prompts were also tuning prompts"):
        check_disjoint({next(iter(hashes))}, held)


def test_tune_end_to_end_on_a_tiny_model(tok, tiny_llama, tmp_path, capsys):
    """The CLI on a saved tiny Llama: budget kept, held-out prompts never tuned on, settings load into apply."""
    from ropeshift.cli.main import main

    folder = tmp_path / "tiny-llama"
    tiny_llama.save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "tune"
    code = main(["tune", "--model", str(folder), "--device", "cpu", "--method", "string",
                 "--grid", "shift=0.25,0.5;window=16", "--budget", "10", "--eta", "2",
                 "--tasks", "passkey", "--lengths", "192", "--haystack", "pydoc", "--seed", "11",
                 "--heldout-tasks", "number_string", "--heldout-lengths", "256", "--heldout-haystack", "noise",
                 "--heldout-seed", "12", "--heldout-samples", "2", "--batch-size", "8", "--out", str(out),
                 "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "settings x samples per cell: 3 x 2 -> 2 x 4 (1 cells, eta 2): 10 samples" in printed.err
    assert "| length | n | rope % | default % | tuned % |" in printed.out
    tuning = list(iter_records(out / "tuning"))
    heldout = list(iter_records(out / "heldout"))
    assert 0 < len(tuning) <= 10                                   # the budget, in scored samples
    assert {r["seed"] for r in tuning} == {11} and {r["task"] for r in tuning} == {"passkey"}
    assert {r["seed"] for r in heldout} == {12} and {r["task"] for r in heldout} == {"number_string"}
    assert {r["prompt_hash"] for r in tuning}.isdisjoint({r["prompt_hash"] for r in heldout})
    assert {r["method"] for r in heldout} >= {"rope", "string"}
    trace = json.loads((out / "tiny-llama-string-tune.json").read_text())
    assert trace["cost"]["samples"] == len(tuning) and len(trace["rounds"]) == 2
    settings = out / "tiny-llama-string.json"
    saved = json.loads(settings.read_text())["string"]
    assert saved["train_length"] == 512 and saved == trace["winner"]["params"]
    ids = torch.tensor([tok("The grass is green. " * 30)["input_ids"][:150]])
    try:
        ropeshift.apply(tiny_llama, config=settings)
        assert ropeshift.describe(tiny_llama)["params"] == saved
        with torch.no_grad():
            via_file = tiny_llama(ids).logits
        ropeshift.apply(tiny_llama, "string", **saved)
        with torch.no_grad():
            via_kwargs = tiny_llama(ids).logits
    finally:
        ropeshift.remove(tiny_llama)
    torch.testing.assert_close(via_file, via_kwargs, rtol=0, atol=0)
    rungs = [read_jsonl(p) for p in (out / "tuning").rglob("192.w*.jsonl") if "_prompts" not in p.parts]
    assert max(len(r) for r in rungs) == 4 and min(len(r) for r in rungs) == 2  # survivors scored more prompts


class _FakeHarness:
    """Stands in for the runner: each label has a fixed score; ``run`` counts the new samples it would score."""

    def __init__(self, monkeypatch, quality: dict[str, float], seconds_per_sample: float = 0.0):
        import ropeshift.eval.tune_search as ts

        self.done: dict[str, int] = {}
        self.calls: list[tuple[str, int]] = []
        self.clock = 0.0
        self.quality, self.rate = quality, seconds_per_sample
        monkeypatch.setattr(ts, "run", self.run)
        monkeypatch.setattr(ts, "prepare_samples", lambda *a, **k: None)
        monkeypatch.setattr(ts, "score_of", lambda cfg, label, n: (self.quality[label], {f"{label}-{n}"}))
        monkeypatch.setattr(ts.time, "perf_counter", lambda: self.clock)

    def run(self, cfg, model, tok, progress=True):
        (spec,) = cfg.methods
        cells = len(cfg.tasks) * len(cfg.lengths)
        new = (cfg.samples - self.done.get(spec.label, 0)) * cells
        self.done[spec.label] = cfg.samples
        self.calls.append((spec.label, cfg.samples))
        self.clock += new * self.rate
        return new


def _tiny_cands(n):
    from ropeshift.eval.tune_space import Candidate

    return [Candidate("string", {} if i == 0 else {"shift": 100 + i}, {}, i == 0) for i in range(n)]


def _cfg():
    from ropeshift.eval.options import MethodSpec

    return RunConfig(model="m", tasks=("passkey", "vt"), lengths=(256, 512), methods=(MethodSpec("rope"),), samples=1)


def test_halving_promotes_the_best_and_spends_exactly_the_plan(monkeypatch):
    from ropeshift.eval.tune_search import successive_halving

    cands = _tiny_cands(10)
    quality = {c.label: (0.5 if c.default else 0.1 * (i % 7)) for i, c in enumerate(cands)}
    fake = _FakeHarness(monkeypatch, quality)
    search, hashes = successive_halving(_cfg(), None, None, cands, Budget(500), eta=3, log=lambda m: None)
    plan = search.plan
    assert [r.candidates for r in plan.rungs] == [10, 4, 2] and plan.cost <= 500
    assert search.samples == plan.cost and fake.clock == 0
    assert [len(r) for r in search.rounds] == [10, 4, 2]
    assert search.winner == cands[6].label  # quality 0.6, the best
    assert set(search.rounds[1]) == {cands[i].label for i in (6, 5, 0, 4)}  # 0.6, 0.5, default 0.5, 0.4
    assert hashes


def test_seconds_budget_stops_between_settings(monkeypatch):
    from ropeshift.eval.tune_search import successive_halving

    cands = _tiny_cands(9)
    quality = {c.label: 0.1 * i for i, c in enumerate(cands)}
    fake = _FakeHarness(monkeypatch, quality, seconds_per_sample=1.0)
    search, _ = successive_halving(_cfg(), None, None, cands, Budget(150, seconds=True), eta=3, log=lambda m: None)
    assert fake.calls[0] == (cands[0].label, 1)  # the default measures the rate on one prompt per cell
    assert search.samples <= 150 and fake.clock <= 150
    assert search.winner == cands[-1].label
    fake2 = _FakeHarness(monkeypatch, quality, seconds_per_sample=1.0)
    monkeypatch.setattr("ropeshift.eval.tune_search.halving_plan",
                        lambda n, cells, budget, eta: halving_plan(n, cells, budget * 10, eta))  # a wrong rate guess
    search, _ = successive_halving(_cfg(), None, None, cands, Budget(150, seconds=True), eta=3, log=lambda m: None)
    assert search.stopped and search.stopped.startswith("time budget reached")
    assert len(search.rounds) == 1 and 0 < len(search.rounds[0]) < len(cands)  # rung 0 partly done: it decides
    assert search.winner == max(search.rounds[0], key=search.rounds[0].get)
    assert fake2.clock <= 150 + 100  # overshoot: at most one setting's share of a rung


def test_slow_first_samples_fall_back_to_the_cheapest_plan(monkeypatch):
    from ropeshift.eval.tune_search import successive_halving

    cands = _tiny_cands(9)
    fake = _FakeHarness(monkeypatch, {c.label: 0.1 * i for i, c in enumerate(cands)}, seconds_per_sample=1.0)
    search, _ = successive_halving(_cfg(), None, None, cands, Budget(10, seconds=True), eta=3, log=lambda m: None)
    assert search.plan.rungs[0].samples == 1 and search.stopped  # no error: the cheapest plan, stopped in time
    assert search.winner in search.rounds[0] and fake.clock <= 10 + 4


def test_seconds_budget_rate_leaves_out_the_warm_up(monkeypatch):
    """The plan's rate comes from the default's second prompt per cell (the first carries compilation and graph
    warm-up); a resumed search whose default needs no new prompt takes its stored records' seconds instead."""
    from ropeshift.eval import tune_search as ts

    cands = _tiny_cands(9)
    quality = {c.label: 0.1 * i for i, c in enumerate(cands)}
    fake = _FakeHarness(monkeypatch, quality, seconds_per_sample=1.0)
    real_run = fake.run

    def warm_run(cfg, model, tok, progress=True):  # the very first samples cost 30x (compilation)
        first = not fake.calls
        before = fake.clock
        n = real_run(cfg, model, tok, progress)
        if first:
            fake.clock = before + 30 * (fake.clock - before)
        return n

    monkeypatch.setattr(ts, "run", warm_run)
    logs = []
    search, _ = ts.successive_halving(_cfg(), None, None, cands, Budget(400, seconds=True), eta=3, log=logs.append)
    assert fake.calls[:2] == [(cands[0].label, 1), (cands[0].label, 2)]
    assert "measured 1.00 samples/s" in logs[0]  # not 1/30
    assert search.plan.cost > 100 and not search.stopped

    fake2 = _FakeHarness(monkeypatch, quality, seconds_per_sample=1.0)
    real_run2 = fake2.run

    def resumed_run(cfg, model, tok, progress=True):  # the default's first two prompts per cell are stored
        if cfg.methods[0].label == cands[0].label and cfg.samples <= 2:
            fake2.done[cands[0].label] = 2
            return 0
        return real_run2(cfg, model, tok, progress)

    monkeypatch.setattr(ts, "run", resumed_run)
    monkeypatch.setattr(ts, "stored_seconds", lambda cfg, label, n: 0.5)
    logs = []
    ts.successive_halving(_cfg(), None, None, cands, Budget(400, seconds=True), eta=3, log=logs.append)
    assert "measured 2.00 samples/s" in logs[0]


def test_stored_seconds_reads_the_first_prompts_of_every_cell(tmp_path):
    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.records import Record, record_path, write_atomic
    from ropeshift.eval.tune_search import stored_seconds

    cfg = RunConfig(model="m", tasks=("passkey", "vt"), lengths=(256,), methods=(MethodSpec("rope"),), samples=1,
                    out=tmp_path)
    for task, secs in (("passkey", (1.0, 3.0, 50.0)), ("vt", (2.0, None, 50.0))):
        recs = [Record("generation", "m", task, 256, i, "lab", f"h{i}", 1.0, seconds=s).to_dict()
                for i, s in enumerate(secs)]
        write_atomic(record_path(tmp_path, "m", task, "lab", 256, "w0"), recs)
    assert stored_seconds(cfg, "lab", 2) == pytest.approx(2.0)  # 1, 3, 2 (prompts 0-1; no time: left out)
    assert stored_seconds(cfg, "other", 2) is None
