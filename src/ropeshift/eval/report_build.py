"""Build a report folder from stored records: report.md, summary.csv, PNG plots and report.html.

    build_report(Path("runs/smollm2-135m"), Path("runs/smollm2-135m/report"), Threshold(absolute=85.6))

The report opens with the headline (``report_headline``: per method, effective length by RULER's absolute
and by the relative rule, mean over [L/2, L] and its paired gain over rope, then one sentence), the length
curve with 95 % bands, and the run details (``run_meta``). Generation tasks then give the RULER-style
table (mean over tasks per method x length, Wilson 95 % CI, effective length, '(= rope)' marks), the
paired differences from rope per length, and one table per task; depth-carrying tasks give heatmaps and depth curves;
``niah4`` gives per-needle recall; perplexity tasks give tables and a PPL-vs-length plot with the
training length (from ``run.json``) marked.
Run: ropeshift report RUNDIR
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from .records import iter_records, read_manifests, safe_name
from .report_headline import BASELINE, build_headline, paired_rows, rope_equal_lengths
from .report_html import HtmlPage
from .report_tables import (Threshold, complete_tasks, has_brackets, markdown, method_length_scores, perplexities,
                            perplexity_rows, ruler_rows, summarise, task_rows)
from .run_meta import details_rows, read_run_meta
from .tasks import resolve_task


@dataclass
class Report:
    markdown: str
    files: list[Path] = field(default_factory=list)


def _write_csv(path: Path, summary, ppl) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "method", "task", "length", "score_pct", "ci_lo_pct", "ci_hi_pct", "n", "perplexity",
                    "tokens_scored"])
        for (model, method, task, length), c in sorted(summary.items()):
            w.writerow([model, method, task, length, f"{100 * c.mean:.2f}", f"{100 * c.lo:.2f}", f"{100 * c.hi:.2f}",
                        c.n, "", ""])
        for (model, method, task, length), (p, tok, n) in sorted(ppl.items()):
            w.writerow([model, method, task, length, "", "", "", n, f"{p:.4f}", tok])


def _task_tables(task: str, records: list):
    """The task's own extra tables; none for a task this version does not know."""
    try:
        return resolve_task(task).report_tables(records)
    except (KeyError, ValueError):
        return []


