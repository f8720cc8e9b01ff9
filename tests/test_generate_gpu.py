"""``model.generate`` on CUDA through the kernels (impl="auto") against the tiled path (impl="torch"), per method.

The three ways a user calls it: ``generate(ids)`` with no mask (a fresh prefill: on sm_90 the Hopper kernel
where it serves the table), with an all-ones mask, and a left-padded batch. fp32: the greedy tokens must be
equal and the prefill logits within 1e-4 (relative). bf16: prefill logits of both paths against the fp32 model's, the kernels within 2x the tiled path's own
bf16 error (plus a small floor), and the share of rows whose greedy tokens differ is printed (bf16 rounding can
flip a near-tie; the fp32 case is the exact one).

Run (GPU): pytest tests/test_generate_gpu.py -q -s
"""
import pytest
import torch

import ropeshift

from .tiny_models import pad_rows, tiny_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# head_dim 64 (512 / 8): a size the Hopper kernel serves; L = 256, prompts up to 240 tokens
SHAPE = dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=2, vocab_size=256)
METHODS = [
    ("plain", {}),
    ("string", dict(shift=60, window=8)),
    ("rerope", dict(window=48)),
    ("rerope", dict(window=40, leaky=4.0)),
    ("self_extend", dict(group_size=4, window=32)),
    ("dca", dict(chunk_size=96, local_window=16)),
    ("lm_infinite", dict(n_global=4, n_local=64, distance_limit=64)),
]
LENGTHS = (240, 170, 97)
NEW = 12


def _ids(model):
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(3, model.config.vocab_size, (n,), generator=gen).cuda() for n in LENGTHS]


def _generate(model, name, params, impl, ids, mask):
    ropeshift.apply(model, name, impl=impl, **params)
    try:
        kw = {} if mask is None else {"attention_mask": mask}
        with torch.inference_mode():
            return model.generate(ids, max_new_tokens=NEW, do_sample=False, pad_token_id=0, **kw)[:, ids.shape[1]:]
    finally:
        ropeshift.remove(model)


def _calls(rows):
    one = rows[0][None]
    padded, pmask = pad_rows(rows, "left")
    return {"no mask": (one, None), "ones mask": (one, torch.ones_like(one)), "left padded": (padded, pmask)}


@pytest.mark.parametrize("name,params", METHODS, ids=lambda x: x if isinstance(x, str) else None)
def test_fp32_tokens_equal_tiled(name, params):
    model = tiny_model("llama", **SHAPE).cuda()
    for call, (ids, mask) in _calls(_ids(model)).items():
        kw = {} if mask is None else {"attention_mask": mask}
        logits = []
        for impl in ("auto", "torch"):
            ropeshift.apply(model, name, impl=impl, **params)
            with torch.inference_mode():
                logits.append(model(ids, **kw).logits)
            ropeshift.remove(model)
        rel = ((logits[0] - logits[1]).norm() / logits[1].norm()).item()
        assert rel <= 1e-4, f"{name} {params} ({call}): prefill logits rel err {rel:.2e}"
        got = _generate(model, name, params, "auto", ids, mask)
        ref = _generate(model, name, params, "torch", ids, mask)
        assert torch.equal(got, ref), f"{name} {params} ({call}): greedy tokens differ from the tiled path"


@pytest.mark.parametrize("name,params", METHODS, ids=lambda x: x if isinstance(x, str) else None)
def test_bf16_logits_within_calibrated_error(name, params):
    model32 = tiny_model("llama", **SHAPE).cuda()
    model16 = tiny_model("llama", torch.bfloat16, **SHAPE).cuda()
    rows = _ids(model32)
    flips = total = 0
    for call, (ids, mask) in _calls(rows).items():
        kw = {} if mask is None else {"attention_mask": mask}
        logits = {}
        for tag, model, impl in (("ref", model32, "torch"), ("auto", model16, "auto"), ("torch", model16, "torch")):
            ropeshift.apply(model, name, impl=impl, **params)
            try:
                with torch.inference_mode():
                    logits[tag] = model(ids, **kw).logits.float()
            finally:
                ropeshift.remove(model)
        valid = (mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool))
        err = {t: (logits[t] - logits["ref"])[valid].norm().item() for t in ("auto", "torch")}
        assert err["auto"] <= 2 * err["torch"] + 1e-3 * logits["ref"][valid].norm().item(), (call, err)
        a = _generate(model16, name, params, "auto", ids, mask)
        b = _generate(model16, name, params, "torch", ids, mask)
        flips += int((a != b).any(dim=1).sum())
        total += a.shape[0]
    print(f"\n{name} {params}: bf16 greedy rows differing from the tiled path: {flips}/{total}")
