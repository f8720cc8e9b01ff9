"""One kernel call of one method, for Nsight Compute (issue 9: why a row misses its target).

Builds the same inputs as ``bench_attention.py`` (bf16, 32 q / 8 kv heads, that script's method settings), calls
the attention twice (the first compiles), then once more inside the NVTX range "profile". Run under ncu with
``--nvtx --nvtx-include "profile/"`` so only that call's kernels are measured, e.g.

    ncu --nvtx --nvtx-include "profile/" --section SpeedOfLight --section WarpStateStats \\
        python benchmarks/profile_kernel.py --method string --n 32k            # prefill, D = 128
    ... python benchmarks/profile_kernel.py --method rerope --n 64k --decode --batch 8
    ... python benchmarks/profile_kernel.py --method rerope --n 64k --decode --k1     # far keys from a K1 cache

``--method plain`` is our causal attention (the Hopper kernel on the plain table where it serves).
"""
import argparse
import math

import torch

from ropeshift import kernels

from _settings import method_at
from bench_attention import H, H_KV, _inv_freq
from ropeshift.eval.options import parse_length


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="string", help="plain, or a method of bench_attention.py")
    p.add_argument("--n", default="32k", help="sequence length (prefill) or cache length (decode)")
    p.add_argument("--d", type=int, default=128, help="head dim")
    p.add_argument("--decode", action="store_true", help="one query per row over an N-key cache")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--k1", action="store_true", help="decode through the static-decode entry (key_end = N), a "
                   "re-rotating method reading its far keys from a K1 cache built before the profiled call "
                   "(plain: the same entry)")
    args = p.parse_args(argv)
    n = parse_length(args.n)
    d, b = args.d, args.batch
    torch.manual_seed(0)
    q = torch.randn(b, H, 1 if args.decode else n, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, H_KV, n, d, device="cuda", dtype=torch.bfloat16)
    scale, inv = 1 / math.sqrt(d), _inv_freq(d)
    if args.k1:
        from ropeshift.kernels.key_cache import needs_far_keys, write_far_keys
        from ropeshift.kernels.spec import PLAIN, compile_table

        if not args.decode:
            p.error("--k1 profiles decode: add --decode")
        spec = PLAIN if args.method == "plain" else compile_table(method_at(args.method, n).table())
        poff = torch.zeros(b, dtype=torch.int32, device="cuda")
        end = torch.full((b,), n, dtype=torch.int32, device="cuda")
        k1 = None
        if needs_far_keys(spec):
            k1 = torch.empty_like(k)
            write_far_keys(k1, k, spec, inv, pos_offset=poff)
        call = lambda: kernels.static_decode_attention(q, k, v, spec, inv_freq=inv, scale=scale,  # noqa: E731
                                                       key_end=end, pos_offset=poff, k1=k1)
    elif args.method == "plain":
        call = lambda: kernels.causal_attention(q, k, v, scale=scale)  # noqa: E731
    else:
        from ropeshift.kernels.spec import compile_table

        spec = compile_table(method_at(args.method, n).table())
        poff = torch.zeros(b, dtype=torch.int32, device="cuda")
        call = lambda: kernels.table_attention(q, k, v, spec, inv_freq=inv, scale=scale, pos_offset=poff)  # noqa: E731
    for _ in range(2):
        call()
    torch.cuda.synchronize()
    with torch.cuda.nvtx.range("profile"):
        call()
    torch.cuda.synchronize()
    print(f"# profiled {args.method} {'decode' if args.decode else 'prefill'} n={n} d={d} b={b}"
          f"{' k1' if args.k1 else ''}")


if __name__ == "__main__":
    main()
