"""Hopper (Gluon) prefill kernel: correctness against the exact fp32 Triton kernel, then speed side by side.

Run (H100/H200, ~3 min):  PYTHONPATH=src python benchmarks/bench_hopper.py [--lengths 8k,16k,32k,64k,128k]
                          [--d64-lengths 32k] [--variants ws,n128,n64] [--md OUT.md] [--budget SECONDS]

Variants: ``ws`` the warp-specialised kernel (``_prefill_hopper_ws``), ``n128`` / ``n64`` the single-partition
kernel (``_prefill_hopper``) at that BLOCK_N.

Correctness: plain causal and STRING (S at tile edges +- 1, W = 128 or 1) at N = 97 / 128 / 1025 / 4097, GQA
h / h_kv = 4, D = 128 / 64, bf16 and fp16, contiguous and HF-transposed q: out and lse of each variant against ``table_attention`` on fp32 copies (exact against the fp64 oracle in the kernel
suite), next to cuDNN causal's own bf16 error on the same inputs (the calibration: the check passes within 2x it).
Speed: bf16, B = 1, 32 q / 8 kv heads, STRING S = 0.33 N, W = 128; median ms of cuDNN causal, our Triton causal,
Hopper causal, Triton STRING, composed STRING, Hopper STRING; ratios against cuDNN.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, "benchmarks")
from bench_attention import H, H_KV, _cudnn, _inv_freq, _median_ms, compose_prefill  # noqa: E402

from ropeshift import kernels  # noqa: E402
from ropeshift.kernels import _prefill_hopper as hp  # noqa: E402
from ropeshift.kernels import _prefill_hopper_ws as hw  # noqa: E402
from ropeshift.kernels.spec import PLAIN, compile_table  # noqa: E402
from ropeshift.methods.registry import METHODS  # noqa: E402


def _string(n, s, w):
    return METHODS["string"](shift=s, window=w)


def _hopper(q, k, v, inv, spec, scale, variant="ws"):
    b, h, n, d = q.shape
    out = torch.empty((b, h, n, d), device=q.device, dtype=q.dtype)
    lse = torch.empty((b, h, n), device=q.device, dtype=torch.float32)
    if variant == "ws":
        return hw.launch_hopper_ws_prefill(q, k, v, inv, out, lse, spec=spec, scale=scale)
    return hp.launch_hopper_prefill(q, k, v, inv, out, lse, spec=spec, scale=scale, block_n=int(variant[1:]))


def check(variant):
    rows, ok_all = [], True
    torch.manual_seed(0)
    cases = []
    for d in (128, 64):
        for n in (97, 128, 1025, 4097):
            cases.append((d, n, None))
            for s in sorted({max(2, n // 3), 128, 127, 129, 255, 256, 257}):
                if s < n:
                    cases.append((d, n, s))
    for d, n, s in cases:
        for dtype in (torch.bfloat16, torch.float16):
            for layout in ("contig", "hf"):
                if layout == "hf" and (dtype == torch.float16 or n != 1025):
                    continue
                b, h, hk = 2, 8, 2
                if layout == "hf":
                    q = torch.randn(b, n, h, d, device="cuda", dtype=dtype).transpose(1, 2)
                else:
                    q = torch.randn(b, h, n, d, device="cuda", dtype=dtype)
                k = torch.randn(b, hk, n, d, device="cuda", dtype=dtype)
                v = torch.randn(b, hk, n, d, device="cuda", dtype=dtype)
                inv = _inv_freq(d)
                scale = d ** -0.5
                if s is None:
                    spec, table = PLAIN, None
                else:
                    w = 128 if s > 128 else 1
                    table = _string(n, s, w).table()
                    spec = compile_table(table).for_keys(n)
                if table is None:
                    ref_o, ref_l = kernels.causal_attention(q.float(), k.float(), v.float(), scale=scale)
                else:
                    ref_o, ref_l = kernels.table_attention(q.float(), k.float(), v.float(), table, inv_freq=inv,
                                                           scale=scale)
                o, lse = _hopper(q, k, v, inv, spec, scale, variant)
                torch.cuda.synchronize()
                e_o = (o.float() - ref_o).abs().max().item()
                e_l = (lse - ref_l).abs().max().item()
                c = F.scaled_dot_product_attention(q, k.repeat_interleave(h // hk, 1), v.repeat_interleave(h // hk, 1),
                                                   is_causal=True, scale=scale)
                c_ref = F.scaled_dot_product_attention(q.float(), k.float().repeat_interleave(h // hk, 1),
                                                       v.float().repeat_interleave(h // hk, 1), is_causal=True,
                                                       scale=scale)
                cal = (c.float() - c_ref).abs().max().item()
                ok = e_o <= 2 * cal + 1e-6 and e_l <= 5e-2 and torch.isfinite(o).all().item()
                ok_all &= ok
                rows.append((d, n, "plain" if s is None else f"string S={s}", str(dtype)[6:], layout, e_o, e_l, cal, ok))
    return rows, ok_all


def bench(shapes, configs, budget_end):
    res = []
    for d, n in shapes:
        if time.monotonic() > budget_end:
            print(f"budget: skipped D={d} N={n}", flush=True)
            continue
        torch.manual_seed(0)
        q = torch.randn(1, H, n, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(1, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
        inv = _inv_freq(d)
        scale = d ** -0.5
        m = _string(n, int(0.33 * n), 128)
        table = m.table()
        spec = compile_table(table).for_keys(n)
        t = {"cudnn": _median_ms(_cudnn(q, k, v, scale))}
        t["triton causal"] = _median_ms(lambda: kernels.causal_attention(q, k, v, scale=scale))
        t["triton string"] = _median_ms(lambda: kernels.table_attention(q, k, v, table, inv_freq=inv, scale=scale))
        t["compose string"] = _median_ms(lambda: compose_prefill(q, k, v, m, inv, scale))
        for var in configs:
            t[f"hopper causal {var}"] = _median_ms(lambda: _hopper(q, k, v, inv, PLAIN, scale, var))
            t[f"hopper string {var}"] = _median_ms(lambda: _hopper(q, k, v, inv, spec, scale, var))
        tf = 2 * n * n * d * H / 1e12  # causal FLOPs (FlashAttention convention: 4 N^2 D H / 2)
        line = f"D={d} N={n // 1024}k " + " | ".join(
            f"{key} {ms:.2f} ms ({tf / (ms * 1e-3):.0f} TF/s, {ms / t['cudnn']:.3f}x)" for key, ms in t.items())
        print(line, flush=True)
        res.append((d, n, t))
        del q, k, v
        torch.cuda.empty_cache()
    return res


def _lengths(s):
    return [int(x[:-1]) * 1024 if x.endswith("k") else int(x) for x in s.split(",") if x]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="8k,16k,32k,64k,128k")
    p.add_argument("--d64-lengths", default="32k")
    p.add_argument("--variants", default="ws,n128", help="kernels to check and time (see the docstring)")
    p.add_argument("--md", default=None)
    p.add_argument("--budget", type=float, default=400)
    p.add_argument("--no-check", action="store_true")
    a = p.parse_args(argv)
    end = time.monotonic() + a.budget
    print("torch", torch.__version__, "device", torch.cuda.get_device_name(), flush=True)
    configs = a.variants.split(",")
    md = []
    if not a.no_check:
        for var in configs:
            t0 = time.monotonic()
            rows, ok = check(var)
            bad = [r for r in rows if not r[-1]]
            worst = max(rows, key=lambda r: r[5] / max(r[7], 1e-9))
            print(f"check {var}: {len(rows)} cases, {len(bad)} failed, {time.monotonic() - t0:.0f}s; "
                  f"worst out err {worst[5]:.2e} vs cuDNN {worst[7]:.2e} ({worst[:5]})", flush=True)
            for r in bad[:20]:
                print("  FAIL", r, flush=True)
            md.append(f"check {var}: {len(rows)} cases, {len(bad)} failed")
    shapes = [(128, n) for n in _lengths(a.lengths)] + [(64, n) for n in _lengths(a.d64_lengths)]
    res = bench(shapes, configs, end)
    if a.md:
        keys = list(res[0][2]) if res else []
        with open(a.md, "w") as f:
            f.write("\n".join(md) + "\n\n| D | N | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 2) + "\n")
            for d, n, t in res:
                tf = 2 * n * n * d * H / 1e12
                f.write(f"| {d} | {n // 1024}k | " + " | ".join(
                    f"{t[k_]:.2f} ({tf / (t[k_] * 1e-3):.0f} TF/s, {t[k_] / t['cudnn']:.3f}x)" for k_ in keys) + " |\n")


if __name__ == "__main__":
    main()
