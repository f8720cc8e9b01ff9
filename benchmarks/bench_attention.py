"""Attention benchmark: every method's fused Triton kernel vs cuDNN causal and our own causal (issue 9).

Run (H100, ~4 min):  PYTHONPATH=src python benchmarks/bench_attention.py [--quick] [--md OUT.md]
                     [--dims 128,64] [--lengths 32k,128k] [--d64-lengths 32k] [--decode-lengths 64k]
                     [--decode-batches 1,8] [--methods string,rerope,...] [--budget SECONDS] [--sweep 32k]
                     [--no-prefill] [--no-decode] [--no-compose]

Prefill, bf16, B = 1, 32 query / 8 KV heads, median of >= 10 interleaved rounds (each calls every column once, so
drift of clocks or temperature is shared) after warm-up, FLOPs counted as causal
(2 * N^2 * D * H, the FlashAttention convention, for every method: LM-Infinite's Lambda mask does less work):
  cudnn         SDPA forced to cuDNN, is_causal (GQA via enable_gqa, else K/V expanded outside the timing)
  ours causal   ropeshift.kernels.causal_attention (one identity region)
  <method>      ropeshift.kernels.table_attention on the method's segment table (route c: one fused kernel;
                on sm_90 the Hopper Gluon kernel where it serves the table, else the portable Triton kernel)
  <m> triton    the same call with the Hopper kernel switched off (sm_90 only; also "triton causal")
  <m> nofold    the Hopper kernel with a constant query shift (STRING) re-rotating Q instead of K at every head dim
                (--hopper-variants nofold,fold; "<m> fold": re-rotating K at every head dim; default: K at D = 128)
  <m> [v]       decode columns with a switch of the decode kernel set (--decode-variants sms4,cfg=32.4.3):
                sms4 = the split rule before 2026-12-03 (~4 programs per SM instead of one full wave),
                cfg=BN.W.S = (BLOCK_N, num_warps, num_stages) for every decode call of the column,
                k1 = the re-rotating methods (far key map not the identity) reading their far keys from a K1
                cache built before the timing (static-decode entry, key_end = N; baseline "ours plain [k1]",
                plain through the same entry), triton = the Triton split kernel for every call (no Hopper
                decode: on sm_90 that kernel serves the re-rotating tables without K1), nreg=N / stages=N =
                the Hopper decode's register cap / K-V ring depth, early=0 = its first TMA loads after the
                query and table set-up instead of before ("a+b": both switches)
  <m> compose   ropeshift.kernels.compose on the same table (route b: vendor calls merged by LSE, with the
                per-region re-rotation of q / k, exactly as the dispatcher runs it)
Method settings at sequence length N (training length L = N / 2 for the baselines, as a 2x extension; defined
once in benchmarks/_settings.py, shared with bench_generate.py):
  string S = 0.33 N, W = 128 | rerope w = L/4 | rerope_leaky w = L/4, k = 16 | self_extend G = 8, w_n = 1024 |
  dca C = 3L/4, w = L/16 | lm_infinite n_global = 10, n_local = L_d = L.
Decode (one query per row over an N-key cache; each column one CUDA graph of >= 8 back-to-back calls over
several cache copies so the L2 does not hold the cache, the graphs replayed in interleaved rounds, medians):
effective KV bytes/s of each method vs our plain decode. Ratios are printed against
cuDNN causal (prefill) and our plain decode (decode). ``--md`` writes the tables as markdown.
"""

import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from ropeshift import kernels
from _settings import ALL_METHODS, method_at
from ropeshift.eval.options import parse_length

H, H_KV = 32, 8


