"""The impl="auto" route choice (ropeshift.kernels.routes): the composed-vendor route is exact for every method
and boundary setting when it is taken, and it is refused (None: the fused kernel serves the call) where it cannot
serve the call.

CPU: the composed route runs through PyTorch's CPU flash kernel; CUDA: ``attend(impl="auto")`` on a shape the
route table sends to compose equals the fp64 reference within PyTorch's own bf16 error.
Run: pytest tests/kernels/test_routes.py -q
"""
import math

import pytest
import torch

from ropeshift.attention.reference import reference_attention
from ropeshift.kernels import routes
from ropeshift.methods.dca import DualChunkMethod
from ropeshift.methods.lm_infinite import LMInfiniteMethod
from ropeshift.methods.rerope import ReRopeMethod
from ropeshift.methods.self_extend import SelfExtendMethod
from ropeshift.methods.string import StringMethod

from _helpers import llama_inv_freq

D = 16
METHODS = {
    "string": StringMethod(shift=11, window=3),
    "string_scaled": StringMethod(shift=9, window=2, logit_scale=1.1434),
    "rerope": ReRopeMethod(window=6),
    "rerope_leaky": ReRopeMethod(window=6, leaky=16.0),
    "self_extend": SelfExtendMethod(group_size=3, window=6),
    "lm_infinite": LMInfiniteMethod(n_local=8, distance_limit=12, n_global=3),
    "dca": DualChunkMethod(chunk_size=11, local_window=2),
}


def _qkv(b, h, h_kv, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, x, n, D, generator=g) for x in (h, h_kv, h_kv))


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("pos0", [0, 5])
def test_composed_route_matches_the_oracle(name, pos0):
    method = METHODS[name]
    q, k, v = _qkv(2, 4, 2, 41)
    inv = llama_inv_freq(D, base=10000.0)
    pos = (torch.arange(41) + pos0)[None].expand(2, -1)
    got = routes.composed(q, k, v, method, inv, scale=0.25, qpos=pos, table=method.table())
    if pos0 and routes.table_form(method.table()) != "band" and method.table().position_dependent:
        assert got is None  # key-index rules away from position 0: the fused kernel serves it
        return
    assert got is not None
    ref_o, ref_l = reference_attention(q, k, v, method, inv, scale=0.25, qpos=pos, kpos=pos)
    torch.testing.assert_close(got[0].double(), ref_o, atol=3e-5, rtol=0)
    torch.testing.assert_close(got[1].double(), ref_l, atol=3e-5, rtol=0)


def test_rows_at_different_offsets_take_the_fused_route():
    method = METHODS["self_extend"]
    q, k, v = _qkv(2, 2, 1, 20)
    pos = torch.stack((torch.arange(20), torch.arange(20) + 3))
    assert routes.composed(q, k, v, method, llama_inv_freq(D), scale=0.25, qpos=pos, table=method.table()) is None


def test_route_table_by_form_dtype_and_length():
    forms = {name: routes.table_form(m.table()) for name, m in METHODS.items()}
    assert forms == {"string": "band", "string_scaled": "band", "rerope": "band", "rerope_leaky": "band",
                     "self_extend": "band", "lm_infinite": "lambda", "dca": "chunk"}
    table = METHODS["string"].table()
    start = routes.COMPOSE_FROM[("band", 128, "triton")]
    assert routes.prefers_compose(table, 128, start, torch.bfloat16)
    assert not routes.prefers_compose(table, 128, start - 1, torch.bfloat16)
    assert not routes.prefers_compose(table, 128, start, torch.float32)
    assert not routes.prefers_compose(table, 96, 10**6, torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the composed route under impl='auto')")
@pytest.mark.parametrize("name", sorted(METHODS))
def test_auto_takes_the_composed_route_on_cuda(name, monkeypatch):
    from ropeshift.attention import dispatch

    method = METHODS[name]
    n, d = 300, 64
    monkeypatch.setattr(routes, "COMPOSE_FROM", {(f, dim, fused): 256 for f in ("band", "lambda", "chunk")
                                                 for dim in (64, 128) for fused in ("triton", "hopper")})
    taken = []
    real = routes.composed
    monkeypatch.setattr(routes, "composed", lambda *a, **kw: taken.append(1) or real(*a, **kw))
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, x, n, d, generator=g).cuda() for x in (8, 2, 2))
    inv = llama_inv_freq(d, base=10000.0).cuda()
    pos = torch.arange(n, device="cuda")[None]
    ok = torch.ones(1, n, dtype=torch.bool, device="cuda")
    args = dict(scale=1 / math.sqrt(d), qpos=pos, kpos=pos, kvalid=ok, mask_given=False)
    out, _ = dispatch.attend("auto", q.bfloat16(), k.bfloat16(), v.bfloat16(), method, inv, **args)
    assert taken
    ref, _ = dispatch.attend("reference", q.double(), k.double(), v.double(), method, inv, **args)
    base, _ = torch.nn.functional.scaled_dot_product_attention(  # PyTorch's own bf16 error, causal
        q.bfloat16(), k.bfloat16().repeat_interleave(4, 1), v.bfloat16().repeat_interleave(4, 1),
        is_causal=True), None
    exact = torch.nn.functional.scaled_dot_product_attention(
        q.double(), k.double().repeat_interleave(4, 1), v.double().repeat_interleave(4, 1), is_causal=True)
    tol = 2 * ((base.double() - exact).norm() / exact.norm()).item()
    assert ((out.double() - ref).norm() / ref.norm()).item() <= max(tol, 1e-3)
