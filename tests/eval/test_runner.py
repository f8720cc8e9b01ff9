"""Runner, records and resume on a tiny random Llama. Run: pytest tests/eval/test_runner.py -v"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ropeshift.eval.options import MethodSpec
from ropeshift.eval.records import GENERATION, Appender, read_cell, read_jsonl, repair
from ropeshift.eval.runner import RunConfig, format_plan, run
from ropeshift.eval.tasks import TaskOptions

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def _cfg(tmp_path, **kw):
    base = dict(model="tiny", tasks=("needle", "passkey"), lengths=(256,),
                methods=(MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16})),
                samples=3, out=tmp_path, batch_size=2, options=TaskOptions(depths=3))
    base.update(kw)
    return RunConfig(**base)


def test_run_writes_records_and_resumes(tmp_path, tok, tiny_llama):
    cfg = _cfg(tmp_path)
    assert "12 samples to run" in format_plan(cfg)
    assert run(cfg, tiny_llama, tok, progress=False) == 2 * 2 * 3
    recs = {m: read_cell(tmp_path, "tiny", "needle", m, 256) for m in ("rope", "string-shift100-window16")}
    assert sorted(r["index"] for r in recs["rope"]) == [0, 1, 2]
    # all methods saw identical prompts
    assert [r["prompt_hash"] for r in sorted(recs["rope"], key=lambda r: r["index"])] == \
           [r["prompt_hash"] for r in sorted(recs["string-shift100-window16"], key=lambda r: r["index"])]
    r = recs["string-shift100-window16"][0]
    assert r["method_name"] == "string" and r["params"]["shift"] == 100 and r["params"]["window"] == 16
    for key in ("task", "length", "depth", "index", "seed", "haystack", "n_tokens", "prediction", "references", "score"):
        assert key in r
    assert r["haystack"] == "pydoc" and r["depth"] in (0.0, 50.0, 100.0)
    # rerun: nothing left to do, nothing duplicated
    assert run(cfg, tiny_llama, tok, progress=False) == 0
    assert "0 samples to run" in format_plan(cfg)
    # more samples: only the new ones run
    assert run(_cfg(tmp_path, samples=4), tiny_llama, tok, progress=False) == 2 * 2


def test_changed_prompts_are_refused(tmp_path, tok, tiny_llama):
    cfg = _cfg(tmp_path, tasks=("passkey",), lengths=(256,), methods=(MethodSpec("rope"),), samples=1)
    run(cfg, tiny_llama, tok, progress=False)
    with pytest.raises(ValueError, match="another prompt"):
        run(_cfg(tmp_path, tasks=("passkey",), lengths=(256,), methods=(MethodSpec("rope"),), samples=1, seed=5),
            tiny_llama, tok, progress=False)


def test_repair_cuts_a_torn_line(tmp_path):
    p = tmp_path / "r.jsonl"
    with Appender(p) as app:
        app.write({"index": 0})
        app.write({"index": 1})
    with open(p, "ab") as f:
        f.write(b'{"index": 2, "pred')
    assert [r["index"] for r in read_jsonl(p)] == [0, 1]
    assert repair(p) > 0
    with Appender(p) as app:
        app.write({"index": 2})
    assert [json.loads(line)["index"] for line in p.read_text().splitlines()] == [0, 1, 2]


def test_bad_config():
    with pytest.raises(ValueError, match="--samples"):
        RunConfig(model="m", tasks=("passkey",), lengths=(1024,), methods=(MethodSpec("rope"),), samples=0)
    with pytest.raises(KeyError, match="Did you mean"):
        RunConfig(model="m", tasks=("niah_singel_1",), lengths=(1024,), methods=(MethodSpec("rope"),), samples=1)


def _records(out: Path) -> list:
    return read_cell(out, "tiny", "passkey", "rope", 256)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tok, tiny_llama):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    n = 24
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    cmd = [sys.executable, str(HERE / "run_tiny.py")]
    proc = subprocess.Popen([*cmd, str(killed), str(n)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(_records(killed)) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(_records(killed))
    assert 3 <= partial < n
    subprocess.run([*cmd, str(killed), str(n)], env=env, check=True, capture_output=True)
    # the uninterrupted reference run, in-process on the same tiny model (same seed, same weights)
    run(RunConfig(model="tiny", tasks=("passkey",), lengths=(256,), methods=(MethodSpec("rope"),), samples=n,
                  out=clean), tiny_llama, tok, progress=False)
    resumed, reference = _records(killed), _records(clean)
    assert len(resumed) == len(reference) == n
    assert sorted(r["index"] for r in resumed) == list(range(n))
    by_index = {r["index"]: (r["prompt_hash"], r["prediction"]) for r in reference}
    assert all(by_index[r["index"]] == (r["prompt_hash"], r["prediction"]) for r in resumed)


def test_memory_cap_learns_from_a_split_and_cuts_later_batches():
    """3/4 of the tokens of the smallest failed batch, per kind and at every length, read again before each
    batch."""
    from ropeshift.eval.batching import MemoryCap

    cap = MemoryCap()
    assert cap.rows("generation", 1024) is None
    batches = [list(range(8)), list(range(8, 13)), [13]]
    out = []
    for b in cap.split(batches, 1024, "generation"):
        out.append(b)
        if len(out) == 1:
            cap.learn("generation", 6, 1024)  # 6 rows x 1024 failed: 4.5 x 1024 tokens from now on
    assert out == [list(range(8)), [8, 9, 10], [11, 12], [13]]  # 4 + 1 would leave a 1-row tail (fill_cuts)
    assert cap.rows("generation", 2048) == 2 and cap.rows("generation", 512) == 9
    assert cap.rows("likelihood", 1024) is None
    cap.learn("generation", 10, 1024)  # a larger failure does not loosen the bound
    assert cap.rows("generation", 1024) == 4
    cap.learn("generation", 4, 1024)  # a failure under the bound lowers it: 3 x 1024
    assert cap.rows("generation", 1024) == 3


def test_fill_cuts_leaves_no_one_row_tail_and_likelihood_batches_keep_documents_whole():
    """97 rows at most 48 a batch: 48 + 47 + 2 (not 48 + 48 + 1: a 1-row batch is a new compile); order kept.
    A likelihood entry is cut between documents (a document's protocols share its windows)."""
    from types import SimpleNamespace

    from ropeshift.eval.batching import cut_batches, fill_cuts
    from ropeshift.eval.tasks import resolve_task

    pieces = fill_cuts(list(range(97)), 48)
    assert [len(p) for p in pieces] == [48, 47, 2] and sum(pieces, []) == list(range(97))
    assert fill_cuts(list(range(6)), 6) == [list(range(6))] and fill_cuts([], 4) == [] and fill_cuts([7], 4) == [[7]]
    assert [len(p) for p in fill_cuts(list(range(10)), 4)] == [4, 4, 2]
    assert [len(p) for p in fill_cuts(list(range(5)), 0)] == [1] * 5
    tasks = {name: resolve_task(name) for name in ("perplexity", "perplexity:single")}
    rows = [(SimpleNamespace(n_tokens=300, index=i), name) for name in tasks for i in range(5)]
    batches = cut_batches(rows, tasks, 7, False)   # 10 rows, 7 a batch: 3 documents + 2, never one cut in two
    assert [[(s.index, name) for s, name in b] for b in batches] == [
        [(i, name) for i in range(3) for name in ("perplexity", "perplexity:single")],
        [(i, name) for i in range(3, 5) for name in ("perplexity", "perplexity:single")]]


def test_run_learns_the_memory_cap_after_one_split(tmp_path, tok, tiny_llama, monkeypatch):
    """After the first out-of-memory split, later batches (other methods, other lengths) come cut to the learned
    cap and never fail again; every sample still gets its record."""
    import torch

    from ropeshift.eval import generation
    from ropeshift.eval.batch_log import read_batches

    sizes = []

    def fake_generate(model, tokenizer, rows, max_new_tokens, stop=None, stats=None):
        sizes.append(len(rows))
        if len(rows) * max(len(r) for r in rows) > 600:  # "memory": 600 prompt tokens
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return ["x"] * len(rows)

    monkeypatch.setattr(generation, "generate", fake_generate)
    cfg = _cfg(tmp_path, tasks=("passkey",), lengths=(256, 200), samples=6, batch_size=6)
    assert run(cfg, tiny_llama, tok, progress=False) == 24
    lines = [b for b in read_batches(tmp_path) if b["kind"] != "startup"]
    failed = [b for b in lines if b.get("oom_splits")]
    assert len(failed) == 1 and failed[0]["rows"] == 6 and failed[0]["oom_rows"] == 3
    # 3 rows of ~256 tokens failed: at most 576 tokens a batch from then on, two rows at 256 and at 200
    assert [b["rows"] for b in lines if not b.get("oom_splits")] == [2] * 9
    assert sizes == [6, 3, 1, 2, 3, 1, 2] + [2] * 9  # the halves of the first batch, then no failed call


@pytest.mark.parametrize("method", [MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16})])
def test_batched_left_padding_matches_one_by_one(method, tmp_path, tok, tiny_llama):
    kw = dict(tasks=("math_find",), methods=(method,), samples=6)
    run(_cfg(tmp_path / "b1", batch_size=1, **kw), tiny_llama, tok, progress=False)
    run(_cfg(tmp_path / "b4", batch_size=6, **kw), tiny_llama, tok, progress=False)
    one, four = (sorted(read_cell(tmp_path / d, "tiny", "math_find", method.label, 256),
                        key=lambda r: r["index"]) for d in ("b1", "b4"))
    assert len({r["n_tokens"] for r in one}) > 1  # rows of different lengths, so the batch is padded
    assert [r["prediction"] for r in one] == [r["prediction"] for r in four]


