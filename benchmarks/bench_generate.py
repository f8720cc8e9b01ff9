"""End-to-end generate benchmark: each attention method vs the unpatched model with SDPA (issue 5).

Run (H100):  PYTHONPATH=src python benchmarks/bench_generate.py [--layers 8] [--lengths 32k,64k] [--new-tokens 64]
             [--methods string,rerope,rerope_leaky,self_extend,dca,lm_infinite,plain] [--impl auto]
             [--sdpa-backends default,flash] [--graphs] [--budget SECONDS]
CPU smoke:   PYTHONPATH=src python benchmarks/bench_generate.py --device cpu --tiny [--graphs]

A randomly initialised Llama-shaped model (Llama-3-8B width: hidden 4096, 32 query / 8 KV heads, head dim 128,
MLP 14336, vocab 128256, rope theta 5e5; `--layers` of them, default 8), bf16 on CUDA. ``--tiny``: 2 layers of
hidden 256 (4 query / 2 KV heads, head dim 64), fp32, prompt lengths 512 and 2048, 32 new tokens: the same code
path, to check the script on a CPU (2048 so self_extend's w_n = 1024 groups; STRING needs S = 0.33 N > W = 128).
For each prompt length N: prefill time = median of 3 runs with 1 new token; decode tokens/s = (T - 1) /
(t(T tokens) - prefill) from greedy decoding of exactly T new tokens ("-" when not positive); peak memory = max
allocated during the T-token run (CUDA only), also split at its first new token into the prefill phase (the
prompt's forward) and the decode phase (every later step, graph capture included; ``PhasePeaks``). The unpatched
baselines (``attn_implementation="sdpa"``: SDPA's own backend choice "default" and forced backends,
``--sdpa-backends``) are measured once per length, then each method of ``--methods``, applied as
``ropeshift.apply(model, method, **params, impl=...)`` with the settings of benchmarks/_settings.py (shared with
bench_attention.py; "plain" is our causal attention with no position change).
Targets: method prefill <= 1.10x and decode >= 0.95x of SDPA, peak memory equal.
``--graphs``: decode not host-bound on either side (static cache and CUDA graphs; ``measure``).
``--budget``: no new measurement starts after this many seconds; each row is printed when measured, and the
finished rows again as one table at the end.
"""

import argparse
import contextlib
import gc
import os
import statistics
import time

import torch

import ropeshift
from _settings import ALL_METHODS, method_params
from ropeshift.eval.options import parse_lengths

HEADER = ("| N | method | SDPA backend | prefill s (SDPA) | prefill s (method) | ratio (<= 1.10) | tok/s SDPA "
          "| tok/s method | ratio (>= 0.95) | peak GiB (SDPA / method) | decode (SDPA / method) "
          "| prefill-phase peak GiB (SDPA / method) | decode-phase peak GiB (SDPA / method) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def build_model(layers, device, tiny=False):
    from transformers import LlamaConfig, LlamaForCausalLM

    width = (dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                  vocab_size=1024) if tiny else
             dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                  head_dim=128, vocab_size=128256))
    cfg = LlamaConfig(
        **width, num_hidden_layers=layers, max_position_embeddings=131072,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.float32 if tiny else torch.bfloat16)
    model.eval()
    model.set_attn_implementation("sdpa")
    return model


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    r = fn()
    _sync(device)
    return time.perf_counter() - t0, r


def _ours(model):
    from ropeshift.attention.interface import ATTN_NAME

    return getattr(model.config, "_attn_implementation", None) == ATTN_NAME


