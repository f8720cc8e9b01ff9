"""Static decode mode through the Triton kernels (``impl="triton"``; CPU: the interpreter) on a tiny model: a
StaticCache's whole, poisoned buffer with the written length on the device gives the logits of a dynamic-cache
decode (the same check as tests/test_static_decode.py for the reference and tiled impls), without and with the K1
cache of re-rotating methods.

Run: PYTHONPATH=src pytest tests/kernels/test_static_decode_model.py -v
"""
import pytest
import torch

import ropeshift
from ropeshift.state import get_state
from tests.test_static_decode import METHODS, _rows, decode_logits
from tests.tiny_models import tiny_model

DEV = "cuda" if torch.cuda.is_available() else "cpu"


KERNEL_METHODS = [m for m in METHODS if m[0] in ("string", "dca")]  # a constant and a positional table


@pytest.mark.parametrize("name, params", KERNEL_METHODS, ids=[m[0] for m in KERNEL_METHODS])
def test_static_decode_through_the_kernels(name, params):
    model = tiny_model("llama").to(DEV)  # head_dim 16
    ropeshift.apply(model, name, impl="torch", **params)
    get_state(model.config).impl = "triton"  # apply refuses triton on CPU; the dispatch takes the interpreter
    rows = _rows(DEV)
    want = decode_logits(model, rows, 4, static=False)
    got = decode_logits(model, rows, 4, static=True, poison=float("nan"))  # the kernels never read past key_end
    torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-4)


K1_METHODS = [m for m in METHODS if m[0] in ("self_extend", "dca")]  # far key maps: the K1 cache serves them


@pytest.mark.parametrize("name, params", K1_METHODS, ids=[m[0] for m in K1_METHODS])
def test_static_decode_with_the_k1_cache(name, params, monkeypatch):
    """The same with the K1 cache forced on (``attention.far_cache``; each step here enters static decode mode
    anew, so each step builds K1 from the whole poisoned buffer)."""
    from ropeshift.attention import far_cache

    monkeypatch.setenv(far_cache.K1_ENV, "1")
    built = []
    real = far_cache.decode_k1
    monkeypatch.setattr(far_cache, "decode_k1", lambda *a, **kw: built.append(1) or real(*a, **kw))
    model = tiny_model("llama").to(DEV)
    ropeshift.apply(model, name, impl="torch", **params)
    get_state(model.config).impl = "triton"
    rows = _rows(DEV)
    want = decode_logits(model, rows, 4, static=False)
    got = decode_logits(model, rows, 4, static=True, poison=float("nan"))
    assert len(built) == 4 * model.config.num_hidden_layers and get_state(model.config).far_keys == {}
    torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-4)