def _median_ms(fn, min_calls=10, min_ms=300.0, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    est = start.elapsed_time(end)
    n = max(min_calls, min(200, int(min_ms / max(est, 1e-3))))
    times = []
    for _ in range(n):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _interleaved_ms(fns, budget, min_rounds=10, max_rounds=40, min_ms=300.0):
    """Median ms per fn from rounds that call every fn once in turn (after two warm-up calls each), so a drift of
    the clocks or temperature during the run weighs on every column alike instead of on the later ones."""
    est = {}
    for name, fn in fns.items():
        if budget.left() < 5:
            print(f"# {name}: skipped (time budget)", file=sys.stderr)
            continue
        try:
            est[name] = _median_ms(fn, min_calls=1, min_ms=0.0, warmup=2)
        except Exception as e:  # noqa: BLE001 - a provider that cannot run is reported, not fatal
            print(f"# {name} failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
    if not est:
        return {}
    per_round = sum(est.values())
    rounds = max(min_rounds, min(max_rounds, int(min_ms / max(min(est.values()), 1e-3))))
    rounds = max(3, min(rounds, int(1e3 * max(budget.left() - 5, 0) / max(per_round, 1e-3))))
    ev = {name: [torch.cuda.Event(enable_timing=True) for _ in range(2)] for name in est}
    times = {name: [] for name in est}
    for _ in range(rounds):
        for name in est:
            s, e = ev[name]
            s.record()
            fns[name]()
            e.record()
            e.synchronize()
            times[name].append(s.elapsed_time(e))
    return {name: statistics.median(t) for name, t in times.items()}


def copy_bandwidth(gib=2):
    n = gib * (1 << 30) // 2
    a = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
    b = torch.empty_like(a)
    ms = _median_ms(lambda: b.copy_(a), min_calls=20)
    del a, b
    return 2 * n * 2 / (ms * 1e-3)


def _inv_freq(d):
    return (1.0 / (500000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))).cuda()


def _cudnn(q, k, v, scale):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def call(kk, vv, gqa):
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(q, kk, vv, is_causal=True, scale=scale, enable_gqa=gqa)

    try:
        call(k, v, True)
        return lambda: call(k, v, True)
    except RuntimeError:
        ke, ve = k.repeat_interleave(H // H_KV, 1), v.repeat_interleave(H // H_KV, 1)
        call(ke, ve, False)
        return lambda: call(ke, ve, False)


class Budget:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds if seconds else None

    def left(self):
        return float("inf") if self.end is None else self.end - time.monotonic()


COMPOSE = True
PORTABLE = True  # --no-portable: leave out the "<m> triton" columns (the Hopper kernel switched off)


def compose_prefill(q, k, v, method, inv, scale):
    """The composed route exactly as the dispatcher calls it (regions rotated from post-RoPE q / k, then merged)."""
    from ropeshift.kernels.compose import compose_attention
    from ropeshift.kernels.compose_segments import segment_regions

    return compose_attention(segment_regions(method, q, k, inv), v, scale=scale * method.logit_scale)


def _hopper_serves(q, k, inv):
    """None off sm_90; else table -> whether ``table_attention`` takes the Hopper kernel for this call."""
    from ropeshift.kernels import attention as A
    from ropeshift.kernels.spec import PLAIN, compile_table

    if A.hopper_reason(q, k, None, PLAIN) is not None:
        return None
    return lambda table: A.hopper_reason(q, k, None, compile_table(table).for_keys(k.shape[2]), inv) is None


def _portable(fn):
    """fn with the Hopper kernel switched off (``kernels.attention.HOPPER``): the portable Triton kernel."""
    from ropeshift.kernels import attention as A

    def call():
        A.HOPPER = False
        try:
            return fn()
        finally:
            A.HOPPER = True
    return call


HOPPER_VARIANTS = ()  # --hopper-variants
_VARIANT_FLAGS = {"nofold": ("FOLD_SHIFT_DIMS", frozenset()), "fold": ("FOLD_SHIFT_DIMS", frozenset({64, 128}))}


def _folds(table):
    """The table's query map is a constant shift (which the Hopper kernel may fold into its key map)."""
    from ropeshift.kernels import _prefill_hopper_ws as ws
    from ropeshift.kernels.spec import compile_table

    spec = compile_table(table)
    return spec.has_r1 and spec.q_map[0] == ws.MAP_CONSTANT


def _variant_applies(var, table, d):
    """Whether Hopper switch ``var`` changes this table's call: the fold switches, for a constant query shift."""
    return _folds(table)


def _variant(name, fn):
    """fn with one of the Hopper kernel's switches set (``_prefill_hopper_ws.FOLD_SHIFT_DIMS``)."""
    from ropeshift.kernels import _prefill_hopper_ws as ws

    return _with_attr(ws, *_VARIANT_FLAGS[name], fn)


def _with_attr(module, attr, value, fn):
    """fn, run with ``module.attr = value`` for the duration of each call."""
    def call():
        old = getattr(module, attr)
        setattr(module, attr, value)
        try:
            return fn()
        finally:
            setattr(module, attr, old)
    return call


def bench_prefill(shapes, methods, budget):
    rows = []
    for d, n in shapes:
        if budget.left() < 20:
            print(f"# prefill D={d} N={n}: skipped (time budget)", file=sys.stderr)
            continue
        torch.manual_seed(0)
        q = torch.randn(1, H, n, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(1, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
        scale, inv = 1 / math.sqrt(d), _inv_freq(d)
        flops = 2 * n * n * d * H
        fns = {}
        try:
            fns["cudnn causal"] = _cudnn(q, k, v, scale)
        except RuntimeError as e:
            print(f"# cudnn unavailable at d={d} n={n}: {str(e)[:120]}", file=sys.stderr)
        fns["ours causal"] = lambda: kernels.causal_attention(q, k, v, scale=scale)
        hopper = _hopper_serves(q, k, inv)
        if hopper and PORTABLE:
            fns["triton causal"] = _portable(lambda: kernels.causal_attention(q, k, v, scale=scale))
        poff = torch.zeros(1, dtype=torch.int32, device="cuda")  # as the dispatcher passes it (same binaries)
        for name in methods:
            method = method_at(name, n)
            table = method.table()
            fns[name] = lambda t=table: kernels.table_attention(q, k, v, t, inv_freq=inv, scale=scale, pos_offset=poff)
            if hopper and hopper(table):  # the same call on the portable Triton kernel, side by side
                if PORTABLE:
                    fns[name + " triton"] = _portable(fns[name])
                for var in HOPPER_VARIANTS:  # the Hopper kernel with one of its switches flipped
                    if _variant_applies(var, table, d):
                        fns[f"{name} {var}"] = _variant(var, fns[name])
            if COMPOSE:  # route (b): vendor calls merged by LSE, with the per-region re-rotation, as dispatched
                fns[name + " compose"] = lambda m=method: compose_prefill(q, k, v, m, inv, scale)
        print(f"# D={d} N={n}: {len(fns)} columns, timed in interleaved rounds", file=sys.stderr)
        res = _interleaved_ms(fns, budget)
        for name, ms in res.items():
            row = {"d": d, "n": n, "impl": name, "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12,
                   "vs_cudnn": ms / res["cudnn causal"] if "cudnn causal" in res else None,
                   "vs_ours": ms / res["ours causal"] if "ours causal" in res else None}
            rows.append(row)
            print(_prefill_line(row), flush=True)
        del q, k, v, fns
        torch.cuda.empty_cache()
    return rows


def _fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


PREFILL_HEADER = ("| D | N | impl | ms | TF/s | / cuDNN causal | / ours causal |\n"
                  "|---|---|---|---|---|---|---|")


def _prefill_line(r):
    return (f"| {r['d']} | {r['n'] // 1024}k | {r['impl']} | {r['ms']:.2f} | {r['tflops']:.0f} | "
            f"{_fmt(r['vs_cudnn'])} | {_fmt(r['vs_ours'])} |")


def _graph_columns(fns, copies, budget, where, inner_calls=8):
    """Median ms of one call per column: each column captured once as a CUDA graph of back-to-back calls (its
    `copies` caches, repeated to >= inner_calls calls), then the graphs replayed in interleaved rounds
    (``_interleaved_ms``), so a drift of clocks or temperature weighs on every column alike."""
    reps = max(1, -(-inner_calls // copies))
    graphs = {}
    for name, fn in fns.items():
        try:
            fn()
            torch.cuda.synchronize()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(2):
                    fn()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for _ in range(reps):
                    fn()
            graphs[name] = g
        except Exception as e:  # noqa: BLE001
            print(f"# decode {name} failed at {where}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
    ms = _interleaved_ms({name: g.replay for name, g in graphs.items()}, budget, min_rounds=15, max_rounds=60)
    return {name: t / (reps * copies) for name, t in ms.items()}


DECODE_VARIANTS = ()  # --decode-variants


def _decode_variant(name, fn):
    """fn with decode switches set: "sms4" (the old split rule), "cfg=BN.W.S" (the Triton kernel's tile
    config), "triton" (the Triton kernel for every call: no Hopper decode), "nreg=N" / "stages=N" (the Hopper
    decode's register cap / K-V ring depth), "early=0" (the Hopper decode's first TMA loads after its set-up), several
    joined by "+". Unknown names raise ValueError."""
    from ropeshift.kernels import _decode

    if "+" in name:  # several switches at once: "stages=2+nreg=168"
        first, rest = name.split("+", 1)
        return _decode_variant(first, _decode_variant(rest, fn))
    if name == "sms4":
        attr, value = "SPLIT_RULE", "sms4"
    elif name.startswith("cfg=") and len(name[4:].split(".")) == 3:
        attr, value = "DECODE_CONFIG", tuple(int(x) for x in name[4:].split("."))
    elif name == "triton":
        attr, value = "ROUTE", "triton"
    elif name.startswith(("nreg=", "stages=", "early=")):
        from ropeshift.kernels import _decode_hopper

        attr = {"nreg": "MAXNREG", "stages": "STAGES", "early": "EARLY"}[name.split("=")[0]]
        return _with_attr(_decode_hopper, attr, int(name.split("=")[1]), fn)
    else:
        raise ValueError(f"unknown decode variant {name!r} "
                         "(sms4, cfg=BN.W.S, triton, nreg=N, stages=N, early=0/1)")
    return _with_attr(_decode, attr, value, fn)


def _k1_columns(q, ks, vs, methods, n, inv, scale, poff):
    """Decode columns with the K1 cache (``ropeshift.kernels.key_cache``), through the static-decode entry (key_end
    = N): "<m> [k1]" for every method whose far key map is not the identity, its K1 per cache copy built here,
    outside the timing (it is a cache: decode writes one slot per step), and "ours plain [k1]", plain decode
    through the same entry, the ratio's baseline. q [b, h, 1, d]; ks, vs: the cache copies [b, h_kv, N, d]."""
    from ropeshift.kernels.key_cache import needs_far_keys, write_far_keys
    from ropeshift.kernels.spec import PLAIN, compile_table

    end = torch.full((q.shape[0],), n, dtype=torch.int32, device=q.device)

    def run(spec, k1s):  # with the step's slot write, as static decode runs it (it rewrites the same value)
        return [kernels.static_decode_attention(q, k, v, spec, inv_freq=inv, scale=scale, key_end=end,
                                                pos_offset=poff, k1=k1, write_k1_slot=k1 is not None)
                for k, v, k1 in zip(ks, vs, k1s)]

    cols = {"ours plain [k1]": lambda: run(PLAIN, [None] * len(ks))}
    for name in methods:
        spec = compile_table(method_at(name, n).table())
        if isinstance(spec, str) or not needs_far_keys(spec):
            continue
        k1s = [torch.empty_like(k) for k in ks]
        for k, k1 in zip(ks, k1s):
            write_far_keys(k1, k, spec, inv, pos_offset=poff)
        cols[f"{name} [k1]"] = lambda s=spec, k1s=k1s: run(s, k1s)
    return cols


def bench_decode(lengths, batches, methods, copy_bw, budget, d=128):
    rows = []
    for n in lengths:
        for b in batches:
            if budget.left() < 15:
                print(f"# decode N={n} B={b}: skipped (time budget)", file=sys.stderr)
                continue
            kv_bytes = 2 * b * H_KV * n * d * 2
            copies = max(1, math.ceil(200e6 / kv_bytes))  # > 50 MB L2: each replay streams from HBM
            torch.manual_seed(0)
            q = torch.randn(b, H, 1, d, device="cuda", dtype=torch.bfloat16)
            ks = [torch.randn(b, H_KV, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
            vs = [torch.randn(b, H_KV, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
            scale, inv = 1 / math.sqrt(d), _inv_freq(d)
            fns = {"ours plain": lambda: [kernels.causal_attention(q, k, v, scale=scale) for k, v in zip(ks, vs)]}
            poff = torch.zeros(b, dtype=torch.int32, device="cuda")
            for name in methods:
                from ropeshift.kernels.spec import compile_table

                spec = compile_table(method_at(name, n).table())  # compiled once, as the dispatcher caches it
                fns[name] = lambda s=spec: [kernels.table_attention(q, k, v, s, inv_freq=inv, scale=scale,
                                                                    pos_offset=poff) for k, v in zip(ks, vs)]
            if "k1" in DECODE_VARIANTS:
                fns.update(_k1_columns(q, ks, vs, methods, n, inv, scale, poff))
            for var in DECODE_VARIANTS:  # every other switch on every column so far, the K1 ones included
                if var != "k1":
                    fns.update({f"{name} [{var}]": _decode_variant(var, fn) for name, fn in list(fns.items())
                                if name.count("[") == name.count("[k1]")})
            res = _graph_columns(fns, copies, budget, f"n={n} b={b}")
            for name, ms in res.items():
                bw = kv_bytes / (ms * 1e-3)
                plain = "ours plain" + name[name.index(" ["):] if " [" in name else "ours plain"  # same variant
                row = {"n": n, "b": b, "impl": name, "us": ms * 1e3, "tbs": bw / 1e12, "copy_pct": 100 * bw / copy_bw,
                       "vs_plain": ms / res[plain] if plain in res else None}
                rows.append(row)
                print(_decode_line(row), flush=True)
            del ks, vs
            torch.cuda.empty_cache()
    return rows


DECODE_HEADER = ("| N | B | impl | us | TB/s | % of copy BW | / ours plain |\n"
                 "|---|---|---|---|---|---|---|")


def _decode_line(r):
    return (f"| {r['n'] // 1024}k | {r['b']} | {r['impl']} | {r['us']:.1f} | {r['tbs']:.2f} | "
            f"{r['copy_pct']:.0f}% | {_fmt(r['vs_plain'])} |")


SWEEP = {  # (BLOCK_M, BLOCK_N, num_warps, num_stages, phase order) per head dim
    128: [(128, 64, 8, 3, 0), (128, 64, 8, 3, 1), (128, 128, 8, 2, 1), (64, 64, 4, 3, 1)],
    64: [(128, 64, 4, 3, 0), (128, 64, 4, 3, 1), (64, 64, 4, 3, 1), (128, 128, 8, 2, 1), (128, 64, 8, 3, 1)],
}


def sweep_prefill(dims, n):
    """Time our STRING and causal kernels at length n over the tile configs in SWEEP; returns the best per dim."""
    from ropeshift.kernels import _prefill

    best = {}
    print("| D | BM | BN | warps | stages | order | causal ms | string ms | string/causal |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for d in dims:
        torch.manual_seed(0)
        q = torch.randn(1, H, n, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(1, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
        scale, inv, table = 1 / math.sqrt(d), _inv_freq(d), method_at("string", n).table()
        for cfg in SWEEP.get(d, SWEEP[128]):
            _prefill.PREFILL_CONFIG = cfg
            try:
                tc = _median_ms(lambda: kernels.causal_attention(q, k, v, scale=scale), min_calls=5, min_ms=100)
                ts = _median_ms(lambda: kernels.table_attention(q, k, v, table, inv_freq=inv, scale=scale),
                                min_calls=5, min_ms=100)
            except Exception as e:  # noqa: BLE001 - e.g. out of shared memory
                print(f"| {d} | {' | '.join(map(str, cfg))} | failed: {type(e).__name__} | | |")
                continue
            print(f"| {d} | {' | '.join(map(str, cfg))} | {tc:.2f} | {ts:.2f} | {ts / tc:.3f} |", flush=True)
            if d not in best or ts < best[d][1]:
                best[d] = (cfg, ts)
        _prefill.PREFILL_CONFIG = None
    return {d: cfg for d, (cfg, _) in best.items()}


def _lengths(s):
    """Comma-separated lengths ("32k,128k"); empty: none."""
    return [parse_length(x) for x in s.split(",") if x]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dims", default="128,64", help="head dims, comma separated")
    p.add_argument("--lengths", default="32k,128k", help="prefill lengths N at D = 128")
    p.add_argument("--d64-lengths", default="32k", help="prefill lengths N at D = 64")
    p.add_argument("--extra-lengths", default="64k", help="prefill lengths at D = 128 run after decode, if the "
                   "time budget allows")
    p.add_argument("--decode-lengths", default="64k", help="decode cache lengths N")
    p.add_argument("--decode-batches", default="1,8")
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--budget", type=float, default=0, help="stop starting new rows after this many seconds")
    p.add_argument("--quick", action="store_true", help="8k prefill and 16k decode only (smoke run)")
    p.add_argument("--md", default=None, help="also write the tables as markdown to this file")
    p.add_argument("--no-prefill", action="store_true")
    p.add_argument("--no-decode", action="store_true")
    p.add_argument("--no-compose", action="store_true", help="leave out the composed-vendor route (<method> compose)")
    p.add_argument("--no-portable", action="store_true", help="leave out the portable-kernel columns on sm_90 "
                   "('<method> triton', 'triton causal')")
    p.add_argument("--hopper-variants", default="", help="also time the Hopper kernel with these switches set "
                   "(nofold / fold: STRING's shift re-rotates Q / K at every head dim)")
    p.add_argument("--decode-variants", default="", help="also time every decode column with these decode "
                   "switches: sms4 (the old split rule), cfg=BN.W.S (BLOCK_N, warps, stages), triton (no Hopper "
                   "decode), nreg=N / stages=N (the Hopper decode's register cap / ring depth), early=0 (its "
                   "first loads after the set-up), a+b (both); k1: "
                   "every re-rotating method with a prebuilt K1 cache (static-decode entry, plain's column alike)")
    p.add_argument("--sweep", default=None, metavar="N",
                   help="first sweep prefill tile configs at length N (e.g. 32k) and use the best per head dim")
    args = p.parse_args(argv)
    budget = Budget(args.budget)
    global COMPOSE, DECODE_VARIANTS, HOPPER_VARIANTS, PORTABLE
    COMPOSE = not args.no_compose
    PORTABLE = not args.no_portable
    HOPPER_VARIANTS = tuple(m for m in args.hopper_variants.split(",") if m)
    for m in HOPPER_VARIANTS:
        if m not in _VARIANT_FLAGS:
            p.error(f"unknown --hopper-variants entry {m!r} (choose from {', '.join(_VARIANT_FLAGS)})")
    DECODE_VARIANTS = tuple(m for m in args.decode_variants.split(",") if m)
    for m in DECODE_VARIANTS:
        if m != "k1":
            try:
                _decode_variant(m, None)  # the one parser of the switches
            except ValueError as e:
                p.error(f"--decode-variants: {e}")
    methods = [m for m in args.methods.split(",") if m]
    dims = [int(x) for x in args.dims.split(",")]
    if args.quick:
        args.lengths, args.d64_lengths, args.decode_lengths, args.extra_lengths = "8k", "8k", "16k", ""
    shapes = [(128, n) for n in _lengths(args.lengths) if 128 in dims]
    shapes += [(64, n) for n in _lengths(args.d64_lengths) if 64 in dims]
    head = (f"# {torch.cuda.get_device_name()} | torch {torch.__version__} | triton "
            f"{__import__('triton').__version__} | cuDNN {torch.backends.cudnn.version()}")
    print(head)
    bw = copy_bandwidth()
    print(f"# device-to-device copy bandwidth (read + write): {bw / 1e12:.2f} TB/s")
    prefill = decode = []
    if args.sweep:
        from ropeshift.kernels import _prefill

        best = sweep_prefill(dims, _lengths(args.sweep)[0])
        print(f"# best configs (BM, BN, warps, stages, order): {best}")
        _prefill.PREFILL_BY_DIM.update(best)
    if not args.no_prefill:
        print(PREFILL_HEADER, flush=True)
        prefill = bench_prefill(shapes, methods, budget)
        write_md(args.md, head, bw, prefill, decode)
    if not args.no_decode:
        print(DECODE_HEADER, flush=True)
        decode = bench_decode(_lengths(args.decode_lengths), [int(x) for x in args.decode_batches.split(",")],
                              methods, bw, budget)
        write_md(args.md, head, bw, prefill, decode)
    extra = [(128, n) for n in _lengths(args.extra_lengths) if 128 in dims]
    if extra and not args.no_prefill:
        print(PREFILL_HEADER, flush=True)
        prefill = prefill + bench_prefill(extra, methods, budget)
    write_md(args.md, head, bw, prefill, decode, final=True)


def write_md(path, head, bw, prefill, decode, final=False):
    lines = [head, f"copy bandwidth {bw / 1e12:.2f} TB/s", "",
             "## Prefill (bf16, B = 1, 32 q / 8 kv heads; ratios: time / time of the reference)", "", PREFILL_HEADER]
    lines += [_prefill_line(r) for r in prefill]
    lines += ["", "## Decode (bf16, 32 q / 8 kv heads, D = 128, CUDA-graph replay)", "", DECODE_HEADER]
    lines += [_decode_line(r) for r in decode]
    if final:
        print("\n## summary (tables repeated)\n" + "\n".join(lines))
    if path:
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
