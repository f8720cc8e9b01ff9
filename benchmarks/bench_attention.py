"""Attention benchmark: fused Triton STRING vs the best causal kernels on the GPU (issue 5).

Run (H100, ~4 min):  PYTHONPATH=src python benchmarks/bench_attention.py [--quick] [--dims 64,128]
                     [--lengths 8k,16k,32k,64k,128k] [--no-flex] [--flex-dims 128] [--flex-lengths 32k,128k]

Prefill, bf16, B = 1, 32 query / 8 KV heads, S = 0.33 N, W = 128, median of >= 10 timed calls after warm-up,
causal FLOPs = 2 * N^2 * D * H (the FlashAttention convention, 4 N^2 D H halved):
  cudnn      SDPA forced to cuDNN, is_causal (GQA via enable_gqa, else K/V expanded outside the timing)
  flash      SDPA forced to the flash backend, is_causal
  flex       FlexAttention (compiled), causal block mask
  flex2      FlexAttention two-pass STRING: [q; q_shift] as a batch of 2 (= the 2h-query-heads trick of
             perf.md 3d), mask d < S / d >= S, return LSE, then an LSE merge; q_shift rotation and merge timed
  ours       ropeshift.kernels.causal_attention (STRING off)
  string     ropeshift.kernels.string_attention
plus extra peak memory of each call over its inputs. Decode (one query per row over an N-key cache, CUDA-graph
replay, several cache copies so the L2 does not hold the cache): effective KV bytes/s of our plain and STRING
decode vs the measured device-to-device copy bandwidth, and the reference decode structure (two plain split-KV
calls on the near/far key ranges + torch LSE merge).
"""

import argparse
import math
import statistics
import sys

import torch
import torch.nn.functional as F

from ropeshift import kernels
from ropeshift.rope import rotate

H, H_KV, W = 32, 8, 128


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


