"""The hardware floor of a whole effective-length study, from its stored records (issue 10).

What the fastest possible run of the same study would cost on one GPU: every record's forward FLOPs at the
peak compute rate, and every decode step's KV-cache read at the peak memory bandwidth. Per record:

    prefill (generation)   one forward of n_tokens: linear 2 P n, attention 4 d h layers n (n + 1) / 2,
                           the head on one row (2 hidden vocab)
    decode (generation)    per new token at context c: the same linear and head FLOPs for one token and
                           4 d h layers c attention FLOPs; it reads c x (layers 2 h_kv d x 2 bytes) of KV cache
    likelihood             one forward per window (``perplexity.windows``: 5 for ``perplexity``, 1 for
                           ``perplexity:single``), the head on every scored token

P = non-embedding parameters. New tokens are the prediction's own tokens (the model's tokenizer) plus one for
the stop: a row that stops early frees its slot (perfect compaction), so the decode count is a lower bound, as
is ignoring the weights' reads (shared by a batch's rows), start-up, tokenisation and padding. Records copied
from the rope row (``same_as``) cost nothing; ``--share-rope`` also drops the records of methods that are
exactly RoPE at their length (``rope_share``), as the runner now does, when the records predate that sharing;
``--share-windows`` drops ``perplexity:single`` records beside ``perplexity`` ones of the same method and length
(the runner now forwards single's windows once, as strided's first ones: ``tasks/perplexity.py``).

Run (CPU, ~1 min):  PYTHONPATH=src python benchmarks/study_floor.py --records <records folder>
                    [--model smollm2-135m] [--peak-tflops 989] [--peak-tbs 4.8] [--share-rope] [--share-windows]
                    [--md floor.md]
e.g. after `tar xzf results/smollm2-135m_h200_2026-12-03.tgz -C /tmp/rec`: --records /tmp/rec
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Shape:
    """The numbers of a decoder that set its FLOPs and KV bytes."""
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def of(cls, cfg) -> "Shape":
        return cls(cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                   getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
                   cfg.intermediate_size, cfg.vocab_size)

    @property
    def linear_per_token(self) -> float:
        per_layer = (self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
                     + 3 * self.hidden * self.intermediate)
        return 2.0 * per_layer * self.layers

    @property
    def head_per_token(self) -> float:
        return 2.0 * self.hidden * self.vocab

    @property
    def attn_per_pair(self) -> float:  # one (query, key) pair, every layer and head: QK^T and PV
        return 4.0 * self.head_dim * self.heads * self.layers

    @property
    def kv_bytes_per_token(self) -> float:  # bf16 K and V over every layer
        return 2.0 * self.kv_heads * self.head_dim * 2 * self.layers


def forward_flops(shape: Shape, n: int, kept: int) -> float:
    """A causal forward of n tokens with `kept` logits."""
    return shape.linear_per_token * n + shape.attn_per_pair * n * (n + 1) / 2 + shape.head_per_token * kept


def decode_cost(shape: Shape, n: int, new: int) -> tuple[float, float]:
    """(FLOPs, KV bytes read) of `new` decode steps after an n-token prompt (step t reads n + t keys)."""
    keys = new * n + new * (new + 1) / 2  # sum over steps of the keys each reads
    flops = (shape.linear_per_token + shape.head_per_token) * new + shape.attn_per_pair * keys
    return flops, keys * shape.kv_bytes_per_token


def record_cost(shape: Shape, r, new_tokens: int) -> tuple[float, float, float]:
    """(prefill FLOPs, decode FLOPs, decode bytes) of one record."""
    from ropeshift.eval.tasks.perplexity import STRIDE, windows

    if r.kind == "likelihood":
        if r.task == "perplexity":
            wins = windows((r.n_scored or r.length) + 1, r.length, STRIDE, 0)
        else:
            wins = [(0, r.length, r.n_scored or r.length)]
        return sum(forward_flops(shape, end - begin, trg) for begin, end, trg in wins), 0.0, 0.0
    dec_f, dec_b = decode_cost(shape, r.n_tokens, new_tokens)
    return forward_flops(shape, r.n_tokens, 1), dec_f, dec_b


def floor_table(records, shape: Shape, count_new, peak_tflops: float, peak_tbs: float, share_rope=False,
                share_windows=False):
    """{task: [records computed, prompt tokens, prefill FLOPs, decode FLOPs, decode bytes, measured s]}."""
    from ropeshift.eval.rope_share import SAME_AS, rope_equal_lengths

    records = list(records)
    strided = {(r.method, r.length) for r in records if r.task == "perplexity"} if share_windows else set()
    out = defaultdict(lambda: [0, 0, 0.0, 0.0, 0.0, 0.0])
    for r in records:
        if r.details.get(SAME_AS) or (r.task == "perplexity:single" and (r.method, r.length) in strided):
            continue
        if share_rope and r.length in rope_equal_lengths({"method": r.method_name, "params": r.params}, [r.length]):
            continue
        pre, dec_f, dec_b = record_cost(shape, r, count_new(r) if r.kind == "generation" else 0)
        row = out[r.task]
        row[0] += 1
        row[1] += r.n_tokens or 0
        row[2] += pre
        row[3] += dec_f
        row[4] += dec_b
        row[5] += r.seconds or 0.0
    return dict(out)


def render(table, peak_tflops, peak_tbs) -> str:
    lines = [f"| task | records | prompt Mtok | prefill PFLOP | decode PFLOP | decode KV TB | floor s "
             f"(@{peak_tflops:.0f} TF/s, {peak_tbs:.1f} TB/s) |",
             "|---|---|---|---|---|---|---|"]
    tot = [0, 0, 0.0, 0.0, 0.0]
    for task in sorted(table):
        n, toks, pre, dec_f, dec_b, _ = table[task]
        s = (pre + dec_f) / (peak_tflops * 1e12) + dec_b / (peak_tbs * 1e12)
        lines.append(f"| {task} | {n} | {toks / 1e6:.1f} | {pre / 1e15:.2f} | {dec_f / 1e15:.2f} | {dec_b / 1e12:.1f} "
                     f"| {s:.1f} |")
        for i, v in enumerate((n, toks, pre, dec_f, dec_b)):
            tot[i] += v
    s = (tot[2] + tot[3]) / (peak_tflops * 1e12) + tot[4] / (peak_tbs * 1e12)
    lines.append(f"| **all** | {tot[0]} | {tot[1] / 1e6:.1f} | {tot[2] / 1e15:.2f} | {tot[3] / 1e15:.2f} | "
                 f"{tot[4] / 1e12:.1f} | **{s:.1f} ({s / 60:.2f} min)** |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", required=True, help="a records folder (as `ropeshift eval --out` writes)")
    p.add_argument("--model", default="smollm2-135m", help="the model whose shape and tokenizer count")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 (H100 / H200 SXM: 989)")
    p.add_argument("--peak-tbs", type=float, default=4.8, help="HBM bandwidth (H200 4.8, H100 SXM 3.35)")
    p.add_argument("--share-rope", action="store_true", help="drop records of methods exactly RoPE at their "
                   "length (as the runner shares them now)")
    p.add_argument("--share-windows", action="store_true", help="drop perplexity:single records beside perplexity "
                   "ones (the runner forwards their windows once)")
    p.add_argument("--md", default=None, help="also write the table as markdown")
    args = p.parse_args(argv)
    from transformers import AutoConfig, AutoTokenizer

    from ropeshift.eval.records import iter_records
    from ropeshift.loader import resolve_model_path

    folder, gguf = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
    shape = Shape.of(AutoConfig.from_pretrained(str(folder), gguf_file=gguf))

    def count_new(r):
        return len(tokenizer(r.prediction or "", add_special_tokens=False)["input_ids"]) + 1

    table = floor_table(iter_records(Path(args.records)), shape, count_new, args.peak_tflops, args.peak_tbs,
                        args.share_rope, args.share_windows)
    text = f"{shape}\n\n" + render(table, args.peak_tflops, args.peak_tbs)
    print(text)
    if args.md:
        Path(args.md).write_text(text + "\n")


if __name__ == "__main__":
    main()
