"""``ropeshift.skeleton``: a model built from its config alone, its weights copied in later, in place.

Run: pytest tests/test_skeleton.py -v
"""
from __future__ import annotations

import pytest
import torch

from ropeshift import skeleton as sk
from ropeshift.loader import load_model

from .test_loader import _save_with_tokenizer
from .tiny_models import tiny_model

IDS = torch.tensor([[5, 9, 17, 3, 40, 2, 77], [1, 8, 8, 120, 6, 33, 4]])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    _save_with_tokenizer(tiny_model("llama"), path)
    return path


@pytest.fixture(autouse=True)
def _dynamo_config():
    """``compile_model("layers")`` sets a process-wide dynamo setting: restored after each test."""
    with torch.compiler.config.patch(dynamic_sources=torch.compiler.config.dynamic_sources):
        yield


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def _storages(model) -> list[int]:
    return [t.data_ptr() for t in [*model.parameters(), *model.buffers()]]


def test_a_skeleton_takes_the_loaded_weights_into_its_own_tensors(folder):
    """Random weights first (other logits); after ``adopt`` the loaded model's logits exactly, every parameter and
    buffer in the storage it had, the generation config and config path taken."""
    loaded, _ = load_model(str(folder), device="cpu", progress=False, with_tokenizer=False)
    model = sk.skeleton(str(folder), dtype=torch.float32, device="cpu")
    assert type(model) is type(loaded) and not model.training
    assert sk.config_differences(model.config, loaded.config) == {}
    assert not torch.equal(_logits(model), _logits(loaded))
    before = _storages(model)
    sk.adopt(model, loaded)
    assert _storages(model) == before
    assert torch.equal(_logits(model), _logits(loaded))
    assert model.generation_config.to_dict() == loaded.generation_config.to_dict()
    assert model.config._name_or_path == loaded.config._name_or_path


def test_layers_compiled_on_the_skeleton_serve_its_weights_without_compiling_again(folder):
    """The point of it: the graphs traced on the random weights run the adopted ones (no new graph), with the
    loaded model's logits."""
    from ropeshift.eval import dense_compile as dc

    torch._dynamo.reset()
    loaded, _ = load_model(str(folder), device="cpu", progress=False, with_tokenizer=False)
    model = sk.skeleton(str(folder), dtype=torch.float32, device="cpu")
    graphs = []
    dc.compile_model(model, "layers", backend=lambda gm, ex: graphs.append(gm) or gm.forward)
    _logits(model)
    traced = len(graphs)
    sk.adopt(model, loaded)
    assert torch.equal(_logits(model), _logits(loaded))
    assert traced > 0 and len(graphs) == traced


def test_adopt_refuses_another_class_config_or_tensors(folder):
    model = sk.skeleton(str(folder), dtype=torch.float32, device="cpu")
    with pytest.raises(ValueError, match="cannot adopt the weights of a Qwen2ForCausalLM"):
        sk.adopt(model, tiny_model("qwen2"))
    with pytest.raises(ValueError, match="another config.*num_hidden_layers"):
        sk.adopt(model, tiny_model("llama", num_hidden_layers=3))
    other, _ = load_model(str(folder), device="cpu", progress=False, with_tokenizer=False)
    other.model.norm.register_buffer("extra", torch.zeros(2), persistent=False)
    with pytest.raises(ValueError, match="other tensors"):
        sk.adopt(model, other)


@pytest.mark.slow
def test_the_real_models_skeleton_is_the_gguf_loaded_model_once_adopted(smollm2, tmp_path, monkeypatch):
    """SmolLM2's GGUF file: the config read for the skeleton equals the loaded model's (but the quantisation
    record), and after ``adopt`` the logits are the loaded model's."""
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "cache"))  # no converted folder: the GGUF file's config
    loaded, _ = smollm2
    model = sk.skeleton("smollm2-135m", dtype=torch.float32, device="cpu")
    assert sk.config_differences(model.config, loaded.config) == {}
    sk.adopt(model, loaded)
    assert torch.equal(_logits(model), _logits(loaded))
