"""Does the compile warm-up (``eval/warm_up.py``) leave anything to compile for study-sized batches? (issue 10)

Run (GPU, ~1-2 min, no model files: SmolLM2-135M's shape with random weights, decoder layers compiled as the
evaluation compiles them; TORCH_LOGS=recompiles prints the guard that failed for any later compile):
    TORCH_LOGS=recompiles PYTHONPATH=src:benchmarks python benchmarks/check_warm_up.py
CPU smoke check (dynamo's trace only):
    PYTHONPATH=src:benchmarks python benchmarks/check_warm_up.py --device cpu --tiny --backend eager

In the H100 study of 2026-12-07 (benchmarks/RESULTS.md) the first likelihood batch of the rank that had warmed up
likelihood still compiled for 4.2 s, which the CPU trace of tests/eval/test_warm_up.py does not show: the CUDA
attention routes (the Hopper prefill kernel for unpadded rows, its token-major output) differ from the CPU's.
Here: the two warm-ups under STRING, then a 75-row left-padded generation batch at --length (rope, Self-Extend) and
a 50-row likelihood forward at 3/4 of it (rope, STRING); printed: torch.compile seconds each step added.
"""
from __future__ import annotations

import argparse
import sys
import time


class _Tokenizer:
    """What ``generation.generate`` needs of a tokenizer: pad and EOS ids, ``decode``."""
    pad_token_id, eos_token_id = 0, None

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(int(i)) for i in ids)


def main(argv=None) -> int:
    import torch

    from bench_shared_prefill import batch
    from profile_graph_step import build
    from ropeshift.eval import warm_up as wu
    from ropeshift.eval.batch_log import compile_seconds
    from ropeshift.eval.dense_compile import compile_model
    from ropeshift.eval.generation import activate, deactivate, generate
    from ropeshift.eval.options import MethodSpec, parse_length
    from ropeshift.eval.records import GENERATION, LIKELIHOOD

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", default="8k")
    ap.add_argument("--device")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model, 6 + 6 rows of 300 tokens")
    ap.add_argument("--backend", default="inductor")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build(device, args.tiny)
    compile_model(model, "layers", backend=args.backend)
    tok = _Tokenizer()
    length, cells = (300, [6, 6]) if args.tiny else (parse_length(args.length), [50, 25])
    gen_rows = batch(cells, length, model.config.vocab_size)
    lik_rows = torch.randint(10, model.config.vocab_size, (max(cells), length * 3 // 4), device=device)
    specs = {name: MethodSpec(name) for name in ("rope", "string", "self_extend")}

    def step(label, fn):
        t0, c0 = time.perf_counter(), compile_seconds()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        print(f"| {label} | {time.perf_counter() - t0:.2f} | {compile_seconds() - c0:.2f} |", flush=True)

    def under(name, fn):
        def run():
            activate(model, specs[name], None, "ropeshift")
            try:
                fn()
            finally:
                deactivate(model)
        return run

    def likelihood():
        with torch.inference_mode():
            model(input_ids=lik_rows, logits_to_keep=257, use_cache=False)

    print(f"{device} {torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}; warm-up sizes "
          f"{wu.batch_sizes(model.config)}; generation {len(gen_rows)} rows x <= {length}, likelihood "
          f"{tuple(lik_rows.shape)}\n")
    print("| step | wall s | torch.compile s |\n|---|---|---|")
    step("warm-up, generation (string)", under("string", lambda: wu.warm_up(model, tok, GENERATION)))
    step("warm-up, likelihood (string)", under("string", lambda: wu.warm_up(model, tok, LIKELIHOOD)))
    for name in ("rope", "self_extend"):
        step(f"generation batch ({name})", under(name, lambda: generate(model, tok, gen_rows, 8)))
    for name in ("rope", "string"):
        step(f"likelihood batch ({name})", under(name, likelihood))
    return 0


if __name__ == "__main__":
    sys.exit(main())
