"""The detectors on small hand-made histories, one per verdict and per threshold edge."""

import math

import pytest

from sweeper.health import COLLAPSE_MARGIN, EXPLODING_BOUND, ZERO_LOSS_ATOL, check_report, diagnose


def reports(losses, metric=0.8, chance=0.4, oracle=0.9, grad_norm=1.0):
    return [
        {"step": i + 1, "loss": loss, "grad_norm": grad_norm, "ndcg": metric, "chance": chance, "oracle": oracle}
        for i, loss in enumerate(losses)
    ]


def verdict(history, mode="max", error=None):
    return diagnose(history, "ndcg", mode, error).verdict


def test_a_learning_run_is_healthy():
    assert verdict(reports([2.0, 1.5, 1.0])) == "healthy"


def test_error_wins_over_everything():
    assert verdict(reports([math.nan]), error="ValueError: bad shape") == "error"
    assert diagnose([], "ndcg", "max").verdict == "error"


def test_loss_exactly_zero_throughout_is_stuck_zero():
    assert verdict(reports([0.0, 0.0, 0.0])) == "stuck_zero"
    assert verdict(reports([ZERO_LOSS_ATOL, -ZERO_LOSS_ATOL])) == "stuck_zero"


def test_a_loss_that_only_reaches_zero_later_is_not_stuck():
    assert verdict(reports([0.3, 0.0, 0.0])) == "healthy"
    assert verdict(reports([ZERO_LOSS_ATOL * 2, 0.0])) == "healthy"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_metric_or_gradient(bad):
    assert verdict(reports([1.0, bad])) == "non_finite"
    assert verdict(reports([1.0], metric=bad)) == "non_finite"
    assert verdict(reports([1.0], grad_norm=bad)) == "non_finite"


def test_exploding_at_the_bound_edge():
    assert verdict(reports([1.0, EXPLODING_BOUND])) == "healthy"
    assert verdict(reports([1.0, EXPLODING_BOUND * 1.01])) == "exploding"
    assert verdict(reports([1.0], grad_norm=-EXPLODING_BOUND * 2)) == "exploding"


def test_collapsed_needs_the_metric_to_clear_chance_by_the_margin():
    margin = COLLAPSE_MARGIN * (0.9 - 0.4)
    assert verdict(reports([1.0], metric=0.4 + margin)) == "collapsed"
    assert verdict(reports([1.0], metric=0.4 + margin * 1.1)) == "healthy"
    assert verdict(reports([1.0], metric=0.3)) == "collapsed"


def test_collapsed_for_a_metric_to_minimise():
    assert verdict(reports([1.0], metric=0.5, chance=0.4, oracle=0.0), mode="min") == "collapsed"
    assert verdict(reports([1.0], metric=0.1, chance=0.4, oracle=0.0), mode="min") == "healthy"


def test_without_a_chance_level_collapse_cannot_be_told():
    history = [{"step": 1, "loss": 1.0, "grad_norm": 1.0, "ndcg": 0.0}]
    assert verdict(history) == "healthy"


def test_check_report_stops_a_diverged_trial_and_says_why():
    assert check_report({"step": 3, "loss": 1.0, "grad_norm": 2.0}, "ndcg") is None
    stop = check_report({"step": 3, "loss": math.nan, "grad_norm": 2.0}, "ndcg")
    assert stop.verdict == "non_finite" and "step 3" in stop.reason
    assert check_report({"step": 4, "loss": 3e6}, "ndcg").verdict == "exploding"
