"""End to end: the static-cache decode loop with the K1 cache (``attention.far_cache``) on a tiny random Llama
through the Triton kernels (CPU: the interpreter, eager steps) gives the tokens of the loop without it and the
texts of ``model.generate`` (fp32, left padding), for ReRoPE and Self-Extend; at every decode step each layer's K1
equals the far image of its key buffer on every written slot, and the cache is gone after the loop.

Run: PYTHONPATH=src pytest tests/kernels/test_k1_generate.py -v
"""
import pytest
import torch

import ropeshift
from ropeshift.attention import far_cache
from ropeshift.eval.generation import _row_stopper, generate, left_pad
from ropeshift.eval.graph_decode import static_generate
from ropeshift.eval.prompts import encode
from ropeshift.kernels.key_cache import far_keys
from ropeshift.state import get_state
from tests.eval.tiny import tiny_model, tiny_tokenizer

DEV = "cuda" if torch.cuda.is_available() else "cpu"
MAX_NEW = 10
TEXTS = ["The grass is green. The sky", "def f(x):\n    return the grass is green and the sky is blue", "a"]
METHODS = [("rerope", dict(window=6)), ("self_extend", dict(group_size=3, window=6))]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize("name, params", METHODS, ids=[m[0] for m in METHODS])
def test_loop_with_k1_equals_without_and_generate(name, params, tok, monkeypatch):
    model = tiny_model(len(tok)).to(DEV)
    ropeshift.apply(model, name, impl="torch", **params)
    state = get_state(model.config)
    state.impl = "triton"  # apply refuses triton on CPU; the dispatch takes the interpreter
    rows = [encode(tok, t, True) for t in TEXTS]
    ids, mask = left_pad(rows, tok.pad_token_id)
    assert len(set(map(len, rows))) == len(rows) and ids.shape[1] > 6 + 3  # left padding; far keys from step 1

    used = []
    real = far_cache.decode_k1

    def spy(store, layer, k, spec, inv, *, key_start, pos_offset, key_end, slot_by_kernel=False):
        """decode_k1, then: K1 equals far_keys of the buffer on every slot below the step's own (which the
        decode kernel writes where ``slot_by_kernel``, checked here at the next step), and on it otherwise."""
        k1 = real(store, layer, k, spec, inv, key_start=key_start, pos_offset=pos_offset, key_end=key_end,
                  slot_by_kernel=slot_by_kernel)
        used.append(k1 is not None)
        if k.is_cuda and torch.cuda.is_current_stream_capturing():
            return k1  # recorded, not run: nothing to compare (and no host reads under capture)
        want = far_keys(k, spec, inv, pos_offset=pos_offset, key_start=key_start)
        tol = 1e-5  # the kernels write K1 with their own fp32 cos/sin (key_cache._write_kernel, _decode WRITE_K1)
        for i, e in enumerate(key_end.tolist()):
            s = int(key_start[i]) if key_start is not None else 0  # padding slots are never read
            e = e - 1 if slot_by_kernel else e
            torch.testing.assert_close(k1[i, :, s:e], want[i, :, s:e], rtol=tol, atol=tol)
        return k1

    monkeypatch.setattr(far_cache, "decode_k1", spy)
    tokens = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(far_cache.K1_ENV, flag)
        stopper = _row_stopper(tok, 0, [None] * len(rows), set(), [MAX_NEW] * len(rows))
        tokens[flag] = static_generate(model, ids.to(DEV), mask.to(DEV), stopper, max_new=MAX_NEW, graphs=False)
        assert state.far_keys == {}, "K1 buffers survived the generation"
        if flag == "1":  # every layer's every decode step read a K1
            assert len(used) == (MAX_NEW - 1) * model.config.num_hidden_layers and all(used)
        else:
            assert len(used) == (MAX_NEW - 1) * model.config.num_hidden_layers  # none called with the switch off
    assert tokens["1"].shape == (len(rows), MAX_NEW) and torch.equal(tokens["1"], tokens["0"])

    monkeypatch.setenv(far_cache.K1_ENV, "1")
    want = generate(model, tok, rows, MAX_NEW, decode="generate")
    assert generate(model, tok, rows, MAX_NEW, decode="loop") == want
    assert state.far_keys == {}


def test_k1_switch(monkeypatch):
    monkeypatch.delenv(far_cache.K1_ENV, raising=False)
    assert far_cache.k1_wanted()  # on by default (measured faster end to end: far_cache docstring)
    monkeypatch.setenv(far_cache.K1_ENV, "0")
    assert not far_cache.k1_wanted()
    monkeypatch.setenv(far_cache.K1_ENV, "1")
    assert far_cache.k1_wanted()


