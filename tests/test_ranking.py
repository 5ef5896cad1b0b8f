"""Remedy statistics on score sets small enough to check by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from sweeper.analysis import compare, rank_points
from sweeper.evidence import make_design, wilson
from sweeper.ranking import (
    TrialOutcome,
    by_seed,
    centre,
    centre_interval,
    claim_p_value,
    comparison_scores,
    fill_missing_chance,
    finite_median,
    iqm,
    main_effects,
    metric_scores,
    paired_effect,
    scaled_statistic,
    twin_pairs,
)
from sweeper.results import PairedEffect

from conftest import made_ranking

FIXED3 = make_design("fixed", 3, 3, 3)


def outcome(label, seed, verdict, metric, is_baseline=False, chance=0.4, loss=0.1, **knobs):
    return TrialOutcome(label, is_baseline, seed, verdict, metric, loss, chance, knobs)


def test_wilson_interval_known_values():
    # 3/3: centre (1 + z^2/6) / (1 + z^2/3), half-width z * sqrt(z^2/36) / (1 + z^2/3)
    low, high = wilson(3, 3)
    assert low == pytest.approx(0.4385, abs=1e-4) and high == 1.0
    low, high = wilson(0, 3)
    assert low == 0.0 and high == pytest.approx(0.5615, abs=1e-4)
    low, high = wilson(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)


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


def test_iqm():
    assert iqm(np.array([1.0, 2.0, 3.0, 100.0])) == 2.5  # the middle half of four values: 2 and 3
    assert iqm(np.array([1.0, 2.0, 3.0])) == 2.0


def test_statistics_of_values_near_the_float_limit_do_not_overflow():
    big = 1.7e308  # 2 * big is inf in float64, so the plain mean or median of [big, big] would be
    assert np.mean(np.array([1.0, 3.0])) == scaled_statistic(np.mean, np.array([1.0, 3.0])) == 2.0
    assert scaled_statistic(np.mean, np.array([big, big])) == big
    assert scaled_statistic(np.median, np.array([-np.inf, big, big, 0.0])) == big / 2  # infinities take part
    assert finite_median([1e308, big, None, math.inf]) == pytest.approx(1.35e308)
    assert iqm(np.array([-big, big, big, big])) == big  # the middle half: big and big
    assert centre(np.array([big, big, big])) == (pytest.approx(big), "mean")


def test_the_centre_is_the_mean_below_four_seeds_and_the_iqm_from_four():
    assert centre(np.array([1.0, 2.0, 30.0])) == (11.0, "mean")
    assert centre(np.array([1.0, 2.0, 3.0, 100.0])) == (2.5, "IQM")
    assert centre(np.array([np.nan])) == (None, "mean")


def test_seeds_are_read_in_order_up_to_the_first_gap():
    trials = [outcome("a", s, "healthy", 0.5) for s in (0, 1, 3)]
    assert [o.seed for o in by_seed(trials)["a"]] == [0, 1]
    later = [outcome("a", s, "healthy", 0.5) for s in (7, 8, 10)]  # a sweep whose seeds start at 7
    assert [o.seed for o in by_seed(later, first_seed=7)["a"]] == [7, 8] and by_seed(later)["a"] == []


def test_rank_points_orders_and_judges_remedies():
    trials = [outcome("baseline", s, "stuck_zero", 0.42, is_baseline=True) for s in range(3)]
    trials += [outcome("grouped", s, "healthy", 0.8 + s / 100) for s in range(3)]
    trials += [
        outcome("half", 0, "healthy", 0.7),
        outcome("half", 1, "healthy", 0.75),
        outcome("half", 2, "collapsed", 0.3),
    ]
    trials += [outcome("constant", s, "collapsed", 0.3) for s in range(3)]
    ranked = rank_points(trials, "max", FIXED3)
    assert [p.label for p in ranked] == ["grouped", "half", "baseline", "constant"]
    by_label = {p.label: p for p in ranked}
    grouped = by_label["grouped"]
    # 3 seeds against 3: the best split of 6 has probability 1/C(6, 3) = 1/20, doubled for the two directions
    assert grouped.test.prob_superiority == 1.0 and grouped.test.p_fixes == pytest.approx(1 / 20)
    assert grouped.test.p_value == pytest.approx(0.1) and grouped.p_adjusted == pytest.approx(0.3)
    assert grouped.verdict == "no_evidence"  # 3 seeds a side cannot carry a verdict at alpha 0.05
    assert grouped.median_healthy_metric == pytest.approx(0.81) and grouped.score_centre_kind == "mean"
    half = by_label["half"]
    # 2 healthy seeds beat all 3 baseline seeds; the collapsed one ties them: (6 + 0.5 * 3) / 9
    assert half.test.prob_superiority == pytest.approx(7.5 / 9)
    assert half.scores == (0.7, 0.75, 0.4)  # the collapsed seed's score is the chance level, not its 0.3
    assert half.median_healthy_metric == 0.725 and half.unhealthy == 1  # the real metric, healthy seeds
    assert by_label["constant"].test.p_value == 1.0  # as broken as the baseline, not worse
    baseline = by_label["baseline"]
    assert baseline.verdict == "baseline" and baseline.healthy_rate == 0.0 and baseline.test is None


def test_a_remedy_is_called_once_its_seeds_can_carry_the_test():
    design = make_design("fixed", 2, 8, 8)
    trials = [outcome("baseline", s, "stuck_zero", 0.42, is_baseline=True) for s in range(8)]
    trials += [outcome("grouped", s, "healthy", 0.8) for s in range(8)]
    trials += [outcome("other", s, "stuck_zero", 0.42) for s in range(8)]
    points = {p.label: p for p in rank_points(trials, "max", design)}
    # p = 2 / C(16, 8) = 1.6e-4, x2 points by Holm
    assert points["grouped"].verdict == "fixes" and points["grouped"].p_adjusted == pytest.approx(2 * 2 / 12870)
    assert points["other"].verdict == "no_evidence"
    assert points["grouped"].test.healthy_rate_difference == 1.0


def test_a_point_without_a_finished_trial_keeps_the_family_waiting():
    design = make_design("fixed", 2, 8, 8)
    trials = [outcome("baseline", s, "stuck_zero", 0.42, is_baseline=True) for s in range(8)]
    trials += [outcome("grouped", s, "healthy", 0.8) for s in range(8)]
    (point, _) = rank_points(trials, "max", design, ["baseline", "grouped", "lost"])
    assert point.label == "grouped" and point.verdict == "pending"  # Holm cannot count without "lost"


def test_without_a_baseline_trial_a_point_waits_for_it():
    (point,) = rank_points([outcome("a", s, "healthy", 0.8) for s in range(3)], "max", FIXED3)
    assert point.test.p_value is None and point.verdict == "pending"


def test_the_ranking_follows_the_evidence_before_the_healthy_rate():
    design = make_design("fixed", 3, 10, 10)
    trials = [outcome("baseline", s, "healthy" if s < 8 else "stuck_zero", 0.5 + s / 100, True) for s in range(10)]
    trials += [outcome("shown", s, "healthy" if s else "collapsed", 0.9 + s / 1000) for s in range(10)]  # 9/10
    trials += [outcome("same", s, "healthy", 0.5 + s / 100) for s in range(10)]  # 10/10, the baseline's metric
    trials += [outcome("worse", s, "non_finite", None) for s in range(10)]
    ranked = rank_points(trials, "max", design)
    assert [(p.label, p.verdict) for p in ranked] == [
        ("shown", "fixes"),  # a healthy rate below same's, but shown to fix it
        ("same", "no_evidence"),
        ("baseline", "baseline"),
        ("worse", "harmful"),
    ]


def test_a_remedy_that_breaks_a_healthy_baseline_is_harmful():
    design = make_design("fixed", 1, 6, 6)
    trials = [outcome("baseline", s, "healthy", 0.8, is_baseline=True) for s in range(6)]
    trials += [outcome("bad", s, "non_finite", None) for s in range(6)]
    assert {p.label: p.verdict for p in rank_points(trials, "max", design)}["bad"] == "harmful"


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
    assert [e.knob for e in effects] == ["shape", "act"]
    shape, act = effects
    assert shape.eta_squared_score == pytest.approx(1.0) and shape.eta_squared_healthy == pytest.approx(1.0)
    assert [v.healthy_rate for v in shape.values] == [0.0, 1.0]
    assert [v.mean_score for v in shape.values] == [pytest.approx(0.4), pytest.approx(0.9)]
    assert act.eta_squared_score == pytest.approx(0.0)


def test_importance_is_eta_squared_on_the_ranks_of_the_scores():
    # scores 1, 2 with k=x and 3, 100 with k=y: ranks 1, 2 | 3, 4 around 2.5: total 2.25 + 0.25 + 0.25 + 2.25 = 5,
    # between 2 * 1^2 + 2 * 1^2 = 4. On the scores themselves it would be 2500 / 7205 = 0.35, the 100 weighing most.
    def trials(far):
        return [
            outcome(f"k={k}", s, "healthy", metric, k=k)
            for s, (k, metric) in enumerate([("x", 1.0), ("x", 2.0), ("y", 3.0), ("y", far)])
        ]

    (effect,) = main_effects(trials(100.0), {"k": ["x", "y"]}, "max")
    assert effect.eta_squared_score == pytest.approx(0.8)
    assert effect.eta_squared_healthy is None  # every trial healthy: nothing to explain
    # a score near the float limit changes no rank, and its value's mean score stays finite
    (effect,) = main_effects(trials(1.7e308), {"k": ["x", "y"]}, "max")
    assert effect.eta_squared_score == pytest.approx(0.8)
    assert [v.mean_score for v in effect.values] == [1.5, pytest.approx(0.85e308)]


def test_paired_effect_compares_twins_that_differ_only_in_the_change():
    trials = factorial()
    defaults = {"shape": "flat", "act": "relu"}
    fix = paired_effect(twin_pairs(trials, {"shape": "grouped"}, defaults, {}), "max", None)
    assert fix.pairs == 4 and fix.prob_with_beats_without == 1.0 and fix.improved == 4
    assert (fix.healthy_rate_with, fix.healthy_rate_without) == (1.0, 0.0)
    assert fix.median_loss_without == 0.0
    nothing = paired_effect(twin_pairs(trials, {"act": "tanh"}, defaults, {"shape": "grouped"}), "max", None)
    assert nothing.pairs == 2 and nothing.prob_with_beats_without == 0.5 and nothing.tied == 2
    none = paired_effect(twin_pairs(trials, {"act": "elu"}, defaults, {}), "max", None)
    assert none == PairedEffect(pairs=0) and none.to_json() == {"pairs": 0}


def seeds(improved: int = 0, worsened: int = 0, tied: int = 0) -> PairedEffect:
    """What a claim's test reads: one pair a seed, improved, worsened or tied."""
    n = improved + worsened + tied
    return PairedEffect(n, improved, worsened, tied, seeds=n, seeds_improved=improved, seeds_worsened=worsened)


