"""The detectors on small hand-made histories, one per verdict and per threshold edge."""

import math

import pytest

from sweeper.health import DEFAULT, Thresholds, check_divergence, diagnose, is_number

T = DEFAULT


def reports(losses, metric=0.8, chance=0.4, oracle=0.9, grad_norm=1.0, **extra):
    return [
        {
            "step": i + 1,
            "loss": loss,
            "grad_norm": grad_norm,
            "ndcg": metric,
            "chance": chance,
            "oracle": oracle,
            **extra,
        }
        for i, loss in enumerate(losses)
    ]


def verdict(history, mode="max", error=None, limits=T):
    return diagnose(history, "ndcg", mode, error, limits).verdict


def test_a_learning_run_is_healthy():
    assert verdict(reports([2.0, 1.5, 1.0])) == "healthy"


def test_error_wins_over_everything():
    assert verdict(reports([math.nan]), error="ValueError: bad shape") == "error"
    assert diagnose([], "ndcg", "max").verdict == "error"


def test_loss_exactly_zero_throughout_is_stuck_zero():
    assert verdict(reports([0.0, 0.0, 0.0])) == "stuck_zero"
    assert verdict(reports([T.zero_loss_atol, -T.zero_loss_atol])) == "stuck_zero"


def test_a_loss_that_falls_to_zero_is_stuck_only_while_the_metric_stays_at_chance():
    fallen = [0.5, 0.1, T.near_zero_loss, 0.0, 0.0, 0.0]
    assert verdict(reports(fallen, metric=0.41)) == "stuck_zero"
    assert verdict(reports(fallen, metric=0.8)) == "healthy"  # a loss that reached zero by learning
    # half the reports must be near zero: here only the last two of six are
    assert verdict(reports([0.5, 0.4, 0.3, 0.2, 0.0, 0.0], metric=0.41)) == "collapsed"
    assert verdict(reports([0.5, 0.4, 0.3, T.near_zero_loss * 2, 0.0, 0.0], metric=0.41)) == "collapsed"


def test_zero_gradient_from_the_start_is_no_signal():
    assert verdict(reports([15.1, 15.1, 15.1], metric=0.41, grad_norm=7e-8)) == "no_signal"
    assert verdict(reports([15.1, 15.1], metric=0.41, grad_norm=T.no_signal_grad_norm * 2)) == "collapsed"
    # a zero loss with a zero gradient is reported as the zero loss it is
    assert verdict(reports([0.0, 0.0], grad_norm=0.0)) == "stuck_zero"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_metric_gradient_or_scale(bad):
    assert verdict(reports([1.0, bad])) == "non_finite"
    assert verdict(reports([1.0], metric=bad)) == "non_finite"
    assert verdict(reports([1.0], grad_norm=bad)) == "non_finite"
    assert verdict(reports([1.0], output_scale=bad)) == "non_finite"


def test_exploding_at_the_bound_edge():
    bound = T.exploding_bound
    assert verdict(reports([bound / 2, bound])) == "healthy"
    assert verdict(reports([bound / 2, bound * 1.01])) == "exploding"
    assert verdict(reports([1.0], grad_norm=-bound * 2)) == "exploding"
    assert verdict(reports([1.0], output_scale=bound * 2)) == "exploding"


def test_exploding_by_growth_within_the_window():
    # from 2 to 2000 (x1000) within 5 reports
    assert verdict(reports([2.0, 5.0, 20.0, 200.0, 2000.0])) == "exploding"
    assert verdict(reports([2.0, 5.0, 20.0, 200.0, 1999.0])) == "healthy"
    # the growth is measured from the window's smallest value, floored at growth_floor: 1e-6 -> 999 is not it
    assert verdict(reports([1e-6, 999.0])) == "healthy"
    assert verdict(reports([1e-6, 1000.0])) == "exploding"
    # growth spread over more reports than the window is not counted
    slow = [2.0 * 10 ** (i / 3) for i in range(10)]  # x10 every 3 reports: x1000 only over 9
    assert verdict(reports(slow)) == "healthy"


