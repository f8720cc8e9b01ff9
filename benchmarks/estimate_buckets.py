"""What one generation bucket per length saves the study's decode, from its records (issue 10; CPU, no model run).

Run:  PYTHONPATH=src python benchmarks/estimate_buckets.py --records results/smollm2-135m_h100_2026-12-05.tgz
      [--batch-tokens 600000] [--workers 3] [--out buckets_estimate.md]

Batches are dealt and cut as the runner does (``estimate_compaction.batches``: ``batching.shard``,
``length_buckets``, ``cut_batches``, ``rows_per_batch``) under the two bucket policies of ``batching.decode_bucket``:

    pow4     answer budgets rounded up to a power of 4 (passkey 16, vt + kv_retrieval 64, niah + cwe 256): the
             runner's batches where ended rows are not retired (CPU, ``ROPESHIFT_RETIRE_ROWS=0``)
    merged   every generation task of a length and method in one bucket, longest budget first: the runner's
             batches where the CUDA-graph loop retires ended rows (``graph_decode.retire_possible`` and
             ``ended_rows_free``: every method of the study on the graph loop)

Per batch, from each row's end (``estimate_compaction.row_end``, rebuilt from its prediction): decode forwards
(``row_compaction.decode_batch_sizes``: warm-up steps, checks every 4), and KV row-tokens: what a forward's
attention reads, summed over forwards, with every row retired at the first check after its end (its prompt no
longer read). The GPU seconds are priced with this repository's H100 measurements (benchmarks/RESULTS.md):
``--step-ms`` fixed work per compiled decode forward (~2 ms), ``--kv-tbs`` the retired-row saving's read rate (2.6
TB/s, thirteenth session) over 30 layers x 2 x 3 KV heads x 64 x 2 bytes per row-token, ``--batch-s`` per batch
(warm-up steps and capture: 40 GPU-s over 763 batches, twelfth session). Prefill is not priced (the same prompts;
larger batches run it at a better rate: the passkey bucket's 17-row batches took 4-10 us per token at 2k-8k, the
NIAH bucket's 2.2-3.9).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from estimate_compaction import batches, read_study, study_parser

from ropeshift.eval.generation import STOP_CHECK_EVERY
from ropeshift.eval.graph_decode import WARMUP_STEPS
from ropeshift.eval.options import format_length
from ropeshift.eval.row_compaction import decode_batch_sizes

KV_BYTES_PER_ROW_TOKEN = 30 * 2 * 3 * 64 * 2  # SmolLM2-135M: layers x (K, V) x KV heads x head dim x bf16


def retired_after(end: int) -> int:
    """Forwards a row ended after ``end`` new tokens still reads its keys in: until the first stop check at or
    after its end (checks after the prefill, after the warm-up steps, then every STOP_CHECK_EVERY)."""
    check = 1
    if end <= check:
        return 0
    check += WARMUP_STEPS
    while check < end:
        check += STOP_CHECK_EVERY
    return check - 1


def price(rows: list[tuple[int, int]], length: int) -> tuple[int, float]:
    """(decode forwards, KV row-tokens read) of one batch whose rows are ``(end, budget)``."""
    ends = [e for e, _ in rows]
    forwards = len(decode_batch_sizes(ends, max(b for _, b in rows), check_every=STOP_CHECK_EVERY,
                                      warmup=WARMUP_STEPS, policy=None))
    kv = sum(min(forwards, retired_after(e)) * length for e in ends)
    return forwards, kv


def main() -> None:
    p = study_parser(__doc__, batch_tokens=600000, workers=3)
    p.add_argument("--step-ms", type=float, default=2.0, help="fixed GPU ms per decode forward")
    p.add_argument("--kv-tbs", type=float, default=2.6, help="KV read rate, TB/s")
    p.add_argument("--batch-s", type=float, default=40 / 763, help="GPU s per batch (warm-up steps, capture)")
    p.add_argument("--out", default=None, help="markdown file")
    args = p.parse_args()

    recs, tasks, cfg = read_study(args)
    acc = defaultdict(lambda: defaultdict(float))
    for policy, merged in (("pow4", False), ("merged", True)):
        for length, _, rows in batches(recs, tasks, cfg, args.workers, merged):
            forwards, kv = price(rows, length)
            for key in ((policy, length), (policy, "all")):
                a = acc[key]
                a["batches"] += 1
                a["rows"] += len(rows)
                a["forwards"] += forwards
                a["kv"] += kv

    def gpu_s(a):
        return (a["forwards"] * args.step_ms / 1e3 + a["kv"] * KV_BYTES_PER_ROW_TOKEN / (args.kv_tbs * 1e12)
                + a["batches"] * args.batch_s)

    lines = ["| length | policy | batches | rows/batch | decode forwards | KV row-tokens (G) | GPU s (priced) |",
             "|---|---|---|---|---|---|---|"]
    for length in sorted({k[1] for k in acc if k[1] != "all"}) + ["all"]:
        for policy in ("pow4", "merged"):
            a = acc[policy, length]
            lines.append(f"| {format_length(length) if length != 'all' else '**all**'} | {policy} | "
                         f"{a['batches']:.0f} | {a['rows'] / a['batches']:.1f} | {a['forwards']:.0f} | "
                         f"{a['kv'] / 1e9:.2f} | {gpu_s(a):.1f} |")
    old, new = acc["pow4", "all"], acc["merged", "all"]
    text = (f"{len(recs)} computed generation records, batch-tokens {args.batch_tokens}, {args.workers} ranks; "
            f"priced at {args.step_ms} ms per forward, {args.kv_tbs} TB/s, {args.batch_s:.3f} s per batch\n\n"
            + "\n".join(lines) + f"\n\nmerged against pow4: batches {new['batches'] - old['batches']:+.0f}, "
            f"forwards {new['forwards'] - old['forwards']:+.0f}, KV {new['kv'] / old['kv'] - 1:+.1%}, "
            f"priced decode {gpu_s(new) - gpu_s(old):+.1f} GPU-s (of {gpu_s(old):.1f})\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
