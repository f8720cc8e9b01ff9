"""Option parsing and scorers, with hand-made inputs. Run: pytest tests/eval/test_options_metrics.py -v"""
from __future__ import annotations

import json
import math

import pytest

from ropeshift.eval import metrics
from ropeshift.eval.options import MethodSpec, format_length, method_specs, parse_length, parse_lengths


@pytest.mark.parametrize("text,value", [("4k", 4096), ("1.5k", 1536), ("6000", 6000), ("1m", 1048576), (" 8K", 8192)])
def test_parse_length(text, value):
    assert parse_length(text) == value
    assert parse_length(format_length(value)) == value


@pytest.mark.parametrize("text", ["", "k", "4kb", "-1", "0", "1.1"])
def test_parse_length_errors(text):
    with pytest.raises(ValueError, match="length"):
        parse_length(text)


def test_parse_lengths_sorted_and_unique():
    assert parse_lengths("4k,1k,2k") == (1024, 2048, 4096)
    with pytest.raises(ValueError, match="duplicates"):
        parse_lengths("1k,1024")


def test_method_specs(tmp_path):
    specs = method_specs(("rope", "string"), shift=2048, window=64)
    assert specs[0] == MethodSpec("rope") and specs[0].label == "rope"
    assert specs[1].params == {"shift": 2048, "window": 64}
    assert specs[1].label == "string-shift2048-window64"
    assert method_specs(("string",), shift=0.5)[0].params == {"shift": 0.5}
    cfg = tmp_path / "m.json"
    cfg.write_text(json.dumps({"string": {"window": 32}}))
    assert method_specs(("rope", "string"), config_path=str(cfg))[1].params == {"window": 32}
    with pytest.raises(ValueError, match="not in --methods"):
        method_specs(("rope",), config_path=str(cfg))
    with pytest.raises(ValueError, match="'string' is not in --methods"):
        method_specs(("rope",), shift=10)
    cfg.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        method_specs(("string",), config_path=str(cfg))


def test_string_match_all_and_part():
    assert metrics.string_match_all(" 123 and 456.", ["123", "456"]) == 1.0
    assert metrics.string_match_all("only 123", ["123", "456"]) == 0.5
    assert metrics.string_match_all("ABC-def", ["abc-DEF"]) == 1.0
    assert metrics.string_match_part("it is 456", ["123", "456"]) == 1.0
    assert metrics.string_match_part("none", ["123", "456"]) == 0.0
    assert metrics.postprocess("  a\x00b\tc ") == "a\nb\nc"


def test_first_int_and_number_and_kv():
    assert metrics.first_int("The pass key is 04521. Then 7") == "04521"
    assert metrics.first_int("no digits") is None
    assert metrics.first_number("answer: 42.5 or 3") == 42.5
    assert metrics.kv_match('"abc-1", "x"', "abc-1") == 1.0
    assert metrics.kv_match("abc-12", "abc-1") == 0.0


def test_binomial_ci_and_effective_length():
    lo, hi = metrics.binomial_ci(0.8, 100)
    assert lo < 0.8 < hi and hi - lo < 0.2
    assert metrics.binomial_ci(1.0, 10)[1] == 1.0
    assert metrics.effective_length({1024: 90, 2048: 80, 4096: 88}, 85) == (1024, 4096)
    assert metrics.effective_length({1024: 50}, 85) == (None, None)


def test_perplexity_is_a_sum_divided_once():
    # two windows: 10 tokens at nll 1.0 each and 30 tokens at nll 2.0 each -> exp(70 / 40), not exp(mean(1, 2))
    assert math.isclose(metrics.perplexity(10 * 1.0 + 30 * 2.0, 40), math.exp(70 / 40))
    with pytest.raises(ValueError):
        metrics.perplexity(1.0, 0)