def test_claims_get_a_sign_test_on_their_seeds():
    effect = seeds(improved=8, tied=2)
    assert claim_p_value(effect, "fixes", None) == pytest.approx(0.5**8)  # 8 of 8 untied seeds improve
    assert claim_p_value(effect, "harmful", None) == 1.0
    assert claim_p_value(seeds(tied=4), "fixes", None) == 1.0
    # every seed tied: shown when untied seeds are shown rarer than 2 x margin: 30 tied seeds, P = 0.6^30, x2
    assert claim_p_value(seeds(tied=30), "no_effect", 0.2) == pytest.approx(2 * 0.6**30)
    # ... but 4 tied seeds show nothing: 2 x 0.8^4
    assert claim_p_value(seeds(tied=4), "no_effect", 0.1) == pytest.approx(2 * 0.8**4)
    # 5 improved, 5 worsened of 10: the share improved must be shown above 0.3 and below 0.7:
    # P(X >= 5 | 10, 0.3) = 0.1503, the larger of the two sides, x2
    assert claim_p_value(seeds(improved=5, worsened=5), "no_effect", 0.2) == pytest.approx(2 * 0.1503, abs=2e-4)
    assert claim_p_value(effect, "zero_loss", None) is None
    assert claim_p_value(PairedEffect(pairs=0), "fixes", None) is None
    assert claim_p_value(PairedEffect(pairs=3, tied=3, both_unhealthy=3), "no_effect", 0.2) is None  # nothing decides