def test_out_of_memory_splits_the_batch(monkeypatch):
    """A batch that does not fit is retried in halves; results keep the batch order."""
    import torch

    from ropeshift.eval import generation, runner

    sizes = []

    def fake_generate(model, tokenizer, rows, max_new_tokens, stop=None, stats=None):
        sizes.append(len(rows))
        if len(rows) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [f"p{r[0]}" for r in rows]

    class FakeTask:
        kind = GENERATION
        max_new_tokens = 4

        def score(self, sample, pred):
            return float(pred == f"p{sample.index}")

        def details(self, sample, pred):
            return {}

    class S:
        def __init__(self, i):
            self.index, self.prompt, self.add_special_tokens, self.references = i, str(i), False, (str(i),)

    monkeypatch.setattr(generation, "generate", fake_generate)
    monkeypatch.setattr(generation, "batch_prompt_ids", lambda tok, prompts, specials: [[int(p)] for p in prompts])
    batch = [S(i) for i in range(5)]
    preds, results = runner._run_batch([FakeTask()] * len(batch), None, None, batch)
    assert sizes == [5, 2, 3, 1, 2]
    assert preds == ["p0", "p1", "p2", "p3", "p4"]
    assert [r["score"] for r in results] == [1.0] * 5


@pytest.mark.parametrize("method", [MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16})])
def test_token_budget_batches_mixing_tasks_match_one_by_one(method, tmp_path, tok, tiny_llama, monkeypatch):
    """``batch_tokens``: rows of tasks with other answer budgets (passkey 6 and number_string 12, one bucket)
    share generate() calls, each row cut at its own budget and stop; every record equals the one-by-one run."""
    from ropeshift.eval import runner

    kw = dict(tasks=("needle", "passkey", "number_string"), methods=(method,), samples=3)
    run(_cfg(tmp_path / "b1", batch_size=1, **kw), tiny_llama, tok, progress=False)
    calls, real = [], runner._run_batch

    def spy(tasks, *args):
        calls.append(sorted({t.name for t in tasks}))
        return real(tasks, *args)

    monkeypatch.setattr(runner, "_run_batch", spy)
    run(_cfg(tmp_path / "bt", batch_tokens=10_000, **kw), tiny_llama, tok, progress=False)
    assert ["number_string", "passkey"] in calls and ["needle"] in calls  # one bucket shared a call, one did not
    for task in kw["tasks"]:
        one, mixed = (sorted(read_cell(tmp_path / d, "tiny", task, method.label, 256), key=lambda r: r["index"])
                      for d in ("b1", "bt"))
        assert len(one) == len(mixed) == 3
        assert [(r["prompt_hash"], r["prediction"], r["score"]) for r in one] == \
               [(r["prompt_hash"], r["prediction"], r["score"]) for r in mixed]


