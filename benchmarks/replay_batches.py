"""How the runner would batch a stored study now: generation batches and decode steps per length (CPU, no model run).

Run:  PYTHONPATH=src python benchmarks/replay_batches.py --records results/smollm2-135m_h100_2026-12-05.tgz \\
          --workers 4 --batch-tokens 600000

The records' prompts are dealt to ``--workers`` ranks (``batching.shard``), grouped (``length_buckets``) and cut
(``cut_batches``) with the merged answer-budget buckets of the CUDA decode loop, exactly as ``runner.run`` does;
a batch decodes to its longest row's end (rebuilt from the prediction, ``estimate_compaction.read_rows``), so its
steps are ``max(min(end, budget))`` over its rows; decode and capture rank-seconds are estimated with the H200
study's per-length costs (``MS_PER_STEP``, ``CAPTURE_S``; measured: 581 + 106 rank-s for 30,004 steps in 280
batches). The row-steps line bounds what a decode loop that refills ended rows with new prompts could reach:
every row's own steps packed into full batches of a length (the floor), and what such a loop would take where
it can refill only from its own ``length_buckets`` entry (one method and length: one method is active per
forward; a row takes the first free slot, the loop runs until its last slot is done); the last line,
``batching.deal``'s estimated cost per rank.
Compare the batch log of a GPU run of the same study
(``benchmarks/batch_profile.py``: batches and steps per bucket and length) to see what a batching change saves.
"""
from __future__ import annotations

from collections import Counter

import heapq

from estimate_compaction import entries, read_study, study_parser, study_work

from ropeshift.eval.batching import deal, rows_per_batch

# Generation costs per process, by prompt length, from the H200 study of 2026-12-06 (4 MPS processes, 600k-token
# batches, benchmarks/RESULTS.md: its batch log's decode seconds / steps and capture seconds / batches per length).
# Prefill and likelihood do not depend on how rows are cut into batches, so the estimate leaves them out.
MS_PER_STEP = {1024: 12.5, 2048: 19.4, 4096: 22.5, 6144: 22.2, 8192: 18.0}
CAPTURE_S = {1024: 0.33, 2048: 0.31, 4096: 0.25, 6144: 0.35, 8192: 0.33}   # 1k: its 24 s held first compiles


def refill_loop_steps(ends: list[int], slots: int) -> int:
    """Steps of a decode loop with ``slots`` rows that gives each ended row's slot to the next row (in order):
    the last slot's finish."""
    free = [0] * min(slots, len(ends))
    for e in ends:
        heapq.heappush(free, heapq.heappop(free) + e)
    return max(free, default=0)


def replay(recs: dict, tasks: dict, cfg, workers: int) -> dict:
    """Per length: ``{"batches", "rows", "steps", "row_steps", "refill_steps", "entry_refill_steps"}`` of the study
    ``recs`` (``estimate_compaction.read_rows``' rows) as the runner would cut it now over ``workers`` ranks
    (merged buckets); ``refill_steps``: its rows' own steps packed into full batches of ``rows_per_batch`` rows;
    ``entry_refill_steps``: a refilling loop over each entry's rows (``refill_loop_steps``)."""
    out: dict[int, Counter] = {}
    for length, cut in entries(recs, tasks, cfg, workers, merged=True):
        c = out.setdefault(length, Counter())
        every = []
        for _, batch in cut:
            ends = [min(end, budget) for end, budget in batch]
            c.update(batches=1, rows=len(batch), steps=max(ends), row_steps=sum(ends))
            every += ends
        c["entry_refill_steps"] += refill_loop_steps(every, rows_per_batch(cfg, length))
    for length, c in out.items():
        c["refill_steps"] = -(-c["row_steps"] // rows_per_batch(cfg, length))
    return out


def main() -> None:
    args = study_parser(__doc__, batch_tokens=600000, workers=4).parse_args()
    recs, tasks, cfg = read_study(args)
    per = replay(recs, tasks, cfg, args.workers)
    total = {k: sum(c[k] for c in per.values())
             for k in ("batches", "rows", "steps", "row_steps", "refill_steps", "entry_refill_steps")}
    print(f"{args.workers} ranks, {args.batch_tokens} tokens a batch, merged buckets: {total['batches']} generation "
          f"batches, {total['steps']} decode steps, {total['rows']} rows")
    print("| length | batches | rows | decode steps | est. decode + capture rank-s (H200, 4 processes) |")
    print("|---|---|---|---|---|")
    priced = 0.0
    for n in sorted(per):
        near = min(MS_PER_STEP, key=lambda k: abs(k - n))
        est = per[n]["steps"] * MS_PER_STEP[near] / 1000 + per[n]["batches"] * CAPTURE_S[near]
        priced += est
        print(f"| {n} | {per[n]['batches']} | {per[n]['rows']} | {per[n]['steps']} | {est:.0f} |")
    print(f"| all | {total['batches']} | {total['rows']} | {total['steps']} | {priced:.0f} |")
    print(f"\nrow-steps (rows x their own steps) {total['row_steps']}; packed into full batches (a row-refilling "
          f"decode loop's lower bound): {total['refill_steps']} steps ("
          + ", ".join(f"{n}: {per[n]['refill_steps']}" for n in sorted(per)) + "); refilling only within each "
          f"entry (one method and length): {total['entry_refill_steps']} steps")
    _, load = deal(study_work(recs, cfg), args.workers, lambda n: rows_per_batch(cfg, n), merged=True)
    print(f"shard's estimated cost per rank (generation rows, M token-equivalents): "
          f"{', '.join(f'{x / 1e6:.1f}' for x in load)}; max / mean {max(load) * len(load) / sum(load):.3f}")


if __name__ == "__main__":
    main()
