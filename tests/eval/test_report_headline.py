"""The headline and the report around it, on a synthetic stored run (no model: fast).

The headline's numbers must equal the tables'; '= rope' follows each method's own definition; the sentence
states significance; the report opens with the headline and carries the run details.
Run: pytest tests/eval/test_report_headline.py -v
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ropeshift.cli.main import main
from ropeshift.eval.records import iter_records
from ropeshift.eval.report_headline import build_headline, paired_rows, rope_lengths
from ropeshift.eval.report_tables import Threshold, method_length_scores, ruler_rows, summarise

from .synthetic_run import LENGTHS, SHIFT, STRING_PARAMS, TRAIN, write_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs"))


def _num(text: str) -> float:
    return float(text.split()[0])


def test_headline_equals_the_tables(run_dir):
    recs = list(iter_records(run_dir))
    head = build_headline(recs, TRAIN)
    assert head.window == (512, 768, 1024)  # tested lengths in [L/2, L]
    headers, rows = head.table()
    by = {r[0]: r for r in rows}
    assert rows[0][0] == "rope" and headers[3] == "mean 0.5k-1k [95 % CI]"
    scores = method_length_scores(summarise(recs))
    for method in ("rope", "string", "pi"):
        per = scores["tiny", method]
        mean = sum(per[n][0] for n in head.window) / 3
        assert _num(by[method][3]) == pytest.approx(round(mean, 1))
        # effective lengths: the same cells as the mean-over-tasks table with each rule
        for col, threshold in ((1, Threshold(absolute=85.6, relative=None)), (2, Threshold(relative=0.85))):
            _, trows = ruler_rows(summarise(recs), threshold)
            assert by[method][col] == next(r[-1] for r in trows if r[0] == method)
    # gain = method's window mean - rope's (every sample paired), and the paired table agrees per length
    for method in ("string", "pi"):
        row = next(r for r in head.rows if r.method == method)
        base = next(r for r in head.rows if r.method == "rope")
        assert row.gain.mean == pytest.approx(row.window_mean.mean - base.window_mean.mean)
        _, prows = paired_rows(recs)
        cells = next(r for r in prows if r[0] == method)[1:]
        for n, cell in zip(LENGTHS, cells):
            assert _num(cell) == pytest.approx(round(scores["tiny", method][n][0] - scores["tiny", "rope"][n][0], 1))


def test_sentence_states_gain_and_significance(run_dir):
    recs = list(iter_records(run_dir))
    head = build_headline(recs, TRAIN)
    assert head.sentence.startswith("string raises the mean at 0.5k-1k from 63.3 to 87.5 (+24.2 points, 95 % CI +")
    # without string, the best method (pi) loses significantly: the sentence says no method raises it
    no_string = [r for r in recs if r["method"] != "string"]
    sentence = build_headline(no_string, TRAIN).sentence
    assert sentence.startswith("No method raises the mean at 0.5k-1k significantly over rope")
    assert "lowers it" in sentence
    # a gain whose interval includes 0 is reported as not significant
    one = {"method": "pi", "index": 0, "length": 512, "task": "needle"}   # one prompt of 120 differs
    tiny_gain = [dict(r, score=float(all(r[k] == v for k, v in one.items()))) for r in no_string]
    assert "does not significantly change it" in build_headline(tiny_gain, TRAIN).sentence


def test_equals_rope_follows_the_method_definition():
    assert rope_lengths("string", STRING_PARAMS, LENGTHS) == [256]        # S = 400: rope below 400 tokens
    assert rope_lengths("string", dict(STRING_PARAMS, shift=128), LENGTHS) == []
    assert rope_lengths("string", dict(STRING_PARAMS, logit_scale=1.2), LENGTHS) == []
    assert rope_lengths("pi", {"factor": 1.5, "train_length": TRAIN}, LENGTHS) == []   # frequencies change
    assert rope_lengths("yarn+string", {}, LENGTHS) == [] and rope_lengths("rope", {}, [2, 1]) == [1, 2]


def test_the_rope_checks_run_on_one_thread_in_a_run_and_restore_the_count(monkeypatch):
    """``_rows_match`` (the rope-equal and row-equal checks) runs its ops on one intra-op thread inside
    ``checks_on`` (a rank, beside the prompt workers), whatever the process uses, and gives the count back after,
    also when the check raises; outside it (a report, the command's summary) on the process's threads."""
    import torch

    from ropeshift.eval import report_headline as rh

    seen, real = [], rh._method

    class Spy:  # the method as resolved, its rel noting the threads it runs on
        def __init__(self, m):
            self.m = m

        def __getattr__(self, name):
            return getattr(self.m, name)

        def rel(self, *a):
            seen.append(torch.get_num_threads())
            return self.m.rel(*a)

    monkeypatch.setattr(rh, "_method", lambda *a: Spy(real(*a)))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(rh, "_ROPE_LENGTHS", {})
        with rh.checks_on("cpu"):
            assert rope_lengths("string", STRING_PARAMS, [256, 300, 512]) == [256, 300]  # S = 400
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        monkeypatch.setattr(rh, "_ROPE_LENGTHS", {})
        assert rope_lengths("string", STRING_PARAMS, [256, 300, 512]) == [256, 300]
        assert seen and set(seen) == {2} and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), rh.one_thread():
            raise RuntimeError
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_checks_run_on_the_device_asked_for_and_fall_back_to_the_cpu(monkeypatch):
    """``checks_on(device)``: the checks' tensors are made there (the runner's rank 0: its GPU); where a check
    cannot run there (here the meta device, which has no values) it warns once and answers on the CPU, the same
    answers as without the context."""
    import torch

    from ropeshift.eval import report_headline as rh

    made = []
    real_match = rh._match
    monkeypatch.setattr(rh, "_match", lambda *a: made.append(a[4]) or real_match(*a))
    string = rh._method("string", STRING_PARAMS)  # S = 400: RoPE below 400 tokens, not at 512
    cpu = [rh._rows_match(string, 0, n) for n in (256, 512)]
    assert cpu == [True, False] and made == [None, None]
    made.clear()
    with pytest.warns(UserWarning, match="failed on meta"), rh.checks_on("meta"):
        assert [rh._rows_match(string, 0, n) for n in (256, 512)] == cpu
    assert made == [torch.device("meta"), None, None]  # one try there, then the CPU for the rest of the context
    made.clear()
    with rh.checks_on("cpu"):  # a CPU device: the CPU path, on one thread
        assert rh._rows_match(string, 0, 256) and made == [None]
    assert rh._DEVICE.get() is None


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_the_joins_are_the_same_on_a_gpu(tiny_llama):
    """``rope_share.equal_lengths`` of ruler-lite's rows on a CUDA model (its checks there: ``checks_on``) gives
    the CPU model's answer, which is not empty (rows copy rope and earlier rows at the shorter lengths)."""
    from ropeshift.eval import report_headline as rh, rope_share
    from ropeshift.eval.suites import SUITES

    answers = []
    for device in ("cpu", "cuda"):
        rh._ROPE_LENGTHS.clear()
        rope_share._SAME.clear()
        answers.append(rope_share.equal_lengths(tiny_llama.to(device), SUITES["ruler-lite"].methods,
                                                [128, 256, 512, 1024]))
    tiny_llama.to("cpu")
    assert answers[0] == answers[1] and answers[0]["lm_infinite"] == {128: "rope", 256: "rope", 512: "rope"}


