"""Position-frequency analysis. Run: pytest tests/eval/test_freq.py -v"""
from __future__ import annotations

import numpy as np
import pytest

from ropeshift.cli.main import main
from ropeshift.eval import freq


def test_matches_the_definition():
    lengths = np.array([3, 7, 1, 10, 25])
    L = 10
    pieces = freq.chunk(lengths, L)
    assert sorted(pieces.tolist()) == [1, 3, 5, 7, 10, 10, 10]
    brute = [sum(max(s - i, 0) for s in pieces) for i in range(L)]
    assert freq.position_frequency(lengths, L).tolist() == brute


def test_concatenated_share_beyond_half_is_a_quarter():
    L = 1000
    f = freq.position_frequency(freq.synthetic_lengths("concatenated", L, 10), L)
    assert freq.share_beyond(f, L // 2) == pytest.approx(0.25, abs=1e-3)
    natural = freq.position_frequency(freq.synthetic_lengths("natural", L, 2000, seed=1), L)
    assert freq.share_beyond(natural, L // 2) < 0.25


def test_cli_prints_shares_and_plots(tmp_path, capsys):
    lengths = tmp_path / "lengths.txt"
    lengths.write_text("100\n2000\n50\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("one two three " * 50)
    png = tmp_path / "f.png"
    assert main(["freq", "--train-length", "512", "--docs", "100", "--lengths-file", str(lengths),
                 "--folder", str(tmp_path / "docs"), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for name in ("natural", "uniform", "concatenated", "lengths.txt", "docs"):
        assert name in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["freq", "--dist", "gaussian"]) == 2
