"""Compile (not run) a Gluon / Triton kernel for sm_90 on a machine without a GPU: a stand-in active driver that
names the target, so ``kernel.warmup(...)`` runs the whole compiler (Gluon front end, TTGIR passes, PTX, ptxas).

Run: python tests/kernels/_sm90_compile.py rerope_leaky:128 dca:64 string:128:nofold  (name:head_dim[:variant])   (TRITON_INTERPRET unset; prints JSON)
Catches what CPU tests otherwise cannot for the Hopper kernel: front-end errors, layout mismatches, shared
memory over the 227 KB limit, ptxas failures. Triton's driver registry is internal API; callers skip on
``ImportError`` / ``AttributeError`` from ``sm90_target``.
"""
import os
from contextlib import contextmanager


class _TargetOnly:
    def __init__(self, target):
        self.target = target

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def is_active(self):
        return True


def compile_in_subprocess(args, timeout=900):
    """Run this script with ``args`` in a fresh interpreter (the kernel tests run under TRITON_INTERPRET=1, which
    the compiler must not see) and return its JSON list of compile results; fails the calling test on an error."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([here, os.path.join(here, "..", "..", "src"), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, os.path.join(here, "_sm90_compile.py"), *args], env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@contextmanager
def sm90_target():
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    previous = driver._active
    driver.set_active(_TargetOnly(GPUTarget("cuda", 90, 32)))
    try:
        yield
    finally:
        driver._active = previous


def compile_variant(name, d, variant=""):
    """Compile the Hopper kernel for method case ``name`` (tests/kernels/_helpers.method_cases) at head dim d;
    ``variant``: "" (the defaults), "nofold" / "fold" (a constant query shift re-rotates q / k at every head
    dim, ``FOLD_SHIFT_DIMS``)."""
    import torch

    from _helpers import build, method_cases
    from ropeshift.kernels import _prefill_hopper_ws as ws
    from ropeshift.kernels.spec import compile_table

    case = {c[0]: c for c in method_cases(512, 128)}[name]
    spec = compile_table(build(*case[1:]).table())
    b, h, h_kv, n = 1, 4, 2, 1024
    # transformers' token-major q, k, v (read in place through 2-D views with a column offset, ``ws._Rows``)
    q, k = (torch.zeros(b, n, hx, d, dtype=torch.bfloat16).transpose(1, 2) for hx in (h, h_kv))
    dims = {"nofold": frozenset(), "fold": frozenset({64, 128})}.get(variant, ws.FOLD_SHIFT_DIMS)
    q_map, k_map = ws._maps(spec, d) if dims is ws.FOLD_SHIFT_DIMS else _maps_with(ws, spec, d, dims)
    q1 = torch.zeros_like(q) if q_map is not None else q
    k1 = torch.zeros_like(k) if k_map is not None else k
    args, kwargs, _ = ws._kernel_args(q, q1, k, k1, k, torch.zeros_like(q), torch.zeros(b, h, n),
                                      torch.zeros(b, dtype=torch.int32), spec, 0.1)
    with sm90_target():
        kernel = ws._hopper_ws_kernel.warmup(*args, **kwargs, grid=(8, 4))
    return {"name": name, "d": d, "variant": variant, "shared": kernel.metadata.shared,
            "wgmma": "wgmma" in kernel.asm["ptx"]}


def _maps_with(ws, spec, d, dims):
    old, ws.FOLD_SHIFT_DIMS = ws.FOLD_SHIFT_DIMS, dims
    try:
        return ws._maps(spec, d)
    finally:
        ws.FOLD_SHIFT_DIMS = old


def compile_decode(name, d, g):
    """Compile the Hopper decode kernel (``_decode_hopper``) for a served table of ``name`` at head dim d with g query heads per KV head; registers from ptxas on the kernel's PTX (no
    driver here to load the binary)."""
    import re
    import subprocess
    import tempfile

    import torch
    import triton
    from triton.backends.nvidia.compiler import get_ptxas

    from _helpers import build
    from ropeshift.kernels import _decode_hopper as hd
    from ropeshift.kernels.spec import compile_table

    case = {"rerope": ("rerope", dict(window=200)), "rerope_leaky": ("rerope", dict(window=129, leaky=4.0)),
            "self_extend": ("self_extend", dict(group_size=8, window=128)),
            "self_extend_g64": ("self_extend", dict(group_size=64, window=192)),
            "dca": ("dca", dict(chunk_size=300, local_window=20))}[name]  # served tables (KMAP 1, 3)
    spec = compile_table(build(*case).table())
    b, h_kv, lk = 1, 2, 4096
    q = torch.zeros(b, h_kv * g, 1, d, dtype=torch.bfloat16)
    k = torch.zeros(b, h_kv, lk, d, dtype=torch.bfloat16)
    block_r = max(16, triton.next_power_of_2(2 * g))
    with sm90_target():
        kernel = hd.warm(q, k, k, torch.ones(d // 2), None, None, spec, block_r)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "k.ptx"), "w") as f:
            f.write(kernel.asm["ptx"])
        run = subprocess.run([get_ptxas(90).path, "--gpu-name", "sm_90a", "-v", f.name, "-o",
                              os.path.join(tmp, "k.cubin")], capture_output=True, text=True, check=True)
    regs = int(re.search(r"Used (\d+) registers", run.stderr).group(1))
    return {"name": name, "d": d, "g": g, "regs": regs, "maxnreg": hd.MAXNREG, "shared": kernel.metadata.shared,
            "wgmma": "wgmma" in kernel.asm["ptx"]}


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1] == "--decode":
        print(json.dumps([compile_decode(v.split(":")[0], int(v.split(":")[1]), int(v.split(":")[2]))
                          for v in sys.argv[2:]]))
    else:
        print(json.dumps([compile_variant(*v.split(":")[:1], int(v.split(":")[1]), *v.split(":")[2:])
                          for v in sys.argv[1:]]))
