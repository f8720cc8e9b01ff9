"""The paired test of the headline: ``metrics.paired_difference`` on hand-worked examples.

Run: pytest tests/eval/test_metrics_paired.py -v
"""
from __future__ import annotations

import math

import pytest

from ropeshift.eval.metrics import paired_difference, t975


def test_one_stratum_worked_by_hand():
    # rope and a method on the same 8 prompts; d = method - rope = [0, 1, 0, 0, 0, 1, 0, 1]
    rope = [1, 0, 1, 1, 0, 0, 1, 0]
    other = [1, 1, 1, 1, 0, 1, 1, 1]
    # mean d = 3/8; sample variance = (5 (3/8)^2 + 3 (5/8)^2) / 7 = 1.875 / 7; se = sqrt(1.875 / 56)
    # t_0.975(7) = 2.365 -> half width 2.365 * 0.182981 = 0.432750
    g = paired_difference([(rope, other)])
    assert g.mean == pytest.approx(0.375)
    assert g.lo == pytest.approx(0.375 - 0.432750, abs=1e-6) and g.hi == pytest.approx(0.375 + 0.432750, abs=1e-6)
    assert g.n == 8 and not g.significant  # the interval [-0.058, 0.808] includes 0


def test_two_strata_weigh_equally():
    # stratum 1: d = [1, 1, 0, 0] (mean 0.5, s^2 = 1/3); stratum 2: d = [1, 1] (mean 1, s^2 = 0)
    a1, b1 = [0, 0, 1, 0], [1, 1, 1, 0]
    a2, b2 = [0, 0], [1, 1]
    g = paired_difference([(a1, b1), (a2, b2)])
    # mean = (0.5 + 1) / 2 = 0.75; se = sqrt(1/3 / 4 + 0 / 2) / 2 = 0.144338; df = 3 + 1 = 4, t = 2.776
    assert g.mean == pytest.approx(0.75)
    assert g.hi - g.mean == pytest.approx(2.776 * math.sqrt(1 / 12) / 2, abs=1e-9)
    assert g.significant and g.n == 6


def test_identical_methods_give_a_zero_interval_and_pairing_beats_independent_intervals():
    same = [1, 0, 1, 1, 0]
    g = paired_difference([(same, same)])
    assert (g.mean, g.lo, g.hi) == (0.0, 0.0, 0.0) and not g.significant
    # a consistent one-sample gain is significant when paired, though the two Wilson intervals overlap
    a = [0] * 5 + [1] * 25 + [0, 1] * 10
    b = [1] * 5 + [1] * 25 + [0, 1] * 10
    assert paired_difference([(a, b)]).significant


def test_t_quantiles_and_errors():
    assert t975(1) == 12.706 and t975(30) == 2.042 and 2.000 < t975(45) < 2.021
    assert t975(10 ** 6) == pytest.approx(1.96, abs=1e-3)
    assert math.isnan(paired_difference([([1], [0])]).lo)  # one pair: no interval
    with pytest.raises(ValueError, match="equally many"):
        paired_difference([([1, 0], [1])])
    with pytest.raises(ValueError, match="at least one stratum"):
        paired_difference([])
