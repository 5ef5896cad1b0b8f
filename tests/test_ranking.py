"""Remedy statistics on score sets small enough to check by hand."""

import math

import numpy as np
import pytest

from sweeper.ranking import (
    TrialOutcome,
    bootstrap_iqm_interval,
    compare_sweeps,
    comparison_scores,
    fill_missing_chance,
    finite_median,
    iqm,
    judge_claim,
    main_effects,
    metric_scores,
    paired_effect,
    prob_improvement,
    rank_points,
    scaled_statistic,
    wilson_interval,
)


def outcome(label, seed, verdict, metric, is_baseline=False, chance=0.4, loss=0.1, **knobs):
    return TrialOutcome(label, is_baseline, seed, verdict, metric, loss, chance, knobs)


def test_wilson_interval_known_values():
    # 3/3: centre (1 + z^2/6) / (1 + z^2/3), half-width z * sqrt(z^2/36) / (1 + z^2/3)
    low, high = wilson_interval(3, 3)
    assert low == pytest.approx(0.4385, abs=1e-4) and high == 1.0
    low, high = wilson_interval(0, 3)
    assert low == 0.0 and high == pytest.approx(0.5615, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_unhealthy_trials_rank_worst_and_count_at_chance():
    trials = [
        outcome("a", 0, "healthy", 0.5),
        outcome("a", 1, "collapsed", 0.9, chance=0.3),
        outcome("a", 2, "non_finite", None, chance=None),
    ]
    assert list(comparison_scores(trials, "max")) == [0.5, -np.inf, -np.inf]
    assert comparison_scores(trials[:1], "min")[0] == -0.5
    # no chance level for the third: the fallback (the sweep's worst final metric) stands in
    assert list(metric_scores(trials, "max", fallback=0.1)) == [0.5, 0.3, 0.1]


def test_iqm_and_its_bootstrap_interval():
    assert iqm(np.array([1.0, 2.0, 3.0, 100.0])) == 2.5  # the middle half of four values: 2 and 3
    assert iqm(np.array([1.0, 2.0, 3.0])) == 2.0
    assert bootstrap_iqm_interval(np.array([0.7, 0.7, 0.7])) == (pytest.approx(0.7), pytest.approx(0.7))
    low, high = bootstrap_iqm_interval(np.array([0.1, 0.5, 0.9]))
    assert 0.1 <= low < 0.5 < high <= 0.9
    assert bootstrap_iqm_interval(np.array([0.1, 0.5, 0.9])) == (low, high)  # seeded: reproducible


def test_statistics_of_values_near_the_float_limit_do_not_overflow():
    big = 1.7e308  # 2 * big is inf in float64, so the plain mean or median of [big, big] would be
    assert np.mean(np.array([1.0, 3.0])) == scaled_statistic(np.mean, np.array([1.0, 3.0])) == 2.0
    assert scaled_statistic(np.mean, np.array([big, big])) == big
    assert scaled_statistic(np.median, np.array([-np.inf, big, big, 0.0])) == big / 2  # infinities take part
    assert finite_median([1e308, big, None, math.inf]) == pytest.approx(1.35e308)
    assert iqm(np.array([-big, big, big, big])) == big  # the middle half: big and big
    assert bootstrap_iqm_interval(np.array([big, big, big])) == (pytest.approx(big), pytest.approx(big))
    low, high = bootstrap_iqm_interval(np.array([-big, 0.0, big]))
    assert -big <= low < 0.0 < high <= big


def test_prob_improvement_counts_pairs_and_half_ties():
    assert prob_improvement(np.array([2.0, 3.0]), np.array([1.0, 1.0])) == 1.0
    assert prob_improvement(np.array([1.0]), np.array([1.0])) == 0.5
    # pairs: (1 vs 1) tie, (1 vs 2) loss, (3 vs 1) win, (3 vs 2) win -> (2 + 0.5) / 4
    assert prob_improvement(np.array([1.0, 3.0]), np.array([1.0, 2.0])) == 0.625
    assert prob_improvement(np.array([-np.inf]), np.array([-np.inf])) == 0.5
    assert math.isnan(prob_improvement(np.array([]), np.array([1.0])))


def test_rank_points_orders_and_judges_remedies():
    trials = [outcome("baseline", s, "stuck_zero", 0.42, is_baseline=True) for s in range(3)]
    trials += [outcome("grouped", s, "healthy", 0.8 + s / 100) for s in range(3)]
    trials += [
        outcome("half", 0, "healthy", 0.7),
        outcome("half", 1, "healthy", 0.75),
        outcome("half", 2, "collapsed", 0.3),
    ]
    trials += [outcome("constant", s, "collapsed", 0.3) for s in range(3)]
    ranked = rank_points(trials, "max")
    assert [p["label"] for p in ranked] == ["grouped", "half", "baseline", "constant"]
    by_label = {p["label"]: p for p in ranked}
    grouped = by_label["grouped"]
    assert grouped["verdict"] == "fixes" and grouped["prob_beats_baseline"] == 1.0
    assert grouped["median"] == pytest.approx(0.81) and grouped["iqm"] == pytest.approx(0.81)
    # 2 healthy seeds beat all 3 baseline seeds; the collapsed one ties them: (6 + 0.5 * 3) / 9
    half = by_label["half"]
    assert half["prob_beats_baseline"] == pytest.approx(7.5 / 9) and half["verdict"] == "fixes"
    assert half["scores"] == [0.7, 0.75, 0.4]  # the collapsed seed counts at chance, not at its 0.3
    assert half["median"] == 0.7
    assert by_label["constant"]["verdict"] == "no_evidence"  # as broken as the baseline, not worse
    assert by_label["baseline"]["verdict"] == "baseline" and by_label["baseline"]["healthy_rate"] == 0.0
    assert by_label["baseline"]["scores"] == [0.4, 0.4, 0.4]


def test_without_a_baseline_trial_there_is_no_evidence():
    (point,) = rank_points([outcome("a", s, "healthy", 0.8) for s in range(3)], "max")
    assert point["prob_beats_baseline"] is None and point["verdict"] == "no_evidence"


def test_a_remedy_that_breaks_a_healthy_baseline_is_harmful():
    trials = [outcome("baseline", s, "healthy", 0.8, is_baseline=True) for s in range(3)]
    trials += [outcome("bad", s, "non_finite", None) for s in range(3)]
    assert {p["label"]: p["verdict"] for p in rank_points(trials, "max")}["bad"] == "harmful"


def factorial():
    """2x2 grid, 2 seeds: shape carries the fix, activation does nothing."""
    trials = []
    for shape in ("flat", "grouped"):
        for act in ("relu", "tanh"):
            for seed in range(2):
                good = shape == "grouped"
                trials.append(
                    outcome(
                        f"{shape}-{act}",
                        seed,
                        "healthy" if good else "stuck_zero",
                        0.9 if good else 0.45,
                        is_baseline=(shape, act) == ("flat", "relu"),
                        loss=1.0 if good else 0.0,
                        shape=shape,
                        act=act,
                    )
                )
    return trials


def test_main_effects_say_which_knob_carries_the_fix():
    effects = main_effects(factorial(), {"shape": ["flat", "grouped"], "act": ["relu", "tanh"]}, "max")
    assert [e["knob"] for e in effects] == ["shape", "act"]
    shape, act = effects
    assert shape["eta_squared_score"] == pytest.approx(1.0) and shape["eta_squared_healthy"] == pytest.approx(1.0)
    assert [v["healthy_rate"] for v in shape["values"]] == [0.0, 1.0]
    assert [v["mean_score"] for v in shape["values"]] == [pytest.approx(0.4), pytest.approx(0.9)]
    assert act["eta_squared_score"] == pytest.approx(0.0)


def test_importance_is_eta_squared_on_the_ranks_of_the_scores():
    # scores 1, 2 with k=x and 3, 100 with k=y: ranks 1, 2 | 3, 4 around 2.5: total 2.25 + 0.25 + 0.25 + 2.25 = 5,
    # between 2 * 1^2 + 2 * 1^2 = 4. On the scores themselves it would be 2500 / 7205 = 0.35, the 100 weighing most.
    def trials(far):
        return [
            outcome(f"k={k}", s, "healthy", metric, k=k)
            for s, (k, metric) in enumerate([("x", 1.0), ("x", 2.0), ("y", 3.0), ("y", far)])
        ]

    (effect,) = main_effects(trials(100.0), {"k": ["x", "y"]}, "max")
    assert effect["eta_squared_score"] == pytest.approx(0.8)
    assert effect["eta_squared_healthy"] is None  # every trial healthy: nothing to explain
    # a score near the float limit changes no rank, and its value's mean score stays finite
    (effect,) = main_effects(trials(1.7e308), {"k": ["x", "y"]}, "max")
    assert effect["eta_squared_score"] == pytest.approx(0.8)
    assert [v["mean_score"] for v in effect["values"]] == [1.5, pytest.approx(0.85e308)]


def test_paired_effect_compares_twins_that_differ_only_in_the_change():
    trials = factorial()
    defaults = {"shape": "flat", "act": "relu"}
    fix = paired_effect(trials, {"shape": "grouped"}, defaults, {}, "max")
    assert fix["pairs"] == 4 and fix["prob_with_beats_without"] == 1.0 and fix["share_improved"] == 1.0
    assert (fix["healthy_rate_with"], fix["healthy_rate_without"]) == (1.0, 0.0)
    assert fix["median_loss_without"] == 0.0
    nothing = paired_effect(trials, {"act": "tanh"}, defaults, {"shape": "grouped"}, "max")
    assert nothing["pairs"] == 2 and nothing["prob_with_beats_without"] == 0.5 and nothing["share_improved"] == 0.0
    assert paired_effect(trials, {"act": "elu"}, defaults, {}, "max") == {"pairs": 0}


def test_claims_are_judged_from_the_paired_effect():
    trials = factorial()
    defaults = {"shape": "flat", "act": "relu"}
    fix = paired_effect(trials, {"shape": "grouped"}, defaults, {}, "max")
    assert judge_claim(fix, "fixes", 1e-7) is True and judge_claim(fix, "no_effect", 1e-7) is False
    nothing = paired_effect(trials, {"act": "tanh"}, defaults, {"shape": "grouped"}, "max")
    assert judge_claim(nothing, "no_effect", 1e-7) is True and judge_claim(nothing, "fixes", 1e-7) is False
    # with flat lists the loss is exactly zero whatever the activation
    zero = paired_effect(trials, {"act": "tanh"}, defaults, {"shape": "flat"}, "max")
    assert zero["max_abs_loss_with"] == 0.0 and judge_claim(zero, "zero_loss", 1e-7) is True
    assert judge_claim(fix, "zero_loss", 1e-7) is False
    assert judge_claim({"pairs": 0}, "fixes", 1e-7) is None


def test_a_trial_without_a_chance_level_gets_that_of_its_seed():
    trials = [
        outcome("a", 0, "healthy", 0.9, chance=0.4),
        outcome("a", 1, "healthy", 0.9, chance=0.3),
        outcome("a", 2, "healthy", 0.9, chance=0.2),
        outcome("b", 1, "error", None, chance=None),
        outcome("b", 7, "error", None, chance=None),
    ]
    filled = fill_missing_chance(trials)
    assert [o.chance for o in filled] == [0.4, 0.3, 0.2, 0.3, 0.3]  # seed 7 has none: the sweep's median


def test_compare_sweeps_pairs_points_by_label():
    before = {"metric": "m", "mode": "max", "points": rank_points(factorial(), "max")}
    improved = [TrialOutcome(o.label, o.is_baseline, o.seed, "healthy", 0.95, 1.0, 0.4, o.knobs) for o in factorial()]
    after = {"metric": "m", "mode": "max", "points": rank_points(improved, "max")}
    rows = {r["label"]: r for r in compare_sweeps(before, after)}
    assert rows["grouped-relu"]["prob_after_beats_before"] == 1.0  # 0.95 beats 0.9 in every seed pair
    assert rows["flat-relu"]["verdict_before"] == "baseline" and rows["flat-relu"]["healthy_after"] == "2/2"
    with pytest.raises(ValueError, match="different metrics"):
        compare_sweeps(before, {**after, "metric": "other"})