def contexts(seed_effects: dict[int, float], contexts: int, noise: float = 0.0, rng=None) -> list:
    """Twin trials of one change in `contexts` grid points: on seed s the change moves the metric by
    seed_effects[s] (plus Gaussian noise a pair, if any); every trial healthy."""
    trials = []
    for context in range(contexts):
        for seed, effect in seed_effects.items():
            base = 0.5 + 0.01 * context
            moved = base + effect + (noise * rng.standard_normal() if noise else 0.0)
            trials.append(TrialOutcome(f"c{context}", False, seed, "healthy", base, 1.0, 0.0, {"c": context, "x": 0}))
            trials.append(TrialOutcome(f"c{context}x", False, seed, "healthy", moved, 1.0, 0.0, {"c": context, "x": 1}))
    return trials


def claim_p(trials) -> float:
    return claim_p_value(paired_effect(twin_pairs(trials, {"x": 1}, {"x": 0}, {}), "max", None), "fixes", None)


def test_a_seed_counts_once_however_many_grid_points_pair_it():
    # +0.04 on 4 of 6 seeds, -0.04 on the other 2, the same in 12 contexts: 48 pairs improved, 24 worsened
    # (a pair-level sign test: p = 0.0032), but by seed 4 of 6: p = 22/64, not shown
    coin_flip = contexts({0: 0.04, 1: 0.04, 2: -0.04, 3: 0.04, 4: -0.04, 5: 0.04}, contexts=12)
    effect = paired_effect(twin_pairs(coin_flip, {"x": 1}, {"x": 0}, {}), "max", None)
    assert (effect.improved, effect.worsened, effect.seeds_improved, effect.seeds_worsened) == (48, 24, 4, 2)
    assert claim_p(coin_flip) == pytest.approx(22 / 64)
    # the same effect on every seed: 6 of 6, p = 1/64, which holds as a sweep's only claim at alpha 0.05
    assert claim_p(contexts(dict.fromkeys(range(6), 0.04), contexts=12)) == pytest.approx(1 / 64)