def _extra_mem(fn):
    """Peak bytes allocated during fn() above what was allocated before it (outputs included)."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    r = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del r
    return peak


def copy_bandwidth(gib=2):
    n = gib * (1 << 30) // 2
    a = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
    b = torch.empty_like(a)
    ms = _median_ms(lambda: b.copy_(a), min_calls=20)
    del a, b
    return 2 * n * 2 / (ms * 1e-3)


def _inv_freq(d):
    return (1.0 / (500000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))).cuda()


def _sdpa(backend, q, k, v, scale):
    from torch.nn.attention import sdpa_kernel

    def call(kk, vv, gqa):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, kk, vv, is_causal=True, scale=scale, enable_gqa=gqa)

    try:
        call(k, v, True)
        return lambda: call(k, v, True), "gqa"
    except RuntimeError:
        ke, ve = k.repeat_interleave(H // H_KV, 1), v.repeat_interleave(H // H_KV, 1)
        call(ke, ve, False)
        return lambda: call(ke, ve, False), "expanded kv"


_FLEX = {}


def _flex_fn():
    if "fn" not in _FLEX:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    return _FLEX["fn"]


def _flex_lse_call(q, k, v, block_mask, scale):
    fa = _flex_fn()
    try:
        from torch.nn.attention.flex_attention import AuxRequest

        out, aux = fa(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=True, return_aux=AuxRequest(lse=True))
        return out, aux.lse
    except ImportError:
        return fa(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=True, return_lse=True)


def flex_causal(q, k, v, scale):
    from torch.nn.attention.flex_attention import create_block_mask

    n = q.shape[2]
    bm = create_block_mask(lambda b, h, qi, ki: qi >= ki, None, None, n, n, device="cuda", _compile=True)
    fa = _flex_fn()
    return lambda: fa(q, k, v, block_mask=bm, scale=scale, enable_gqa=True)


def flex_two_pass(q, k, v, scale, shift, inv_freq):
    """STRING as one Flex call over [q; q_shift] (batch 2: near / far masks) + an LSE merge."""
    from torch.nn.attention.flex_attention import create_block_mask

    n = q.shape[2]

    def mask(b, h, qi, ki):
        d = qi - ki
        return (d >= 0) & torch.where(b == 1, d >= shift, d < shift)

    bm = create_block_mask(mask, 2, None, n, n, device="cuda", _compile=True)
    k2, v2 = k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1)

    def run():
        q2 = torch.cat([q, rotate(q, W - shift, inv_freq)])  # [2, h, n, d]
        o, lse = _flex_lse_call(q2, k2, v2, bm, scale)
        lse_all = torch.logaddexp(lse[0], lse[1])
        w = torch.exp(lse - lse_all).nan_to_num(0.0).unsqueeze(-1)  # [2, h, n, 1]
        return (o[0] * w[0] + o[1] * w[1]).to(q.dtype), lse_all

    return run


def bench_prefill(dims, lengths, flex_dims, flex_lengths):
    rows = []
    for d in dims:
        for n in lengths:
            torch.manual_seed(0)
            q = torch.randn(1, H, n, d, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(1, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(1, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
            scale, shift, inv = 1 / math.sqrt(d), int(0.33 * n), _inv_freq(d)
            flops = 2 * n * n * d * H
            fns = {}
            from torch.nn.attention import SDPBackend

            for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
                try:
                    fns[name], _ = _sdpa(be, q, k, v, scale)
                except RuntimeError as e:
                    print(f"# {name} unavailable at d={d} n={n}: {str(e)[:120]}", file=sys.stderr)
            if d in flex_dims and n in flex_lengths:
                try:
                    fns["flex"] = flex_causal(q, k, v, scale)
                    fns["flex2"] = flex_two_pass(q, k, v, scale, shift, inv)
                except Exception as e:  # noqa: BLE001 - report and go on
                    print(f"# flex unavailable at d={d} n={n}: {type(e).__name__}: {str(e)[:160]}", file=sys.stderr)
            fns["ours"] = lambda: kernels.causal_attention(q, k, v, scale=scale)
            fns["string"] = lambda: kernels.string_attention(q, k, v, shift=shift, window=W, inv_freq=inv,
                                                             scale=scale)
            res = {"d": d, "n": n}
            for name, fn in fns.items():
                try:
                    ms = _median_ms(fn)
                except Exception as e:  # noqa: BLE001 - a baseline that cannot run is reported, not fatal
                    print(f"# {name} failed at d={d} n={n}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
                    continue
                res[name] = ms
                res[name + "_tflops"] = flops / (ms * 1e-3) / 1e12
                res[name + "_mem"] = _extra_mem(fn)
            rows.append(res)
            print(_prefill_line(res), flush=True)
            del q, k, v, fns
            torch.cuda.empty_cache()
    return rows


_PROVIDERS = ("cudnn", "flash", "flex", "flex2", "ours", "string")


def _prefill_header():
    cols = " | ".join(f"{p} ms (TF/s)" for p in _PROVIDERS)
    return (f"| D | N | {cols} | string/cudnn | string/ours | flex2/string | mem string/ours |\n"
            "|---|---|" + "---|" * (len(_PROVIDERS) + 4))


def _ratio(r, a, b):
    return f"{r[a] / r[b]:.3f}" if a in r and b in r else "-"


def _prefill_line(r):
    cells = [f"{r[p]:.2f} ({r[p + '_tflops']:.0f})" if p in r else "-" for p in _PROVIDERS]
    mem = f"{r['string_mem'] / r['ours_mem']:.4f}" if "ours_mem" in r else "-"
    return (f"| {r['d']} | {r['n'] // 1024}k | " + " | ".join(cells)
            + f" | {_ratio(r, 'string', 'cudnn')} | {_ratio(r, 'string', 'ours')} | {_ratio(r, 'flex2', 'string')}"
            + f" | {mem} |")


def _graph_ms(fn, reps):
    """Median ms of one fn() call, from CUDA-graph replays of `reps` back-to-back calls."""
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
        fn()
    return _median_ms(g.replay, min_calls=20) / reps


def bench_decode(lengths, batches, copy_bw, d=128):
    rows = []
    for n in lengths:
        for b in batches:
            kv_bytes = 2 * b * H_KV * n * d * 2
            copies = max(1, math.ceil(200e6 / kv_bytes))  # > 50 MB L2: each replay streams from HBM
            torch.manual_seed(0)
            q = torch.randn(b, H, 1, d, device="cuda", dtype=torch.bfloat16)
            ks = [torch.randn(b, H_KV, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
            vs = [torch.randn(b, H_KV, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
            scale, shift, inv = 1 / math.sqrt(d), int(0.33 * n), _inv_freq(d)
            kernels.string_attention(q, ks[0], vs[0], shift=shift, window=W, inv_freq=inv, scale=scale)  # cos/sin

            def plain():
                for k, v in zip(ks, vs):
                    kernels.causal_attention(q, k, v, scale=scale)

            def string():
                for k, v in zip(ks, vs):
                    kernels.string_attention(q, k, v, shift=shift, window=W, inv_freq=inv, scale=scale)

            from ropeshift.kernels.attention import _cos_sin

            cs = _cos_sin(inv, W - shift, q.device)
            half = cs.shape[1]

            def rot(x):  # q rotated by -(S - W) with torch ops (what the official decode computes)
                x1, x2 = x[..., :half].float(), x[..., half:2 * half].float()
                return torch.cat([x1 * cs[0] - x2 * cs[1], x2 * cs[0] + x1 * cs[1]], -1).to(x.dtype)

            def two_call():  # the official decode structure: near and far calls + rotate + LSE merge
                for k, v in zip(ks, vs):
                    o1, l1 = kernels.causal_attention(q, k[:, :, n - shift:], v[:, :, n - shift:], scale=scale)
                    o2, l2 = kernels.causal_attention(rot(q), k[:, :, :n - shift],
                                                      v[:, :, :n - shift], scale=scale)
                    lse = torch.logaddexp(l1, l2)
                    _ = (o1 * torch.exp(l1 - lse).unsqueeze(-1) + o2 * torch.exp(l2 - lse).unsqueeze(-1)).to(q.dtype)

            r = {"n": n, "b": b}
            for name, fn in (("plain", plain), ("string", string), ("two_call", two_call)):
                ms = _graph_ms(fn, copies)
                r[name] = ms
                r[name + "_bw"] = kv_bytes / (ms * 1e-3)
            rows.append(r)
            print(_decode_line(r, copy_bw), flush=True)
            del ks, vs
            torch.cuda.empty_cache()
    return rows


def _decode_header():
    return ("| N | B | plain us (TB/s) | string us (TB/s) | string % of copy BW | string/plain | two-call us | "
            "two-call/string |\n|---|---|---|---|---|---|---|---|")


def _decode_line(r, copy_bw):
    return (f"| {r['n'] // 1024}k | {r['b']} | {r['plain'] * 1e3:.1f} ({r['plain_bw'] / 1e12:.2f}) | "
            f"{r['string'] * 1e3:.1f} ({r['string_bw'] / 1e12:.2f}) | {100 * r['string_bw'] / copy_bw:.0f}% | "
            f"{r['string'] / r['plain']:.3f} | {r['two_call'] * 1e3:.1f} | {r['two_call'] / r['string']:.2f} |")


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
        scale, shift, inv = 1 / math.sqrt(d), int(0.33 * n), _inv_freq(d)
        for cfg in SWEEP.get(d, SWEEP[128]):
            _prefill.PREFILL_CONFIG = cfg
            try:
                tc = _median_ms(lambda: kernels.causal_attention(q, k, v, scale=scale), min_calls=5, min_ms=100)
                ts = _median_ms(lambda: kernels.string_attention(q, k, v, shift=shift, window=W, inv_freq=inv,
                                                                 scale=scale), min_calls=5, min_ms=100)
            except Exception as e:  # noqa: BLE001 - e.g. out of shared memory
                print(f"| {d} | {' | '.join(map(str, cfg))} | failed: {type(e).__name__} | | |")
                continue
            print(f"| {d} | {' | '.join(map(str, cfg))} | {tc:.2f} | {ts:.2f} | {ts / tc:.3f} |", flush=True)
            if d not in best or ts < best[d][1]:
                best[d] = (cfg, ts)
        _prefill.PREFILL_CONFIG = None
    return {d: cfg for d, (cfg, _) in best.items()}


def _lengths(s):
    return [int(x[:-1]) * 1024 if x.endswith("k") else int(x) for x in s.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dims", default="128,64", help="head dims, comma separated")
    p.add_argument("--lengths", default="8k,16k,32k,64k,128k", help="prefill sequence lengths N")
    p.add_argument("--decode-lengths", default="8k,32k,64k,128k", help="decode cache lengths N")
    p.add_argument("--decode-batches", default="1,8")
    p.add_argument("--no-flex", action="store_true", help="skip the FlexAttention baselines (compile time)")
    p.add_argument("--flex-dims", default=None, help="head dims that run Flex (default: all)")
    p.add_argument("--flex-lengths", default=None, help="lengths that run Flex (default: all)")
    p.add_argument("--no-prefill", action="store_true")
    p.add_argument("--no-decode", action="store_true")
    p.add_argument("--sweep", default=None, metavar="N",
                   help="first sweep prefill tile configs at length N (e.g. 32k) and use the best per head dim")
    args = p.parse_args(argv)
    print(f"# {torch.cuda.get_device_name()} | torch {torch.__version__} | triton "
          f"{__import__('triton').__version__} | cuDNN {torch.backends.cudnn.version()}")
    bw = copy_bandwidth()
    print(f"# device-to-device copy bandwidth (read + write): {bw / 1e12:.2f} TB/s")
    prefill = decode = []
    if args.sweep:
        from ropeshift.kernels import _prefill

        best = sweep_prefill([int(x) for x in args.dims.split(",")], _lengths(args.sweep)[0])
        print(f"# best configs (BM, BN, warps, stages): {best}")
        _prefill.PREFILL_BY_DIM.update({d: cfg for d, cfg in best.items()})
    if not args.no_prefill:
        print(_prefill_header(), flush=True)
        dims, lengths = [int(x) for x in args.dims.split(",")], _lengths(args.lengths)
        flex_dims = [] if args.no_flex else [int(x) for x in args.flex_dims.split(",")] if args.flex_dims else dims
        flex_lengths = _lengths(args.flex_lengths) if args.flex_lengths else lengths
        prefill = bench_prefill(dims, lengths, flex_dims, flex_lengths)
    if not args.no_decode:
        print(_decode_header(), flush=True)
        decode = bench_decode(_lengths(args.decode_lengths), [int(x) for x in args.decode_batches.split(",")], bw)
    print("\n## summary (tables repeated)")
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s")
    if prefill:
        print(_prefill_header())
        for r in prefill:
            print(_prefill_line(r))
    if decode:
        print(_decode_header())
        for r in decode:
            print(_decode_line(r, bw))


if __name__ == "__main__":
    main()
