"""Issue 8's padding and cache cases on CUDA, through the ``auto`` and ``triton`` impls (STRING, fp32).

Same properties as ``test_padding_cache.py``: padded rows == rows alone, static cache == dynamic cache
(``generate`` with its CUDA auto-compile, and without), decoding after right padding with explicit
``position_ids`` exact; the triton kernels take left padding only, so ``impl="triton"`` refuses a
right-padded batch with a clear error and ``auto`` falls back to the torch impl.

Run (GPU): pytest tests/test_padding_cache_gpu.py -q
"""
import pytest
import torch

import ropeshift

from .tiny_models import pad_rows, tiny_model, with_cache

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

STRING = dict(shift=6, window=2)
LENGTHS = (21, 13, 6)
ATOL = 2e-3  # fp32 model; the Triton kernels may use TF32 dots


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama").cuda()


@pytest.fixture(scope="module")
def rows():
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(3, 128, (n,), generator=gen).cuda() for n in LENGTHS]


def _logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits.float()


@pytest.mark.parametrize("impl, side", [("auto", "left"), ("auto", "right"), ("triton", "left")])
def test_gpu_padded_rows_equal_rows_alone(model, rows, impl, side):
    ropeshift.apply(model, "string", impl=impl, **STRING)
    try:
        ids, mask = pad_rows(rows, side)
        out = _logits(model, ids, attention_mask=mask)
        width = ids.shape[1]
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
            torch.testing.assert_close(out[i, sl], _logits(model, r[None])[0], atol=ATOL, rtol=0)
    finally:
        ropeshift.remove(model)


def test_gpu_triton_refuses_right_padding(model, rows):
    ropeshift.apply(model, "string", impl="triton", **STRING)
    try:
        ids, mask = pad_rows(rows, "right")
        with pytest.raises(RuntimeError, match="left padding"):
            _logits(model, ids, attention_mask=mask)
    finally:
        ropeshift.remove(model)


@pytest.mark.parametrize("impl", ["auto", "triton", "torch"])
@pytest.mark.parametrize("compile_", [True, False], ids=["auto-compile", "no-compile"])
def test_gpu_static_cache_generate_equals_dynamic(model, rows, impl, compile_):
    ropeshift.apply(model, "string", impl=impl, **STRING)
    try:
        ids, mask = pad_rows(rows, "left")
        kw = dict(attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0,
                  output_logits=True, return_dict_in_generate=True)
        dyn = model.generate(ids, **kw)
        sta = model.generate(ids, cache_implementation="static", disable_compile=not compile_, **kw)
        assert torch.equal(sta.sequences, dyn.sequences)
        torch.testing.assert_close(torch.stack(sta.logits, 1).float(), torch.stack(dyn.logits, 1).float(),
                                   atol=ATOL, rtol=0)
    finally:
        ropeshift.remove(model)


@pytest.mark.parametrize("impl", ["auto", "torch"])
def test_gpu_decoding_after_right_padding_with_position_ids(model, rows, impl):
    """New tokens after right padding (a mask with holes): exact with position_ids = cumsum(mask) - 1."""
    from transformers import DynamicCache

    ropeshift.apply(model, "string", impl=impl, **STRING)
    try:
        ids, mask = pad_rows(rows, "right")
        nxt = torch.randint(3, 128, (len(rows), 1), device="cuda")
        cache = DynamicCache(config=model.config)
        _logits(model, ids, attention_mask=mask, **with_cache(model, cache), use_cache=True)
        mask2 = torch.cat((mask, torch.ones_like(mask[:, :1])), 1)
        out = _logits(model, nxt, attention_mask=mask2, **with_cache(model, cache), use_cache=True,
                      position_ids=mask2.sum(-1, keepdim=True) - 1)
        for i, r in enumerate(rows):
            alone = _logits(model, torch.cat((r, nxt[i]))[None])[0, -1]
            torch.testing.assert_close(out[i, -1], alone, atol=ATOL, rtol=0)
    finally:
        ropeshift.remove(model)