class PhasePeaks:
    """Peak allocated memory (GiB, CUDA only) of one generate run, split at its first new token.

    ``start()`` resets the peak; ``first_token()`` is called by the run's stop check, which both loops make on the
    host right after the prompt's forward (a transformers stopping criterion, ``criterion()``; the stopper of
    ``static_generate``): it records the prefill-phase peak and resets again. ``finish()`` returns the (prefill,
    decode) peaks; the whole run's peak is the larger. CUDA allocations are host-side events: no sync needed."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.prefill = None

    def start(self):
        self.prefill = None
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def first_token(self):
        if self.cuda and self.prefill is None:
            self.prefill = torch.cuda.max_memory_allocated(self.device) / 2**30
            torch.cuda.reset_peak_memory_stats(self.device)

    def finish(self):
        if not self.cuda:
            return None, None
        last = torch.cuda.max_memory_allocated(self.device) / 2**30
        return (last, None) if self.prefill is None else (self.prefill, last)  # never split: all prefill

    def criterion(self):
        """A transformers stopping criterion that never stops a row and calls ``first_token``."""
        from transformers import StoppingCriteria

        phases = self

        class FirstToken(StoppingCriteria):
            flag = None  # [b] False on the device, made once (no allocation or launch per step)

            def __call__(self, input_ids, scores, **kwargs):
                phases.first_token()
                if self.flag is None or self.flag.shape[0] != input_ids.shape[0]:
                    self.flag = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
                return self.flag

        return FirstToken()


def measure(model, ids, new_tokens, graphs=False):
    """Prefill seconds, decode tokens/s, peak GiB of the T-token run and of its prefill and decode phases
    (``PhasePeaks``; None off CUDA) and the decode path. graphs: a static cache and CUDA graphs on both sides
    (ropeshift: ``eval.graph_decode.static_generate``, one captured step replayed, or the same steps eagerly where
    the graph loop does not serve the model, e.g. on a CPU; the unpatched model: ``generate`` with
    ``cache_implementation="static"``, which transformers compiles with CUDA graphs on CUDA); else ``generate``
    with the dynamic cache (host-bound decode)."""
    from ropeshift.eval.graph_decode import graph_decode_reason, static_generate

    device = ids.device
    phases = PhasePeaks(device)
    # explicit all-ones mask: transformers 5.17 otherwise infers padding from ids == pad_token_id
    mask = torch.ones_like(ids)
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True, attention_mask=mask,
               stopping_criteria=[phases.criterion()])
    if graphs and _ours(model):  # ropeshift's attention: its own static-cache loop
        capture = graph_decode_reason(model) is None
        path = "graph" if capture else "static eager"

        def never(toks, _):  # the batch never stops early: exactly t new tokens
            phases.first_token()
            return torch.zeros(toks.shape[0], dtype=torch.bool)

        def run(t):
            return static_generate(model, ids, mask, never, max_new=t, graphs=capture, check_every=t)
    else:
        path = "generate static" if graphs else "generate"
        if graphs:
            gen["cache_implementation"] = "static"

        def run(t):
            return model.generate(ids, max_new_tokens=t, min_new_tokens=t, **gen)[:, ids.shape[1]:]
    with torch.inference_mode():
        run(new_tokens)  # warm-up: compiles (Triton, and torch.compile's graphs for the static SDPA path), allocator
        prefill = statistics.median(_timed(lambda: run(1), device)[0] for _ in range(3))
        phases.start()
        t, out = _timed(lambda: run(new_tokens), device)
        peak_prefill, peak_decode = phases.finish()
    assert out.shape[1] == new_tokens, out.shape
    tok_s = (new_tokens - 1) / (t - prefill) if t > prefill else None  # None: decode time lost in the noise
    peak = None if peak_prefill is None else max(peak_prefill, peak_decode or 0.0)
    return {"prefill_s": prefill, "tok_s": tok_s, "peak_gib": peak, "peak_prefill_gib": peak_prefill,
            "peak_decode_gib": peak_decode, "path": path}


def measure_sdpa(model, ids, new_tokens, backend, graphs=False):
    """The unpatched model; backend "default" = PyTorch's own SDPA choice, else that backend forced."""
    if backend == "default":
        return measure(model, ids, new_tokens, graphs)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    with sdpa_kernel([names[backend]]):
        return measure(model, ids, new_tokens, graphs)


def measure_method(model, ids, new_tokens, name, impl, graphs=False):
    """``name`` (a key of ``_settings.method_params``) applied at this prompt length, measured, then removed."""
    registered, params = method_params(name, ids.shape[1])
    ropeshift.apply(model, registered, **params, impl=impl)
    try:
        return measure(model, ids, new_tokens, graphs)
    finally:
        ropeshift.remove(model)
        model.set_attn_implementation("sdpa")


class Budget:
    """Seconds since start against a limit (0: none)."""

    def __init__(self, seconds):
        self.seconds, self.t0 = seconds, time.perf_counter()

    def over(self, what):
        if self.seconds and time.perf_counter() - self.t0 > self.seconds:
            print(f"# time budget ({self.seconds:.0f} s) spent: not starting {what} or anything after it", flush=True)
            return True
        return False


