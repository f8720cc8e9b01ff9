"""CUDA-graph decode vs ``model.generate`` on one evaluation batch per (task, length) and method (issue 10).

Run (GPU, ~2 min):  PYTHONPATH=src python benchmarks/bench_graph_decode.py --out graph_decode.md
                    [--cells passkey:4k,niah_single_1:8k] [--methods rope,string,self_extend] [--new 64]
                    [--fp32-cell passkey:4k]
CPU smoke check:    PYTHONPATH=src python benchmarks/bench_graph_decode.py --device cpu --tiny [--fp32-cell x]
Row compaction:     PYTHONPATH=src python benchmarks/bench_graph_decode.py --compaction --out compaction.md
                    [--mixes niah_single_1,...,cwe:8k;...] [--methods rope,string] [--compact-env 1] [--repeats 2]

Per cell the suite's prompts (``--batch-tokens // length`` rows, at most ``--max-rows``) are left-padded into one
batch; per method (rows without an attention method on ``plain``, as ``eval --plain-attention ropeshift``) both
paths run the same rows to ``--new`` tokens each (EOS ends a row, no answer-end stop, so the batches decode the
same number of steps): "generate" is ``generation.generate(decode="generate")`` (transformers' generate, static
cache on CUDA), "graph" is ``decode="loop"`` (one captured decode step replayed; on CPU the eager loop). Each
path is warmed up first on the same batch with 4 new tokens (Triton compilation). Reported: whole-call seconds,
ms per decode step (call minus one timed prefill, over the decode steps of the longest row), samples/s, and the
share of rows whose texts differ between the two paths (bf16: other batch and cache shapes may flip a borderline
greedy token; fp32: 0 expected).

``--compaction``: the loop with and without row compaction (``eval.row_compaction``; ROPESHIFT_COMPACT_ROWS=0
vs ``--compact-env``) on one study batch per ``--mixes`` entry: the tasks of one decode bucket at one length,
``--batch-tokens // length`` rows dealt evenly over the tasks and sorted by prompt tokens as the runner does,
each row with its task's budget and answer-end stop (what the study runs). Per method both ways are warmed up on
the batch, then timed alternately (best of ``--repeats``). Reported: seconds, decode forwards and row-steps
(rows x steps, from the rows' ends and the loop's schedule), compactions, and rows whose texts differ (bf16: the
smaller batches' kernels may flip a borderline greedy token; fp32 0 expected). From the two rows' forwards,
row-steps and seconds one can solve the per-step and per-row-step costs of this batch.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

import ropeshift
from ropeshift.eval import generation
from ropeshift.eval.generation import STOP_CHECK_EVERY, activate, answer_end, deactivate, generate, left_pad, prompt_ids
from ropeshift.eval.graph_decode import REWARM_STEPS, WARMUP_STEPS, cache_kwarg, graph_decode_reason
from ropeshift.eval.row_compaction import COMPACT_ENV, decode_batch_sizes, default_compaction
from ropeshift.eval.options import parse_length, parse_names
from ropeshift.eval.suites import SUITES
from ropeshift.eval.tasks import TaskOptions, resolve_task


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def prefill_seconds(model, ids, pad, device, new):
    """The loop's prefill alone (left-padded batch into a StaticCache), the faster of two runs."""
    from transformers import StaticCache

    x, mask = left_pad(ids, pad)
    x, mask = x.to(device), mask.to(device)

    def run():
        cache = StaticCache(config=model.config, max_cache_len=x.shape[1] + new)
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        return model(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                     **{cache_kwarg(model): cache})

    with torch.inference_mode():
        return min(timed(run, device)[1] for _ in range(2))


def per_method(model, suite, args, log, row):
    """One table line per method of --methods: ``row(label, info)`` with the method active (rows without an
    attention method on ``plain``, as ``eval --plain-attention ropeshift`` runs them), logged as it comes."""
    lines = []
    for label in parse_names(args.methods, "methods"):
        info = activate(model, suite.method(label), args.impl, "ropeshift")
        try:
            line = row(label, info)
        finally:
            deactivate(model)
        log(line)
        lines.append(line)
    return lines


