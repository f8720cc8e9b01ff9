"""Typed records, old JSONL, and two writers into one folder. Run: pytest tests/eval/test_records.py -v"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from ropeshift.eval.options import MethodSpec
from ropeshift.eval.records import (GENERATION, LIKELIHOOD, Locked, Record, cell_files, iter_records, open_writer,
                                    read_cell, record_path)
from ropeshift.eval.report_build import build_report
from ropeshift.eval.report_tables import Threshold, perplexities, summarise
from ropeshift.eval.runner import RunConfig, run
from ropeshift.eval.tasks import TASKS

# records exactly as the runner wrote them before Record existed (no "kind")
OLD_GENERATION = {
    "model": "tiny", "task": "niah4", "length": 384, "depth": None, "depths": [10.1, 30.2, 60.3, 80.4], "index": 0,
    "seed": 0, "method": "rope", "method_name": "rope", "params": {}, "impl": None, "haystack": "pydoc",
    "prompt_hash": "ab12", "n_tokens": 250, "prediction": "The numbers are 123456 and 654321",
    "references": ["123456", "654321", "111111", "222222"], "score": 1.0, "needle_hits": [True, True, False, False],
    "recall": 0.5, "seconds": 0.1,
}
OLD_LIKELIHOOD = {
    "model": "tiny", "task": "perplexity:single", "length": 384, "depth": None, "depths": None, "index": 1, "seed": 0,
    "method": "rope", "method_name": "rope", "params": {}, "impl": None, "haystack": "pydoc", "prompt_hash": "cd34",
    "n_tokens": 384, "prediction": None, "references": [], "score": 31.5, "nll": 1321.0, "n_scored": 383,
    "seconds": 0.2,
}


def test_old_jsonl_reads_as_typed_records(tmp_path):
    p = record_path(tmp_path, "tiny", "niah4", "rope", 384)   # the pre-writer-file name, <length>.jsonl
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(OLD_GENERATION) + "\n")
    q = record_path(tmp_path, "tiny", "perplexity:single", "rope", 384)
    q.parent.mkdir(parents=True)
    q.write_text(json.dumps(OLD_LIKELIHOOD) + "\n")
    gen, ll = sorted(iter_records(tmp_path), key=lambda r: r.task)
    assert gen.kind == GENERATION and ll.kind == LIKELIHOOD
    assert gen.depths == (10.1, 30.2, 60.3, 80.4) and gen.references[0] == "123456" and gen.score == 1.0
    assert gen.details == {"needle_hits": [True, True, False, False], "recall": 0.5}
    assert gen["needle_hits"] == [True, True, False, False] and "nll" not in gen and gen.get("nll") is None
    assert ll.nll == 1321.0 and ll.n_scored == 383 and ll["nll"] == 1321.0
    # the JSON form round-trips, now with its kind
    assert Record.from_dict(gen.to_dict()) == gen and gen.to_dict() == {**OLD_GENERATION, "kind": GENERATION}
    assert perplexities([gen, ll]) == {("tiny", "rope", "perplexity:single", 384): pytest.approx(
        (2.718281828 ** (1321.0 / 383), 383, 1), rel=1e-6)}
    assert list(summarise([gen, ll])) == [("tiny", "rope", "niah4", 384)]
    # niah4 owns its per-needle table
    (table,) = TASKS["niah4"].report_tables([gen])
    assert table.heading == "niah4 per-needle recall (%)" and table.rows == [["rope", "384", "100", "100", "0", "0",
                                                                              "50.0", "100.0"]]


def test_a_line_that_is_not_a_record_is_a_clear_error(tmp_path):
    p = record_path(tmp_path, "tiny", "passkey", "rope", 256, "w0")
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(OLD_GENERATION) + "\n{}\n")
    with pytest.raises(ValueError, match=r"256.w0.jsonl line 2: not a record: missing model, task"):
        list(iter_records(tmp_path))
    with pytest.raises(ValueError, match="record kind must be one of generation, likelihood"):
        Record.from_dict({**OLD_GENERATION, "kind": "chat"})
    with pytest.raises(ValueError, match="likelihood record needs nll"):
        Record.from_dict({**OLD_GENERATION, "kind": LIKELIHOOD})


def test_a_second_writer_gets_its_own_file(tmp_path):
    """Two processes never append to (or repair) one file: the second takes w0-1 while w0 is held."""
    rec = Record.from_dict(OLD_GENERATION)
    cell = (tmp_path, "tiny", "niah4", "rope", 384)
    with open_writer(*cell) as a, open_writer(*cell) as b:
        assert (a.path.name, b.path.name) == ("384.w0.jsonl", "384.w0-1.jsonl")
        a.write(rec)
        b.write(rec)
    with open_writer(tmp_path, "tiny", "niah4", "rope", 384, rank=3) as c:
        assert c.path.name == "384.w3.jsonl"
    assert [p.name for p in cell_files(tmp_path, "tiny", "niah4", "rope", 384)] == [
        "384.w0-1.jsonl", "384.w0.jsonl", "384.w3.jsonl"]
    assert read_cell(tmp_path, "tiny", "niah4", "rope", 384) == [rec]   # the same sample twice counts once


def test_lock_is_refused_while_held(tmp_path):
    from ropeshift.eval.records import Appender

    p = tmp_path / "r.jsonl"
    with Appender(p):
        with pytest.raises(Locked, match="being written by another process"):
            Appender(p)
    with Appender(p):   # released on close
        pass


def test_two_evals_into_one_folder_count_each_sample_once(tmp_path, tok, tiny_llama):
    """Regression (issue 8 item 6): two evals started on one folder both ran every sample and the report
    counted each twice. Each writer now has its own file and reads keep one record per sample key."""
    n = 3
    cfg = RunConfig(model="tiny", tasks=("passkey",), lengths=(256,), methods=(MethodSpec("rope"),), samples=n,
                    out=tmp_path / "a", workers=1)
    run(cfg, tiny_llama, tok, progress=False)
    # the second eval, started before the first wrote anything, ran the same samples as writer w0-1
    (w0,) = cell_files(tmp_path / "a", "tiny", "passkey", "rope", 256)
    shutil.copy(w0, w0.with_name("256.w0-1.jsonl"))
    raw = sum(len(p.read_text().splitlines()) for p in cell_files(tmp_path / "a", "tiny", "passkey", "rope", 256))
    assert raw == 2 * n
    assert len(list(iter_records(tmp_path / "a"))) == n
    assert summarise(list(iter_records(tmp_path / "a")))["tiny", "rope", "passkey", 256].n == n
    rep = build_report(tmp_path / "a", tmp_path / "report", Threshold(relative=0.85), plots=False)
    assert f"(n={n})" in rep.markdown and f"(n={2 * n})" not in rep.markdown
    assert run(cfg, tiny_llama, tok, progress=False) == 0   # and a rerun finds nothing left to do


def test_versions_name_the_gpu_through_nvidia_smi_without_a_cuda_context(tmp_path, monkeypatch):
    """A parent that never used CUDA reads GPU 0's name from nvidia-smi; without nvidia-smi, torch's answer."""
    import stat

    import torch

    from ropeshift.eval import run_meta

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA Test GPU 80GB'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert run_meta.versions()["device"] == "NVIDIA Test GPU 80GB"
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert run_meta.versions()["device"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")


def test_versions_ask_nvidia_smi_for_the_first_visible_gpu(tmp_path, monkeypatch):
    import stat

    import torch

    from ropeshift.eval import run_meta

    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\nfor a in "$@"; do last=$a; done\necho "GPU $last"\n')  # echoes its -i argument
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert run_meta.versions()["device"] == "GPU 3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")   # no GPU visible: torch's answer
    assert run_meta.versions()["device"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
