"""Data-parallel evaluation: sharding, ranks, and a killed 2-rank run resumed with 1 rank.

Run: pytest tests/eval/test_parallel.py -v
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from ropeshift.eval.batching import _chunks, claim_queues, deal, only, shard
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.parallel import Ranks, claims, device_for
from ropeshift.eval.records import cell_files, iter_records, model_dir
from ropeshift.eval.runner import RunConfig, run

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
METHODS = (MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16}))


def _work():
    s = lambda i: SimpleNamespace(index=i, n_tokens=200)  # noqa: E731  (shard reads the index and n_tokens)
    return [(m, t, n, [s(i) for i in range(k) if (i + len(m)) % 3])
            for t, n, k in (("passkey", 256, 7), ("vt", 512, 5), ("perplexity", 256, 4), ("perplexity:single", 256, 4))
            for m in ("rope", "string")]


def _parts(world, rows=1, merged=False):
    return [{(m, t, n, s.index) for m, t, n, todo in shard(_work(), Ranks(r, world), rows, merged) for s in todo}
            for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("rows", [1, 3, 50])
def test_shard_deals_every_sample_once_and_keeps_methods_together(world, rows):
    units = {(m, t, n, s.index) for m, t, n, todo in _work() for s in todo}
    parts = _parts(world, rows)
    assert set().union(*parts) == units and sum(map(len, parts)) == len(units)   # all, none twice
    owner = {(t, n, i): r for r, p in enumerate(parts) for _, t, n, i in p}
    assert all(owner[t, n, i] == r for r, p in enumerate(parts) for _, t, n, i in p)  # a prompt's methods: one rank
    # both perplexity protocols of one document share a rank (evaluate forwards their common window once)
    assert all(owner["perplexity", 256, i] == owner["perplexity:single", 256, i] for i in range(4)
               if ("perplexity", 256, i) in owner and ("perplexity:single", 256, i) in owner)
    assert all(parts) or world > len(units) // 2   # every rank has work while there are prompts to split


@pytest.mark.parametrize("world, rows", [(2, 3), (3, 2), (2, 50)])
def test_shard_deals_whole_batches(world, rows):
    """Each bucket x length is cut into chunks of at most ``rows`` rows (a perplexity document's unit holds both
    protocols' rows), the fewest where every unit is one row, and every chunk goes whole to one rank."""
    work = _work()
    unit_of, chunks = _chunks(work, lambda n: rows, False)
    unit_rows = Counter(unit_of.values())
    owner, load = deal(work, world, rows)
    assert len(chunks) >= world and len(load) == world and all(load)   # no halving needed here, every rank busy
    rank_of_unit = {unit_of[p]: r for p, r in owner.items()}
    cells = Counter()
    for _, units in chunks:
        assert sum(unit_rows[u] for u in units) <= max(rows, 2)
        assert len({rank_of_unit[u] for u in units}) == 1            # whole chunks
        cells[units[0][:2]] += 1
    for (bucket, length), n in cells.items():
        members = [u for u in unit_rows if u[:2] == (bucket, length)]
        if all(unit_rows[u] == 1 for u in members):
            assert n == -(-len(members) // rows)                     # the fewest batches
    with pytest.raises(ValueError, match="batch rows must be >= 1"):
        shard(_work(), Ranks(0, 2), 0)


def test_shard_balances_by_cost():
    """Chunks go costliest first to the least loaded rank: two ranks, one long cell and two short ones."""
    s = lambda i, n: SimpleNamespace(index=i, n_tokens=n)  # noqa: E731
    work = [("rope", "passkey", 8192, [s(i, 8192) for i in range(4)]),
            ("rope", "passkey", 1024, [s(i, 1024) for i in range(4)]),
            ("rope", "passkey", 2048, [s(i, 2048) for i in range(4)])]
    parts = [shard(work, Ranks(r, 2), 4) for r in range(2)]
    assert [n for _, _, n, _ in parts[0]] == [8192]             # the costliest chunk alone
    assert sorted(n for _, _, n, _ in parts[1]) == [1024, 2048]  # the rest beside it
    assert all(len(todo) == 4 for p in parts for _, _, _, todo in p)   # whole chunks


def _claimed_chunks(work, world, rows):
    """The chunks of ``claim_queues``' items, in claim order (queue by queue)."""
    queues, _ = claim_queues(work, world, rows, False, [MethodSpec("rope")], {})
    return list(dict.fromkeys(c for q in queues for c, _ in q))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_claimed_chunks_hold_every_prompt_once_in_chunks_of_one_bucket_and_length(world):
    work = _work()
    order = _claimed_chunks(work, world, 3)
    prompts = [p for chunk in order for p in chunk]
    assert sorted(prompts) == sorted({(t, n, s.index) for _, t, n, todo in work for s in todo})   # each once
    assert len(order) >= world
    for chunk in order:
        assert len({(t.startswith("perplexity"), n) for t, n, _ in chunk}) == 1       # one bucket x length
    rows = [(m, t, n, s.index) for chunk in order for m, t, n, todo in only(work, chunk) for s in todo]
    assert sorted(rows) == sorted((m, t, n, s.index) for m, t, n, todo in work for s in todo)  # every method's row
    # the static deal cuts the same chunks: its shares are whole chunks
    owner, _ = deal(work, world, 3)
    assert all(len({owner[p] for p in chunk}) == 1 for chunk in order)


def test_claim_queues_put_the_rope_rows_copies_with_it_and_every_other_method_alone():
    work = _work()
    unit_of, units = _chunks(work, lambda n: 3, False)
    chunks = [frozenset(p for p, u in unit_of.items() if u in part) for _, part in units]
    rope, string = SimpleNamespace(label="rope"), SimpleNamespace(label="string")
    queues, first = claim_queues(work, 2, 3, False, [rope, string], {"string": {256: "rope"}})  # copies rope's
    items = [item for q in queues for item in q]
    assert {c for c, _ in items} == set(chunks)
    for chunk in chunks:
        mine = [[m.label for m in methods] for c, methods in items if c == chunk]
        want = [["rope", "string"]] if next(iter(chunk))[1] == 256 else [["rope"], ["string"]]
        assert mine == want
    # a row that copies an earlier row (rope_share.equal_lengths' {length: donor}) goes with that row
    fair = SimpleNamespace(label="string@fair")
    q2, _ = claim_queues(work, 2, 3, False, [rope, string, fair], {"string@fair": {256: "string"}})
    for chunk in chunks:
        mine = [[m.label for m in methods] for c, methods in [i for q in q2 for i in q] if c == chunk]
        at256 = next(iter(chunk))[1] == 256
        assert mine == ([["rope"], ["string", "string@fair"]] if at256 else [["rope"], ["string"], ["string@fair"]])
    work = [(rope if m == "rope" else string, t, n, todo) for m, t, n, todo in work]
    rows = sorted((m.label, t, n, s.index) for c, ms in items for m, t, n, todo in only(work, c, ms) for s in todo)
    assert rows == sorted((m.label, t, n, s.index) for m, t, n, todo in work for s in todo)   # every row, once
    # generation first, then likelihood; the last rank starts on likelihood
    assert [{next(iter(c))[0].startswith("perplexity") for c, _ in q} for q in queues] == [{False}, {True}]
    assert first == [0, 1]


def test_claim_queues_go_costliest_first_and_give_likelihood_its_share_of_ranks():
    s = lambda i, n: SimpleNamespace(index=i, n_tokens=n)  # noqa: E731
    rope = MethodSpec("rope")
    for lik_docs, world, want in ((4, 3, [0, 0, 1]), (4, 8, [0, 0, 0, 0, 0, 1, 1, 1]), (0, 3, [0, 0, 0])):
        work = [(rope, "passkey", n, [s(i, n - 100) for i in range(4)]) for n in (1024, 2048, 4096, 8192)]
        work += [(rope, "perplexity", n, [s(i, n) for i in range(lik_docs)]) for n in (1024, 8192) if lik_docs]
        queues, first = claim_queues(work, world, 4, False, [rope], {})
        assert first == want
        for q in queues if world == 3 else ():   # (with 8 ranks the costliest chunks are halved: 8 at least)
            lengths = [next(iter(c))[1] for c, _ in q]
            assert lengths == sorted(lengths, reverse=True)                          # costliest first


def test_claims_give_each_item_to_one_rank(tmp_path):
    """Three ranks (threads with their own ``FileStore``) claim from two queues of 30 and 10 items: each item once,
    in order on every rank; rank 2 starts on queue 1, then helps with queue 0; a rank slowed down takes fewer."""
    import threading

    got: dict[int, list] = {}

    def rank(r):
        got[r] = []
        for q, i in claims(Ranks(r, 3), tmp_path, [30, 10], 1 if r == 2 else 0):
            got[r].append((q, i))
            time.sleep(0.02 if r == 1 else 0.002)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(x for r in got for x in got[r]) == [(0, i) for i in range(30)] + [(1, i) for i in range(10)]
    for r, start in ((0, 0), (1, 0), (2, 1)):
        assert got[r] == sorted(got[r], key=lambda x: (x[0] != start, x[1]))   # its queue first, each in order
    assert {q for q, _ in got[0]} == {0} and got[2][:10] == [(1, i) for i in range(10)]
    assert len(got[1]) < len(got[0])
    assert list(claims(Ranks(), tmp_path / "one", [2, 1], 1)) == [(1, 0), (0, 0), (0, 1)]   # one rank: no store


def test_ranks_and_devices(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert Ranks.from_env() == Ranks(1, 2, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"rank must be in \[0, WORLD_SIZE\)"):
        Ranks.from_env()
    assert device_for(Ranks(1, 2, 1), "cpu") == "cpu" and device_for(Ranks(), "cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="--device cuda:1 names one device"):
        device_for(Ranks(1, 2, 1), "cuda:1")


def _raw_lines(out: Path) -> int:
    files = [p for m in METHODS for p in cell_files(out, "tiny", "passkey", m.label, 256)]
    return sum(len(p.read_text().splitlines()) for p in files)


def test_two_ranks_killed_then_one_rank_resumes_like_one_uninterrupted_process(tmp_path, tok, tiny_llama):
    """Issue 11: 2 worker processes, SIGKILL one mid-run, resume with 1: same records as one process, none lost
    or duplicated."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    n = 12
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    cmd = [sys.executable, str(HERE / "run_tiny.py"), str(killed), str(n)]
    proc = subprocess.Popen([*cmd, "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, pid = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        w1 = list(model_dir(killed, "tiny").glob("passkey/*/256.w1.jsonl"))
        if sum(len(p.read_bytes().splitlines()) for p in w1) >= 2:
            (progress,) = model_dir(killed, "tiny").glob("_progress/*/rank1.json")
            pid = json.loads(progress.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert pid is not None, f"rank 1 finished before it could be killed: {proc.communicate()[1][-2000:]!r}"
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and b"SIGKILL" in err     # the other rank was stopped too
    partial = _raw_lines(killed)
    assert 2 <= partial < 2 * n
    subprocess.run([*cmd, "1"], env=env, check=True, capture_output=True)       # resume with one rank
    run(RunConfig(model="tiny", tasks=("passkey",), lengths=(256,), methods=METHODS, samples=n, out=clean, workers=1),
        tiny_llama, tok, progress=False)
    resumed, reference = list(iter_records(killed)), list(iter_records(clean))
    assert _raw_lines(killed) == len(resumed) == len(reference) == 2 * n       # nothing lost, nothing twice
    assert {p.name for p in model_dir(killed, "tiny").glob("passkey/*/*.jsonl")} == {"256.w0.jsonl", "256.w1.jsonl"}
    ref = {r.key: r for r in reference}
    for r in resumed:
        assert (r.prediction, r.score, r.params) == (ref[r.key].prediction, ref[r.key].score, ref[r.key].params)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tok, tiny_llama):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_cli_workers_and_torchrun_give_the_single_process_records(tiny_folder, tmp_path, capsys):
    """``ropeshift eval --workers 2`` and ``torchrun --nproc-per-node 2 ... eval`` on CPU: one process's records."""
    from ropeshift.cli.main import main

    argv = ["eval", "--model", str(tiny_folder), "--device", "cpu", "--tasks", "passkey,perplexity", "--lengths", "256",
            "--samples", "4", "--methods", "rope,string,lm_infinite", "--shift", "100", "--window", "16",
            "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    assert main([*argv, "--out", str(tmp_path / "workers"), "--workers", "2"]) == 0
    assert "24 samples to run" in capsys.readouterr().out   # both claim queues: generation and likelihood
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "ropeshift.cli.main",
                    *argv, "--out", str(tmp_path / "torchrun")], env=env, check=True, capture_output=True)
    name = tiny_folder.name
    one = {r.key: (r.prediction, r.score, r.details.get("same_as"))
           for r in iter_records(model_dir(tmp_path / "one", name))}
    assert len(one) == 24 and sum(v[2] == "rope" for v in one.values()) == 8   # lm_infinite at 256 < L: rope's
    for run_dir in ("workers", "torchrun"):
        recs = list(iter_records(model_dir(tmp_path / run_dir, name)))
        assert {r.key: (r.prediction, r.score, r.details.get("same_as")) for r in recs} == one, run_dir
        writers = {t: {p.name for p in model_dir(tmp_path / run_dir, name).glob(f"{t}/*/*.jsonl")}
                   for t in ("passkey", "perplexity")}
        assert "256.w1.jsonl" in writers["perplexity"] and "256.w0.jsonl" in writers["passkey"]  # each its queue
        from ropeshift.eval.batch_log import read_batches

        phases = {b["rank"]: list(b["phases"]) for b in read_batches(tmp_path / run_dir) if b["kind"] == "startup"}
        # rank 0 posts the one tokenizer once its weights are loaded, then finds the rows that copy others;
        run0 = ["tokenizer", "prompt workers", "model", "tokenizer sent", "joins"]
        run1 = ["skeleton", "tokenizer", "weights"]   # rank 1 built its model without them
        assert any(phases[0][i:i + 5] == run0 for i in range(len(phases[0]))), (run_dir, phases)
        assert any(phases[1][i:i + 3] == run1 for i in range(len(phases[1]))), (run_dir, phases)


def test_ranks_fork_unless_switched_off_or_cuda_is_initialised(monkeypatch):
    import torch

    from ropeshift.eval import parallel

    monkeypatch.delenv(parallel.FORK_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert parallel.start_method() == "fork"
    monkeypatch.setenv(parallel.FORK_ENV, "0")
    assert parallel.start_method() == "spawn"
    monkeypatch.delenv(parallel.FORK_ENV)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # a forked child could not use CUDA
    assert parallel.start_method() == "spawn"


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_cuda_forked_workers_give_the_spawned_workers_records(tiny_folder, tmp_path):
    """``ropeshift eval --workers 2 --device cuda`` from a fresh interpreter (as the study runs it), ranks forked
    (the default) and spawned (``ROPESHIFT_FORK_RANKS=0``): every record of the same prompts in both; the forked
    ranks' start-up clocks skip the interpreter's imports."""
    argv = ["eval", "--model", str(tiny_folder), "--device", "cuda", "--tasks", "passkey,perplexity", "--lengths",
            "256", "--samples", "4", "--methods", "rope,string", "--shift", "100", "--window", "16", "--no-progress",
            "--workers", "2", "--compile", "off"]   # off: what is tested is CUDA in forked ranks, in seconds
    process_s = {}
    for fork in ("1", "0"):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               "ROPESHIFT_FORK_RANKS": fork}
        out = tmp_path / f"fork{fork}"
        subprocess.run([sys.executable, "-m", "ropeshift.cli.main", *argv, "--out", str(out)], env=env, check=True,
                       capture_output=True, timeout=300)
        recs = {r.key: r for r in iter_records(model_dir(out, tiny_folder.name))}
        assert len(recs) == 16, fork
        process_s[fork] = [json.loads(line)["phases"]["process"] for p in model_dir(out, tiny_folder.name)
                           .glob("_batches/rank*.jsonl") for line in p.read_text().splitlines()
                           if '"startup"' in line]
        if fork == "1":
            forked = recs
    assert recs.keys() == forked.keys()
    assert all(recs[k].prompt_hash == r.prompt_hash for k, r in forked.items())
    assert max(process_s["1"]) < min(process_s["0"]), process_s


def test_startup_clock_reports_each_phase_once(capsys, monkeypatch):
    from ropeshift.eval import startup_clock

    ticks = iter([10.0, 12.5, 20.0, 20.25])
    monkeypatch.setattr(startup_clock.time, "perf_counter", lambda: next(ticks))
    monkeypatch.setattr(startup_clock, "_process_age", lambda: 3.0)
    clock = startup_clock.StartupClock(Ranks(1, 2))
    clock.mark("model")
    clock.mark("prompts")
    clock.mark("first batch")
    assert clock.pending
    clock.report()
    assert not clock.pending
    err = capsys.readouterr().err
    assert err.strip() == "rank 1 start-up 13.2 s: process 3.0, model 2.5, prompts 7.5, first batch 0.2"


def _report_launcher(q) -> None:
    from ropeshift.eval import startup_clock

    q.put((startup_clock._launcher_s(), startup_clock._started_at(), startup_clock._process_age()))
    q.close()
    q.join_thread()  # sent before ``_entry`` ends the process at once (``process_exit``: no feeder flush at exit)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_spawned_ranks_clock_starts_with_its_launchers_seconds():
    """A rank ``spawn`` started (``_entry``) counts the seconds its parent ran before it (``launcher``), read from
    /proc's start times; a process ``spawn`` did not start has no launcher phase."""
    import multiprocessing as mp

    from ropeshift.eval import parallel, startup_clock

    me = startup_clock._started_at()
    assert me is not None and me <= time.time() and startup_clock._launcher_s() is None
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=parallel._entry, args=(0, {}, _report_launcher, (q,)))
    p.start()
    launcher, child_start, age = q.get(timeout=60)
    p.join(60)
    assert child_start >= me and age >= 0
    assert launcher == pytest.approx(child_start - me, abs=0.02) and launcher > 0  # this test process ran first


def test_startup_clock_silent_without_progress(capsys):
    from ropeshift.eval import startup_clock

    clock = startup_clock.StartupClock(Ranks(), enabled=False)
    clock.mark("model")
    clock.report()
    assert capsys.readouterr().err == "" and not clock.pending


def test_allocator_defaults_set_expandable_segments_unless_the_user_chose(monkeypatch):
    """The evaluation's processes get expandable segments (``parallel.allocator_defaults``) where the user left
    PYTORCH_CUDA_ALLOC_CONF unset; a value of the user's, even an empty one, stays; so does an initialised CUDA."""
    import torch

    from ropeshift.eval import parallel

    monkeypatch.setenv(parallel.ALLOC_ENV, "recorded")  # so that the teardown restores the variable as it was
    monkeypatch.delenv(parallel.ALLOC_ENV)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert parallel.allocator_defaults() is True
    assert os.environ[parallel.ALLOC_ENV] == "expandable_segments:True"
    assert parallel.allocator_defaults() is False  # set now: left alone
    monkeypatch.setenv(parallel.ALLOC_ENV, "")
    assert parallel.allocator_defaults() is False and os.environ[parallel.ALLOC_ENV] == ""
    monkeypatch.delenv(parallel.ALLOC_ENV)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert parallel.allocator_defaults() is False and parallel.ALLOC_ENV not in os.environ


def _post_and_take(rank, world, port, folder):
    import torch.distributed as dist

    from ropeshift.eval import parallel

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    ranks = parallel.Ranks(rank, world)
    value = {"tokenizer": "x" * 100_000, "ids": list(range(1000))}
    try:
        if ranks.main:
            parallel.post(ranks, value)        # returns before any other rank takes it
            (folder / "posted").write_text("1")
            parallel.post(ranks, "second")
            parallel.barrier(ranks)            # the posts settle first
            assert not parallel._POSTED
        else:
            while not (folder / "posted").exists():  # rank 0 got past its post with nobody taking yet
                time.sleep(0.01)
            assert parallel.take(ranks) == value and parallel.take(ranks) == "second"
            parallel.barrier(ranks)
            with pytest.raises(ValueError, match="only rank 0"):
                parallel.post(ranks, 1)
    finally:
        dist.destroy_process_group()


def test_post_returns_at_once_and_the_others_take_the_values_in_order(tmp_path):
    """``parallel.post`` (rank 0's tokenizer to the others) does not wait for them: rank 0 goes on while they
    are busy, the values arrive intact and in order, and rank 0's next barrier waits for the sends."""
    import torch.multiprocessing as mp

    from ropeshift.eval import parallel

    mp.start_processes(_post_and_take, args=(3, parallel.free_port(), tmp_path), nprocs=3, join=True,
                       start_method="spawn")


def _take_while_another_rank_waits(rank, world, port, folder):
    import torch.distributed as dist

    from ropeshift.eval import parallel

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    ranks = parallel.Ranks(rank, world)
    try:
        if ranks.main:
            parallel.post(ranks, "tokenizer")
            parallel.post(ranks, {"plan": list(range(50_000))})
        elif rank == 1:  # still warming up: takes nothing until rank 2 has both values (or 60 s have passed)
            end = time.monotonic() + 60
            while not (folder / "rank2").exists() and time.monotonic() < end:
                time.sleep(0.01)
            assert (folder / "rank2").exists(), "rank 2 waited for rank 1 to take the first value"
            assert parallel.take(ranks) == "tokenizer" and parallel.take(ranks)["plan"][-1] == 49_999
        else:
            assert parallel.take(ranks) == "tokenizer" and len(parallel.take(ranks)["plan"]) == 50_000
            (folder / "rank2").write_text("1")
        parallel.barrier(ranks)
    finally:
        dist.destroy_process_group()


def test_a_rank_takes_each_value_whatever_the_other_ranks_have_taken(tmp_path):
    """Rank 0's values reach each rank on their own (``post``: one message pair per rank): rank 2 gets the plan
    while rank 1 has not yet taken the tokenizer posted before it (with gloo broadcasts rank 2 waited for rank 1:
    4.5 s in the H100 study of 2026-12-07)."""
    import torch.multiprocessing as mp

    from ropeshift.eval import parallel

    mp.start_processes(_take_while_another_rank_waits, args=(3, parallel.free_port(), tmp_path), nprocs=3,
                       join=True, start_method="spawn")


def test_a_bad_setting_stops_every_worker_with_the_preflight_error(tiny_folder, tmp_path):
    """``ropeshift eval --workers 2`` with a method setting the model rejects: the launcher's pre-flight (run while
    the ranks start) stops them and the command fails at once with the method's own error, instead of rank 0
    failing later with its prompt workers alive (it then waited forever at its exit for them, and rank 1 at its
    barrier)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "ropeshift.cli.main", "eval", "--model", str(tiny_folder), "--device", "cpu",
           "--tasks", "passkey", "--lengths", "256", "--samples", "2", "--methods", "rope,yarn", "--no-progress",
           "--workers", "2", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0 and "yarn: pass exactly one of factor=" in proc.stderr


def test_rank_0_stops_its_prompt_workers_when_it_fails(tok, tmp_path, monkeypatch):
    """``launch.run_rank`` on rank 0 whose run raises after its prompt workers started: the workers are stopped
    (``PendingSamples.close``) and the error propagates, so the process can exit."""
    import ropeshift.eval.launch as L
    from ropeshift.eval import sample_store
    from ropeshift.eval.runner import RunConfig

    made = []

    def start(cfg, tokenizer, progress):
        pending = sample_store.start_samples(cfg, tokenizer, progress)
        made.append(pending)
        return pending

    def boom(*a, **kw):
        raise RuntimeError("rank 0 failed")

    monkeypatch.setattr(L, "start_samples", start)
    monkeypatch.setattr(L, "run", boom)
    cfg = RunConfig(model="tiny", tasks=("passkey", "niah_single_1"), lengths=(256, 300), samples=2, out=tmp_path,
                    workers=2, methods=METHODS)
    with pytest.raises(RuntimeError, match="rank 0 failed"):
        L.run_rank(cfg, lambda device, **kw: (None, tok), "cpu", progress=False, load_tokenizer=lambda: tok)
    (pending,) = made
    assert pending.pool is None and sample_store._TOKENIZER is None


def test_progress_says_when_every_other_rank_has_started(tmp_path, monkeypatch):
    """``Progress.others_started``: true once every rank > 0 has made its ``Progress`` (and so written its file)."""
    from ropeshift.eval import parallel
    from ropeshift.eval.parallel import Progress, Ranks

    monkeypatch.setattr(parallel, "barrier", lambda ranks: None)
    bars = [Progress(Ranks(rank=0, world=3), 10, tmp_path, "r", enabled=False)]
    assert not bars[0].others_started()
    bars.append(Progress(Ranks(rank=2, world=3), 10, tmp_path, "r", enabled=False))
    assert not bars[0].others_started()
    bars.append(Progress(Ranks(rank=1, world=3), 10, tmp_path, "r", enabled=False))
    assert bars[0].others_started()
    assert not Progress(Ranks(rank=0, world=3), 10, tmp_path, "other", enabled=False).others_started()