@pytest.fixture(scope="module")
def batch_profile_summary(benchmarks_path):
    import batch_profile
    return batch_profile.summarize


def test_batch_log_has_one_line_per_batch(tmp_path, tok, tiny_llama, monkeypatch, batch_profile_summary):
    """``_batches/rank0.jsonl``: one line per generate() / evaluate() call, its rows and tokens summing to the
    run's; the records readers skip the folder."""
    from ropeshift.eval.batch_log import read_batches
    from ropeshift.eval.records import iter_records

    from ropeshift.eval import runner

    released = []
    monkeypatch.setattr(runner, "release_cached_memory", lambda device: released.append(device))
    kw = dict(tasks=("passkey", "number_string", "perplexity"), methods=(MethodSpec("rope"),), samples=3,
              batch_tokens=512)
    assert run(_cfg(tmp_path, **kw), tiny_llama, tok, progress=False) == 9
    assert released == [tiny_llama.device]  # once: the run moved from its generation bucket to its likelihood one
    lines = read_batches(tmp_path)
    start = [b for b in lines if b["kind"] == "startup"]
    assert len(start) == 1 and set(start[0]["phases"]) >= {"prompts", "plan", "first batch"}
    assert start[0]["total_s"] == pytest.approx(sum(start[0]["phases"].values()), abs=0.01)
    table = batch_profile_summary(lines)
    lines = [b for b in lines if b["kind"] != "startup"]
    assert sum(b["rows"] for b in lines) == 9 and all(b["rows"] <= 2 for b in lines)  # 512 // 256 rows a call
    gen = [b for b in lines if b["kind"] == GENERATION]
    assert {t for b in gen for t in b["tasks"]} == {"passkey", "number_string"}
    assert sum(b["tasks"].get("passkey", 0) for b in gen) == 3
    for b in gen:
        model_s = b["generate_s"] if b["decode"] == "generate" else b["prefill_s"] + b["capture_s"] + b["decode_s"]
        assert b["decode"] == "generate"  # on the CPU: the CUDA-graph loop serves CUDA only
        assert b["steps"] >= 1 and b["wall_s"] >= model_s > 0 and b["tokenize_s"] >= 0 and b["post_s"] >= 0
        assert b["tokens"] > 0 and b["method"] == "rope" and b["length"] == 256 and b["rank"] == 0
    assert sum(b["tasks"] == {"perplexity": b["rows"]} for b in lines) == 2  # 2 + 1 rows
    recs = list(iter_records(tmp_path))
    assert len(recs) == 9
    # the summary over it: one row per bucket and length, the totals' rows and walls equal the log's
    assert "| rank | start-up s | " in table
    assert "| number_string+passkey | 256 |" in table and "| perplexity | 256 | 2 | 3 |" in table
    total = next(line for line in table.splitlines() if line.startswith("| **all**")).split("|")
    assert int(total[3]) == len(lines) and int(total[4]) == 9
    assert float(total[6]) == pytest.approx(sum(b["wall_s"] for b in lines), abs=0.1)
    # on the CPU no batch carries GPU memory, and the rank table says so; nothing compiled (no torch.compile here)
    assert not any("peak_gib" in b or "compile_s" in b for b in lines)
    rank_row = next(line for line in table.splitlines() if line.startswith("| 0 | "))
    assert rank_row.endswith("| - | - | - | 0.0 (0) |")


def test_batch_profile_measures_what_each_methods_first_batch_took_beyond_its_cell(benchmarks_path):
    """``first_batch_excess``: the first batch (by start) of each method and kind against its cell's median:
    the prefill of generation batches, the wall of likelihood ones; the total is the sum of the differences."""
    import batch_profile

    def b(method, kind, length, rank, start, measure):
        wall = 1.0 if kind == "generation" else measure
        return {"method": method, "kind": kind, "length": length, "rank": rank, "t": start + wall, "wall_s": wall,
                **({"prefill_s": measure} if kind == "generation" else {})}

    batches = [b("rope", "generation", 8, 0, 0.0, 4.0), b("rope", "generation", 8, 1, 5.0, 1.0),
               b("rope", "generation", 8, 2, 6.0, 1.0), b("rope", "generation", 4, 0, 9.0, 3.0),
               b("string", "likelihood", 8, 2, 1.0, 6.0), b("string", "likelihood", 8, 1, 7.0, 2.0),
               b("string", "likelihood", 8, 0, 8.0, 2.0)]
    total, rows = batch_profile.first_batch_excess(batches)
    assert rows == [("string", "likelihood", 8, 2, 6.0, 2.0), ("rope", "generation", 8, 0, 4.0, 1.0)]
    assert total == pytest.approx(7.0)
    logged = [{**x, "tasks": {"passkey": 1}, "rows": 1, "tokens": 8} for x in batches]  # as the batch log has them
    assert "beyond its cell's median: 7.0 rank-s" in batch_profile.summarize(logged)


