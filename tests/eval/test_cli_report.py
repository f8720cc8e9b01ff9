"""CLI: eval/needle --dry-run, bad arguments, and report on a small stored run.

Run: pytest tests/eval/test_cli_report.py -v
"""
from __future__ import annotations

from html.parser import HTMLParser

import pytest

from ropeshift.cli.main import main
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.report_tables import Threshold
from ropeshift.eval.runner import RunConfig, run
from ropeshift.eval.tasks import TaskOptions


def test_eval_dry_run_prints_plan(tmp_path, capsys):
    assert main(["eval", "--dry-run", "--tasks", "passkey,niah4", "--lengths", "1k,2k", "--samples", "3",
                 "--methods", "rope,string", "--shift", "512", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "passkey" in out and "niah4" in out and "string-shift512" in out
    assert "1k:3  2k:3" in out and "24 samples to run" in out
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_needle_dry_run(tmp_path, capsys):
    assert main(["needle", "--dry-run", "--depths", "3", "--samples", "2", "--out", str(tmp_path)]) == 0
    assert "needle" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["eval", "--dry-run", "--tasks", "pasky"], "Did you mean: passkey"),
    (["eval", "--dry-run", "--samples", "0"], "--samples must be >= 1"),
    (["eval", "--dry-run", "--lengths", "4kb"], "bad length"),
    (["eval", "--dry-run", "--haystack", "kvj"], "Did you mean: kjv"),
    (["eval", "--dry-run", "--methods", "rope", "--shift", "100"], "'string' is not in --methods"),
    (["needle", "--dry-run", "--samples", "0"], "--samples must be >= 1"),
    (["report", "/nonexistent/run"], "no results folder"),
])
def test_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory, tok, tiny_llama):
    out = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(model="tiny", tasks=("needle", "perplexity:single"), lengths=(384, 512),
                    methods=(MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16})), samples=3,
                    out=out, batch_size=3, options=TaskOptions(depths=3))
    run(cfg, tiny_llama, tok, progress=False)
    # niah4 generates 128 tokens: one method, one length keeps the fixture quick
    run(RunConfig(model="tiny", tasks=("niah4",), lengths=(384,), methods=(MethodSpec("rope"),), samples=2,
                  out=out, batch_size=2), tiny_llama, tok, progress=False)
    return out


def test_report_writes_tables_plots_and_html(stored_run, tmp_path, capsys):
    dest = tmp_path / "report"
    assert main(["report", str(stored_run), "--out", str(dest), "--threshold", "85.6"]) == 0
    out = capsys.readouterr().out
    assert "## Mean over tasks" in out and "## Task needle" in out and "Perplexity: perplexity:single" in out
    assert "niah4 per-needle recall" in out
    for name in ("needle_heatmap.png", "needle_depth.png", "perplexity_single_ppl.png", "summary.csv"):
        assert (dest / name).stat().st_size > 0
    page = _Collect()
    page.feed((dest / "report.html").read_text())
    assert page.tags.count("table") >= 4
    assert len(page.imgs) >= 3 and all(src.startswith("data:image/png;base64,") for src in page.imgs)
    csv_rows = (dest / "summary.csv").read_text().splitlines()
    assert csv_rows[0].startswith("model,method,task,length") and len(csv_rows) == 1 + 2 * 2 + 1 + 2 * 2


def test_ruler_table_effective_length():
    from ropeshift.eval.report_tables import Cell, ruler_table

    summary = {("m", "rope", "t", 1024): Cell.of([1.0] * 10), ("m", "rope", "t", 2048): Cell.of([1.0] * 8 + [0.0] * 2),
               ("m", "rope", "t", 4096): Cell.of([1.0] * 9 + [0.0])}
    table = ruler_table(summary, Threshold(absolute=85.6, relative=None))
    assert table.splitlines()[2].endswith("| 1k (4k) |")   # 80 % at 2k fails the prefix rule, 4k passes alone
    table = ruler_table(summary, Threshold(relative=0.75))
    assert table.splitlines()[2].endswith("| >=4k |")


def test_mean_over_tasks_leaves_out_incomplete_tasks():
    """An interrupted run: task b lacks string at 2k, so the mean averages task a alone, for both methods."""
    from ropeshift.eval.report_tables import Cell, complete_tasks, method_length_scores

    summary = {("m", meth, "a", n): Cell.of([1.0, 0.0]) for meth in ("rope", "string") for n in (1024, 2048)}
    summary.update({("m", "rope", "b", 1024): Cell.of([1.0]), ("m", "rope", "b", 2048): Cell.of([1.0]),
                    ("m", "string", "b", 1024): Cell.of([1.0])})
    assert complete_tasks(summary) == {"m": (["a"], ["b"])}
    # a cell stopped part-way (string has 1 sample of c at 2k, rope 2): c is not complete either
    partial = {**summary, **{("m", meth, "c", n): Cell.of([1.0, 0.0]) for meth in ("rope", "string")
                             for n in (1024, 2048)}, ("m", "string", "c", 2048): Cell.of([1.0])}
    assert complete_tasks(partial) == {"m": (["a"], ["b", "c"])}
    scores = method_length_scores(summary)
    assert {k: {n: v[0] for n, v in d.items()} for k, d in scores.items()} == {
        ("m", "rope"): {1024: 50.0, 2048: 50.0}, ("m", "string"): {1024: 50.0, 2048: 50.0}}
