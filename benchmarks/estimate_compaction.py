"""What row compaction saves the study's decode, from its records (issue 10; CPU, no model run).

Run:  PYTHONPATH=src python benchmarks/estimate_compaction.py --records results/smollm2-135m_h200_2026-12-03.tgz
      [--batch-tokens 400000] [--workers 6] [--fractions 0.25,0.5,0.75] [--out compaction_estimate.md]

Per generation record the row's end (new tokens until the stopper ended it) is rebuilt from its prediction: the
tokens of the text (the prediction is cut at the row's end), that many when the answer-end stop holds on it
(the token that closed the line is the last one kept), the task's budget when it reached it, else one more (EOS,
which the text leaves out). Retokenising the text may differ from the generated tokens by a token or so.

Batches are formed as the runner forms them where ended rows are not retired (``batching.shard`` in
batch-sized chunks over ``--workers`` ranks on a fresh study, ``length_buckets`` and ``cut_batches`` with the
power-of-4 buckets, ``rows_per_batch`` rows a batch); the
records do not say which batch a row was in (their ``seconds`` is the batch's share), and the archive's
batches came from calls with other batch budgets and worker counts, so the study as the runner would batch it
now is what is priced. Per batch ``row_compaction.decode_batch_sizes`` replays the graph loop's schedule (2
warm-up steps, checks every 4 steps, 1 warm-up step after a compaction) without and with compaction:
forwards (decode steps) and row-steps (rows x steps: what a step's KV reads scale with).
"""
from __future__ import annotations

import argparse
import contextlib
import tarfile
import tempfile
from collections import defaultdict, namedtuple
from pathlib import Path
from types import SimpleNamespace

from ropeshift.eval.generation import AnswerEnd, STOP_CHECK_EVERY
from ropeshift.eval.graph_decode import REWARM_STEPS, WARMUP_STEPS
from ropeshift.eval.options import MethodSpec, format_length
from ropeshift.eval.parallel import Ranks
from ropeshift.eval.records import GENERATION, iter_records
from ropeshift.eval.rope_share import SAME_AS
from ropeshift.eval.row_compaction import COMPACTION, Compaction, decode_batch_sizes
from ropeshift.eval.batching import cut_batches, decode_bucket, length_buckets, rows_per_batch, shard
from ropeshift.eval.runner import RunConfig
from ropeshift.eval.suites import SUITES
from ropeshift.eval.tasks import resolve_task


def row_end(tokenizer, task, rec) -> int:
    """New tokens the row decoded until its stop (1 <= end <= the task's budget)."""
    budget = task.max_new_tokens
    n = len(tokenizer(rec.prediction or "", add_special_tokens=False).input_ids)
    if n and AnswerEnd(rec.references)(rec.prediction):
        end = n
    elif n >= budget:
        end = budget
    else:
        end = n + 1
    return max(1, min(end, budget))


_Row = namedtuple("_Row", "label")  # a method row as the runner sees it (its label; batching.length_buckets)


def study_work(recs: dict, cfg: RunConfig) -> list[tuple]:
    """The runner's ``[(method, task, length, pending samples)]`` for a fresh run of ``recs``' prompts, in
    ``plan_work``'s order: the suite's tasks, then lengths, then methods."""
    work = defaultdict(list)
    for (task, method, length, index), (n_tokens, _) in recs.items():
        work[task, length, _Row(method)].append(SimpleNamespace(index=index, n_tokens=n_tokens))
    rank_of = {t: i for i, t in enumerate(cfg.tasks)}
    return [(m, t, n, sorted(todo, key=lambda s: s.index))
            for (t, n, m), todo in sorted(work.items(), key=lambda kv: (rank_of[kv[0][0]], kv[0][1], kv[0][2].label))]


def entries(recs: dict, tasks: dict, cfg: RunConfig, world: int, merged: bool = False):
    """(length, [(decode bucket, [(end, budget), ...]) per batch]) per ``length_buckets`` entry (one method, one
    length, one bucket) of every rank, as the runner deals and cuts them (work in ``plan_work``'s order: the
    suite's tasks, then lengths, then methods; ``merged``: the buckets of a run that retires ended rows,
    ``batching.decode_bucket``). A decode step holds rows of one entry only: one method is active per forward."""
    work = study_work(recs, cfg)
    for rank in range(world):
        mine = shard(work, Ranks(rank, world), lambda length: rows_per_batch(cfg, length), merged)
        for method, length, cells in length_buckets(mine, merged):
            pending = [(s, name) for name, todo in cells for s in todo]
            yield length, [(decode_bucket(tasks[rows[0][1]], merged)[-1],
                            [(recs[name, method.label, length, s.index][1], tasks[name].max_new_tokens)
                             for s, name in rows])
                           for rows in cut_batches(pending, tasks, rows_per_batch(cfg, length), merged)]


def batches(recs: dict, tasks: dict, cfg: RunConfig, world: int, merged: bool = False):
    """(length, decode bucket, [(end, budget), ...]) per batch of every rank (``entries``, flattened)."""
    for length, cut in entries(recs, tasks, cfg, world, merged):
        for bucket, rows in cut:
            yield length, bucket, rows


