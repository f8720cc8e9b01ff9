"""Stored prompts (eval/sample_store.py): made by forked workers that store their own files, read back after.
Run: pytest tests/eval/test_sample_store.py -v"""
from __future__ import annotations

import multiprocessing as mp

import pytest

from ropeshift.eval import sample_store
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.records import prompts_path, read_jsonl
from ropeshift.eval.runner import RunConfig
from ropeshift.eval.tasks import TaskOptions, resolve_task


def _cfg(tmp_path, workers: int) -> RunConfig:
    return RunConfig(model="m", tasks=("passkey", "niah_single_1"), lengths=(512, 640), methods=(MethodSpec("rope"),),
                     samples=3, out=tmp_path, workers=workers, options=TaskOptions(haystack="noise"))


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="the workers are forked")
def test_workers_store_their_own_prompts_and_a_second_run_reads_them(tok, tmp_path, monkeypatch):
    """With several workers every (task, length) file is written by the worker that made it (rank 0 writes
    nothing), holds the header and the samples one makes alone, and a later call reads them instead of making
    them again."""
    cfg = _cfg(tmp_path, workers=2)
    pending = sample_store.start_samples(cfg, tok, progress=False)
    assert pending.pool is not None
    monkeypatch.setattr(sample_store, "write_atomic", lambda *a, **k: pytest.fail("rank 0 wrote a prompt file"))
    got = pending.result()
    assert sorted(got) == sorted((t, n) for t in cfg.tasks for n in cfg.lengths)
    for (task, length), samples in got.items():
        stored = read_jsonl(prompts_path(cfg.out, cfg.model, task, length))
        assert stored[0]["header"]["task"] == task and stored[0]["header"]["length"] == length
        alone = resolve_task(task).make_samples(tok, length, cfg.samples, cfg.seed, cfg.options)
        assert [s.to_dict() for s in samples] == stored[1:] == [s.to_dict() for s in alone]
    monkeypatch.setattr(sample_store, "_make", lambda *a, **k: pytest.fail("made again"))
    again = sample_store.start_samples(cfg, tok, progress=False)
    assert again.pool is None and not again.missing
    assert {k: [s.to_dict() for s in v] for k, v in again.result().items()} == \
        {k: [s.to_dict() for s in v] for k, v in got.items()}


def test_one_worker_makes_and_stores_the_same_prompts(tok, tmp_path):
    """Without workers (one, or no fork) ``result()`` makes and stores each file itself: the same files."""
    one = sample_store.prepare_samples(_cfg(tmp_path / "one", workers=1), tok, progress=False)
    two = sample_store.prepare_samples(_cfg(tmp_path / "two", workers=2), tok, progress=False)
    for task, length in one:
        a = read_jsonl(prompts_path(tmp_path / "one", "m", task, length))
        b = read_jsonl(prompts_path(tmp_path / "two", "m", task, length))
        assert a == b and len(a) == 4
    assert {k: [s.to_dict() for s in v] for k, v in one.items()} == {k: [s.to_dict() for s in v] for k, v in two.items()}
