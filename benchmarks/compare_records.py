"""Two stored studies of the same prompts, record by record: how many prompts, texts and scores agree (CPU).

Run:  PYTHONPATH=src python benchmarks/compare_records.py results/smollm2-135m_h200_2026-12-03.tgz \\
          results/smollm2-135m_h100_2026-12-06.tgz

Each argument is a records folder or a .tgz of one. Generation records are matched by (task, method, length,
sample index); per method the table gives the matched records, how many were made from the same prompt (its
hash), and of those the share with the same generated text and the same score. Two runs of one study on other
GPUs or with other batch compositions differ in a few percent of their scores (bf16 rounding moves near-ties of
greedy decoding); a prompt-hash mismatch means the studies are not the same study (seed, haystack, options).
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from estimate_compaction import records_folder

from ropeshift.eval.records import GENERATION, iter_records


def generation_records(root: Path) -> dict:
    """``{(task, method, length, index): Record}`` of the generation records under ``root``."""
    return {(r.task, r.method, r.length, r.index): r for r in iter_records(root) if r.kind == GENERATION}


def compare(a: dict, b: dict) -> dict[str, Counter]:
    """Per method: ``matched`` (keys in both), ``same_prompt``, and among those ``same_text`` and ``same_score``."""
    out: dict[str, Counter] = {}
    for key in a.keys() & b.keys():
        ra, rb = a[key], b[key]
        c = out.setdefault(key[1], Counter())
        c["matched"] += 1
        if ra.prompt_hash != rb.prompt_hash:
            continue
        c.update(same_prompt=1, same_text=ra.prediction == rb.prediction, same_score=ra.score == rb.score)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("first", help="a records folder or a .tgz of one")
    p.add_argument("second", help="another, of the same prompts")
    args = p.parse_args()
    with records_folder(args.first) as first, records_folder(args.second) as second:
        a, b = generation_records(first), generation_records(second)
    per = compare(a, b)
    print(f"generation records: {len(a)} and {len(b)}, {sum(c['matched'] for c in per.values())} matched\n")
    print("| method | matched | same prompt | same text | same score | scores that differ |")
    print("|---|---|---|---|---|---|")
    total = Counter()
    for method in sorted(per):
        c = per[method]
        total.update(c)
        n = max(1, c["same_prompt"])
        print(f"| {method} | {c['matched']} | {c['same_prompt']} | {c['same_text'] / n:.1%} | "
              f"{c['same_score'] / n:.1%} | {1 - c['same_score'] / n:.1%} |")
    n = max(1, total["same_prompt"])
    print(f"| **all** | {total['matched']} | {total['same_prompt']} | {total['same_text'] / n:.1%} | "
          f"{total['same_score'] / n:.1%} | {1 - total['same_score'] / n:.1%} |")


if __name__ == "__main__":
    main()
