"""Every baseline on tiny random-init Llama / Qwen2 models (L = 64) through ``ropeshift.apply``.

Covers: identity at degenerate settings, torch impl == reference impl (fp32 and bf16, calibrated), prefill ==
step-by-step decode through ``generate``, left-padded batches, prompts shorter than any window, GQA (the tiny
models have 4 query heads over 2 key/value heads).

Run: pytest tests/methods/test_models.py -v
"""
import pytest
import torch

import ropeshift

from ..tiny_models import tiny_model
from .cases import APPLY_CASES

L = 64
ATTENTION_CASES = list(APPLY_CASES)
SCALING_CASES = {
    "pi": dict(factor=2.0),
    "ntk": dict(factor=2.0),
    "dynamic_ntk": dict(factor=2.0),
    "yarn": dict(factor=2.0),
    "llama3": dict(factor=4.0),
    "longrope": dict(factor=2.0, short_factor=[1.0 + i / 8 for i in range(8)], long_factor=[1.0 + i for i in range(8)]),
}


def _model(arch="llama", dtype=torch.float32):
    return tiny_model(arch, dtype=dtype, max_position_embeddings=L)


def _logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits.float()


@pytest.mark.parametrize(
    "method, params",
    [
        ("rerope", dict(window=40)),
        ("rerope", dict(window=40, leaky=8.0)),
        ("self_extend", dict(group_size=1, window=5)),
        ("dca", dict(chunk_size=40, local_window=6)),
        ("lm_infinite", dict(n_local=40, n_global=2)),
        ("pi", dict(factor=1.0)),
        ("ntk", dict(factor=1.0)),
        ("yarn", dict(factor=1.0)),
        ("yarn", dict(target_length=L)),
    ],
)
def test_identity_at_degenerate_settings(method, params):
    model = _model()
    ids = torch.randint(3, 128, (2, 40))
    base = _logits(model, ids)
    ropeshift.apply(model, method, impl="torch", **params)
    torch.testing.assert_close(_logits(model, ids), base, atol=1e-5, rtol=0)
    ropeshift.remove(model)
    assert torch.equal(_logits(model, ids), base)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_torch_equals_reference_fp32(arch, case):
    name, params = APPLY_CASES[case]
    model = _model(arch)
    ids = torch.randint(3, 128, (2, 45))
    base = _logits(model, ids)
    ropeshift.apply(model, name, impl="reference", **params)
    ref = _logits(model, ids)
    ropeshift.apply(model, name, impl="torch", **params)
    out = _logits(model, ids)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)
    if name == "plain":  # rel = d: the unpatched model, through ropeshift's implementations
        torch.testing.assert_close(out, base, atol=2e-5, rtol=0)
    else:
        assert (out - base).abs().max() > 1e-4  # the method really changed the outputs


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("case", ["rerope", "rerope_leaky", "self_extend", "dca", "lm_infinite_cap"])
def test_torch_equals_reference_bf16(arch, case):
    """bf16 tolerance: 2 x the error of the reference impl run in bf16 (both against the fp32 reference)."""
    name, params = APPLY_CASES[case]
    ids = torch.randint(3, 128, (2, 45))
    outs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = _model(arch, dtype)
        for impl in ("reference", "torch"):
            ropeshift.apply(model, name, impl=impl, **params)
            outs[dtype, impl] = _logits(model, ids)
    truth = outs[torch.float32, "reference"]
    err_ref = (outs[torch.bfloat16, "reference"] - truth).abs().max()
    err = (outs[torch.bfloat16, "torch"] - truth).abs().max()
    assert err <= 2 * err_ref + 1e-3, f"{err:.3g} > 2 x {err_ref:.3g}"


def _prefill_vs_decode(model, prompt_len, new=24):
    ids = torch.randint(3, 128, (1, prompt_len))
    gen = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, pad_token_id=0)
    step = torch.stack(gen.logits, 1).float()
    full = _logits(model, gen.sequences)[:, prompt_len - 1: -1]
    return step, full


@pytest.mark.parametrize("case", ATTENTION_CASES + list(SCALING_CASES))
def test_prefill_equals_decode_through_generate(case):
    model = _model()
    if case in SCALING_CASES:
        ropeshift.apply(model, case, **SCALING_CASES[case])
    else:
        name, params = APPLY_CASES[case]
        ropeshift.apply(model, name, impl="torch", **params)
    step, full = _prefill_vs_decode(model, prompt_len=6)  # starts inside every window, grows past them
    torch.testing.assert_close(step, full, atol=5e-5, rtol=0)


@pytest.mark.parametrize("case", ["rerope", "self_extend", "dca", "lm_infinite"])
def test_prefill_equals_decode_with_reference_impl(case):
    name, params = APPLY_CASES[case]
    model = _model("qwen2")
    ropeshift.apply(model, name, impl="reference", **params)
    step, full = _prefill_vs_decode(model, prompt_len=20, new=20)
    torch.testing.assert_close(step, full, atol=5e-5, rtol=0)


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_left_padded_batch_rows_equal_rows_alone(case):
    name, params = APPLY_CASES[case]
    model = _model("qwen2")
    ropeshift.apply(model, name, impl="torch", **params)
    lengths = [37, 21, 5]
    rows = [torch.randint(3, 128, (n,)) for n in lengths]
    width = max(lengths)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    # Self-Extend and DCA depend on absolute positions: pass them as generate does (padding does not count)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    batch = _logits(model, ids, attention_mask=mask, position_ids=position_ids)
    for i, r in enumerate(rows):
        alone = _logits(model, r[None])
        torch.testing.assert_close(batch[i, width - len(r):], alone[0], atol=2e-5, rtol=0)


@pytest.mark.parametrize("case", ["self_extend", "dca", "lm_infinite"])
def test_left_padded_generate_rows_equal_rows_alone(case):
    name, params = APPLY_CASES[case]
    model = _model()
    ropeshift.apply(model, name, impl="torch", **params)
    rows = [torch.randint(3, 128, (n,)) for n in (14, 6)]
    ids = torch.zeros(2, 14, dtype=torch.long)
    mask = torch.zeros(2, 14, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, 14 - len(r):] = r
        mask[i, 14 - len(r):] = 1
    kw = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False, output_logits=True,
              return_dict_in_generate=True, pad_token_id=0)
    batch = torch.stack(model.generate(ids, attention_mask=mask, **kw).logits, 1)
    for i, r in enumerate(rows):
        alone = torch.stack(model.generate(r[None], **kw).logits, 1)
        torch.testing.assert_close(batch[i], alone[0], atol=5e-5, rtol=0)


@pytest.mark.parametrize("method", ["rerope", "self_extend", "dca", "lm_infinite"])
def test_prompt_shorter_than_any_window_is_unpatched(method):
    """Defaults on L = 64: rerope w = 16, self_extend w_n = 16, dca C = 48, lm_infinite n_local = 64."""
    model = _model()
    ids = torch.randint(3, 128, (1, 10))
    base = _logits(model, ids)
    ropeshift.apply(model, method, impl="torch")
    torch.testing.assert_close(_logits(model, ids), base, atol=1e-5, rtol=0)


def test_defaults_resolve_from_the_model():
    model = _model()
    expect = {
        "rerope": dict(window=16, leaky=None),
        "self_extend": dict(group_size=8, window=16),
        "dca": dict(chunk_size=48, local_window=4),
        "lm_infinite": dict(n_global=10, n_local=64, distance_limit=64),
    }
    for method, params in expect.items():
        ropeshift.apply(model, method)
        got = ropeshift.describe(model)["params"]
        assert {k: got[k] for k in params} == params, method
        assert got["train_length"] == L