def test_twins_that_both_failed_decide_nothing():
    failed = [outcome("a", s, "collapsed", 0.4, x=0) for s in range(5)] + [
        outcome("b", s, "collapsed", 0.4, x=1) for s in range(5)
    ]
    effect = paired_effect(twin_pairs(failed, {"x": 1}, {"x": 0}, {}), "max", None)
    assert effect.pairs == 5 and effect.both_unhealthy == 5 and effect.seeds == 0
    assert claim_p_value(effect, "no_effect", 0.2) is None  # not "no effect shown": nothing was compared


@pytest.mark.slow
def test_pooled_claims_keep_the_family_error_rate_with_a_seed_interaction():
    """1000 sweeps of 3 do-nothing claims, each pooled over 10 contexts on 10 seeds, a seed-by-change
    interaction of 0.3 of a pair's variance: Holm over the claims calls any at most alpha + 0.01 (upper 95%
    bound), where counting every pair as independent calls one far more often. Random-number seeds below
    1000; nothing here was tuned."""
    from sweeper.evidence import adjust

    rng = np.random.default_rng(7)
    sweeps, alpha = 1000, 0.05
    false = {"by seed": 0, "by pair": 0}
    for _ in range(sweeps):
        by_seed, by_pair = [], []
        for _claim in range(3):
            interaction = {seed: np.sqrt(0.3) * rng.standard_normal() for seed in range(10)}
            pairs = twin_pairs(contexts(interaction, contexts=10, noise=np.sqrt(0.7), rng=rng), {"x": 1}, {"x": 0}, {})
            effect = paired_effect(pairs, "max", None)
            by_seed.append(claim_p_value(effect, "fixes", None))
            untied = effect.improved + effect.worsened
            by_pair.append(stats.binomtest(effect.improved, untied, 0.5, alternative="greater").pvalue)
        false["by seed"] += any(p <= alpha for p in adjust(by_seed, "holm"))
        false["by pair"] += any(p <= alpha for p in adjust(by_pair, "holm"))
    upper = stats.binomtest(false["by seed"], sweeps).proportion_ci(0.95, method="exact").high
    assert upper <= alpha + 0.01, (false, upper)
    assert false["by pair"] / sweeps > 2 * alpha, false  # the error the seed as the unit removes


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


def test_compare_pairs_points_by_label():
    design = make_design("fixed", 3, 2, 2)
    before = made_ranking(rank_points(factorial(), "max", design))
    improved = [TrialOutcome(o.label, o.is_baseline, o.seed, "healthy", 0.95, 1.0, 0.4, o.knobs) for o in factorial()]
    after = made_ranking(rank_points(improved, "max", design))
    rows = {r.label: r for r in compare(before, after)}
    assert rows["grouped-relu"].prob_after_beats_before == 1.0  # 0.95 beats 0.9 in every seed pair
    assert rows["flat-relu"].verdict_before == "baseline" and rows["flat-relu"].healthy_after == "2/2"
    with pytest.raises(ValueError, match="different metrics"):
        compare(before, made_ranking(after.points, metric="other"))


