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
    # the parse outlives the context, here and in a forked child (the evaluation's ranks inherit the
    # launcher's); a file changed since is parsed again, and forget() drops them all
    with gguf_cache.one_parse():
        assert gguf.GGUFReader(str(f)) is a
    if hasattr(os, "fork"):
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 when it got the parent's reader without parsing
            with gguf_cache.one_parse():
                os._exit(0 if gguf.GGUFReader(str(f)) is a else 1)
        assert os.waitpid(pid, 0)[1] == 0
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with gguf_cache.one_parse():
        c = gguf.GGUFReader(str(f))
        assert c is not a and c.tensors[0].name == "token_embd.weight"
    gguf_cache.forget()
    with gguf_cache.one_parse():
        assert gguf.GGUFReader(str(f)) is not c


def _assert_same_reader(a, b):
    """Fields and tensors of two GGUF readers equal value for value (dtype, shape, bytes, offsets, types)."""
    import numpy as np

    assert list(a.fields) == list(b.fields)
    for key, fa in a.fields.items():
        fb = b.fields[key]
        assert (fa.offset, fa.data, fa.types, len(fa.parts)) == (fb.offset, fb.data, fb.types, len(fb.parts)), key
        for x, y in zip(fa.parts, fb.parts):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), key
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for x, y in zip(a.tensors, b.tensors):
        assert (x.tensor_type, x.n_elements, x.n_bytes, x.data_offset) == (y.tensor_type, y.n_elements, y.n_bytes,
                                                                           y.data_offset), x.name
        assert np.array_equal(x.shape, y.shape) and x.data.dtype == y.data.dtype and x.data.shape == y.data.shape
        assert np.array_equal(x.data, y.data), x.name


def test_fast_reader_reads_what_gguf_reads(tmp_path):
    """The fast reader (one_parse's) gives the same fields and tensors as gguf's own, here on a file with string,
    array and scalar metadata and two tensor types; a reader class whose ``_get`` differs is left as it is."""
    gguf = pytest.importorskip("gguf")
    import numpy as np

    f = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(str(f), "llama")
    w.add_block_count(2)
    w.add_token_list(["<s>", "a", "b", "ab", "\u00e9t\u00e9"])
    w.add_token_merges(["a b", "ab c"])
    w.add_token_scores([0.0, -1.5, -2.0, -3.0, -4.25])
    w.add_bos_token_id(0)
    w.add_tensor("token_embd.weight", np.arange(40, dtype=np.float32).reshape(5, 8))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    fast = gguf_cache.fast_reader_class(gguf.GGUFReader)
    assert fast is not gguf.GGUFReader and issubclass(fast, gguf.GGUFReader)
    _assert_same_reader(gguf.GGUFReader(str(f)), fast(str(f)))

    class OtherGet(gguf.GGUFReader):
        def _get(self, offset, dtype, count=1):
            return super()._get(offset, dtype, count)

    assert gguf_cache.fast_reader_class(OtherGet) is OtherGet


@pytest.mark.slow
def test_fast_reader_reads_the_real_model_as_gguf_does():
    """The embedded model's 93 MB file: the tokenizer's 49k tokens and 48k merges, 272 quantised tensors."""
    gguf = pytest.importorskip("gguf")
    from ropeshift.loader import EMBEDDED

    try:
        path = str(EMBEDDED["smollm2-135m"].path())
    except FileNotFoundError as e:
        pytest.fail(f"{e} (the slow tests need it)")
    _assert_same_reader(gguf.GGUFReader(path), gguf_cache.fast_reader_class(gguf.GGUFReader)(path))


def _spy_model_loads(monkeypatch) -> tuple[list, object]:
    """``(seen, real)``: every ``AutoModelForCausalLM.from_pretrained`` call from now on appends its ``(path,
    gguf_file)`` to ``seen``; ``real`` is the unpatched function."""
    from transformers import AutoModelForCausalLM

    seen, real = [], AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, path, *args, **kw):
        seen.append((str(path), kw.get("gguf_file")))
        return real(cls, path, *args, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    return seen, real


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
    seen, real = _spy_model_loads(monkeypatch)
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


def test_weights_alone_read_a_complete_folder_else_the_gguf_file_and_convert_nothing(tmp_path, monkeypatch,
                                                                                     smollm2):
    """``load_model(..., with_tokenizer=False)`` (the ranks of a multi-process evaluation): ``(model, None)``; without a
    complete converted folder the weights come from the GGUF file, with no conversion lock taken and nothing
    written; with one, from the folder. Weights equal the tokenizer-loading load's."""
    from ropeshift.loader import EMBEDDED, load_model

    ref, _ = smollm2
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "cache"))
    folder = gguf_cache.converted_folder(EMBEDDED["smollm2-135m"].path(), torch.float32)
    seen, _ = _spy_model_loads(monkeypatch)
    monkeypatch.setattr(gguf_cache, "conversion_lock", lambda *a: pytest.fail("took the conversion lock"))
    model, tok = load_model("smollm2-135m", device="cpu", progress=False, with_tokenizer=False)
    assert tok is None and seen[-1][1] is not None and not folder.exists()
    want = ref.state_dict()
    assert all(torch.equal(want[k], v) for k, v in model.state_dict().items())
    monkeypatch.undo()
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "cache"))
    load_model("smollm2-135m", device="cpu", progress=False)  # converts and writes the folder
    assert gguf_cache.is_complete(folder)
    seen, _ = _spy_model_loads(monkeypatch)
    model, tok = load_model("smollm2-135m", device="cpu", progress=False, with_tokenizer=False)
    assert tok is None and seen[-1] == (str(folder), None)
    assert all(torch.equal(want[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_a_given_tokenizer_is_returned_and_stored_by_the_conversion(tmp_path, monkeypatch, smollm2):
    """``load_model(..., tokenizer=tok)`` (rank 0 of a multi-process evaluation, ``launch.run_rank``): no tokenizer
    built, ``tok`` returned and stored in the converted folder, from which the other ranks' loads then read."""
    from transformers import AutoTokenizer

    from ropeshift.loader import EMBEDDED, load_model, load_tokenizer

    ref, tok = smollm2
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "cache"))
    folder = gguf_cache.converted_folder(EMBEDDED["smollm2-135m"].path(), torch.float32)
    with monkeypatch.context() as m:
        m.setattr(AutoTokenizer, "from_pretrained", lambda *a, **k: pytest.fail("built a tokenizer"))
        model, got = load_model("smollm2-135m", device="cpu", progress=False, with_tokenizer=False, tokenizer=tok)
    assert got is tok and gguf_cache.is_complete(folder)
    want = ref.state_dict()
    assert all(torch.equal(want[k], v) for k, v in model.state_dict().items())
    seen, _ = _spy_model_loads(monkeypatch)
    model, _ = load_model("smollm2-135m", device="cpu", progress=False, with_tokenizer=False)
    assert seen == [(str(folder), None)] and all(torch.equal(want[k], v) for k, v in model.state_dict().items())
    text = "<|im_start|>user\nWhere is the key? 4821 and 77.\n"
    assert load_tokenizer("smollm2-135m")(text).input_ids == tok(text).input_ids  # the stored one, from the folder