def test_collapsed_needs_the_metric_to_clear_chance_by_the_margin():
    margin = T.collapse_margin * (0.9 - 0.4)
    assert verdict(reports([1.0], metric=0.4 + margin)) == "collapsed"
    assert verdict(reports([1.0], metric=0.4 + margin * 1.1)) == "healthy"
    assert verdict(reports([1.0], metric=0.3)) == "collapsed"


def test_collapsed_for_a_metric_to_minimise():
    assert verdict(reports([1.0], metric=0.5, chance=0.4, oracle=0.0), mode="min") == "collapsed"
    assert verdict(reports([1.0], metric=0.1, chance=0.4, oracle=0.0), mode="min") == "healthy"


def test_a_declared_metric_floor():
    floor = Thresholds(metric_floor=0.7)
    assert verdict(reports([1.0], metric=0.69), limits=floor) == "collapsed"
    assert verdict(reports([1.0], metric=0.7), limits=floor) == "healthy"
    assert (
        verdict(reports([1.0], metric=0.3, chance=0.4, oracle=0.0), mode="min", limits=Thresholds(metric_floor=0.2))
        == "collapsed"
    )


def test_without_a_chance_level_collapse_cannot_be_told():
    history = [{"step": 1, "loss": 1.0, "grad_norm": 1.0, "ndcg": 0.0}]
    assert verdict(history) == "healthy"


def test_check_divergence_looks_at_the_last_report_and_says_why():
    assert check_divergence(reports([1.0, 2.0]), "ndcg") is None
    stop = check_divergence(reports([1.0, math.nan]), "ndcg")
    assert stop.verdict == "non_finite" and "step 2" in stop.reason
    assert check_divergence(reports([1.0, 3e6]), "ndcg").verdict == "exploding"
    assert check_divergence(reports([math.nan, 1.0]), "ndcg") is None
    assert check_divergence([], "ndcg") is None  # nothing reported yet: nothing diverged


def test_values_near_the_float_limit_are_judged_like_any_other():
    assert verdict(reports([1.0], grad_norm=1.7e308)) == "exploding"
    assert verdict(reports([1.0], metric=-1e297, chance=-1e308, oracle=1e308)) == "collapsed"  # margin: inf
    assert verdict([{"step": 1, "loss": 1.0, "grad_norm": 1.0, "ndcg": -1e297}]) == "healthy"  # no chance level


def test_a_report_value_is_a_number_or_not():
    assert all(is_number(v) for v in (0, 1.5, math.nan, -math.inf, 1e308))
    assert not any(is_number(v) for v in (None, True, "1.0", [1.0]))


def test_thresholds_overrides_are_checked():
    assert Thresholds.with_overrides({"exploding_bound": 10.0}).exploding_bound == 10.0
    with pytest.raises(ValueError, match="exploding_bnd"):
        Thresholds.with_overrides({"exploding_bnd": 10.0})


def test_the_detector_table_names_each_verdict_once_and_only_divergence_stops_a_trial():
    from sweeper.health import COLOURS, DETECTORS, DIVERGED, VERDICTS

    assert len(set(VERDICTS)) == len(VERDICTS) == len(DETECTORS) + 1
    assert set(COLOURS) == set(VERDICTS)
    assert DIVERGED == ("non_finite", "exploding")


def test_stops_early_is_what_stops_a_trial(monkeypatch):
    """`check_divergence` runs the live checks of the rows with `stops_early`, and only those: a trial stops
    with exactly the DIVERGED verdicts, and a row that no longer stops trials lets the trial run on."""
    from dataclasses import replace

    from sweeper import health

    exploding, nan = reports([1.0, 3e6]), reports([1.0, math.nan])
    stops = {check_divergence(h, "ndcg").verdict for h in (exploding, nan, reports([1.0, 1e4]))}
    assert stops == set(health.DIVERGED)

    def calm(row: health.Detector) -> health.Detector:
        return health.Detector(row.verdict, row.colour, False, check=lambda trial: None)

    monkeypatch.setattr(
        health, "DETECTORS", tuple(calm(d) if d.verdict == "exploding" else d for d in health.DETECTORS)
    )
    assert check_divergence(exploding, "ndcg") is None
    assert check_divergence(nan, "ndcg").verdict == "non_finite"
    for row in health.DETECTORS:  # a live check exactly where a row stops trials
        with pytest.raises(ValueError, match="a live check if it stops a trial early"):
            replace(row, stops_early=not row.stops_early)


