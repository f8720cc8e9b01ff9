"""The GGUF conversion cache (``ropeshift.gguf_cache``): a GGUF model is de-quantised once into a safetensors folder,
and later loads read that folder and give the same model and tokenizer. Run: pytest tests/test_gguf_cache.py -v"""
from __future__ import annotations

import os

import pytest
import torch

from ropeshift import gguf_cache


def test_key_follows_file_dtype_and_version(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 60)
    a = gguf_cache.converted_folder(f, torch.float32)
    assert a.parent == tmp_path / "cache" / "converted" and a.name.startswith("m-")
    assert gguf_cache.converted_folder(f, torch.float32) == a
    assert gguf_cache.converted_folder(f, torch.bfloat16) != a
    os.utime(f, ns=(1, 1))  # another modification time: another file as far as the cache knows
    assert gguf_cache.converted_folder(f, torch.float32) != a
    import transformers

    monkeypatch.setattr(transformers, "__version__", "0.0.1")
    os.utime(f, ns=(2, 2))
    b = gguf_cache.converted_folder(f, torch.float32)
    monkeypatch.undo()
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "cache"))
    assert gguf_cache.converted_folder(f, torch.float32) != b
    assert not gguf_cache.is_complete(a)


def test_one_parse_shares_readers_and_restores_gguf(tmp_path):
    gguf = pytest.importorskip("gguf")
    base_reader, base_map = gguf.GGUFReader, gguf.get_tensor_name_map
    f = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(str(f), "llama")
    w.add_block_count(2)
    w.add_tensor("token_embd.weight", __import__("numpy").ones((4, 8), dtype="float32"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with gguf_cache.one_parse():
        a, b = gguf.GGUFReader(str(f)), gguf.GGUFReader(str(tmp_path / "." / "tiny.gguf"))
        assert a is b and isinstance(a, base_reader) and a.tensors[0].name == "token_embd.weight"
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
    assert gguf.GGUFReader is base_reader and gguf.get_tensor_name_map is base_map
    assert gguf.GGUFReader(str(f)) is not gguf.GGUFReader(str(f))


def test_real_model_loads_from_its_converted_folder(tmp_path, monkeypatch, smollm2):
    """First load: from the GGUF file, then saved (complete folder); second load: from the folder, no GGUF parse;
    both equal the session's model (logits, token ids, chat template, generation config). An incomplete folder
    (no completion marker) is converted again; ROPESHIFT_GGUF_CACHE=0 never writes one."""
    from transformers import AutoModelForCausalLM

    from ropeshift.loader import EMBEDDED, load_model, load_tokenizer

    ref, ref_tok = smollm2
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "cache"))
    toks = [load_tokenizer("smollm2-135m")]  # before the conversion: from the GGUF file
    folder = gguf_cache.converted_folder(EMBEDDED["smollm2-135m"].path(), torch.float32)
    seen = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, path, *args, **kw):
        seen.append((str(path), kw.get("gguf_file")))
        return real(cls, path, *args, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    first = load_model("smollm2-135m", device="cpu", progress=False)
    assert gguf_cache.is_complete(folder) and seen[-1][1] is not None
    second = load_model("smollm2-135m", device="cpu", progress=False)
    assert seen[-1] == (str(folder), None)
    toks.append(load_tokenizer("smollm2-135m"))  # from the converted folder
    text = "Where is the special magic number? It is"
    msgs = [{"role": "user", "content": "hi"}]
    with torch.no_grad():
        want = ref(ref_tok(text, return_tensors="pt").input_ids).logits
        for tok in toks:
            assert tok(text).input_ids == ref_tok(text).input_ids and tok.pad_token_id == ref_tok.pad_token_id
            assert tok.apply_chat_template(msgs, tokenize=False) == ref_tok.apply_chat_template(msgs, tokenize=False)
        for model, tok in (first, second):
            assert tok(text).input_ids == ref_tok(text).input_ids
            assert tok.apply_chat_template(msgs, tokenize=False) == ref_tok.apply_chat_template(msgs, tokenize=False)
            assert tok.pad_token_id == ref_tok.pad_token_id and tok.eos_token_id == ref_tok.eos_token_id
            assert model.generation_config.eos_token_id == ref.generation_config.eos_token_id
            assert model.config.rope_parameters == ref.config.rope_parameters
            assert torch.equal(model(tok(text, return_tensors="pt").input_ids).logits, want)
    # one_parse (the loads above) gives the weights and config transformers' own GGUF load gives
    path = EMBEDDED["smollm2-135m"].path()
    plain = real(AutoModelForCausalLM, str(path.parent), gguf_file=path.name, dtype=torch.float32,
                 local_files_only=True)
    want_sd, got_sd = plain.state_dict(), first[0].state_dict()
    assert want_sd.keys() == got_sd.keys() and all(torch.equal(want_sd[k], got_sd[k]) for k in want_sd)
    no_attn = lambda c: {k: v for k, v in c.to_dict().items() if "attn" not in k}  # noqa: E731 (sdpa vs default)
    assert no_attn(plain.config) == no_attn(first[0].config)
    (folder / gguf_cache.DONE).unlink()
    load_model("smollm2-135m", device="cpu", progress=False)
    assert seen[-1][1] is not None and gguf_cache.is_complete(folder)
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "off"))
    monkeypatch.setenv(gguf_cache.ENV, "0")
    load_model("smollm2-135m", device="cpu", progress=False)
    assert not (tmp_path / "off").exists()
