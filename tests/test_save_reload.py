"""describe() after save_pretrained + reload (issue 8 item 5): ``ropeshift.load_model`` restores the saved method;
a plain ``from_pretrained`` does not claim a method that is not in force.

Run: pytest tests/test_save_reload.py -v
"""
import pytest
import torch

import ropeshift

from .tiny_models import tiny_model


def _save(model, path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, 128)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[UNK]").save_pretrained(path)
    model.save_pretrained(path)


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("steps", [
    [("string", dict(shift=20, window=4))],
    [("yarn", dict(factor=2.0)), ("string", dict(shift=20, window=4))],
    [("rerope", dict(window=16))],
])
def test_load_model_restores_the_saved_method(tmp_path, steps):
    model = tiny_model("llama")
    for name, params in steps:
        ropeshift.apply(model, name, **params)
    ids = torch.randint(3, 128, (1, 60))
    expected, described = _logits(model, ids), ropeshift.describe(model)
    _save(model, tmp_path)

    loaded, _ = ropeshift.load_model(str(tmp_path), device="cpu", progress=False)
    got = ropeshift.describe(loaded)
    assert got["method"] == described["method"] and got["params"] == described["params"]
    assert "not_in_force" not in got
    torch.testing.assert_close(_logits(loaded, ids), expected, rtol=1e-4, atol=1e-4)
    ropeshift.remove(loaded)
    assert ropeshift.describe(loaded)["method"] == "rope"


def test_plain_from_pretrained_does_not_claim_the_attention_method(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model("llama")
    ropeshift.apply(model, "yarn", factor=2.0)
    ropeshift.apply(model, "string", shift=20, window=4)
    _save(model, tmp_path)

    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="sdpa")
    d = ropeshift.describe(plain)
    assert d["method"] == "yarn"  # the scaled rope_parameters were saved in the config: yarn is in force
    assert d["not_in_force"] == ["string"]  # the attention method is not: not reported as applied
    assert d["attention"] is None


def test_describe_of_an_unpatched_model():
    assert ropeshift.describe(tiny_model("llama")) == {"method": "rope", "params": {}, "impl": None}
