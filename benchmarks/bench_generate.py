"""End-to-end generate benchmark: STRING through the Triton kernels vs the unpatched model with SDPA (issue 5).

Run (H100, ~3 min):  PYTHONPATH=src python benchmarks/bench_generate.py [--layers 8] [--lengths 32k,64k]
                     [--new-tokens 64] [--sdpa-backends default,flash] [--graphs]

A randomly initialised Llama-shaped model (Llama-3-8B width: hidden 4096, 32 query / 8 KV heads, head dim 128,
MLP 14336, vocab 128256, rope theta 5e5; `--layers` of them, default 8), bf16 on CUDA. For each prompt length N:
prefill time = median of 3 `generate(max_new_tokens=1)` calls; decode tokens/s = (T - 1) / (t(T tokens) - t(1))
from greedy `generate` with exactly T new tokens; peak memory = max allocated during the T-token generate.
Baselines: the unpatched model with `attn_implementation="sdpa"`, SDPA's own backend choice ("default") and
forced backends (`--sdpa-backends`). STRING uses S = 0.33 N, W = 128 (`ropeshift.apply(model, "string", shift=..., window=128, impl="triton")`), so
the far branch is exercised at every length. Targets: STRING prefill <= 1.10x and decode >= 0.95x of SDPA.
``--graphs``: decode not host-bound on either side (static cache and CUDA graphs; ``measure``).
"""

import argparse
import statistics
import time

import torch

import ropeshift


def build_model(layers):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        num_hidden_layers=layers, vocab_size=128256, max_position_embeddings=131072,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.eval()
    model.set_attn_implementation("sdpa")
    return model


def _timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, r


def measure(model, ids, new_tokens, graphs=False):
    """Prefill seconds, decode tokens/s, peak GiB. graphs: a static cache and CUDA graphs on both sides (ropeshift:
    ``eval.graph_decode.static_generate``, one captured step replayed; the unpatched model: ``generate`` with
    ``cache_implementation="static"``, which transformers compiles with CUDA graphs); else ``generate`` with the
    dynamic cache (host-bound decode)."""
    # explicit all-ones mask: transformers 5.17 otherwise infers padding from ids == pad_token_id
    mask = torch.ones_like(ids)
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True, attention_mask=mask)
    from ropeshift.eval.graph_decode import graph_decode_reason, static_generate

    if graphs and graph_decode_reason(model) is None:  # ropeshift's attention on the kernels
        def run(t):  # the batch never stops early: exactly t new tokens
            never = lambda toks, _: torch.zeros(toks.shape[0], dtype=torch.bool)  # noqa: E731
            return static_generate(model, ids, mask, never, max_new=t, graphs=True, check_every=t)
    else:
        if graphs:
            gen["cache_implementation"] = "static"

        def run(t):
            return model.generate(ids, max_new_tokens=t, min_new_tokens=t, **gen)[:, ids.shape[1]:]
    with torch.inference_mode():
        run(new_tokens)  # warm-up: compiles (Triton, and torch.compile's graphs for the static SDPA path), allocator
        prefill = statistics.median(_timed(lambda: run(1))[0] for _ in range(3))
        torch.cuda.reset_peak_memory_stats()
        t, out = _timed(lambda: run(new_tokens))
        peak = torch.cuda.max_memory_allocated()
    assert out.shape[1] == new_tokens, out.shape
    return {"prefill_s": prefill, "tok_s": (new_tokens - 1) / max(t - prefill, 1e-9), "peak_gib": peak / 2**30}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--lengths", default="32k,64k", help="prompt lengths")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--graphs", action="store_true", help="static cache + CUDA-graph decode on both sides (see measure)")
    p.add_argument("--sdpa-backends", default="default,flash",
                   help="unpatched baselines: default (PyTorch's choice), flash, cudnn, efficient, math")
    args = p.parse_args(argv)
    import transformers
    import triton

    print(f"# {torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} | "
          f"transformers {transformers.__version__} | {args.layers} layers of Llama-3-8B width, bf16")
    model = build_model(args.layers)
    rows = []
    for n in [int(x[:-1]) * 1024 if x.endswith("k") else int(x) for x in args.lengths.split(",")]:
        ids = torch.randint(1, model.config.vocab_size, (1, n), device="cuda")
        ropeshift.apply(model, "string", shift=int(0.33 * n), window=128, impl="triton")
        try:
            ours = measure(model, ids, args.new_tokens, args.graphs)
        finally:
            ropeshift.remove(model)
        model.set_attn_implementation("sdpa")
        for backend in args.sdpa_backends.split(","):
            try:
                base = measure_sdpa(model, ids, args.new_tokens, backend, args.graphs)
            except RuntimeError as e:  # a forced backend that cannot serve this call
                print(f"# sdpa {backend} failed at {n}: {str(e)[:200]}", flush=True)
                continue
            rows.append((n, backend, base, ours))
            print(_line(n, backend, base, ours), flush=True)
    print("\n| N | SDPA backend | SDPA prefill s | STRING prefill s | ratio (<= 1.10) | SDPA tok/s | STRING tok/s "
          "| ratio (>= 0.95) | SDPA peak GiB | STRING peak GiB |\n|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(_line(*row))


def measure_sdpa(model, ids, new_tokens, backend, graphs=False):
    """The unpatched model; backend "default" = PyTorch's own SDPA choice, else that backend forced."""
    if backend == "default":
        return measure(model, ids, new_tokens, graphs)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    with sdpa_kernel([names[backend]]):
        return measure(model, ids, new_tokens, graphs)


def _line(n, backend, base, ours):
    return (f"| {n // 1024}k | {backend} | {base['prefill_s']:.3f} | {ours['prefill_s']:.3f} | "
            f"{ours['prefill_s'] / base['prefill_s']:.3f} | {base['tok_s']:.1f} | {ours['tok_s']:.1f} | "
            f"{ours['tok_s'] / base['tok_s']:.3f} | {base['peak_gib']:.2f} | {ours['peak_gib']:.2f} |")


if __name__ == "__main__":
    main()