def test_batch_profile_reports_each_ranks_memory_extremes(batch_profile_summary):
    """CUDA batches carry peak / reserved / free GiB (``batch_log.gpu_memory``); the rank table shows the largest
    peak and reservation and the least free memory over the rank's batches, and the seconds ``torch.compile``
    spent in them (``compile_s``, logged only where it compiled) with the number of such batches."""
    from ropeshift.eval.batch_log import gpu_memory

    import torch

    assert gpu_memory(torch.device("cpu")) == {}
    lines = [{"kind": "generation", "rank": 0, "t": 10.0 + i, "wall_s": 1.0, "method": "rope", "length": 1024,
              "tasks": {"passkey": 2}, "rows": 2, "tokens": 2048, "tokenize_s": 0.0, "prefill_s": 0.5,
              "capture_s": 0.1, "decode_s": 0.3, "steps": 6, "peak_gib": p, "reserved_gib": r, "free_gib": f}
             for i, (p, r, f) in enumerate([(20.0, 24.0, 9.5), (27.5, 30.0, 1.3), (12.0, 30.0, 4.0)])]
    lines[0]["compile_s"], lines[2]["compile_s"] = 14.25, 2.5
    table = batch_profile_summary(lines)
    rank_row = next(line for line in table.splitlines() if line.startswith("| 0 | "))
    assert rank_row.endswith("| 27.5 | 30.0 | 1.3 | 16.8 (2) |")


def test_rank_starts_prompts_before_loading_the_model(tmp_path, tok, tiny_llama, monkeypatch):
    """``run_rank(..., load_tokenizer=...)``: rank 0 hands its prompts to worker processes before ``load`` runs
    and collects them after the warm-up (the other ranks load their models meanwhile); the run writes the same
    records as a plain one."""
    import ropeshift.eval.launch as R

    events, start = [], R.start_samples

    def spy(*a, **k):
        pending = start(*a, **k)
        events.append(("start", pending.futures is not None))
        result = pending.result
        pending.result = lambda: (events.append(("result",)), result())[1]
        return pending

    monkeypatch.setattr(R, "start_samples", spy)
    kw = dict(tasks=("passkey",), lengths=(256, 320), methods=(MethodSpec("rope"),), samples=2, workers=2)
    cfg = _cfg(tmp_path / "first", **kw)

    def load(device):
        events.append(("load",))
        return tiny_llama, tok

    assert R.run_rank(cfg, load, "cpu", progress=False, load_tokenizer=lambda: tok) == 4
    assert events == [("start", True), ("load",), ("result",)]  # two (task, length) cells: two worker processes
    from ropeshift.eval.batch_log import read_batches

    start_up = [b for b in read_batches(cfg.out) if b["kind"] == "startup"]
    assert len(start_up) == 1  # the tokenizer and the prompt workers' start timed apart, before the model
    assert list(start_up[0]["phases"])[-6:] == ["tokenizer", "prompt workers", "model", "prompts", "plan",
                                                "first batch"]
    plain = _cfg(tmp_path / "plain", **kw)
    assert run(plain, tiny_llama, tok, progress=False) == 4
    key = lambda r: (r["index"], r["prompt_hash"], r["prediction"])  # noqa: E731
    for n in kw["lengths"]:
        assert sorted(map(key, read_cell(cfg.out, "tiny", "passkey", "rope", n))) == \
               sorted(map(key, read_cell(plain.out, "tiny", "passkey", "rope", n)))


def test_length_buckets_group_tasks_by_answer_budget():
    """needle (24) and vt (30) share the 64-token bucket, passkey (6) has its own, perplexity (likelihood) its own;
    entries come bucket-major, then length, then method."""
    from ropeshift.eval.batching import length_buckets, rows_per_batch

    rope, string = MethodSpec("rope"), MethodSpec("string")
    work = [(m, task, n, [f"{task}{n}{m.label}"]) for task in ("needle", "passkey", "vt", "perplexity")
            for n in (1024, 2048) for m in (rope, string)]
    got = [(m.label, n, [t for t, _ in cells]) for m, n, cells in length_buckets(work)]
    assert got == [("rope", 1024, ["needle", "vt"]), ("string", 1024, ["needle", "vt"]),
                   ("rope", 2048, ["needle", "vt"]), ("string", 2048, ["needle", "vt"]),
                   ("rope", 1024, ["passkey"]), ("string", 1024, ["passkey"]),
                   ("rope", 2048, ["passkey"]), ("string", 2048, ["passkey"]),
                   ("rope", 1024, ["perplexity"]), ("string", 1024, ["perplexity"]),
                   ("rope", 2048, ["perplexity"]), ("string", 2048, ["perplexity"])]
    cfg = RunConfig(model="m", tasks=("passkey",), lengths=(1024,), methods=(rope,), samples=1, batch_size=3,
                    batch_tokens=5000)
    assert rows_per_batch(cfg, 1024) == 4 and rows_per_batch(cfg, 8192) == 1
    assert rows_per_batch(RunConfig(model="m", tasks=("passkey",), lengths=(1024,), methods=(rope,), samples=1,
                                    batch_size=3), 8192) == 3
    with pytest.raises(ValueError, match="--batch-tokens"):
        RunConfig(model="m", tasks=("passkey",), lengths=(1024,), methods=(rope,), samples=1, batch_tokens=-1)


