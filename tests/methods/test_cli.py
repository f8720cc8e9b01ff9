"""``ropeshift ls`` and ``ropeshift matrix``.

Run: pytest tests/methods/test_cli.py -v
"""
import pytest

from ropeshift.cli.main import main

FIGURE_5 = """\
string: shift=3, window=1, train_length=9
0
1 0
2 1 0
1 2 1 0
2 1 2 1 0
3 2 1 2 1 0
4 3 2 1 2 1 0
5 4 3 2 1 2 1 0
6 5 4 3 2 1 2 1 0
"""


def test_matrix_prints_the_string_papers_figure_5(capsys):
    assert main(["matrix", "string", "--length", "9", "--shift", "3", "--window", "1"]) == 0
    assert capsys.readouterr().out == FIGURE_5


@pytest.mark.parametrize("argv, last_row", [
    (["matrix", "rerope", "--window", "3"], "3 3 3 3 3 3 3 3 3 2 1 0"),
    (["matrix", "rerope", "--length", "6", "--window", "2", "--leaky", "4"], "2.75 2.5 2.25 2 1 0"),
    (["matrix", "self_extend", "--group-size", "2", "--window", "4"], "7 7 6 6 5 5 4 4 3 2 1 0"),
    (["matrix", "dca", "--chunk-size", "5", "--local-window", "1"], "5 4 3 2 5 4 3 2 3 2 1 0"),
    (["matrix", "lm_infinite", "--n-global", "2", "--n-local", "4", "--distance-limit", "6"],
     "6 6 . . . . . . 3 2 1 0"),
    (["matrix", "rope", "--length", "4"], "3 2 1 0"),
])
def test_matrix_of_each_method(capsys, argv, last_row):
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == last_row.split()


@pytest.mark.parametrize("argv, message", [
    (["matrix", "rerope", "--shift", "3"], "rerope does not take --shift; its flags: --window, --leaky, --train-length, --logit-scale"),
    (["matrix", "self_extend", "--group-size", "3", "--window", "4"], "multiple of group_size"),
    (["matrix", "yarn", "--factor", "2"], "RoPE-scaling method"),
    (["matrix", "strng"], "Did you mean: string"),
    (["matrix", "rope", "--window", "2"], "takes no parameters"),
])
def test_matrix_errors(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_ls_lists_every_method_with_defaults(capsys):
    from ropeshift.api import methods

    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in methods():
        assert f"  {name} " in out
    assert "defaults: window=L / 4, leaky=off, logit_scale=1" in out
    assert "defaults: chunk_size=3L / 4, local_window=L / 16" in out
    assert "defaults: shift=0.33 L, window=min(128, S // 4)" in out  # from the metadata, not patched in ls


def test_ls_defaults_come_from_the_parameter_metadata(capsys):
    from ropeshift.methods.registry import METHODS

    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name, cls in METHODS.items():
        for p in cls.PARAMS:
            if p.name != "train_length":
                assert f"{p.name}={p.default_text()}" in out, (name, p.name)


def test_matrix_string_with_default_window_on_a_short_length(capsys):
    # issue 8: the README's `ropeshift matrix string --length 12` failed (W = 128 >= S = 4)
    assert main(["matrix", "string", "--length", "12"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "string: shift=4, window=1, train_length=12"


@pytest.mark.parametrize("method", ["string", "rerope", "self_extend", "dca", "lm_infinite"])
@pytest.mark.parametrize("length", [3, 4, 8, 12, 33])
def test_every_attention_method_has_working_defaults_on_tiny_lengths(capsys, method, length):
    assert main(["matrix", method, "--length", str(length)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == length + 1


def test_matrix_length_one_says_why(capsys):
    assert main(["matrix", "string", "--length", "1"]) == 2
    err = capsys.readouterr().err
    assert "L=1 is too short" in err and "shift" not in err.split("error:")[1].split("needs")[0].replace("0 < S < L", "")


def test_method_flags_are_generated_from_metadata():
    from ropeshift.cli.main import build_parser
    from ropeshift.methods.registry import METHODS

    parser = build_parser(["needle"])
    needle = parser._subparsers._group_actions[0].choices["needle"]
    flags = {s for a in needle._actions for s in a.option_strings}
    for cls in METHODS._items.values():
        for p in cls.PARAMS:
            assert p.flag in flags
    assert {"--factor", "--target-length", "--beta-fast", "--short-factor"} <= flags
