"""RoPE-scaling baselines through ``config.rope_parameters``, their composition with attention methods, and
errors raised before any model work.

Run: pytest tests/methods/test_rope_scaling.py -v
"""
import copy

import pytest
import torch
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

import ropeshift
from ropeshift.rope import rope_info
from ropeshift.state import get_state

from ..tiny_models import tiny_model

L = 64


def _model(arch="llama", **overrides):
    return tiny_model(arch, max_position_embeddings=L, **overrides)


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def _rotary(model):
    return model.model.rotary_emb


def _snapshot(model):
    cfg = model.config
    return (copy.deepcopy(cfg.rope_parameters), cfg._attn_implementation, getattr(cfg, "ropeshift", None),
            _rotary(model), _rotary(model).inv_freq.clone())


def _unchanged(model, snap):
    now = _snapshot(model)
    assert now[0] == snap[0] and now[1] == snap[1] and now[2] == snap[2]
    assert now[3] is snap[3] and torch.equal(now[4], snap[4])


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_scaling_sets_transformers_rope_parameters(arch):
    model = _model(arch)
    theta = model.config.rope_parameters["rope_theta"]
    inv0 = _rotary(model).inv_freq.clone()

    ropeshift.apply(model, "pi", factor=4.0)
    assert model.config.rope_parameters["rope_type"] == "linear"
    torch.testing.assert_close(_rotary(model).inv_freq, inv0 / 4)

    ropeshift.apply(model, "ntk", target_length=4 * L)  # factor = target_length / L; replaces pi
    r = 16  # head_dim 64 / 4 heads
    assert model.config.rope_parameters == {"rope_type": "default", "rope_theta": theta * 4 ** (r / (r - 2))}

    ropeshift.apply(model, "yarn", factor=2.0)
    p = model.config.rope_parameters
    assert p["rope_type"] == "yarn" and p["factor"] == 2.0 and p["original_max_position_embeddings"] == L
    inv, scale = ROPE_INIT_FUNCTIONS["yarn"](model.config)
    assert torch.equal(_rotary(model).inv_freq, inv) and _rotary(model).attention_scaling == scale > 1
    record = model.config.ropeshift["rope"]
    assert record["method"] == "yarn" and record["original_rope_parameters"] == {"rope_type": "default", "rope_theta": theta}


@pytest.mark.parametrize("method, params", [
    ("pi", dict(factor=2.0)), ("ntk", dict(factor=3.0)), ("dynamic_ntk", dict(factor=2.0)),
    ("yarn", dict(factor=2.0, beta_fast=16)), ("llama3", dict(factor=8.0)),
    ("longrope", dict(factor=2.0, short_factor=[1.0] * 8, long_factor=[2.0] * 8)),
])
def test_remove_restores_exactly(method, params):
    model = _model()
    ids = torch.randint(3, 128, (1, 30))
    base = _logits(model, ids)
    original = copy.deepcopy(model.config.rope_parameters)
    ropeshift.apply(model, method, **params)
    assert not torch.equal(_logits(model, ids), base) or method == "dynamic_ntk"  # dynamic: identity within L
    ropeshift.remove(model)
    assert model.config.rope_parameters == original and not hasattr(model.config, "ropeshift")
    assert torch.equal(_logits(model, ids), base)


def test_yarn_then_string_composes():
    model = _model()
    ids = torch.randint(3, 128, (1, 50))
    base = _logits(model, ids)
    ropeshift.apply(ropeshift.apply(model, "yarn", factor=2.0), "string", shift=20, window=4, impl="torch")
    yarn_inv = rope_info(model).inv_freq
    assert torch.equal(get_state(model.config).inv_freq, yarn_inv)  # shifted queries use YaRN's frequencies
    both = _logits(model, ids)
    assert ropeshift.describe(model)["method"] == "yarn+string"
    ropeshift.apply(model, "string", shift=20, window=4, impl="reference")
    torch.testing.assert_close(_logits(model, ids), both, atol=2e-5, rtol=0)

    other = _model()  # the other order: the attention state is refreshed after the RoPE change
    ropeshift.apply(other, "string", shift=20, window=4, impl="torch")
    string_only = _logits(other, ids)
    ropeshift.apply(other, "yarn", factor=2.0)
    torch.testing.assert_close(_logits(other, ids), both, atol=1e-6, rtol=0)
    assert (both - string_only).abs().max() > 1e-3

    ropeshift.remove(model)
    assert torch.equal(_logits(model, ids), base)
    assert model.config._attn_implementation == "sdpa"


def test_yarn_then_string_prefill_equals_decode():
    model = _model()
    ropeshift.apply(ropeshift.apply(model, "yarn", factor=2.0), "string", shift=12, window=3, impl="torch")
    ids = torch.randint(3, 128, (1, 8))
    gen = model.generate(ids, max_new_tokens=22, min_new_tokens=22, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, pad_token_id=0)
    full = _logits(model, gen.sequences)[:, 7:-1]
    torch.testing.assert_close(torch.stack(gen.logits, 1), full, atol=5e-5, rtol=0)


@pytest.mark.parametrize("setup, method, params, match", [
    (None, "pi", dict(), "exactly one of factor"),
    (None, "yarn", dict(factor=2.0, target_length=128), "exactly one of factor"),
    (None, "yarn", dict(factor=0.5), "factor must be a finite number >= 1"),
    (None, "ntk", dict(target_length=10), "target_length must be an int >= L"),
    (None, "yarn", dict(factor=2.0, beta_fast=0.5, beta_slow=1.0), "beta_fast must be >= beta_slow"),
    (None, "llama3", dict(factor=2.0, low_freq_factor=4.0, high_freq_factor=1.0), "low_freq_factor"),
    (None, "longrope", dict(factor=2.0), "short_factor= and long_factor="),
    (None, "longrope", dict(factor=2.0, short_factor=[1.0] * 3, long_factor=[1.0] * 3), "need 8 numbers"),
    (None, "pi", dict(factor=2.0, window=4), "unknown parameter.s. window; parameters are: factor, target_length"),
    ("rerope", "dynamic_ntk", dict(factor=2.0), "changes frequencies with the input length"),
    ("rerope", "longrope", dict(factor=2.0, short_factor=[1.0] * 8, long_factor=[1.0] * 8), "input length"),
])
def test_invalid_scaling_raises_before_model_work(setup, method, params, match):
    model = _model()
    if setup:
        ropeshift.apply(model, setup)
    snap = _snapshot(model)
    with pytest.raises(ValueError, match=match):
        ropeshift.apply(model, method, **params)
    _unchanged(model, snap)


def test_scaling_a_model_that_already_scales_raises():
    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    model = _model(rope_parameters=rope)
    snap = _snapshot(model)
    with pytest.raises(ValueError, match="already uses rope_type 'llama3'"):
        ropeshift.apply(model, "yarn", factor=2.0)
    _unchanged(model, snap)


@pytest.mark.parametrize("method", ["rerope", "self_extend", "dca", "lm_infinite", "string"])
def test_attention_method_on_length_dependent_rope_raises(method):
    model = _model(rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0})
    snap = _snapshot(model)
    with pytest.raises(ValueError, match="unsupported: rope_type 'dynamic'"):
        ropeshift.apply(model, method)
    _unchanged(model, snap)
