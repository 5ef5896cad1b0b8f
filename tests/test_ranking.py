"""Remedy statistics on score sets small enough to check by hand."""

import math

import numpy as np
import pytest

from sweeper.ranking import TrialOutcome, prob_improvement, rank_points, scores, wilson_interval


def outcome(label, seed, verdict, metric, is_baseline=False):
    return TrialOutcome(label, is_baseline, seed, verdict, metric, 0.1)


def test_wilson_interval_known_values():
    # 3/3: centre (1 + z^2/6) / (1 + z^2/3), half-width z * sqrt(z^2/36) / (1 + z^2/3)
    low, high = wilson_interval(3, 3)
    assert low == pytest.approx(0.4385, abs=1e-4) and high == 1.0
    low, high = wilson_interval(0, 3)
    assert low == 0.0 and high == pytest.approx(0.5615, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_unhealthy_trials_score_worst_whatever_their_metric():
    got = scores([outcome("a", 0, "healthy", 0.5), outcome("a", 1, "collapsed", 0.9)], "max")
    assert got[0] == 0.5 and got[1] == -np.inf
    assert scores([outcome("a", 0, "healthy", 0.5)], "min")[0] == -0.5


def test_prob_improvement_counts_pairs_and_half_ties():
    assert prob_improvement(np.array([2.0, 3.0]), np.array([1.0, 1.0])) == 1.0
    assert prob_improvement(np.array([1.0]), np.array([1.0])) == 0.5
    # pairs: (1 vs 1) tie, (1 vs 2) loss, (3 vs 1) win, (3 vs 2) win -> (2 + 0.5) / 4
    assert prob_improvement(np.array([1.0, 3.0]), np.array([1.0, 2.0])) == 0.625
    assert math.isnan(prob_improvement(np.array([]), np.array([1.0])))


def test_rank_points_orders_and_judges_remedies():
    trials = [outcome("baseline", s, "stuck_zero", 0.42, is_baseline=True) for s in range(3)]
    trials += [outcome("grouped", s, "healthy", 0.8 + s / 100) for s in range(3)]
    trials += [outcome("half", 0, "healthy", 0.7), outcome("half", 1, "healthy", 0.75), outcome("half", 2, "collapsed", 0.4)]
    trials += [outcome("constant", s, "collapsed", 0.3) for s in range(3)]
    ranked = rank_points(trials, "max")
    assert [p["label"] for p in ranked] == ["grouped", "half", "baseline", "constant"]
    by_label = {p["label"]: p for p in ranked}
    assert by_label["grouped"]["verdict"] == "fixes" and by_label["grouped"]["prob_beats_baseline"] == 1.0
    assert by_label["grouped"]["median_metric"] == pytest.approx(0.81)
    # 2 healthy seeds beat all 3 baseline seeds; the collapsed one ties them: (6 + 0.5 * 3) / 9
    assert by_label["half"]["prob_beats_baseline"] == pytest.approx(7.5 / 9)
    assert by_label["half"]["verdict"] == "fixes"
    assert by_label["constant"]["verdict"] == "no_evidence"  # as broken as the baseline, not worse
    assert by_label["baseline"]["verdict"] == "baseline" and by_label["baseline"]["healthy_rate"] == 0.0


def test_a_remedy_that_breaks_a_healthy_baseline_is_harmful():
    trials = [outcome("baseline", s, "healthy", 0.8, is_baseline=True) for s in range(3)]
    trials += [outcome("bad", s, "non_finite", None) for s in range(3)]
    assert {p["label"]: p["verdict"] for p in rank_points(trials, "max")}["bad"] == "harmful"