def test_shard_gives_a_rank_whole_batches_of_a_study():
    """At ruler-lite's shape (9 generation tasks x 50 prompts a length, 4 ranks) a rank holds whole batch-sized
    chunks: a method's 1k rows (585 rows a batch at 600k tokens) on one rank in one batch, 8k's on 7 chunks."""
    from ropeshift.eval.batching import rows_per_batch, shard
    from ropeshift.eval.parallel import Ranks

    cfg = RunConfig(model="m", tasks=("passkey",), lengths=(1024,), methods=(MethodSpec("rope"),), samples=50,
                    batch_tokens=600_000)

    class S:
        def __init__(self, i, n):
            self.index, self.n_tokens = i, n

    tasks = ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah4", "cwe", "vt",
             "kv_retrieval", "passkey")
    work = [(MethodSpec(m), task, n, [S(i, n - 200) for i in range(50)])
            for n in (1024, 8192) for task in tasks for m in ("rope", "string")]
    parts = [shard(work, Ranks(rank=r, world=4), lambda n: rows_per_batch(cfg, n), merged=True) for r in range(4)]
    rows = [{n: sum(len(todo) for m, _, length, todo in p if m.label == "rope" and length == n) for n in (1024, 8192)}
            for p in parts]
    assert sorted(r[1024] for r in rows) == [0, 0, 0, 450]          # one rank, one batch of 450 rows
    assert sum(r[8192] for r in rows) == 450 and max(r[8192] for r in rows) <= 2 * 73   # 7 chunks of <= 65 rows
    assert all(r[8192] for r in rows)                                # 8k's chunks spread over every rank
    owners = {(t, n, s.index): r for r, p in enumerate(parts) for _, t, n, todo in p for s in todo}
    assert len(owners) == 2 * 450                                    # every prompt dealt, once


def test_plain_attention_rows_equal_the_models_own(tmp_path, tok, tiny_llama):
    """``plain_attention="ropeshift"``: rows without an attention method (rope, a RoPE-scaling row) run ropeshift's
    ``plain`` attention, the same maths: predictions, scores and NLLs equal the model's own attention (fp32),
    the records keep the row's method and say ``impl="plain:..."``; attention-method rows are untouched."""
    methods = (MethodSpec("rope"), MethodSpec("yarn", {"factor": 2.0}), MethodSpec("string", {"shift": 100, "window": 16}))
    kw = dict(tasks=("passkey", "perplexity:single"), methods=methods, samples=2, lengths=(384,))
    run(_cfg(tmp_path / "model", **kw), tiny_llama, tok, progress=False)
    run(_cfg(tmp_path / "plain", plain_attention="ropeshift", **kw), tiny_llama, tok, progress=False)
    for task in kw["tasks"]:
        for m in methods:
            own, plain = (sorted(read_cell(tmp_path / d, "tiny", task, m.label, 384), key=lambda r: r["index"])
                          for d in ("model", "plain"))
            assert len(own) == len(plain) == 2
            assert [(r["prediction"], r["score"]) for r in own] == [(r["prediction"], r["score"]) for r in plain]
            for a, b in zip(own, plain):
                if "nll" in a:
                    assert b["nll"] == pytest.approx(a["nll"], rel=1e-5)
                assert b["method_name"] == a["method_name"] and b["params"] == a["params"]
                if m.name == "string":
                    assert b["impl"] == a["impl"]
                else:
                    assert b["impl"].startswith("plain:") and not str(a["impl"]).startswith("plain:")
    with pytest.raises(ValueError, match="plain_attention"):
        _cfg(tmp_path, plain_attention="sdpa")


def test_rope_equal_cells_copy_the_rope_rows_records(tmp_path, tok, tiny_llama):
    """STRING with shift 300 is exactly RoPE at 256 tokens (every d < 300), not at 512: its 256-token records are the
    rope row's (same prompts, seconds 0, marked same_as), and computing them instead gives the same predictions."""
    string = MethodSpec("string", {"shift": 300, "window": 16})
    kw = dict(tasks=("passkey", "perplexity"), lengths=(256, 512), methods=(string, MethodSpec("rope")), samples=2)
    shared, computed = tmp_path / "shared", tmp_path / "computed"
    assert run(_cfg(shared, **kw), tiny_llama, tok, progress=False) == 2 * 2 * 2 * 2
    assert run(_cfg(computed, share_rope=False, **kw), tiny_llama, tok, progress=False) == 16
    label = "string-shift300-window16"
    for task in ("passkey", "perplexity"):
        rope = {r.index: r for r in read_cell(shared, "tiny", task, "rope", 256)}
        copied = {r.index: r for r in read_cell(shared, "tiny", task, label, 256)}
        fresh = {r.index: r for r in read_cell(computed, "tiny", task, label, 256)}
        assert sorted(copied) == sorted(rope) == [0, 1]
        for i, r in copied.items():
            assert r["same_as"] == "rope" and r.seconds == 0.0 and r.method == label
            assert r.method_name == "string" and r.params["shift"] == 300
            assert (r.prompt_hash, r.prediction, r.score, r.nll) == \
                   (rope[i].prompt_hash, rope[i].prediction, rope[i].score, rope[i].nll)
            assert "same_as" not in fresh[i] and fresh[i].prediction == r.prediction
            assert fresh[i].nll == pytest.approx(r.nll, rel=1e-4, abs=1e-6) if r.nll is not None else True
        assert all("same_as" not in r for r in read_cell(shared, "tiny", task, label, 512))
    # without a rope row nothing is copied
    alone = tmp_path / "alone"
    run(_cfg(alone, **{**kw, "methods": (string,)}), tiny_llama, tok, progress=False)
    assert all("same_as" not in r for r in read_cell(alone, "tiny", "passkey", label, 256))


def test_rows_equal_to_an_earlier_row_copy_its_records(tmp_path, tok, tiny_llama):
    """Self-Extend with another training length (ruler-lite's fair row: L' enters neither rel nor the visible keys)
    is exactly the default Self-Extend row: its records are that row's (same_as names it), as computed."""
    base = MethodSpec("self_extend", {"group_size": 4, "window": 64})
    fair = MethodSpec("self_extend", {"group_size": 4, "window": 64, "train_length": 200}, alias="se-fair")
    kw = dict(tasks=("passkey", "perplexity"), lengths=(256,), methods=(MethodSpec("rope"), base, fair), samples=2)
    shared, computed = tmp_path / "shared", tmp_path / "computed"
    assert run(_cfg(shared, **kw), tiny_llama, tok, progress=False) == 2 * 3 * 2
    assert run(_cfg(computed, share_rope=False, **kw), tiny_llama, tok, progress=False) == 12
    for task in ("passkey", "perplexity"):
        donor = {r.index: r for r in read_cell(shared, "tiny", task, base.label, 256)}
        copied = {r.index: r for r in read_cell(shared, "tiny", task, "se-fair", 256)}
        fresh = {r.index: r for r in read_cell(computed, "tiny", task, "se-fair", 256)}
        assert sorted(copied) == sorted(donor) == [0, 1] and all("same_as" not in r for r in donor.values())
        for i, r in copied.items():
            assert r["same_as"] == base.label and r.seconds == 0.0 and r.params["train_length"] == 200
            assert (r.prompt_hash, r.prediction, r.score, r.nll) == \
                   (donor[i].prompt_hash, donor[i].prediction, donor[i].score, donor[i].nll)
            assert "same_as" not in fresh[i] and fresh[i].prediction == r.prediction
            assert fresh[i].nll == pytest.approx(r.nll, rel=1e-4, abs=1e-6) if r.nll is not None else True