def test_report_opens_with_headline_and_run_details(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    sections = [line for line in out.splitlines() if line.startswith("## ")]
    assert sections[:4] == ["## Headline", "## Run details", "## Mean over tasks", "## Paired difference from rope"]
    assert "| string | 0.5k | 0.5k | 87.5 [" in out and "| 256 |" in out   # '= rope at' 256
    assert "100.0 [91.2, 100.0] (= rope)" in out and "'(= rope)': the method is exactly rope" in out
    assert "| command | ropeshift eval --model tiny |" in out and "| wall time | 12 s in all" in out
    assert f'"shift": {SHIFT}' in out
    # no effective length here has a bracket, so the note does not promise one
    assert "brackets" not in out.split("## Mean over tasks")[1].split("##")[0]


def test_bracket_note_appears_only_with_brackets(tmp_path, capsys):
    root = write_run(tmp_path / "runs", tasks=("needle",))
    # rope fails at 512 (0 %) but passes at 768 alone: effective "256 (768)" by the absolute rule
    for path in root.rglob("rope/512.jsonl"):
        lines = [dict(json.loads(x), score=0.0) for x in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    for path in root.rglob("rope/768.jsonl"):
        lines = [dict(json.loads(x), score=1.0) for x in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["report", str(root), "--out", str(tmp_path / "rep"), "--no-plots", "--threshold", "85.6"]) == 0
    out = capsys.readouterr().out
    assert "| 256 (768) |" in out and "In brackets, where it differs: the largest length that passes on its own" in out


def test_run_meta_is_written_by_a_real_run_only(tmp_path):
    from ropeshift.eval.run_meta import read_run_meta, record_invocation

    assert main(["eval", "--dry-run", "--out", str(tmp_path)]) == 0
    assert read_run_meta(tmp_path) == {}
    cfg = SimpleNamespace(out=tmp_path, model="m", tasks=("passkey",), lengths=(1024,), samples=3, seed=1,
                          batch_size=2, batch_tokens=None, impl=None, plain_attention="model", methods=())
    args = SimpleNamespace(command="eval", model="m", samples=3, dry_run=False, func=None)
    record_invocation(cfg, args, 100.0, 112.0, "complete")
    record_invocation(cfg, args, 200.0, 203.0, "interrupted")
    meta = read_run_meta(tmp_path)["m"]
    assert [m["wall_s"] for m in meta] == [12.0, 3.0] and meta[1]["status"] == "interrupted"
    assert meta[0]["command"].startswith("ropeshift eval") and "--samples 3" in meta[0]["command"]
    assert "torch" in meta[0]["versions"] and not list(tmp_path.rglob("*.jsonl"))  # never read as records


def test_window_falls_back_to_the_longest_tested_length(run_dir):
    recs = [r for r in iter_records(run_dir) if r["length"] <= 512]
    head = build_headline(recs, 8192)          # no tested length in [4k, 8k]: window [M/2, M], M = 512
    assert head.window == (256, 512) and "at 256-0.5k" in head.sentence


def test_needle_prints_the_headline_first_and_records_the_run(tmp_path, capsys, monkeypatch, tok, tiny_llama):
    from ropeshift.eval import cli_common
    from ropeshift.eval.run_meta import read_run_meta

    monkeypatch.setattr(cli_common, "load", lambda args: (tiny_llama, tok))
    assert main(["needle", "--lengths", "384,512", "--depths", "1", "--methods", "rope,string", "--shift", "400",
                 "--window", "16", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.index("Headline:") < out.index("| method | effective (score > 85.6)") < out.index("needle accuracy")
    row = next(line for line in out.splitlines() if line.startswith("| string-shift400-window16 |"))
    assert row.endswith("| 384 |")                           # S = 400: rope up to 400 tokens, not at 512
    meta = read_run_meta(tmp_path)["smollm2-135m"]
    assert meta[0]["status"] == "complete" and meta[0]["methods"]["string-shift400-window16"]["params"]["shift"] == 400
