"""Where a decode step of the evaluation goes: host (Python, launches) vs GPU, per method, on a real model.

Run (GPU, ~1 min):  PYTHONPATH=src python benchmarks/profile_decode.py [--model smollm2-135m] [--rows 64]
                    [--length 4096] [--steps 32] [--methods rope,string,self_extend,dca]
CPU smoke check:    PYTHONPATH=src python benchmarks/profile_decode.py --device cpu --rows 2 --length 256 --steps 4

For each method: a left-padded batch of ``--rows`` random prompts of about ``--length`` tokens is prefilled
(``model(..., use_cache=True)``), then ``--steps`` greedy decode steps run one forward each, the way ``generate``
runs them. Columns: wall ms per step (host clock, synchronised at the end only, so host and GPU overlap as in
generate), GPU ms per step (sum of the CUDA kernels' time in a profiled window of the same steps), and their
ratio: near 1 the step is GPU-bound, far above 1 host-bound (launch and Python overhead; what CUDA graphs
would remove). Last: the host operators that cost the most in the first method's profile.
"""
from __future__ import annotations

import argparse
import time

import torch

import ropeshift
from ropeshift.eval.generation import activate, deactivate
from ropeshift.eval.options import method_specs, parse_lengths, parse_names


def batch(rows: int, length: int, vocab: int, device):
    g = torch.Generator().manual_seed(0)
    lens = [length - (i * 37) % 257 for i in range(rows)]  # left padding of up to 256 slots
    width = max(lens)
    ids = torch.randint(100, vocab - 100, (rows, width), generator=g)
    mask = torch.zeros(rows, width, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, width - n:] = 1
    return ids.to(device), mask.to(device)


def steps(model, ids, mask, n: int, profile: bool):
    """Prefill, then ``n`` greedy steps; returns (wall s of the steps, CUDA kernel s of the steps or None)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        if ids.is_cuda:
            torch.cuda.synchronize()
        prof = None
        if profile:
            acts = [torch.profiler.ProfilerActivity.CPU]
            if ids.is_cuda:
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            prof = torch.profiler.profile(activities=acts)
            prof.__enter__()
        t0 = time.perf_counter()
        for _ in range(n):
            mask = torch.cat((mask, mask.new_ones(mask.shape[0], 1)), dim=1)
            out = model(input_ids=tok, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
        if ids.is_cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        if prof is not None:
            prof.__exit__(None, None, None)
    return wall, prof


def kernel_seconds(prof) -> float | None:
    events = [e for e in prof.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    return sum(e.device_time for e in events) / 1e6 if events else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--methods", default="rope,string,self_extend,dca")
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--length", default="4k")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--impl", default="auto")
    args = p.parse_args()
    model, tok = ropeshift.load_model(args.model, device=args.device, progress=False)
    device = next(model.parameters()).device
    (length,) = parse_lengths(args.length)
    ids, mask = batch(args.rows, length, len(tok), device)
    print(f"{args.model} on {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}, "
          f"{args.rows} rows x ~{length} tokens, {args.steps} decode steps, impl={args.impl}")
    print("| method | wall ms/step | GPU ms/step | wall / GPU |")
    print("|---|---|---|---|")
    first = None
    for spec in method_specs(parse_names(args.methods, "methods")):
        activate(model, spec, args.impl)
        steps(model, ids, mask, 4, profile=False)  # warm-up: kernel compilation, allocator
        wall, _ = steps(model, ids, mask, args.steps, profile=False)
        _, prof = steps(model, ids, mask, max(4, args.steps // 4), profile=True)
        gpu = kernel_seconds(prof)
        n_prof = max(4, args.steps // 4)
        gpu_ms = f"{gpu / n_prof * 1e3:.2f}" if gpu is not None else "-"
        ratio = f"{wall / args.steps / (gpu / n_prof):.2f}" if gpu else "-"
        print(f"| {spec.label} | {wall / args.steps * 1e3:.2f} | {gpu_ms} | {ratio} |", flush=True)
        first = first or (spec.label, prof)
        deactivate(model)
    label, prof = first
    print(f"\nhost operators of {label} (self CPU time over the profiled steps):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
