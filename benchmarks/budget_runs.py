"""How much decode a score-preserving early stop could save, from stored generation records (issue 10).

A row that runs to its token budget keeps its batch decoding. The substring scorers cannot change a row's score
once every reference occurs in its text, so such a row could stop there. For each task this prints the rows
that ran to their budget (within 2 tokens), how many of them already held every reference (and could have
stopped), and the tokens they spent after that point.

Run (CPU, ~1 min):  PYTHONPATH=src python benchmarks/budget_runs.py --records <records folder> [--model smollm2-135m]
e.g. after `tar xzf results/smollm2-135m_h200_2026-12-03.tgz -C /tmp/rec`: --records /tmp/rec
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path


def first_full_prefix(tokenizer, ids: list[int], refs: list[str]) -> int | None:
    """The fewest leading tokens of ``ids`` whose text holds every reference (case-insensitive), or None."""
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:n]).lower()
        if all(r in text for r in refs):
            return n
    return None


def budget_runs(records, tokenizer, budgets: dict[str, int]) -> dict[str, list[int]]:
    """{task: [rows, rows at their budget, of those holding every reference, tokens after the references]}."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in records:
        if r.kind != "generation" or r.task not in budgets:
            continue
        ids = tokenizer(r.prediction or "", add_special_tokens=False)["input_ids"]
        row = out[r.task]
        row[0] += 1
        if len(ids) >= budgets[r.task] - 2:
            row[1] += 1
            n = first_full_prefix(tokenizer, ids, [x.lower() for x in r.references])
            if n is not None:
                row[2] += 1
                row[3] += len(ids) - n
    return dict(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", required=True, help="a records folder (as `ropeshift eval --out` writes)")
    p.add_argument("--model", default="smollm2-135m", help="the model whose tokenizer counts the tokens")
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    from ropeshift.eval.records import iter_records
    from ropeshift.eval.tasks.base import resolve_task
    from ropeshift.loader import resolve_model_path

    folder, gguf = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
    records = list(iter_records(Path(args.records)))
    budgets = {}
    for t in {r.task for r in records if r.kind == "generation"}:
        budgets[t] = resolve_task(t).max_new_tokens
    table = budget_runs(records, tokenizer, budgets)
    print("| task | budget | rows | at budget | of them holding every reference | tokens after the references |")
    print("|---|---|---|---|---|---|")
    for task, (rows, full, held, after) in sorted(table.items()):
        print(f"| {task} | {budgets[task]} | {rows} | {full} | {held} | {after} |")
    return table


if __name__ == "__main__":
    main()
