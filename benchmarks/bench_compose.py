"""Composed vendor attention (ropeshift.kernels.compose) vs SDPA-cuDNN causal, every band method (issue 9, route b).

Run (H100, < 5 min):  PYTHONPATH=src python benchmarks/bench_compose.py --out OUT [--quick]
                      [--lengths 32k,64k,128k] [--d64-lengths 32k] [--train-length 8192]

Prefill, bf16, B = 1, 32 query / 8 KV heads, D = 128 (and D = 64 at the --d64-lengths), median of CUDA-event
timings (triton.testing.do_bench, return_mode="median"). Providers:
  cudnn        aten._scaled_dot_product_cudnn_attention, is_causal (native GQA if it computes right, else K/V
               expanded outside the timing) -- the baseline of every ratio
  flash        aten._scaled_dot_product_flash_attention, is_causal
  <method>     segment_bands (per-band re-rotation of q / k) + compose_attention, timed together
  <method>:c   compose_attention alone (bands prebuilt): the vendor calls and the merge
  string:eager-merge / string:c-<backend>   string:c with merge_attention instead of the Triton merge / with
               the other vendor backend forced (cudnn or flash, whichever "auto" did not pick)
  string:calls the vendor calls of string:c without the merge (string:c - string:calls = the merge)
  triton       ropeshift.kernels.string_attention (the existing fused STRING kernel), if importable
Methods: string (S = 0.33 N, W = 128), rerope (w = L/4), rerope_leaky (k = 16), self_extend (G = 8, w_n = 1024),
lm_infinite (n_global = 10, n_local = L_d = L), dca (C = 3L/4, w = L/16), with L = --train-length.
Targets: string <= 1.05x cuDNN causal, every method <= 1.10x.

Correctness first: at N = 300 (8 / 2 heads) against the fp64 oracle (bf16 via the auto backend, fp32 via the
efficient backend), and at N = 4099 (32 / 8 heads, D = 128) against the fp32 tiled path, next to cuDNN causal's
own bf16 error as the calibration. Writes OUT/compose.md (tables) and OUT/compose.jsonl (one record per row).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from ropeshift.attention.reference import reference_attention
from ropeshift.attention.tiled import tiled_attention
from ropeshift.kernels import _compose_vendor as vendor
from ropeshift.kernels import compose
from ropeshift.kernels.compose_segments import segment_regions

H, H_KV, W = 32, 8, 128
DEV = "cuda"  # --smoke: "cpu" (the CPU backend, wall-clock timing; checks the script, measures nothing)


def _methods(n, train_length, se=(8, 1024)):
    """{name: (method, None)}: the methods at sequence length n (se: Self-Extend's G, w_n)."""
    from ropeshift.methods.dca import DualChunkMethod
    from ropeshift.methods.lm_infinite import LMInfiniteMethod
    from ropeshift.methods.rerope import ReRopeMethod
    from ropeshift.methods.self_extend import SelfExtendMethod
    from ropeshift.methods.string import StringMethod

    L = train_length
    lmi = LMInfiniteMethod(n_local=L, distance_limit=L, n_global=10)
    dca = DualChunkMethod(chunk_size=3 * L // 4, local_window=L // 16)
    return {
        "string": (StringMethod(shift=max(2, int(0.33 * n)), window=min(W, max(1, int(0.33 * n) - 1))), None),
        "rerope": (ReRopeMethod(window=L // 4), None),
        "rerope_leaky": (ReRopeMethod(window=L // 4, leaky=16.0), None),
        "self_extend": (SelfExtendMethod(group_size=se[0], window=se[1]), None),
        "lm_infinite": (lmi, None),
        "dca": (dca, None),
    }


def _inv_freq(d, device):
    return (1.0 / (500000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))).to(device)


def _run(method, regions, q, k, v, inv, scale, **kw):
    bands = segment_regions(method, q, k, inv)
    return compose.compose_attention(bands, v, scale=scale * method.logit_scale, **kw)


def _rel(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def _cudnn_causal(q, k, v, scale):
    """(callable, note): cuDNN causal with native GQA when it is right, else with K/V expanded beforehand."""
    g = q.shape[1] // k.shape[1]
    if DEV == "cpu":
        return (lambda: vendor.raw_call("cpu", q, k, v, scale)), "cpu"
    if vendor.probe("cudnn", q.dtype, q.shape[-1], g > 1, False):
        return (lambda: vendor.raw_call("cudnn", q, k, v, scale)), "native gqa"
    ke, ve = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    return (lambda: vendor.raw_call("cudnn", q, ke, ve, scale)), "expanded kv"


def check_correctness(train_length, records, lines, n_small=300, n_big=4099):
    dev = DEV
    lines.append("## Correctness\n")
    lines.append("| check | method | dtype | backend | out err | lse err | calibration (cuDNN causal bf16 err) | ok |")
    lines.append("|---|---|---|---|---|---|---|---|")
    all_ok = True
    # 1) fp64 oracle, small
    n, d = n_small, 128
    torch.manual_seed(0)
    q = torch.randn(1, 8, n, d, device=dev)
    k = torch.randn(1, 2, n, d, device=dev)
    v = torch.randn(1, 2, n, d, device=dev)
    inv = _inv_freq(d, dev)
    pos = torch.arange(n, device=dev)[None]
    small = {"string": (compose_string(n), None)}
    small.update({name: mn for name, mn in _methods(n, 128, se=(4, 16)).items() if name != "string"})
    for name, (method, regs) in small.items():
        ro, rl = reference_attention(q, k, v, method, inv, scale=d**-0.5, qpos=pos, kpos=pos)
        combos = ((torch.float32, "auto"), (torch.bfloat16, "auto"), (torch.bfloat16, "flash"))
        for dtype, backend in combos if DEV == "cuda" else combos[:2]:
            qq, kk, vv = q.to(dtype), k.to(dtype), v.to(dtype)
            try:
                o, l = _run(method, regs, qq, kk, vv, inv, d**-0.5, backend=backend)
                be = compose.resolve_backend(backend, qq)
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                lines.append(f"| oracle n={n} | {name} | {dtype} | {backend} | failed: {type(e).__name__}: "
                             f"{str(e)[:80]} | | | NO |")
                all_ok = False
                continue
            fin = torch.isfinite(rl)
            oe, le = _rel(o, ro), (l.double() - rl)[fin].abs().max().item()
            tol = 1e-3 if dtype == torch.float32 else 2e-2  # fp32 CUDA kernels may use TF32
            ok = oe < tol and le < tol * 10 and torch.equal(torch.isfinite(l), fin)
            all_ok &= ok
            verdict = "yes" if ok else "NO"
            lines.append(f"| oracle n={n} | {name} | {dtype} | {be} | {oe:.2e} | {le:.2e} | | {verdict} |")
            records.append({"kind": "check", "n": n, "method": name, "dtype": str(dtype), "backend": be,
                            "out_rel_err": oe, "lse_err": le, "ok": bool(ok)})
    # 2) realistic heads, fp32 tiled reference vs bf16
    n = n_big
    q = torch.randn(1, H, n, d, device=dev)
    k = torch.randn(1, H_KV, n, d, device=dev)
    v = torch.randn(1, H_KV, n, d, device=dev)
    pos = torch.arange(n, device=dev)[None]
    kvalid = torch.ones(1, n, dtype=torch.bool, device=dev)
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    causal_ref = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(H // H_KV, 1),
                                                                  v.repeat_interleave(H // H_KV, 1), is_causal=True)
    fn, _ = _cudnn_causal(qb, kb, vb, d**-0.5)
    calib = _rel(fn()[0], causal_ref)
    for name, (method, regs) in _methods(n, max(64, n // 2), se=(8, min(1024, n // 32 * 8))).items():
        ro, rl = tiled_attention(q, k, v, method, inv, scale=d**-0.5, qpos=pos, kpos=pos, kvalid=kvalid)
        for fused in ((True, False) if DEV == "cuda" else (False,)):
            label = f"tiled fp32 n={n} merge={'fused' if fused else 'eager'}"
            try:
                o, l = _run(method, regs, qb, kb, vb, inv, d**-0.5, fused_merge=fused)
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                lines.append(f"| {label} | {name} | bf16 | | failed: {type(e).__name__}: {str(e)[:80]} | | | NO |")
                all_ok = False
                continue
            oe, le = _rel(o, ro), (l - rl).abs().max().item()
            ok = oe < max(3 * calib, 1e-2) and le < 5e-2
            all_ok &= ok
            lines.append(f"| {label} | {name} | bf16 | "
                         f"{compose.resolve_backend('auto', qb)} | {oe:.2e} | {le:.2e} | {calib:.2e} | "
                         f"{'yes' if ok else 'NO'} |")
            records.append({"kind": "check", "n": n, "method": name, "dtype": "bf16", "fused_merge": fused,
                            "out_rel_err": oe, "lse_err": le, "calibration": calib, "ok": bool(ok)})
    lines.append("")
    return all_ok


def compose_string(n):
    from ropeshift.methods.string import StringMethod

    return StringMethod(shift=int(0.33 * n), window=16)


def _bench(fn, est_runs=8):
    if DEV == "cpu":
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    from triton.testing import do_bench

    fn()  # the first call may compile kernels or run the backend probes
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    est = (time.perf_counter() - t0) * 1e3
    rep = max(50.0, min(est * est_runs, 3000.0))
    return do_bench(fn, warmup=max(1.0, est), rep=rep, return_mode="median")


def _peak_extra_gib(fn):
    """Peak GiB allocated during fn() above what was allocated before it (outputs included)."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    r = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del r
    return peak / 2**30


def save(out_dir, records, lines):
    """Write OUT/compose.md and OUT/compose.jsonl from what has run so far (called after every row)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "compose.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "compose.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def bench(lengths, d64_lengths, train_length, records, lines, quick, out_dir):
    shapes = [(128, n) for n in lengths] + [(64, n) for n in d64_lengths]
    header = None
    try:
        from ropeshift import kernels as rk

        triton_string = rk.string_attention if rk.triton_available() and DEV == "cuda" else None
    except Exception:  # noqa: BLE001
        triton_string = None
    lines.append("## Prefill time (ms, median) and ratio to cuDNN causal\n")
    for d, n in shapes:
        torch.manual_seed(0)
        q = torch.randn(1, H, n, d, device=DEV, dtype=torch.bfloat16)
        k = torch.randn(1, H_KV, n, d, device=DEV, dtype=torch.bfloat16)
        v = torch.randn(1, H_KV, n, d, device=DEV, dtype=torch.bfloat16)
        scale, inv = d**-0.5, _inv_freq(d, DEV)
        flops = 2 * n * n * d * H
        fns = {}
        fns["cudnn"], note = _cudnn_causal(q, k, v, scale)
        if DEV == "cuda" and vendor.probe("flash", q.dtype, d, True, False):
            fns["flash"] = lambda: vendor.raw_call("flash", q, k, v, scale)
        for name, (method, regs) in _methods(n, train_length).items():
            fns[name] = (lambda m=method, rg=regs: _run(m, rg, q, k, v, inv, scale))
            bands = segment_regions(method, q, k, inv)
            fns[name + ":c"] = (lambda bs=bands, m=method: compose.compose_attention(bs, v, scale=scale))
            if name == "string":
                fns["string:eager-merge"] = (lambda bs=bands: compose.compose_attention(bs, v, scale=scale,
                                                                                        fused_merge=False))
                be = compose.resolve_backend("auto", q)
                fns["string:calls"] = (lambda bs=bands, be=be: [compose.band_pieces(r, v, scale, be) for r in bs])
                for forced in ("cudnn", "flash"):
                    if forced != be and DEV == "cuda" and vendor.probe(forced, q.dtype, d, False, False):
                        fns["string:c-" + forced] = (lambda bs=bands, f=forced: compose.compose_attention(
                            bs, v, scale=scale, backend=f))
                if triton_string is not None:
                    fns["triton"] = (lambda m=method: triton_string(q, k, v, shift=m.shift, window=m.window,
                                                                    inv_freq=inv, scale=scale))
        res, mem = {}, {}
        for name, fn in fns.items():
            try:
                res[name] = _bench(fn, est_runs=4 if quick else 8)
            except Exception as e:  # noqa: BLE001 - a provider that cannot run is reported, not fatal
                print(f"# {name} failed at d={d} n={n}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
                continue
            if DEV == "cuda" and not name.endswith((":calls", ":eager-merge")):
                try:
                    mem[name] = _peak_extra_gib(fn)
                except Exception:  # noqa: BLE001 - memory is informative only
                    pass
        base = res.get("cudnn")
        if header is None:
            header = list(fns)
            lines.append("| D | N | " + " | ".join(header) + " |")
            lines.append("|---|---|" + "---|" * len(header))
        cells = []
        for name in header:
            ms = res.get(name)
            if ms is None:
                cells.append("-")
            elif name == "cudnn":
                cells.append(f"{ms:.2f} ({flops / (ms * 1e-3) / 1e12:.0f} TF/s, {note})")
            else:
                cells.append(f"{ms:.2f} ({ms / base:.3f}x)" if base else f"{ms:.2f}")
        label = f"{n // 1024}k" if n % 1024 == 0 else str(n)
        lines.append(f"| {d} | {label} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
        records.append({"kind": "prefill", "d": d, "n": n, "h": H, "h_kv": H_KV, "train_length": train_length,
                        "cudnn_gqa": note, "backend": compose.resolve_backend("auto", q),
                        "ms": res, "ratio_to_cudnn": {k_: v_ / base for k_, v_ in res.items()} if base else None,
                        "peak_extra_gib": mem})
        if mem:
            print("# peak memory above the inputs (GiB): " + ", ".join(f"{k_} {v_:.2f}" for k_, v_ in mem.items()),
                  flush=True)
        save(out_dir, records, lines)
        del q, k, v, fns
        if DEV == "cuda":
            torch.cuda.empty_cache()
    lines.append("")
    lines.append("Targets: string <= 1.05x, every method <= 1.10x (the method columns include the per-band "
                 "re-rotation; ':c' columns are the composition alone). Peak memory per provider: compose.jsonl "
                 "(peak_extra_gib) and compose.log.")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--lengths", default="32k,64k,128k")
    ap.add_argument("--d64-lengths", default="32k")
    ap.add_argument("--train-length", type=int, default=8192)
    ap.add_argument("--quick", action="store_true", help="fewer timed runs")
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="run the whole script tiny on CPU (measures nothing)")
    args = ap.parse_args(argv)
    global DEV, H, H_KV
    if args.smoke:
        DEV, H, H_KV = "cpu", 4, 2
        args.lengths, args.d64_lengths, args.train_length = "300,257", "129", 64

    def parse(text):
        return [int(x[:-1]) * 1024 if x.endswith("k") else int(x) for x in text.split(",") if x]

    records, lines = [], ["# Composed vendor attention vs cuDNN causal (bench_compose.py)\n",
                          f"torch {torch.__version__}, device "
                          f"{torch.cuda.get_device_name(0) if DEV == 'cuda' else 'cpu (smoke)'}, bf16, B = 1, "
                          f"{H} q / {H_KV} kv heads\n"]
    ok = True
    if not args.skip_check:
        ok = check_correctness(args.train_length, records, lines,
                               *((64, 300) if args.smoke else (300, 4099)))
        print("\n".join(lines), flush=True)
        save(args.out, records, lines)
    bench(parse(args.lengths), parse(args.d64_lengths), args.train_length, records, lines, args.quick, args.out)
    save(args.out, records, lines)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