def build_report(rundir: Path, out: Path, threshold: Threshold, plots: bool = True) -> Report:
    records = list(iter_records(rundir))
    if not records:
        raise ValueError(f"no records under {rundir} (run `ropeshift eval` or `ropeshift needle` first)")
    out.mkdir(parents=True, exist_ok=True)
    manifests = read_manifests(rundir)
    train = next((m.get("train_length") for m in manifests.values() if m.get("train_length")), None)
    models = sorted({r.get("model", "") for r in records})
    summary, ppl = summarise(records), perplexities(records)
    # plots group by method only: with several models, name each line/panel model/method
    plot_records = records if len(models) < 2 else [dict(r, method=f"{r.get('model')}/{r['method']}") for r in records]
    methods = sorted({r["method"] for r in plot_records})
    gen_tasks = sorted({k[2] for k in summary})
    hay = {t: sorted({r["haystack"] for r in records if r["task"] == t}) for t in {r["task"] for r in records}}

    title = f"ropeshift report: {', '.join(models)}"
    page, md, files = HtmlPage(title), [f"# {title}", ""], []
    info = (f"training length {train or 'unknown'}; methods {', '.join(methods)}; "
            f"haystacks: " + "; ".join(f"{t}: {', '.join(h)}" for t, h in sorted(hay.items())))

    def add_table(heading: str, headers, rows, note: str | None = None, after: str | None = None,
                  text: bool = False):
        page.heading(heading)
        md.extend([f"## {heading}", ""])
        if note:
            page.note(note)
            md.extend([note, ""])
        page.table(headers, rows, text=text)
        md.extend([markdown(headers, rows), ""])
        if after:
            page.para(after)
            md.extend([after, ""])

    def add_image(name: str, alt: str, draw) -> None:
        path = out / name
        if plots and draw(path):
            files.append(path)
            page.image(path, alt)
            md.extend([f"![{alt}]({name})", ""])

    from . import report_plots as rp

    same = rope_equal_lengths(records) if gen_tasks else {}
    if gen_tasks:
        head = build_headline(records, train, summary)
        h_headers, h_rows = head.table()
        add_table("Headline", h_headers, h_rows, after=head.sentence,
                  note=f"Mean over the generation tasks complete for every method and length. Effective length: "
                       f"the largest tested length that, with every shorter one, scores above the pass mark; "
                       f"'<' = not even the shortest. Mean {head.window_label()} = over the tested lengths in "
                       f"[L/2, L] (L = the training length{f' {train}' if train else ''}; [M/2, M] with M the "
                       f"longest tested length when none lies in [L/2, L]), Wilson 95 % CI. Gain = paired "
                       f"difference from {BASELINE} on the same prompts in points, t interval stratified by task "
                       f"and length; * = the interval excludes 0. '= {BASELINE} at': lengths where the method "
                       f"is exactly {BASELINE} (same position matrix): the run copies {BASELINE}'s records there "
                       f"(without --compute-rope-equal), so its row equals {BASELINE}'s.")
        add_image("accuracy_vs_length.png", "mean score vs length, one curve per method with its 95 % band",
                  lambda p: rp.length_plot(method_length_scores(summary), train, p))
    meta = read_run_meta(rundir)
    add_table("Run details", ["item", "value"], details_rows(meta, manifests, records), text=True)
    page.note(info)
    md += [info, ""]
    if gen_tasks:
        complete = complete_tasks(summary)
        in_mean = sorted({t for k, _ in complete.values() for t in k})
        left_out = sorted({t for _, d in complete.values() for t in d})
        partial = (f" Left out of the mean because some method or length has no result yet: "
                   f"{', '.join(left_out)}." if left_out else "")
        r_headers, r_rows = ruler_rows(summary, threshold, rope_equal=same)
        brackets = (" In brackets, where it differs: the largest length that passes on its own."
                    if any(has_brackets(r[-1]) for r in r_rows) else "")
        marked = (f" '(= {BASELINE})': the method is exactly {BASELINE} at that length."
                  if any(same.values()) else "")
        add_table("Mean over tasks", r_headers, r_rows,
                  note=f"Score in %, [Wilson 95 % CI]; tasks: {', '.join(in_mean) or 'none complete'}.{partial} "
                       f"Effective length: {threshold.describe()} at that length and every shorter one."
                       f"{brackets}{marked}")
        p_headers, p_rows = paired_rows(records, summary)
        if p_rows:
            add_table(f"Paired difference from {BASELINE}", p_headers, p_rows,
                      note=f"Points of mean score, method minus {BASELINE} on the same prompts, [95 % CI] "
                           "(paired t interval stratified by task); * = the interval excludes 0; n = pairs.")
    for task in gen_tasks:
        add_table(f"Task {task}", *task_rows(summary, task))
        for table in _task_tables(task, [r for r in records if r.task == task]):
            add_table(table.heading, table.headers, table.rows, note=table.note)
        add_image(f"{safe_name(task)}_heatmap.png", f"{task} depth x length, one panel per method",
                  lambda p, t=task: rp.heatmaps(plot_records, t, methods, p))
        add_image(f"{safe_name(task)}_depth.png", f"{task} score by depth",
                  lambda p, t=task: rp.depth_curves(plot_records, t, methods, p))
    for task in sorted({k[2] for k in ppl}):
        h, rows, note = perplexity_rows(ppl, task)
        add_table(f"Perplexity: {task}", h, rows, note=note + "; perplexity = exp(sum nll / sum tokens)")
        add_image(f"{safe_name(task)}_ppl.png", f"{task} vs length",
                  lambda p, t=task: rp.perplexity_plot(ppl, t, train, p))

    (out / "report.md").write_text("\n".join(md))
    _write_csv(out / "summary.csv", summary, ppl)
    (out / "report.html").write_text(page.render())
    files += [out / "report.md", out / "summary.csv", out / "report.html"]
    return Report("\n".join(md), files)