def bench_cell(model, tok, suite, task_name, length, args, device, log):
    task = resolve_task(task_name)
    rows = min(args.max_rows, max(1, args.batch_tokens // length))
    samples = task.make_samples(tok, length, rows, 0, TaskOptions())
    ids = [prompt_ids(tok, s.prompt, s.add_special_tokens) for s in samples]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    log(f"{task_name} at {length}: {rows} rows, longest {max(len(i) for i in ids)} tokens, {args.new} new tokens")

    def row(label, info):
        reason = graph_decode_reason(model)
        if reason is not None:
            log(f"  {label}: the loop runs its steps eagerly here ({reason})")
        paths = (("generate", "generate"), ("graph", "loop"))
        for _, decode in paths:  # warm-up: Triton compiles at this batch's shapes (prefill and decode)
            generate(model, tok, ids, 4, decode=decode)
        t_prefill = prefill_seconds(model, ids, pad, device, args.new)
        res = {}
        for path, decode in paths:
            texts, t = timed(lambda: generate(model, tok, ids, args.new, decode=decode), device)
            res[path] = (texts, t)
        steps = max(len(tok(t, add_special_tokens=False).input_ids) for t in res["generate"][0])
        differ = sum(a != b for a, b in zip(res["generate"][0], res["graph"][0])) / rows
        cells = []
        for path in ("generate", "graph"):
            t = res[path][1]
            cells += [f"{t:.2f}", f"{(t - t_prefill) / max(1, steps - 1) * 1e3:.2f}", f"{rows / t:.1f}"]
        speed = res["generate"][1] / res["graph"][1]
        line = (f"| {task_name} | {length} | {rows} | {label} ({info['impl']}) | {t_prefill:.2f} | "
                + " | ".join(cells) + f" | {speed:.2f}x | {differ:.1%} |")
        return line

    return per_method(model, suite, args, log, row)


def study_batch(tok, mix: str, args):
    """(tasks per row, samples per row, length) of one study batch of the bucket ``TASK,TASK,...:LENGTH``."""
    names, length = mix.split(":")
    length = parse_length(length)
    tasks = [resolve_task(n) for n in names.split(",")]
    rows = min(args.max_rows, max(1, args.batch_tokens // length))
    per = -(-rows // len(tasks))
    pool = [(s, t) for t in tasks for s in t.make_samples(tok, length, per, 0, TaskOptions())]
    picked = sorted(pool, key=lambda x: (x[0].index, x[1].name))[:rows]  # dealt evenly over the tasks
    picked.sort(key=lambda x: (x[0].n_tokens, x[1].name, x[0].index))  # the runner's order
    return [t for _, t in picked], [s for s, _ in picked], length


@contextlib.contextmanager
def compact_env(value: str):
    """ROPESHIFT_COMPACT_ROWS=value for the duration; yields the policy the loop then uses."""
    before = os.environ.get(COMPACT_ENV)
    os.environ[COMPACT_ENV] = value
    try:
        yield default_compaction()
    finally:
        if before is None:
            os.environ.pop(COMPACT_ENV, None)
        else:
            os.environ[COMPACT_ENV] = before


def compaction_run(model, tok, ids, tasks, samples, env: str, device):
    """(texts, seconds, rows' ends, policy) of ``generate`` on the loop with ROPESHIFT_COMPACT_ROWS=env."""
    made = []
    original = generation._row_stopper

    def keep(*a, **k):  # the run's stopper, for its rows' ends
        made.append(original(*a, **k))
        return made[-1]

    budgets = [x.max_new_tokens for x in tasks]
    generation._row_stopper = keep
    try:
        with compact_env(env) as policy:
            texts, t = timed(lambda: generate(model, tok, ids, budgets, decode="loop",
                                              stop=[answer_end(x, s) for x, s in zip(tasks, samples)]), device)
    finally:
        generation._row_stopper = original
    ends = [e if e is not None else m for e, m in zip(made[-1].ends, budgets)]
    return texts, t, ends, policy


def bench_compaction(model, tok, suite, mix, args, device, log):
    tasks, samples, length = study_batch(tok, mix, args)
    ids = [prompt_ids(tok, s.prompt, s.add_special_tokens) for s in samples]
    rows, max_new = len(ids), max(x.max_new_tokens for x in tasks)
    log(f"{mix}: {rows} rows, longest {max(len(i) for i in ids)} tokens, budgets up to {max_new}")

    def row(label, info):
        graphs = graph_decode_reason(model) is None
        envs = {"off": "0", "on": args.compact_env}
        for env in envs.values():  # warm-up: Triton compiles for every batch size the run meets
            compaction_run(model, tok, ids, tasks, samples, env, device)
        best = {}
        for _ in range(args.repeats):
            for way, env in envs.items():
                run = compaction_run(model, tok, ids, tasks, samples, env, device)
                if way not in best or run[1] < best[way][1]:
                    best[way] = run
        cells = []
        for way in envs:
            _, t, ends, policy = best[way]
            sizes = decode_batch_sizes(ends, max_new, check_every=STOP_CHECK_EVERY if graphs else 1,
                                       warmup=WARMUP_STEPS if graphs else 0, rewarm=REWARM_STEPS, policy=policy)
            shrinks = sum(1 for a, b in zip(sizes, sizes[1:]) if b < a)
            cells += [f"{t:.2f}", f"{len(sizes)}", f"{sum(sizes)}", f"{shrinks}"]
        differ = sum(a != b for a, b in zip(best["off"][0], best["on"][0])) / rows
        speed = best["off"][1] / best["on"][1]
        line = (f"| {mix} | {rows} | {label} ({info['impl']}) | {'graph' if graphs else 'eager'} | "
                + " | ".join(cells) + f" | {speed:.2f}x | {differ:.1%} |")
        return line

    return per_method(model, suite, args, log, row)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--suite", default="ruler-lite")
    p.add_argument("--cells", default="passkey:4k,niah_single_1:8k",
                   help="task:length pairs, comma-separated")
    p.add_argument("--methods", default="rope,string,self_extend", help="suite row labels")
    p.add_argument("--new", type=int, default=64, help="new tokens per row")
    p.add_argument("--batch-tokens", type=int, default=400000, help="rows = batch-tokens // length")
    p.add_argument("--max-rows", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float32"], help="default: bf16 on CUDA")
    p.add_argument("--impl", default="auto")
    p.add_argument("--tiny", action="store_true", help="CPU smoke check: 512 tokens, 2 rows, 8 new tokens")
    p.add_argument("--fp32-cell", default=None, metavar="TASK:LENGTH",
                   help="then the model in fp32 on this cell (at most 8 rows, a quarter of the new tokens): "
                        "rows differing must be 0")
    p.add_argument("--fp32-methods", default="string", help="methods of the fp32 cell")
    p.add_argument("--out", default=None, help="markdown table file")
    p.add_argument("--compaction", action="store_true", help="time the loop with and without row compaction")
    p.add_argument("--mixes", default="niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,niah4,cwe:8k;"
                   "niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,niah4,cwe:4k;vt,kv_retrieval:8k",
                   help="--compaction batches: TASK,TASK,...:LENGTH entries, ';'-separated")
    p.add_argument("--compact-env", default="1", help=f"{COMPACT_ENV} of the compacting runs (1, or a fraction)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    if args.tiny:
        args.cells, args.batch_tokens, args.max_rows, args.new = "passkey:512,niah_single_1:512", 1024, 2, 8
        if args.compaction:  # 3 rows of 1k, one per task
            args.mixes, args.batch_tokens, args.max_rows, args.repeats = "niah_single_1,niah_single_2,vt:1k", 3072, 3, 1
        args.methods, args.fp32_cell = "rope,string", args.fp32_cell and "passkey:512"
        args.fp32_methods = "string"
    dtype = args.dtype or ("bfloat16" if (args.device or "cuda").startswith("cuda") and torch.cuda.is_available()
                           else "float32")
    t0 = time.perf_counter()
    model, tok = ropeshift.load_model(args.model, device=args.device, dtype=getattr(torch, dtype), progress=False)
    device = next(model.parameters()).device

    def log(msg):
        print(msg, flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    import transformers
    import triton

    log(f"{args.model} ({dtype}) on {name}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"triton {triton.__version__}; loaded in {time.perf_counter() - t0:.1f} s")
    suite = SUITES[args.suite]
    if args.compaction:
        head = ("| batch | rows | method (impl) | loop | off s | off forwards | off row-steps | off compactions | on s "
                "| on forwards | on row-steps | on compactions | speed-up | rows differing |")
        lines = [head, "|" + "---|" * (head.count("|") - 1)]
        log("\n".join(lines))
        for mix in args.mixes.split(";"):
            lines += bench_compaction(model, tok, suite, mix, args, device, log)
            if args.out:
                with open(args.out, "w") as f:
                    f.write(f"{args.model} ({dtype}) on {name}, {COMPACT_ENV}=0 vs {args.compact_env}\n\n"
                            + "\n".join(lines) + "\n")
        return
    head = ("| task | length | rows | method (impl) | prefill s | generate s | generate ms/step | generate samples/s"
            " | graph s | graph ms/step | graph samples/s | speed-up | rows differing |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    log("\n".join(lines))
    header = (f"{args.model} ({dtype}) on {name}, {args.new} new tokens per row, batch-tokens {args.batch_tokens} "
              f"(at most {args.max_rows} rows)\n\n")

    def save(text):  # after every cell, so a time limit still leaves the rows measured so far
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)

    for cell in args.cells.split(","):
        task_name, length = cell.split(":")
        lines += bench_cell(model, tok, suite, task_name, parse_length(length), args, device, log)
        save(header + "\n".join(lines) + "\n")
    text = header + "\n".join(lines) + "\n"
    if args.fp32_cell:
        torch.nn.Module.float(model)  # transformers refuses .float() on a model loaded from GGUF ("quantized")
        args.max_rows, args.new, args.methods = min(8, args.max_rows), max(2, args.new // 4), args.fp32_methods
        log(f"fp32: {args.fp32_cell}, at most {args.max_rows} rows, {args.new} new tokens")
        task_name, length = args.fp32_cell.split(":")
        fp32 = lines[:2] + bench_cell(model, tok, suite, task_name, parse_length(length), args, device, log)
        text += f"\nThe same model in fp32, {args.new} new tokens per row:\n\n" + "\n".join(fp32) + "\n"
        save(text)
    if args.out:
        log(f"tables written to {args.out}")


if __name__ == "__main__":
    main()
