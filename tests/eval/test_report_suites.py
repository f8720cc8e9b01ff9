"""``--suite`` presets: method rows as data, compositions, relative parameters, flag overrides.

Run: pytest tests/eval/test_report_suites.py -v
"""
from __future__ import annotations

import pytest

from ropeshift.cli.main import main
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.suites import RULER_LITE, SUITES, parts, resolve_relative


def test_ruler_lite_is_the_study():
    s = SUITES["ruler-lite"]
    assert s.tasks == ("passkey", "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah4",
                       "vt", "kv_retrieval", "cwe", "perplexity", "perplexity:single")
    assert s.lengths == "1k,2k,4k,6k,8k" and s.samples == 50
    labels = [m.label for m in s.methods]
    assert labels[:8] == ["rope", "string", "string+yarn", "yarn", "rerope", "self_extend", "dca", "lm_infinite"]
    assert labels[8:] == ["yarn@fair", "ntk@fair", "pi@fair", "dca@fair", "self_extend@fair"]
    fair = s.method("yarn@fair")
    assert fair.name == "yarn" and resolve_relative(fair.params, 8192) == {"train_length": 5461, "target_length": 8192}
    with pytest.raises(KeyError, match="Did you mean: yarn@fair"):
        s.method("yarn@fiar")


def test_relative_parameters_and_compositions():
    assert resolve_relative({"a": "2/3L", "b": "0.5 L", "c": 3, "d": "text"}, 900) == {"a": 600, "b": 450, "c": 3,
                                                                                      "d": "text"}
    with pytest.raises(ValueError, match="relative to the training length"):
        resolve_relative({"train_length": "2/3L"}, None)
    assert parts(RULER_LITE.method("string+yarn")) == [("string", {}), ("yarn", {"factor": 2.0})]
    with pytest.raises(ValueError, match="keyed by part"):
        parts(MethodSpec("string+yarn", {"factor": 2}))
    assert MethodSpec("yarn", {"factor": 2}).label == "yarn-factor2"   # no alias: derived label as before


def test_composed_and_fair_rows_apply_to_a_model(tiny_llama):
    from ropeshift.eval.generation import activate, deactivate

    L = tiny_llama.config.max_position_embeddings
    try:
        info = activate(tiny_llama, RULER_LITE.method("string+yarn"), "torch")
        assert info["method"] == "yarn+string" and info["params"]["factor"] == 2.0
        deactivate(tiny_llama)
        info = activate(tiny_llama, RULER_LITE.method("dca@fair"), "torch")
        assert info["params"]["train_length"] == round(2 * L / 3)
    finally:
        deactivate(tiny_llama)


def test_suite_flags(tmp_path, capsys):
    assert main(["eval", "--suite", "ruler-lite", "--methods", "rope,yarn@fair", "--tasks", "passkey",
                 "--lengths", "1k", "--samples", "2", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "yarn@fair" in out and "string" not in out and "4 samples to run" in out
    assert main(["eval", "--suite", "ruler-lite", "--dry-run", "--out", str(tmp_path)]) == 0
    assert f"{11 * 13 * 5 * 50} samples to run" in capsys.readouterr().out
    assert main(["eval", "--suite", "ruler-lite", "--shift", "100", "--dry-run"]) == 2
    assert "cannot change the methods of --suite" in capsys.readouterr().err
    assert main(["eval", "--suite", "rulerlite", "--dry-run"]) == 2
    assert "Did you mean: ruler-lite" in capsys.readouterr().err
    assert main(["eval", "--suite", "ruler-long", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{6 * 7 * 5 * 25} samples to run" in out and "32k:25" in out and "self_extend@fair" in out