def test_k1_done_without_when_it_cannot_be_allocated(monkeypatch):
    """A K1 that does not fit the device's memory is done without (None: the kernel's own re-rotation)."""
    from ropeshift.kernels.spec import compile_table
    from ropeshift.methods.registry import METHODS as REG

    spec = compile_table(REG["rerope"](window=4).table())
    inv = 1.0 / (10000 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16))
    buf = torch.randn(2, 2, 20, 16)

    def oom(*a, **kw):
        raise torch.OutOfMemoryError("no memory for K1")

    monkeypatch.setattr(far_cache.torch, "empty_like", oom)
    store = {}
    assert far_cache.decode_k1(store, 0, buf, spec, inv, key_start=None, pos_offset=None,
                               key_end=torch.tensor([9, 9])) is None
    assert store == {}


def test_k1_follows_a_forward_into_its_buffer():
    """A prefill into a buffer with a live K1 (a cut view of it) writes K1 for its new slots, nothing else; a
    tensor that is not a view of the buffer leaves K1 alone."""
    from ropeshift.kernels.key_cache import far_keys
    from ropeshift.kernels.spec import compile_table
    from ropeshift.methods.registry import METHODS as REG

    spec = compile_table(REG["rerope"](window=4).table())
    inv = 1.0 / (10000 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16))
    buf = torch.randn(2, 2, 20, 16)
    store = {}
    key_end = torch.tensor([9, 9])
    ks = torch.tensor([0, 3], dtype=torch.int32)
    k1 = far_cache.decode_k1(store, 0, buf, spec, inv, key_start=ks, pos_offset=-ks, key_end=key_end)
    torch.testing.assert_close(k1, far_keys(buf, spec, inv, pos_offset=-ks))
    k1.fill_(float("nan"))
    qpos = torch.arange(9, 14)[None, :] - ks[:, None].long()  # 5 new keys in slots [9, 14)
    far_cache.follow_new_keys(store, 0, buf[:, :, :14], spec, inv, qpos)
    want = far_keys(buf, spec, inv, pos_offset=-ks)
    torch.testing.assert_close(k1[:, :, 9:14], want[:, :, 9:14])
    assert k1[:, :, :9].isnan().all() and k1[:, :, 14:].isnan().all()
    far_cache.follow_new_keys(store, 0, buf.clone()[:, :, :14], spec, inv, qpos)  # another tensor: untouched
    assert k1[:, :, :9].isnan().all()
    # the next decode step over the same buffer reuses K1 and writes only its slot
    assert far_cache.decode_k1(store, 0, buf, spec, inv, key_start=ks, pos_offset=-ks,
                               key_end=torch.tensor([15, 15])) is k1
    torch.testing.assert_close(k1[:, :, 14], want[:, :, 14])
    assert k1[:, :, 15:].isnan().all()


def test_k1_after_row_compaction(tok, monkeypatch):
    """Row compaction gives the layers new key buffers: K1 is rebuilt for them at the next step and every row's
    tokens up to its end equal the whole batch's without K1."""
    from ropeshift.eval.row_compaction import Compaction

    model = tiny_model(len(tok)).to(DEV)
    ropeshift.apply(model, "rerope", impl="torch", window=6)
    get_state(model.config).impl = "triton"
    rows = [encode(tok, t, True) for t in TEXTS + ["Once upon a time there was a"]]
    budgets = [3, 5, 9, 12]
    ids, mask = left_pad(rows, tok.pad_token_id)
    built = []
    real = far_cache.decode_k1

    def spy(store, layer, k, *a, **kw):
        """decode_k1, noting (batch rows, whether the layer's K1 was reused)."""
        had = store.get(layer, (None, None))[1]
        k1 = real(store, layer, k, *a, **kw)
        built.append((k.shape[0], k1 is had))
        return k1

    monkeypatch.setattr(far_cache, "decode_k1", spy)
    out = {}
    for flag, compaction in (("0", None), ("1", Compaction(fraction=0.5, min_steps_left=1))):
        monkeypatch.setenv(far_cache.K1_ENV, flag)
        stopper = _row_stopper(tok, 0, [None] * len(rows), set(), budgets)
        new = static_generate(model, ids.to(DEV), mask.to(DEV), stopper, max_new=max(budgets), graphs=False,
                              compaction=compaction)
        out[flag] = [r[:e].tolist() for r, e in zip(new, stopper.ends)]
    assert out["1"] == out["0"]
    fresh = sorted({b for b, reused in built if not reused})
    assert len(fresh) > 1 and fresh[-1] == len(rows), f"K1 built for batch sizes {fresh}: no compaction seen"
    assert get_state(model.config).far_keys == {}
