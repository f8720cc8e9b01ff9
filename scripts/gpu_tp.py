"""Tensor-parallel STRING on N GPUs against the unpatched model (SDPA) under TP and against one GPU (issue 12).

Run (from the repository root; OUT = results folder):
    PYTHONPATH=src torchrun --standalone --nproc-per-node 2 scripts/gpu_tp.py --out $OUT     # N = 2 (or 4, 8)
    PYTHONPATH=src python scripts/gpu_tp.py --out $OUT                                       # N = 1 only

A randomly initialised Llama-shaped model (Llama-3-8B width: hidden 4096, 32 query / 8 KV heads, head dim 128,
MLP 14336, vocab 128256, rope theta 5e5, ``--layers`` of them, default 8; the geometry of
benchmarks/bench_generate.py) is made once on rank 0, saved as safetensors under ``--folder`` and loaded by every
rank with ``from_pretrained(..., tp_plan="auto")`` in bf16 (NCCL; leave NVLink multicast off). Then:

1. one GPU (rank 0 alone, the others wait): the unsharded model; reference logits and its timings;
2. N GPUs (when N > 1): the sharded model; the same timings, and its logits against the reference.

Timings per prompt length n (default 32k, 64k): prefill = median of 3 ``generate(max_new_tokens=1)`` (as in
bench_generate.py); decode tok/s = T / time of T greedy forward steps over the prefilled KV cache (after 2 warm-up
steps), T = ``--new-tokens``; peak = the largest ``max_memory_allocated`` over ranks, prefill and decode.
Variants: the unpatched model with SDPA (its default backend, and each forced one in ``--sdpa-backends``), and STRING with S = 0.33 n, W = 128 through
``ropeshift.apply(model, "string", ..., impl=--impl)`` (default "triton": the fused kernels; under TP they see the
rank's 32/N query and 8/N KV heads).
Logit check: a ``--check-length`` prompt (S = 0.33 of it), the logits of its last 64 positions, TP against one GPU:
max |diff| relative to max |logit|, and the share of positions whose argmax agrees.

Writes $OUT/gpu_tp.md (table, versions, command) and $OUT/gpu_tp.json (every number), on rank 0.
Smoke check without a GPU (2 CPU ranks over gloo, a tiny model, the tiled path; the numbers mean nothing):
    PYTHONPATH=src torchrun --standalone --nproc-per-node 2 scripts/gpu_tp.py --tiny --impl torch --lengths 256 \
        --new-tokens 4 --check-length 256 --sdpa-backends default --folder /tmp/tp_tiny --out /tmp/tp_out
"""
from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

import ropeshift

CHECK_POSITIONS = 64
REL_TOL, ARGMAX_MIN = 0.02, 0.99  # bf16, 8 layers: TP reduces partial sums in another order


