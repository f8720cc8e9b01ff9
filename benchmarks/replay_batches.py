"""How the runner would batch a stored study now: generation batches and decode steps per length (CPU, no model run).

Run:  PYTHONPATH=src python benchmarks/replay_batches.py --records results/smollm2-135m_h100_2026-12-05.tgz \\
          --workers 4 --batch-tokens 600000

The records' prompts are dealt to ``--workers`` ranks (``batching.shard``), grouped (``length_buckets``) and cut
(``cut_batches``) with the merged answer-budget buckets of the CUDA decode loop, exactly as ``runner.run`` does;
a batch decodes to its longest row's end (rebuilt from the prediction, ``estimate_compaction.read_rows``), so its
steps are ``max(min(end, budget))`` over its rows. Compare the batch log of a GPU run of the same study
(``benchmarks/batch_profile.py``: batches and steps per bucket and length) to see what a batching change saves.
"""
from __future__ import annotations

from collections import Counter

from estimate_compaction import batches, read_study, study_parser


def main() -> None:
    args = study_parser(__doc__, batch_tokens=600000, workers=4).parse_args()
    recs, tasks, cfg = read_study(args)
    count, steps, rows = Counter(), Counter(), Counter()
    for length, _, batch in batches(recs, tasks, cfg, args.workers, merged=True):
        count[length] += 1
        steps[length] += max(min(end, budget) for end, budget in batch)
        rows[length] += len(batch)
    print(f"{args.workers} ranks, {args.batch_tokens} tokens a batch, merged buckets: "
          f"{sum(count.values())} generation batches, {sum(steps.values())} decode steps, {sum(rows.values())} rows")
    print("| length | batches | rows | decode steps |\n|---|---|---|---|")
    for n in sorted(count):
        print(f"| {n} | {count[n]} | {rows[n]} | {steps[n]} |")


if __name__ == "__main__":
    main()
