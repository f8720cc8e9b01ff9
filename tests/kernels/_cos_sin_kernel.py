"""A one-block Triton kernel around the kernels' ``_cos_sin`` (imported by test_table_attention.py only)."""
import triton
import triton.language as tl

from ropeshift.kernels._rotary import _cos_sin


@triton.jit
def cos_sin_kernel(A, C, S, N: tl.constexpr):
    o = tl.arange(0, N)
    c, s = _cos_sin(tl.load(A + o))
    tl.store(C + o, c)
    tl.store(S + o, s)