def test_same_lengths_compares_the_definitions():
    from ropeshift.eval.rope_share import same_lengths

    def info(name, **params):
        return {"method": name, "params": params}

    se = info("self_extend", group_size=8, window=64, train_length=1024, logit_scale=1.0)
    assert same_lengths(info("self_extend", group_size=8, window=64, train_length=300, logit_scale=1.0), se,
                        [128, 512, 1024]) == [128, 512, 1024]
    # another window: equal only where both are RoPE (every distance below both windows)
    assert same_lengths(info("self_extend", group_size=8, window=32, train_length=1024, logit_scale=1.0), se,
                        [16, 32, 64, 512]) == [16, 32]
    assert same_lengths(info("self_extend", group_size=8, window=64, train_length=1024, logit_scale=1.5), se,
                        [128]) == []  # another logit scale
    string = info("string", shift=40, window=8, train_length=1024, logit_scale=1.0)
    assert same_lengths(string, se, [32, 64, 128]) == [32]   # both RoPE below 40, then apart
    assert same_lengths(info("yarn", factor=2.0), se, [32]) == []  # RoPE scaling: never an attention row
    # a composition is its scaling row where its attention part is exactly RoPE, and only with the same scaling
    yarn = info("yarn", factor=2.0, train_length=1024)
    both = info("yarn+string", factor=2.0, train_length=1024, shift=40, window=8, logit_scale=1.0)
    assert same_lengths(both, yarn, [32, 64]) == same_lengths(yarn, both, [32, 64]) == [32]
    assert same_lengths(both, info("yarn", factor=1.5, train_length=1024), [32]) == []
    assert same_lengths(yarn, info("yarn", factor=2.0, train_length=1024), [32, 4096]) == [32, 4096]


def test_both_perplexity_protocols_share_one_batch(tmp_path, tok, tiny_llama):
    """perplexity and perplexity:single on the same documents run as one likelihood batch (their batch group),
    rows of one prompt index together; each task gets its own records, equal to a run of that task alone."""
    from ropeshift.eval.batch_log import read_batches

    kw = dict(tasks=("perplexity", "perplexity:single"), methods=(MethodSpec("rope"),), samples=2, lengths=(300,),
              batch_tokens=1200)
    assert run(_cfg(tmp_path / "both", **kw), tiny_llama, tok, progress=False) == 4
    batches = [b for b in read_batches(tmp_path / "both") if b["kind"] != "startup"]
    assert [b["tasks"] for b in batches] == [{"perplexity": 2, "perplexity:single": 2}]
    for task in kw["tasks"]:
        run(_cfg(tmp_path / task, **{**kw, "tasks": (task,)}), tiny_llama, tok, progress=False)
        got = {r.index: r for r in read_cell(tmp_path / "both", "tiny", task, "rope", 300)}
        want = {r.index: r for r in read_cell(tmp_path / task, "tiny", task, "rope", 300)}
        assert got.keys() == want.keys() == {0, 1}
        for i in got:
            assert got[i].n_scored == want[i].n_scored
            assert got[i].nll == pytest.approx(want[i].nll, rel=1e-5)


def test_merged_buckets_put_every_generation_task_together_longest_budget_first():
    """Where the decode loop can retire ended rows (``merged``): one generation bucket per length and method. A
    method whose rows are retired cuts it longest answer budget first (the short answers fill the long batch's
    tail, the last batch is the shortest); any other cuts it bucket by power-of-4 bucket. Likelihood tasks keep
    their own buckets (both perplexity protocols one), a document's rows together."""
    from types import SimpleNamespace

    from ropeshift.eval.batching import cut_batches, length_buckets
    from ropeshift.eval.tasks import resolve_task

    rope, string = MethodSpec("rope"), MethodSpec("string")
    work = [(m, task, n, [f"{task}{n}{m.label}"]) for task in ("needle", "passkey", "vt", "perplexity",
                                                                 "perplexity:single")
            for n in (1024, 2048) for m in (rope, string)]
    got = [(m.label, n, [t for t, _ in cells]) for m, n, cells in length_buckets(work, merged=True)]
    gen, lik = ["needle", "passkey", "vt"], ["perplexity", "perplexity:single"]
    assert got == [("rope", 1024, gen), ("string", 1024, gen), ("rope", 2048, gen), ("string", 2048, gen),
                   ("rope", 1024, lik), ("string", 1024, lik), ("rope", 2048, lik), ("string", 2048, lik)]

    names = ("passkey", "needle", "vt")
    tasks = {name: resolve_task(name) for name in names + ("perplexity", "perplexity:single")}
    assert [tasks[n].max_new_tokens for n in names] == sorted(tasks[n].max_new_tokens for n in names)
    rows = [(SimpleNamespace(n_tokens=1000 - i, index=i), name) for i in range(2) for name in names]

    def cut(rows, step, merged):
        return [[(s.index, name) for s, name in batch] for batch in cut_batches(rows, tasks, step, merged)]

    passkey = [(1, "passkey"), (0, "passkey")]
    assert cut(rows, 4, True) == [[(1, "vt"), (0, "vt"), (1, "needle"), (0, "needle")], passkey]
    assert cut(rows, 6, True) == [[(1, "vt"), (0, "vt"), (1, "needle"), (0, "needle"), *passkey]]
    assert cut(rows, 4, False) == [[(1, "needle"), (1, "vt"), (0, "needle"), (0, "vt")], passkey]
    assert cut(rows, 3, False) == [[(1, "needle"), (1, "vt")], [(0, "needle"), (0, "vt")], passkey]
    lik_rows = [(SimpleNamespace(n_tokens=300, index=i), name) for name in lik for i in range(2)]
    assert cut(lik_rows, 4, False) == [[(0, "perplexity"), (0, "perplexity:single"), (1, "perplexity"),
                                        (1, "perplexity:single")]]


