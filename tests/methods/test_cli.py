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
    (["matrix", "rerope", "--shift", "3"], "rerope does not take --shift; its flags: --window, --train-length, --leaky"),
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
    assert "defaults: window=L/4" in out and "defaults: chunk_size=3L/4, local_window=L/16" in out
