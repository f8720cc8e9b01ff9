"""Where one evaluation batch's time goes, per method: prompts, prefill, decode steps, host vs GPU.

Run (GPU, ~2 min):  PYTHONPATH=src python benchmarks/profile_eval.py [--task niah_single_1] [--length 8k]
                    [--batch-tokens 600000] [--methods rope,string,yarn,self_extend,dca]
CPU smoke check:    PYTHONPATH=src python benchmarks/profile_eval.py --device cpu --length 512 --rows 2
                    --methods rope,string --no-profile

One batch of the study (the suite's prompts of ``--task`` at ``--length``, ``--batch-tokens // length`` rows, or
``--rows``) runs the way the runner runs it (``generation.generate`` with each row's budget and answer-end
stop). Per method it prints: the prefill alone (one forward over the left-padded batch, synchronised), the
whole generate() call, its decode steps (the batch runs until its last row ends) and the median row's end
(both counted by re-tokenising each row's text, so approximate to a token), and wall ms per decode step. With profiling on, one more generate() runs under ``torch.profiler`` and the
GPU kernels and host operators that cost the most are listed for the first method.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import ropeshift
from ropeshift.eval.generation import activate, deactivate, generate, answer_end, left_pad, prompt_ids
from ropeshift.eval.options import parse_length, parse_names
from ropeshift.eval.suites import SUITES
from ropeshift.eval.tasks import TaskOptions, resolve_task


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--suite", default="ruler-lite")
    p.add_argument("--task", default="niah_single_1")
    p.add_argument("--length", default="8k")
    p.add_argument("--batch-tokens", type=int, default=600000)
    p.add_argument("--rows", type=int, default=None, help="rows of the batch (default: batch-tokens // length)")
    p.add_argument("--methods", default="rope,string,yarn,self_extend,dca")
    p.add_argument("--device", default=None)
    p.add_argument("--impl", default="auto")
    p.add_argument("--plain-attention", choices=["model", "ropeshift"], default="model",
                   help="rows without an attention method: the model's attention or ropeshift's plain")
    p.add_argument("--no-profile", action="store_true")
    args = p.parse_args()
    model, tok = ropeshift.load_model(args.model, device=args.device, progress=False)
    device = next(model.parameters()).device
    length = parse_length(args.length)
    rows = args.rows or max(1, args.batch_tokens // length)
    task = resolve_task(args.task)
    t0 = time.perf_counter()
    samples = task.make_samples(tok, length, rows, 0, TaskOptions())
    ids = [prompt_ids(tok, s.prompt, s.add_special_tokens) for s in samples]
    t_prompts = time.perf_counter() - t0
    suite = SUITES[args.suite]
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"{args.model} on {name}, {args.task} at {length} tokens, {rows} rows "
          f"(max {max(len(i) for i in ids)} tokens), budget {task.max_new_tokens} new tokens, impl={args.impl}, plain attention: {args.plain_attention}; "
          f"prompts built and tokenised in {t_prompts:.2f} s")
    print("| method | prefill s | generate s | decode steps | median row end | decode ms/step | samples/s |")
    print("|---|---|---|---|---|---|---|")
    first = None
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    x, mask = left_pad(ids, pad)
    x, mask = x.to(device), mask.to(device)
    for label in parse_names(args.methods, "methods"):
        spec = suite.method(label)
        activate(model, spec, args.impl, args.plain_attention)
        with torch.inference_mode():
            model(input_ids=x[:1], attention_mask=mask[:1], logits_to_keep=1)  # compile kernels at full length
            sync(device)
            t0 = time.perf_counter()
            model(input_ids=x, attention_mask=mask, logits_to_keep=1)
            sync(device)
            t_prefill = time.perf_counter() - t0
        stops = [answer_end(task, s) for s in samples]
        t0 = time.perf_counter()
        texts = generate(model, tok, ids, [task.max_new_tokens] * rows, stop=stops)
        sync(device)
        t_gen = time.perf_counter() - t0
        ends = [len(tok(t, add_special_tokens=False).input_ids) for t in texts]
        steps = max(ends)
        per_step = (t_gen - t_prefill) / max(1, steps) * 1e3
        print(f"| {label} | {t_prefill:.3f} | {t_gen:.3f} | {steps} | {statistics.median(ends):.0f} | "
              f"{per_step:.2f} | {rows / t_gen:.1f} |", flush=True)
        if first is None and not args.no_profile:
            acts = [torch.profiler.ProfilerActivity.CPU]
            if device.type == "cuda":
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            with torch.profiler.profile(activities=acts) as prof:
                generate(model, tok, ids, [task.max_new_tokens] * rows, stop=stops)
                sync(device)
            first = (label, prof)
        deactivate(model)
    if first is not None:
        label, prof = first
        sort = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"\n{label}: operators by {sort} over one generate() call")
        print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=70))
        print(f"\n{label}: host operators by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=70))


if __name__ == "__main__":
    main()