def test_retire_possible_only_where_the_graph_loop_runs(monkeypatch, tiny_llama):
    """The merged buckets need the CUDA-graph loop with retire on: never on the CPU, and off with either
    escape hatch; on the CPU no method's ended rows are free."""
    from types import SimpleNamespace

    import torch

    from ropeshift.eval.graph_decode import GRAPHS_ENV, RETIRE_ENV, ended_rows_free, retire_possible

    assert not retire_possible(tiny_llama) and not ended_rows_free(tiny_llama)
    cuda = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=torch.device("cuda"))]))
    assert retire_possible(cuda)
    for env in (GRAPHS_ENV, RETIRE_ENV):
        monkeypatch.setenv(env, "0")
        assert not retire_possible(cuda)
        monkeypatch.delenv(env)


@pytest.mark.parametrize("free", [True, False])
def test_merged_run_batches_by_budget_with_the_same_records(tmp_path, tok, tiny_llama, monkeypatch, free):
    """A merged run (forced here on the CPU): with the method's ended rows retired (``free``) passkey (6 new
    tokens) rides in needle's (24) batch and its rest makes the tail batch; without, the two budgets keep their
    own batches. Every record's prediction and score equal a run with the power-of-4 buckets (greedy, fp32)."""
    from ropeshift.eval import graph_decode
    from ropeshift.eval.batch_log import read_batches

    kw = dict(methods=(MethodSpec("rope"),), samples=4, batch_size=3, options=TaskOptions(depths=4))
    run(_cfg(tmp_path / "pow4", **kw), tiny_llama, tok, progress=False)
    monkeypatch.setattr(graph_decode, "retire_possible", lambda model: True)
    monkeypatch.setattr(graph_decode, "ended_rows_free", lambda model: free)
    run(_cfg(tmp_path / "merged", **kw), tiny_llama, tok, progress=False)
    batches = [b["tasks"] for b in read_batches(tmp_path / "merged") if b["kind"] != "startup"]
    assert batches == ([{"needle": 3}, {"needle": 1, "passkey": 2}, {"passkey": 2}] if free
                       else [{"needle": 2}, {"needle": 2}, {"passkey": 2}, {"passkey": 2}])  # 3 + 1 -> 2 + 2
    for task in ("needle", "passkey"):
        got = {r.index: r for r in read_cell(tmp_path / "merged", "tiny", task, "rope", 256)}
        want = {r.index: r for r in read_cell(tmp_path / "pow4", "tiny", task, "rope", 256)}
        assert got.keys() == want.keys() == {0, 1, 2, 3}
        assert all((got[i].prediction, got[i].score) == (want[i].prediction, want[i].score) for i in got)


def test_last_rank_runs_an_eager_lead_then_compiles_once(tmp_path, tok, tiny_llama, monkeypatch):
    """``dense_compile.eager_lead``: the last of several CUDA ranks runs its first batches with eager layers and
    compiles them once its lead of work is run; the batch log marks the eager batches; other ranks, one process
    or a CPU compile at once (here: their lead is 0)."""
    from types import SimpleNamespace

    from ropeshift.eval import dense_compile
    from ropeshift.eval.batch_log import read_batches
    from ropeshift.eval.parallel import Ranks

    cuda = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=SimpleNamespace(type="cuda"))]))
    assert dense_compile.eager_lead(Ranks(rank=2, world=3), "layers", cuda) == dense_compile.EAGER_LEAD_TOKENS
    assert dense_compile.eager_lead(Ranks(rank=1, world=3), "layers", cuda) == 0
    assert dense_compile.eager_lead(Ranks(rank=0, world=1), "layers", cuda) == 0
    assert dense_compile.eager_lead(Ranks(rank=2, world=3), None, cuda) == 0
    assert dense_compile.eager_lead(Ranks(rank=2, world=3), "layers", tiny_llama) == 0  # a CPU model

    calls = []
    monkeypatch.setattr(dense_compile, "eager_lead", lambda ranks, mode, model: 600)  # prompt tokens
    monkeypatch.setattr(dense_compile, "compile_model", lambda model, mode: calls.append(mode))
    cfg = _cfg(tmp_path, tasks=("passkey",), methods=(MethodSpec("rope"),), samples=6, batch_size=1,
               compile="layers")
    assert run(cfg, tiny_llama, tok, progress=False) == 6
    assert calls == ["layers"]  # once, after the lead
    lines = [b for b in read_batches(tmp_path) if b["kind"] != "startup"]
    eager = [b.get("eager", False) for b in lines]
    used = 0
    for b, e in zip(lines, eager):  # eager until the batches' tokens reach the lead, compiled after
        assert e == (used < 600)
        used += b["tokens"]
    assert eager[0] and not eager[-1]