def _release(device, model=None):
    """Free what a measurement left behind. With ``model``: also drop generate's compiled forward and its CUDA-graph
    memory pools (the static SDPA baseline), so they do not count against the methods' peak memory."""
    if model is not None and "_compiled_call" in model.__dict__:
        del model._compiled_call
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_all(model, args, device, emit):
    """Baselines once per length, then each method; ``emit(row)`` per (method, baseline) as soon as measured."""
    budget = Budget(args.budget)
    methods = [m for m in args.methods.split(",") if m]
    for n in parse_lengths(args.lengths):
        gen = torch.Generator(device=device).manual_seed(n)
        ids = torch.randint(1, model.config.vocab_size, (1, n), device=device, generator=gen)
        bases = {}
        for backend in args.sdpa_backends.split(","):
            if budget.over(f"sdpa {backend} at N={n}"):
                return
            try:
                bases[backend] = measure_sdpa(model, ids, args.new_tokens, backend, args.graphs)
            except RuntimeError as e:  # a forced backend that cannot serve this call
                print(f"# sdpa {backend} failed at N={n}: {str(e)[:200]}", flush=True)
            _release(device, model)
        for name, k1 in _runs(methods, args.k1_variants):
            label = f"{name} [k1]" if k1 == "1" else name
            if budget.over(f"{label} at N={n}"):
                return
            try:
                with _k1_env(k1):
                    ours = measure_method(model, ids, args.new_tokens, name, args.impl, args.graphs)
            except Exception as e:  # noqa: BLE001 - one method failing is reported; the others still run
                print(f"# {label} failed at N={n}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                continue
            finally:
                _release(device)
            for backend, base in (bases or {"-": None}).items():
                emit((n, label, backend, base, ours))


def _runs(methods, k1_variants):
    """(method, K1 switch) in measurement order: each method once (switch None), or with ``k1_variants`` twice,
    off then on for the 1st, 3rd, ... method and on then off for the others, so that neither setting always runs
    second (warmer GPU, fuller allocator)."""
    if not k1_variants:
        return [(m, None) for m in methods]
    return [(m, flag) for i, m in enumerate(methods) for flag in (("0", "1") if i % 2 == 0 else ("1", "0"))]


@contextlib.contextmanager
def _k1_env(flag):
    """ROPESHIFT_K1_CACHE set to ``flag`` ("0" / "1") for the duration; None: left as it is."""
    from ropeshift.attention.far_cache import K1_ENV

    if flag is None:
        yield
        return
    before = os.environ.get(K1_ENV)
    os.environ[K1_ENV] = flag
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(K1_ENV, None)
        else:
            os.environ[K1_ENV] = before


def _line(n, name, backend, base, ours):
    def f(d, key, fmt):
        return "-" if d is None or d.get(key) is None else format(d[key], fmt)

    def ratio(key):
        return "-" if base is None or base[key] is None or ours[key] is None else f"{ours[key] / base[key]:.3f}"

    size = f"{n // 1024}k" if n % 1024 == 0 else str(n)
    return (f"| {size} | {name} | {backend} | {f(base, 'prefill_s', '.3f')} | {f(ours, 'prefill_s', '.3f')} | "
            f"{ratio('prefill_s')} | {f(base, 'tok_s', '.1f')} | {f(ours, 'tok_s', '.1f')} | {ratio('tok_s')} | "
            f"{f(base, 'peak_gib', '.2f')} / {f(ours, 'peak_gib', '.2f')} | "
            f"{'-' if base is None else base['path']} / {ours['path']} | "
            f"{f(base, 'peak_prefill_gib', '.2f')} / {f(ours, 'peak_prefill_gib', '.2f')} | "
            f"{f(base, 'peak_decode_gib', '.2f')} / {f(ours, 'peak_decode_gib', '.2f')} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, or cpu (with --tiny: the smoke check)")
    p.add_argument("--tiny", action="store_true",
                   help="2 small layers, fp32; defaults --lengths 512,2048 --new-tokens 32")
    p.add_argument("--layers", type=int, default=None, help="decoder layers (default 8, 2 with --tiny)")
    p.add_argument("--lengths", default=None, help="prompt lengths (default 32k,64k; 512,2048 with --tiny)")
    p.add_argument("--new-tokens", type=int, default=None, help="T, new tokens per decode run (default 64; 32 tiny)")
    p.add_argument("--methods", default=",".join(ALL_METHODS),
                   help="methods of benchmarks/_settings.py, comma separated (also: plain)")
    p.add_argument("--impl", default="auto", help="ropeshift.apply's impl (auto, triton, torch)")
    p.add_argument("--graphs", action="store_true", help="static cache + CUDA-graph decode on both sides (see measure)")
    p.add_argument("--sdpa-backends", default="default,flash",
                   help="unpatched baselines: default (PyTorch's choice), flash, cudnn, efficient, math")
    p.add_argument("--budget", type=float, default=0, help="start no new measurement after this many seconds")
    p.add_argument("--k1-variants", action="store_true",
                   help="measure each method twice in the same run: K1 cache off and on ('<m> [k1]'; the order "
                        "alternates between methods; ROPESHIFT_K1_CACHE, static-cache decode with --graphs)")
    args = p.parse_args(argv)
    for name in filter(None, args.methods.split(",")):
        try:
            method_params(name, 1024)
        except KeyError:
            p.error(f"--methods: unknown {name!r} (known: plain, {', '.join(ALL_METHODS)})")
    if args.k1_variants and not args.graphs:
        p.error("--k1-variants needs --graphs (the K1 cache exists only in static-cache decode)")
    args.layers = args.layers or (2 if args.tiny else 8)
    args.lengths = args.lengths or ("512,2048" if args.tiny else "32k,64k")
    args.new_tokens = args.new_tokens or (32 if args.tiny else 64)
    device = torch.device(args.device)
    import transformers

    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = "none"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    shape = "tiny (hidden 256), fp32" if args.tiny else "Llama-3-8B width, bf16"
    print(f"# {name} | torch {torch.__version__} | triton {tv} | transformers {transformers.__version__} | "
          f"{args.layers} layers of {shape} | T = {args.new_tokens} | graphs {args.graphs} | impl {args.impl}")
    model = build_model(args.layers, device, args.tiny)
    rows = []

    def emit(row):
        if not rows:
            print(HEADER, flush=True)
        rows.append(row)
        print(_line(*row), flush=True)

    try:
        run_all(model, args, device, emit)
    finally:
        print("\n## summary (finished rows)\n\n" + HEADER, *map(lambda r: _line(*r), rows), sep="\n", flush=True)
    return rows


if __name__ == "__main__":
    main()