def test_a_claim_is_not_testable_where_the_workload_declares_the_outcome_fixed(tmp_path):
    from sweeper.analysis import judge_claims
    from sweeper.spec import load_specs
    from sweeper.workload import load

    (tmp_path / "spec.yaml").write_text(
        "workload: listmle\nseeds: 6\ndesign: fixed\n"
        "grid: {list_shape: [flattened, grouped, vector], hidden_activation: [relu, tanh]}\n"
        "claims:\n"
        "  - {claim: tanh fixes it, set: {hidden_activation: tanh}, expect: fixes}\n"
        "  - {claim: tanh fixes flat lists, set: {hidden_activation: tanh}, where: {list_shape: flattened}, "
        "expect: fixes}\n"
        "  - {claim: grouping fixes it, set: {list_shape: grouped}, where: {hidden_activation: relu}, expect: fixes}\n"
    )
    (spec,) = load_specs(tmp_path / "spec.yaml")
    trials = [
        TrialOutcome(
            p.label,
            p.is_baseline,
            seed,
            "healthy" if p.knobs["list_shape"] == "grouped" else "stuck_zero",
            0.8 + seed / 100 + (0.05 if p.knobs["hidden_activation"] == "tanh" else 0.0),
            1.0,
            0.4,
            p.knobs,
        )
        for p in spec.points
        for seed in range(6)
    ]
    every_tanh, flat_tanh, grouping = judge_claims(spec, load("listmle"), trials)
    # tanh is judged on grouped lists alone: 6 twin pairs, each improved
    assert every_tanh.testable and len(every_tanh.left_out) == 2 and every_tanh.measured.pairs == 6
    assert every_tanh.p_value == pytest.approx(0.5**6) and every_tanh.status == "holds"  # Holm x2: 0.031
    assert flat_tanh.status == "not testable here" and flat_tanh.p_value is None  # not in the family
    assert "one-item lists" in flat_tanh.left_out[0]
    # grouping's twins are flattened, but the grouped side is not fixed: testable, every pair improved
    assert grouping.testable and grouping.left_out == () and grouping.measured.improved == 6
    assert grouping.p_adjusted == pytest.approx(2 * 0.5**6) and grouping.status == "holds"


def test_the_centre_interval_by_hand_and_only_where_every_seed_is_healthy():
    """3 seeds: the mean's t interval, 0.8 +- t(0.975, 2) * 0.1 / sqrt(3). 4 seeds: one trimmed a side, the
    winsorized values [0.7, 0.7, 0.9, 0.9] (sd 0.1155) over (1 - 1/2) sqrt(4), t on 1 degree of freedom."""
    low, high = centre_interval(np.array([0.7, 0.8, 0.9]), every_seed_healthy=True)
    assert (low + high) / 2 == pytest.approx(0.8) and high - 0.8 == pytest.approx(4.302653 * 0.1 / math.sqrt(3))
    low, high = centre_interval(np.array([0.1, 0.7, 0.9, 2.0]), every_seed_healthy=True)
    assert (low + high) / 2 == pytest.approx(0.8)
    assert high - 0.8 == pytest.approx(12.706205 * np.std([0.7, 0.7, 0.9, 0.9], ddof=1) / (0.5 * 2), rel=1e-5)
    assert centre_interval(np.array([0.7, 0.8, 0.0]), every_seed_healthy=False) is None
    # an accuracy's interval stops at 1, a loss's at 0
    assert centre_interval(np.array([0.9, 0.95, 1.0]), True, best=1.0)[1] == 1.0
    assert centre_interval(np.array([0.01, 0.05, 0.1]), True, best=0.0, mode="min")[0] == 0.0
    assert centre_interval(np.array([0.7]), every_seed_healthy=True) is None


def test_the_centre_interval_holds_at_3_to_10_seeds_where_a_bootstrap_does_not():
    """400 samples of 3, 5 and 10 normal seeds (random-number seed 43): the interval holds the centre (the
    mean below 4 seeds, the interquartile mean from 4) in at least 92%; the percentile bootstrap, at 3 seeds,
    in far fewer (its resamples of 3 values cannot show the spread they have not seen)."""
    rng = np.random.default_rng(43)
    for n in (3, 5, 10):
        samples = rng.normal(0.8, 0.05, (400, n))
        held = [lo <= 0.8 <= hi for lo, hi in (centre_interval(s, True) for s in samples)]
        assert np.mean(held) >= 0.92, (n, np.mean(held))
    boot = [
        stats.bootstrap((s,), np.mean, n_resamples=499, method="percentile", rng=1).confidence_interval
        for s in rng.normal(0.8, 0.05, (200, 3))
    ]
    assert np.mean([b.low <= 0.8 <= b.high for b in boot]) < 0.85