@contextlib.contextmanager
def records_folder(path):
    """A records folder as a ``Path``: ``path`` itself, or a .tgz of one unpacked into a temporary folder that
    lives as long as the ``with`` block."""
    root = Path(path)
    if not root.is_file():
        yield root
        return
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(root) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def read_rows(records: str, tokenizer_name: str) -> tuple[dict, dict]:
    """``({(task, method, length, index): (prompt tokens, row end)}, {task: Task})`` of the generation records
    in a records folder or a .tgz of one; row ends by ``row_end`` with the named model's tokenizer."""
    from ropeshift.loader import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_name)
    recs, tasks = {}, {}
    with records_folder(records) as root:
        for r in iter_records(root):
            if r.kind != GENERATION or r.details.get(SAME_AS):  # copies of the rope row's records cost nothing
                continue
            task = tasks.setdefault(r.task, resolve_task(r.task))
            recs[r.task, r.method, r.length, r.index] = (r.n_tokens, row_end(tokenizer, task, r))
    return recs, tasks


def study_parser(doc: str, batch_tokens: int, workers: int) -> argparse.ArgumentParser:
    """The options of a study replayed from its records (``read_study``)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--records", required=True, help="a records folder or a .tgz of one")
    p.add_argument("--tokenizer", default="smollm2-135m", help="embedded model name or folder (its tokenizer)")
    p.add_argument("--batch-tokens", type=int, default=batch_tokens)
    p.add_argument("--workers", type=int, default=workers)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--suite", default="ruler-lite", help="its task order (the runner deals prompts in it)")
    return p


def read_study(args) -> tuple[dict, dict, RunConfig]:
    """``read_rows``' rows and tasks, and a run of the records' tasks (in the suite's order: the runner deals
    prompts in it) and lengths with ``study_parser``'s options."""
    recs, tasks = read_rows(args.records, args.tokenizer)
    suite = SUITES[args.suite].tasks
    order = [t for t in suite if t in tasks] + sorted(set(tasks) - set(suite))
    cfg = RunConfig(model="m", tasks=tuple(order), lengths=tuple(sorted({k[2] for k in recs})),
                    methods=(MethodSpec("rope"),), samples=args.samples, batch_tokens=args.batch_tokens)
    return recs, tasks, cfg


def main() -> None:
    p = study_parser(__doc__, batch_tokens=400000, workers=6)
    p.add_argument("--fractions", default=f"{COMPACTION.fraction}", help="compaction thresholds to compare")
    p.add_argument("--min-steps-left", type=int, default=COMPACTION.min_steps_left)
    p.add_argument("--out", default=None, help="markdown file")
    args = p.parse_args()

    recs, tasks, cfg = read_study(args)
    policies = {f: Compaction(float(f), args.min_steps_left) for f in args.fractions.split(",")}
    acc = defaultdict(lambda: defaultdict(float))
    for length, bucket, rows in batches(recs, tasks, cfg, args.workers):
        ends = [e for e, _ in rows]
        max_new = max(b for _, b in rows)
        kw = dict(check_every=STOP_CHECK_EVERY, warmup=WARMUP_STEPS, rewarm=REWARM_STEPS)
        today = decode_batch_sizes(ends, max_new, policy=None, **kw)
        for key in ((length, bucket), (length, "all"), ("all", "all")):
            a = acc[key]
            a["batches"] += 1
            a["rows"] += len(rows)
            a["row_ends"] += sum(ends)
            a["forwards"] += len(today)
            a["row_steps"] += sum(today)
            a["kv"] += sum(today) * length
            for f, policy in policies.items():
                sizes = decode_batch_sizes(ends, max_new, policy=policy, **kw)
                a[f"forwards {f}"] += len(sizes)
                a[f"row_steps {f}"] += sum(sizes)
                a[f"kv {f}"] += sum(sizes) * length
                a[f"compactions {f}"] += sum(1 for x, y in zip(sizes, sizes[1:]) if y < x)
    head = ["length", "bucket", "batches", "rows/batch", "mean row end", "forwards/batch", "row-steps today"]
    for f in policies:
        head += [f"row-steps @{f}", f"cut @{f}", f"compactions/batch @{f}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(acc, key=lambda k: (k[0] == "all", k[0] if k[0] != "all" else 0, k[1] == "all",
                                       k[1] if k[1] != "all" else 0))
    for key in order:
        a = acc[key]
        cells = [format_length(key[0]) if key[0] != "all" else "all", str(key[1]), f"{a['batches']:.0f}",
                 f"{a['rows'] / a['batches']:.1f}", f"{a['row_ends'] / a['rows']:.1f}",
                 f"{a['forwards'] / a['batches']:.1f}", f"{a['row_steps']:.0f}"]
        for f in policies:
            cells += [f"{a[f'row_steps {f}']:.0f}", f"{1 - a[f'row_steps {f}'] / a['row_steps']:.0%}",
                      f"{a[f'compactions {f}'] / a['batches']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    total = acc["all", "all"]
    notes = ["\nKV-weighted (row-steps x prompt length) cut over the whole study: " + ", ".join(
        f"@{f} {1 - total[f'kv {f}'] / total['kv']:.0%}" for f in policies),
        f"decode forwards: today {total['forwards']:.0f}, " + ", ".join(
        f"@{f} {total[f'forwards {f}']:.0f}" for f in policies),
        f"ideal (each row only to its own end): {total['row_ends']:.0f} row-steps "
        f"({1 - total['row_ends'] / total['row_steps']:.0%} below today)"]
    text = (f"{len(recs)} generation records, batch-tokens {args.batch_tokens}, {args.workers} ranks, "
            f"min steps left {args.min_steps_left}\n\n" + "\n".join(lines) + "\n" + "\n".join(notes) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