def test_a_finished_trial_is_judged_by_the_divergence_that_stopped_it_first():
    # exploding at step 2 stops the trial there; a NaN after it (early_stop=False) does not change the verdict
    assert diagnose(reports([1.0, 3e6, math.nan]), "ndcg", "max").reason.endswith("at step 2")
    assert verdict(reports([1.0, 3e6, math.nan])) == "exploding"


# --- the instrument verdicts, at each threshold's edge ---
def _collapsed_run(**late_readings):
    """Ten reports at chance (accuracy 0.5, chance 0.5, oracle 1.0): collapsed; the readings are given to
    the last five reports (the late half the detectors read), the first five carry healthy ones."""
    early = {"grad_norm_ratio": 0.5, "dead_share": 0.0, "saturated_share": 0.0}
    return [
        {
            "step": i,
            "loss": 0.69,
            "grad_norm": 0.1,
            "acc": 0.5,
            "chance": 0.5,
            "oracle": 1.0,
            **(late_readings if i >= 5 else early),
        }
        for i in range(10)
    ]


@pytest.mark.parametrize(
    ("readings", "verdict"),
    [
        ({"grad_norm_ratio": 0.99e-3}, "vanishing_gradient"),
        ({"grad_norm_ratio": 1e-3}, "collapsed"),  # the bar itself is not vanished
        ({"dead_share": 0.5}, "dead_units"),
        ({"dead_share": 0.49}, "collapsed"),
        ({"saturated_share": 0.5}, "saturated"),
        ({"saturated_share": 0.49}, "collapsed"),
        # the order of the table decides when several apply
        # dead ReLUs pass back no gradient: that reads as vanished too, and the dead units are the cause
        ({"grad_norm_ratio": 0.0, "dead_share": 0.9, "saturated_share": 0.9}, "dead_units"),
        ({"grad_norm_ratio": 1e-5, "saturated_share": 0.9}, "vanishing_gradient"),
    ],
)
def test_instrument_verdicts_name_the_cause_of_a_collapse(readings, verdict):
    assert diagnose(_collapsed_run(**readings), "acc", "max").verdict == verdict


def test_instrument_readings_never_overrule_a_trial_that_learned():
    history = _collapsed_run(grad_norm_ratio=1e-6, dead_share=1.0, saturated_share=1.0)
    history[-1]["acc"] = 0.9
    assert diagnose(history, "acc", "max").verdict == "healthy"


def test_the_late_median_reads_past_one_noisy_probe():
    history = _collapsed_run(dead_share=0.9)
    history[-1]["dead_share"] = 0.0  # one probe of five says otherwise
    assert diagnose(history, "acc", "max").verdict == "dead_units"


def test_oscillation_needs_reversals_no_trend_and_a_visible_swing():
    from sweeper.health import oscillation

    zigzag = [0.5, 0.7, 0.5, 0.7, 0.5, 0.7]
    assert oscillation(zigzag, scale=0.5) is not None  # swing 0.2 >= 0.1 x 0.5
    assert oscillation(zigzag, scale=2.01) is None  # swing 0.2 < 0.1 x 2.01: noise
    assert oscillation([0.5, 0.7, 0.6, 0.8, 0.7, 0.9], scale=0.5) is None  # net +0.4 of a 1.0 path: a trend
    assert oscillation([0.5, 0.7, 0.5, 0.7], scale=0.5) is None  # 3 changes: too few to tell
    # 4 of 5 changes reverse (0.8 >= 0.6) and the net is 0 of the path
    assert oscillation([0.5, 0.7, 0.5, 0.5, 0.7, 0.5, 0.7], scale=0.5) is not None


def test_a_collapsed_metric_that_swings_is_oscillating():
    history = [
        {"step": i, "loss": 1.0, "grad_norm": 1.0, "acc": 0.5 + 0.2 * (i % 2), "chance": 0.6, "oracle": 1.0}
        for i in range(11)
    ]
    history[-1]["acc"] = 0.5  # ends at chance
    assert diagnose(history, "acc", "max").verdict == "oscillating"
    steady = [{**r, "acc": 0.5} for r in history]
    assert diagnose(steady, "acc", "max").verdict == "collapsed"


