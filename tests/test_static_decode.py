"""Static decode mode (``ropeshift.attention.interface``): one-query forwards over a StaticCache's whole buffer,
with a mask over every slot and the written length on the device, give the logits of an ordinary dynamic-cache
decode, for the reference and tiled impls (the triton kernels: tests/kernels/test_static_decode_model.py, CUDA
graphs: tests/eval/test_graph_decode.py). The unwritten slots are poisoned (1e4 in K and V), so a read shows.

Run: pytest tests/test_static_decode.py -v
"""
import pytest
import torch

import ropeshift
from ropeshift.eval.graph_decode import static_decode_mode

from .tiny_models import pad_rows, tiny_model, with_cache

LENGTHS = (21, 13, 6)
STEPS = 6
METHODS = [("string", dict(shift=6, window=2)), ("self_extend", dict(group_size=3, window=6)),
           ("dca", dict(chunk_size=9, local_window=2)), ("plain", {})]


def _rows(device="cpu"):
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(3, 128, (n,), generator=gen).to(device) for n in LENGTHS]


def decode_logits(model, rows, steps, *, static: bool, poison: float = 1e4):
    """Logits [b, 1 + steps, vocab] of a greedy decode: prefill, then ``steps`` one-token forwards. static: a
    StaticCache whose unwritten slots hold ``poison``, a mask over its whole buffer, static decode mode;
    else a DynamicCache and the growing mask (what ``generate`` feeds)."""
    from transformers import DynamicCache, StaticCache

    ids, mask = pad_rows(rows, "left")
    b, n0 = ids.shape
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cfg = model.config
    cache = StaticCache(config=cfg, max_cache_len=n0 + steps + 3) if static else DynamicCache(config=cfg)
    out = []
    with torch.no_grad():
        logits = model(ids, attention_mask=mask, position_ids=pos, use_cache=True, **with_cache(model, cache)).logits
        out.append(logits[:, -1])
        if static:
            for layer in cache.layers:
                layer.keys[:, :, n0:] = poison
                layer.values[:, :, n0:] = poison
            mask = torch.cat((mask, mask.new_ones(b, steps + 3)), dim=1)
        p = pos[:, -1:]
        for _ in range(steps):
            nxt = out[-1].argmax(-1, keepdim=True)
            p = p + 1
            if not static:
                mask = torch.cat((mask, mask.new_ones(b, 1)), dim=1)
            with static_decode_mode(model) if static else torch.no_grad():
                logits = model(nxt, attention_mask=mask, position_ids=p, use_cache=True,
                               **with_cache(model, cache)).logits
            out.append(logits[:, -1])
    return torch.stack(out, 1)


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("name, params", METHODS, ids=[m[0] for m in METHODS])
def test_static_decode_equals_dynamic_decode(name, params, impl):
    model = tiny_model("llama")
    ropeshift.apply(model, name, impl=impl, **params)
    rows = _rows()
    want = decode_logits(model, rows, STEPS, static=False)
    got = decode_logits(model, rows, STEPS, static=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_static_mask_is_the_written_part_of_the_user_mask():
    from ropeshift.attention.interface import key_valid_mask

    model = tiny_model("llama")
    ropeshift.apply(model, "plain")
    user = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])
    with static_decode_mode(model):
        got = key_valid_mask(2, 1, 8, q_offset=torch.tensor(5), attention_mask=user, config=model.config)
        with pytest.raises(ValueError, match="whole cache"):
            key_valid_mask(2, 1, 8, q_offset=torch.tensor(5), attention_mask=user[:, :6], config=model.config)
    assert got.tolist() == [[False, False, True, True, True, True, False, False], [True] * 6 + [False] * 2]
    # outside the mode the usual cut mask: the written 6 slots
    assert key_valid_mask(2, 1, 8, q_offset=torch.tensor(5), attention_mask=user[:, :6],
                          config=model.config).shape == (2, 6)
