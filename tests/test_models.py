"""STRING on tiny random-init models of every supported architecture, through ``ropeshift.apply``.

Covers: torch impl == reference impl on real layers, prefill == step-by-step decode through ``generate``
(including prompts shorter than S that grow past it), left-padded batches, degenerate settings, ``remove``,
re-application, and clear errors for unsupported architectures.

Run: pytest tests/test_models.py -v
"""
import pytest
import torch

import ropeshift

from .tiny_models import ARCHS, tiny_model


def _logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_torch_impl_equals_reference_on_model(arch):
    model = tiny_model(arch)
    ids = torch.randint(3, 128, (2, 70))
    ropeshift.apply(model, "string", shift=33, window=5, impl="reference")
    ref = _logits(model, ids)
    ropeshift.apply(model, "string", shift=33, window=5, impl="torch")
    out = _logits(model, ids)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)
    ropeshift.remove(model)
    assert (_logits(model, ids) - out).abs().max() > 1e-4  # the method really changed the outputs


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi3"])
@pytest.mark.parametrize("prompt_len", [6, 40])
def test_prefill_equals_decode_through_generate(arch, prompt_len):
    model = tiny_model(arch)
    ropeshift.apply(model, "string", shift=12, window=3)
    ids = torch.randint(3, 128, (1, prompt_len))
    gen = model.generate(ids, max_new_tokens=24, min_new_tokens=24, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, pad_token_id=0)
    step_logits = torch.stack(gen.logits, 1)  # [1, 24, vocab]
    full = _logits(model, gen.sequences)[:, prompt_len - 1 : -1]
    assert gen.sequences.shape[1] == prompt_len + 24 > 12  # grows past S
    torch.testing.assert_close(step_logits, full, atol=5e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_left_padded_batch_rows_equal_rows_alone(arch):
    model = tiny_model(arch)
    ropeshift.apply(model, "string", shift=10, window=2)
    lengths = [37, 22, 9]
    rows = [torch.randint(3, 128, (n,)) for n in lengths]
    width = max(lengths)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False, pad_token_id=0,
                           output_logits=True, return_dict_in_generate=True)
    batch_logits = torch.stack(batch.logits, 1)
    for i, r in enumerate(rows):
        alone = model.generate(r[None], max_new_tokens=20, do_sample=False, pad_token_id=0,
                               output_logits=True, return_dict_in_generate=True)
        assert torch.equal(batch.sequences[i, width:], alone.sequences[0, len(r):])
        torch.testing.assert_close(batch_logits[i], torch.stack(alone.logits, 1)[0], atol=5e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_shift_at_least_length_is_identical_and_remove_restores(arch):
    model = tiny_model(arch)
    ids = torch.randint(3, 128, (2, 50))
    base = _logits(model, ids)
    ropeshift.apply(model, "string", shift=50, window=7)  # every d < S
    torch.testing.assert_close(_logits(model, ids), base, atol=1e-5, rtol=0)
    ropeshift.apply(model, "string", shift=20, window=7)  # re-application replaces the first
    assert ropeshift.describe(model)["params"]["shift"] == 20
    assert (_logits(model, ids) - base).abs().max() > 1e-4
    ropeshift.remove(model)
    assert model.config._attn_implementation == "sdpa" and not hasattr(model.config, "ropeshift")
    assert torch.equal(_logits(model, ids), base)


def test_apply_rope_is_the_unpatched_model():
    model = tiny_model("llama")
    ids = torch.randint(3, 128, (1, 40))
    base = _logits(model, ids)
    ropeshift.apply(model, "string", shift=10, window=2)
    ropeshift.apply(model, "rope")
    assert torch.equal(_logits(model, ids), base)
    assert ropeshift.describe(model)["method"] == "rope"


def test_describe_and_config_record_are_serialisable(tmp_path):
    import json

    model = tiny_model("llama")
    ropeshift.apply(model, "string", shift=0.25, window=16)
    info = ropeshift.describe(model)
    assert info["method"] == "string" and info["impl"] == "auto"
    assert info["params"]["shift"] == round(0.25 * 256) and info["params"]["window"] == 16
    json.dumps(info)
    model.config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["ropeshift"]["attention"]["params"]["shift"] == 64


@pytest.mark.parametrize(
    "arch, overrides, message",
    [
        ("gpt2", {}, "'gpt2' has no rotary position embedding"),
        ("gemma2", {}, "soft-capping"),
        ("gemma3", {"sliding_window": None}, "different RoPE per layer type"),
        ("mistral", {"sliding_window": 16}, "sliding-window attention on"),
    ],
)
def test_unsupported_architectures_get_clear_errors(arch, overrides, message):
    model = tiny_model(arch, **overrides)
    with pytest.raises(ValueError, match=message):
        ropeshift.apply(model, "string", shift=20, window=4)
    assert getattr(model.config, "_attn_implementation", None) != "ropeshift"