def parse_lengths(text: str) -> list[int]:
    return [int(x[:-1]) * 1024 if x.endswith("k") else int(x) for x in text.split(",")]


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPE = torch.bfloat16 if CUDA else torch.float32
LLAMA_3_8B = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                  head_dim=128, vocab_size=128256)
TINY = dict(hidden_size=128, intermediate_size=256, num_attention_heads=8, num_key_value_heads=4, head_dim=16,
            vocab_size=512)


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def make_model(folder: Path, layers: int, tiny: bool) -> None:
    """Rank 0 writes the random model to ``folder`` once (seeded: same weights on every run)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = {**(TINY if tiny else LLAMA_3_8B), "num_hidden_layers": layers}
    cfg_file = folder / "config.json"
    if cfg_file.is_file() and all(json.loads(cfg_file.read_text()).get(k) == v for k, v in shape.items()):
        return
    cfg = LlamaConfig(
        **shape, max_position_embeddings=131072, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(cfg).to(DTYPE)
    model.save_pretrained(folder)
    del model
    if CUDA:
        torch.cuda.empty_cache()


def load(folder: Path, tp: bool):
    """The saved model: sharded by transformers' TP plan over all ranks, or whole on this rank's device."""
    from transformers import AutoModelForCausalLM

    kw = {"tp_plan": "auto"} if tp else {}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPE, attn_implementation="sdpa", **kw)
    if not tp:
        model.to(DEVICE)
    return model.eval()


def _timed(fn, tp: bool):
    sync()
    if tp:
        barrier()
    t0 = time.perf_counter()
    r = fn()
    sync()
    return time.perf_counter() - t0, r


def measure(model, ids, new_tokens: int, tp: bool) -> dict:
    # explicit all-ones mask: transformers 5.17 otherwise infers padding from ids == pad_token_id
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True, attention_mask=torch.ones_like(ids))
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **gen)  # warm-up: compiles, allocator
        prefill = statistics.median(
            _timed(lambda: model.generate(ids, max_new_tokens=1, min_new_tokens=1, **gen), tp)[0] for _ in range(3))
        if CUDA:
            torch.cuda.reset_peak_memory_stats()
        out = model(ids, use_cache=True, logits_to_keep=1)
        cache, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(2):  # warm-up: the decode kernels compile
            tok = model(tok, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)

        def decode():
            t = tok
            for _ in range(new_tokens):
                t = model(t, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)
            return t

        t, _ = _timed(decode, tp)
        del cache, out
    peak = torch.tensor(torch.cuda.max_memory_allocated() / 2**30 if CUDA else 0.0, device=DEVICE)
    if tp:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    return {"prefill_s": prefill, "tok_s": new_tokens / t, "peak_gib": float(peak)}


def _with_backend(backend: str, fn):
    if backend == "default":
        return fn()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    with sdpa_kernel([names[backend]]):
        return fn()


def prompt(n: int, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)  # the same prompt on every rank and in every phase
    return torch.randint(1, vocab, (1, n), generator=g).to(DEVICE)


def run_phase(model, args, gpus: int) -> tuple[list[dict], dict]:
    """Timing rows and check logits ({variant: [64, vocab] fp32 on CPU}) for one placement of the model.

    ``gpus`` > 1: every rank runs this together (collectives); 1: rank 0 alone, no collectives."""
    tp = gpus > 1
    rows = []
    for n in parse_lengths(args.lengths):
        ids = prompt(n, model.config.vocab_size)
        ropeshift.apply(model, "string", shift=int(0.33 * n), window=args.window, impl=args.impl)
        try:
            r = measure(model, ids, args.new_tokens, tp)
            rows.append({"gpus": gpus, "n": n, "variant": f"string ({args.impl})", **r})
        finally:
            ropeshift.remove(model)
        for backend in args.sdpa_backends.split(","):
            try:
                r = _with_backend(backend, lambda: measure(model, ids, args.new_tokens, tp))
            except RuntimeError as e:  # a forced backend that cannot serve this call
                print(f"# sdpa {backend} failed at {n} on {gpus} GPU(s): {str(e)[:200]}", flush=True)
                continue
            rows.append({"gpus": gpus, "n": n, "variant": f"sdpa {backend}", **r})
        if rank() == 0:
            for r in rows[-1 - len(args.sdpa_backends.split(",")):]:
                print(json.dumps(r), flush=True)
    check = {}
    ids = prompt(args.check_length, model.config.vocab_size)
    with torch.inference_mode():
        check["sdpa"] = model(ids, logits_to_keep=CHECK_POSITIONS).logits[0].float().cpu()
        ropeshift.apply(model, "string", shift=int(0.33 * args.check_length), window=args.window, impl=args.impl)
        try:
            check["string"] = model(ids, logits_to_keep=CHECK_POSITIONS).logits[0].float().cpu()
        finally:
            ropeshift.remove(model)
    return rows, check


def compare(tp: dict, ref: dict) -> list[dict]:
    out = []
    for variant, r in ref.items():
        d = (tp[variant] - r).abs().max().item() / r.abs().max().item()
        agree = (tp[variant].argmax(-1) == r.argmax(-1)).float().mean().item()
        out.append({"variant": variant, "rel_max_diff": d, "argmax_agree": agree,
                    "ok": d <= REL_TOL and agree >= ARGMAX_MIN})
    return out


def _length(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def write_report(out: Path, args, rows: list[dict], checks: list[dict]) -> None:
    import transformers

    try:
        import triton

        triton_v = triton.__version__
    except ImportError:
        triton_v = "not installed"
    env = {"device": torch.cuda.get_device_name() if CUDA else platform.processor() or "cpu", "gpus": world(),
           "python": platform.python_version(),
           "torch": torch.__version__, "transformers": transformers.__version__, "triton": triton_v,
           "command": " ".join(sys.argv), "layers": args.layers, "new_tokens": args.new_tokens}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_tp.json").write_text(json.dumps({"env": env, "rows": rows, "logit_check": checks}, indent=1))
    base = {(r["n"], r["variant"]): r for r in rows if r["gpus"] == 1}
    width = "a tiny model" if args.tiny else "Llama-3-8B width"
    lines = [f"# {env['device']} x {world()} | torch {env['torch']} | transformers {env['transformers']} | "
             f"triton {triton_v} | {args.layers} layers of {width}, {str(DTYPE).removeprefix('torch.')}, "
             "random weights",
             f"command: `{env['command']}`", "",
             "| GPUs | N | variant | prefill s | decode tok/s | peak GiB/GPU | prefill vs SDPA default | "
             "decode vs SDPA default | prefill speed-up vs 1 GPU | decode speed-up vs 1 GPU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sd = next((x for x in rows if (x["gpus"], x["n"], x["variant"]) == (r["gpus"], r["n"], "sdpa default")), None)
        one = base.get((r["n"], r["variant"]))
        ratio = lambda a, b, k: f"{a[k] / b[k]:.3f}" if b else "-"  # noqa: E731
        lines.append(f"| {r['gpus']} | {_length(r['n'])} | {r['variant']} | {r['prefill_s']:.3f} | {r['tok_s']:.1f} | "
                     f"{r['peak_gib']:.2f} | {ratio(r, sd, 'prefill_s')} | {ratio(r, sd, 'tok_s')} | "
                     f"{ratio(one, r, 'prefill_s') if one else '-'} | {ratio(r, one, 'tok_s') if one else '-'} |")
    if checks:
        lines += ["", f"Logits, TP ({world()} GPUs) vs 1 GPU: {args.check_length}-token prompt, last {CHECK_POSITIONS} "
                  f"positions; pass = max|diff| <= {REL_TOL} max|logit| and argmax agreement >= {ARGMAX_MIN}", "",
                  "| variant | max abs diff / max abs logit | argmax agreement | pass |", "|---|---|---|---|"]
        lines += [f"| {c['variant']} | {c['rel_max_diff']:.4f} | {c['argmax_agree']:.3f} | "
                  f"{'yes' if c['ok'] else 'NO'} |" for c in checks]
    (out / "gpu_tp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    p.add_argument("--folder", type=Path, default=Path("/tmp/ropeshift_tp_llama"),
                   help="where the random model is saved")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--lengths", default="32k,64k", help="prompt lengths")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--window", type=int, default=128, help="STRING's W (S = 0.33 of each length)")
    p.add_argument("--check-length", type=int, default=8192)
    p.add_argument("--sdpa-backends", default="default,cudnn",
                   help="default (PyTorch's choice), flash, cudnn, efficient, math")
    p.add_argument("--impl", default="triton", choices=["triton", "auto", "torch"])
    p.add_argument("--skip-single", action="store_true",
                   help="N > 1: skip the 1-GPU phase (no speed-up, no logit check)")
    p.add_argument("--tiny", action="store_true", help="a tiny model instead of Llama-3-8B width (smoke checks)")
    args = p.parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # the others wait at a barrier while rank 0 runs the 1-GPU phase
        if CUDA:
            local = int(os.environ["LOCAL_RANK"])
            torch.cuda.set_device(local)
            dist.init_process_group("nccl", device_id=torch.device("cuda", local), timeout=timedelta(minutes=60))
        else:
            dist.init_process_group("gloo", timeout=timedelta(minutes=60))
    if rank() == 0:
        make_model(args.folder, args.layers, args.tiny)
    barrier()
    rows, checks, ref = [], [], None
    if world() == 1 or not args.skip_single:
        if rank() == 0:
            model = load(args.folder, tp=False)
            single_rows, ref = run_phase(model, args, gpus=1)
            rows += single_rows
            del model
            if CUDA:
                torch.cuda.empty_cache()
        barrier()
    if world() > 1:
        model = load(args.folder, tp=True)
        tp_rows, tp_check = run_phase(model, args, gpus=world())
        rows += tp_rows
        if ref is not None:
            checks = compare(tp_check, ref)
    if rank() == 0:
        write_report(args.out, args, rows, checks)
    barrier()
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