# --- the no-skill level: told apart from a model that learned nothing ---
def test_a_metric_that_does_not_pass_its_no_skill_level_is_collapsed():
    # beats chance by the practical margin (0.545 > 0.52 + 5% of 0.48), but not what shuffles reach
    history = reports([0.7, 0.69], metric=0.545, chance=0.52, oracle=1.0, no_skill=0.57)
    diagnosis = diagnose(history, "ndcg", "max")
    assert diagnosis.verdict == "collapsed" and "not told apart from no skill" in diagnosis.reason
    assert verdict(reports([0.7, 0.69], metric=0.58, chance=0.52, oracle=1.0, no_skill=0.57)) == "healthy"
    # min mode: below the level
    assert verdict(reports([1.0, 0.9], metric=10.0, chance=50.0, oracle=0.0, no_skill=12.0), mode="min") == "healthy"
    assert verdict(reports([1.0, 0.9], metric=13.0, chance=50.0, oracle=0.0, no_skill=12.0), mode="min") == "collapsed"


def test_a_trial_told_apart_from_no_skill_is_healthy_and_a_detector_is_a_warning():
    # val accuracy 1.0 on balanced labels with a zero gradient (a softmax's clipped loss): not no_signal
    learned = reports([0.0, 0.0, 0.0], metric=1.0, chance=0.5, oracle=1.0, grad_norm=0.0, no_skill=0.56)
    diagnosis = diagnose(learned, "ndcg", "max")
    assert diagnosis.verdict == "healthy"
    assert diagnosis.reason.startswith("warning: stuck_zero: ") and "no_signal: " in diagnosis.reason
    # without a no-skill level the old order stands, and a divergence or an error still decides
    assert verdict(reports([0.0, 0.0, 0.0], metric=1.0, chance=0.5, oracle=1.0, grad_norm=0.0)) == "stuck_zero"
    assert verdict(reports([1.0, math.nan], metric=1.0, chance=0.5, oracle=1.0, no_skill=0.56)) == "non_finite"
    assert verdict(learned, error="RuntimeError: boom") == "error"


def test_a_metric_the_untrained_model_already_had_does_not_overrule_a_detector():
    """One-item ListMLE lists: zero loss and gradient, and the random initial weights happen to rank by the
    features (NDCG 0.47 against chance 0.41, past the shuffles' 0.44). It reached that before its first step
    (`untrained`), so it learned nothing: the detectors decide. Having moved past it by the practical margin
    (5% of the chance-to-oracle gap, 0.025 here), it learned."""
    frozen = reports([0.0, 0.0, 0.0], metric=0.47, chance=0.41, oracle=0.91, grad_norm=0.0, no_skill=0.44)
    assert verdict([{**r, "untrained": 0.47} for r in frozen]) == "stuck_zero"
    assert verdict([{**r, "untrained": 0.45} for r in frozen]) == "stuck_zero"  # 0.02 past it: within the margin
    assert verdict([{**r, "untrained": 0.44} for r in frozen]) == "healthy"  # 0.03 past it


def test_training_that_learns_while_validation_does_not_is_memorising():
    """Labels the inputs cannot show: the training accuracy climbs from 0.52 to 0.9 (chance 0.5, oracle 1:
    margin 0.025), the validation accuracy stays at 0.5, under its no-skill level 0.56."""
    history = [
        {
            "step": s,
            "loss": 0.7 - 0.1 * s,
            "grad_norm": 1.0,
            "accuracy": a,
            "val_accuracy": 0.5,
            "chance": 0.5,
            "oracle": 1.0,
            "no_skill": 0.56,
        }
        for s, a in ((1, 0.52), (2, 0.7), (3, 0.9))
    ]
    diagnosis = diagnose(history, "val_accuracy", "max")
    assert diagnosis.verdict == "memorising" and diagnosis.reason.startswith("training accuracy 0.52 -> 0.9 learns")
    # training that stays at chance too is a plain collapse
    flat = [dict(report, accuracy=0.51) for report in history]
    assert diagnose(flat, "val_accuracy", "max").verdict == "collapsed"
    # so is a metric with no training counterpart
    assert diagnose(history, "accuracy", "max").verdict != "memorising"