def test_rank_0_leads_eagerly_until_the_others_have_started_then_compiles_once(tmp_path, tok, tiny_llama,
                                                                              monkeypatch):
    """``dense_compile.lead_others``: rank 0 of several CUDA ranks whose others compile in their wait sends its
    plan without waiting (``parallel.post``), runs its batches with eager layers, and compiles once every other
    rank has started (``Progress.others_started``); not with one rank, on a CPU, for ranks > 0, with the others'
    warm-up off, or with ``ROPESHIFT_LEAD=0``."""
    from types import SimpleNamespace

    from ropeshift.eval import dense_compile, parallel
    from ropeshift.eval.batch_log import read_batches
    from ropeshift.eval.parallel import Ranks

    cuda = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=SimpleNamespace(type="cuda"))]))
    monkeypatch.delenv(dense_compile.LEAD_ENV, raising=False)
    assert dense_compile.lead_others(Ranks(rank=0, world=3), cuda, True)
    assert not dense_compile.lead_others(Ranks(rank=1, world=3), cuda, True)
    assert not dense_compile.lead_others(Ranks(rank=0, world=1), cuda, True)
    assert not dense_compile.lead_others(Ranks(rank=0, world=3), cuda, False)   # the others do not compile first
    assert not dense_compile.lead_others(Ranks(rank=0, world=3), tiny_llama, True)  # a CPU model
    monkeypatch.setenv(dense_compile.LEAD_ENV, "0")
    assert not dense_compile.lead_others(Ranks(rank=0, world=3), cuda, True)
    monkeypatch.delenv(dense_compile.LEAD_ENV)

    calls, posted, started = [], [], iter([False, False, True])
    monkeypatch.setattr(dense_compile, "lead_others", lambda ranks, model, warm: True)
    monkeypatch.setattr(dense_compile, "compile_model", lambda model, mode: calls.append(mode))
    monkeypatch.setattr(parallel, "post", lambda ranks, value: posted.append(value))
    monkeypatch.setattr(parallel, "barrier", lambda ranks: None)
    monkeypatch.setattr(parallel.Progress, "others_started", lambda self: next(started, True))
    monkeypatch.setattr(parallel.Progress, "finish", lambda self, poll_s=0.5: self.bar.close())
    monkeypatch.setattr(parallel, "claims", lambda ranks, folder, sizes, first: (
        (q, i) for q in range(len(sizes)) for i in range(sizes[q])))   # rank 0 alone takes every item
    cfg = _cfg(tmp_path, tasks=("passkey",), methods=(MethodSpec("rope"),), samples=6, batch_size=1,
               compile="layers")
    assert run(cfg, tiny_llama, tok, progress=False, ranks=Ranks(rank=0, world=2)) == 6
    assert calls == ["layers"]  # once, after the third batch
    eager = [b.get("eager", False) for b in read_batches(tmp_path) if b["kind"] != "startup"]
    assert eager == [True, True, True, False, False, False]
    (plan,) = posted  # what the others run: rank 0's plan, sample indices only
    assert plan["todo"] == [("rope", "passkey", 256, [0, 1, 2, 3, 4, 5])] and plan["joins"] == {}


def test_a_rank_rebuilds_rank_0s_plan_from_its_own_copy_of_the_prompts(tmp_path, tok, monkeypatch):
    """``runner._hand_plan`` / ``_planned``: what rank 0 posts names each pending sample by index; a rank > 0 that
    takes it gets ``plan_work``'s list back, the same samples in the same order, without reading records."""
    from ropeshift.eval import parallel, runner
    from ropeshift.eval.parallel import Ranks

    cfg = _cfg(tmp_path, samples=4)
    samples = runner.prepare_samples(cfg, tok, progress=False)
    work = runner.plan_work(cfg, samples)
    work[1] = (*work[1][:3], work[1][3][1:3])  # a resumed run: some samples of a cell done
    posted = []
    monkeypatch.setattr(parallel, "post", lambda ranks, value: posted.append(value))
    sent = runner._hand_plan(Ranks(rank=0, world=3), work, {"string-shift100-window16": {256: "rope"}})
    monkeypatch.setattr(parallel, "take", lambda ranks: posted[0])
    got = runner._hand_plan(Ranks(rank=2, world=3), None, {})
    assert got == sent and got["joins"] == {"string-shift100-window16": {256: "rope"}} and len(got["run_id"]) == 12
    rebuilt = runner._planned(cfg, runner.prepare_samples(cfg, tok, progress=False), got["todo"])
    assert [(m, t, n, [s.prompt_hash for s in todo]) for m, t, n, todo in rebuilt] == \
        [(m, t, n, [s.prompt_hash for s in todo]) for m, t, n, todo in work]
    assert runner._hand_plan(Ranks(), None, {"a": 1})["joins"] == {"a": 1}  # one process: its own joins


def test_a_rank_takes_rank_0s_tokenizer_then_copies_the_weights_into_its_skeleton(tok, monkeypatch):
    """``launch._take_weights`` (ranks > 0 of ``run_rank``, whose model was built without weights): rank 0's
    tokenizer, then the weights loaded without a tokenizer, copied into the same tensors; a loaded model they do
    not fit is run instead, with a warning."""
    import copy

    import torch

    import ropeshift.eval.launch as R
    from ropeshift.eval import parallel, startup_clock
    from ropeshift.eval.parallel import Ranks
    from tests.eval.tiny import tiny_model

    monkeypatch.setattr(parallel, "take", lambda ranks: tok)
    ranks = Ranks(rank=1, world=2)
    clock = startup_clock.StartupClock(ranks, enabled=False)
    skeleton = tiny_model(len(tok), seed=7)
    ptrs = [p.data_ptr() for p in skeleton.parameters()]
    calls = []

    donor = tiny_model(len(tok))  # built as the skeleton was (the session's tiny_llama may have been saved)

    def load(device, **kw):
        calls.append((device, kw))
        return copy.deepcopy(donor), None

    got_tok, model = R._take_weights(ranks, load, "cpu", clock, skeleton)
    assert got_tok is tok and model is skeleton and calls == [("cpu", {"with_tokenizer": False})]
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, donor(ids).logits)
    other = tiny_model(len(tok) + 1)
    with pytest.warns(UserWarning, match="running the loaded model instead"):
        _, model = R._take_weights(ranks, lambda device, **kw: (other, None), "cpu", clock, skeleton)
    assert model is other
