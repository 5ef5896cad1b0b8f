"""The verdicts' tests and the seeding design: small cases checked by hand, then synthetic sweeps run through
the real decision code (`evidence.simulate_sweep`: `seeds_wanted`, then `decide`).

The simulations draw from random-number seeds below 1000; the design's constants were chosen on seeds 1000
and up (bench/design_sim.py), so no seed here both tuned and judges."""

import math

import numpy as np
import pytest
from scipy import stats

from sweeper import evidence
from sweeper.evidence import SimulatedPoint, adjust, make_design, metric_shift, rank_test, seeds_wanted

INF = -math.inf


def test_the_rank_test_is_the_exact_mann_whitney_test():
    x, y = [3.0, 5.0, 9.0], [1.0, 2.0, 4.0, 6.0, 7.0]
    test = rank_test(x, y)
    assert test.exact and test.p_fixes == pytest.approx(stats.mannwhitneyu(x, y, alternative="greater").pvalue)
    assert test.prob_superiority == pytest.approx(10 / 15)
    # with ties (two unhealthy seeds in each): the permutation null, as scipy computes it by enumeration
    x, y = [INF, 5.0, 9.0], [INF, INF, 4.0, 6.0, 7.0]
    exact = stats.mannwhitneyu(x, y, alternative="greater", method=stats.PermutationMethod(n_resamples=np.inf))
    assert rank_test(x, y).p_fixes == pytest.approx(exact.pvalue)


def test_a_perfect_split_has_the_smallest_p_value_its_sizes_allow():
    test = rank_test([1.0] * 3, [INF] * 3)
    assert test.p_fixes == pytest.approx(1 / math.comb(6, 3)) and test.p_harmful == 1.0
    assert test.p_value == pytest.approx(2 / 20)
    # all tied: nothing either way
    assert rank_test([INF] * 3, [INF] * 9).p_value == 1.0
    assert rank_test([], [1.0]) is None


def test_large_samples_use_a_seeded_permutation_sample():
    test = rank_test(np.arange(10.0) + 100, np.r_[np.full(20, INF), np.arange(20.0)])
    assert not test.exact and test.p_fixes == pytest.approx(1 / (evidence.MONTE_CARLO_RESAMPLES + 1))


def test_holm_and_benjamini_hochberg():
    assert adjust([0.01, 0.04, 0.03, 0.5], "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert adjust([0.01, 0.04, 0.03, 0.5], "bh") == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert adjust([], "holm") == []


def test_the_healthy_rate_difference_and_its_exact_test():
    rate = evidence.rate_test(10, 10, 20, 40)
    assert rate.difference == 0.5 and rate.interval[0] < 0.5 < rate.interval[1]
    assert rate.p_fixes < 0.01 and rate.p_harmful == 1.0
    assert evidence.rate_test(0, 3, 0, 9).p_fixes == 1.0  # nothing varies


def test_the_metric_shift_is_hodges_lehmann_with_the_moses_interval():
    shift = metric_shift(np.arange(10.0) + 5, np.arange(10.0))
    assert shift is not None and shift.estimate == 5.0 and shift.low < 5.0 < shift.high
    assert metric_shift([1.0, INF], [INF]) is None
    assert metric_shift([1.0], [0.0]).low == -math.inf  # one seed a side: no interval at 95%


def test_the_adaptive_design_doubles_seeds_and_gives_the_baseline_more():
    design = make_design("adaptive", 20, 3, 10)
    assert design.looks == (3, 6, 10) and design.baseline_looks == (9, 18, 30)
    assert make_design("fixed", 20, 3, 10).looks == (3,)
    assert make_design("adaptive", 4, 3, 3).kind == "fixed"  # nothing to adapt
    # 3 seeds a side: 2 / C(6, 3) = 0.1 at best, x3 points: no verdict can reach 0.05
    assert make_design("fixed", 3, 3, 3).smallest_adjusted_p(3) == pytest.approx(0.3)
    assert design.smallest_adjusted_p(20) < 1e-6


def test_a_hopeless_point_is_dropped_at_the_first_look_and_a_promising_one_goes_on():
    design = make_design("adaptive", 2, 3, 10)
    scores = {"baseline": [INF] * 6, "same": [INF] * 3, "fix": [1.0] * 3}
    states, baseline_seeds, done = seeds_wanted(design, scores, "baseline")
    assert states["same"].status == "dropped" and states["same"].dropped_at == 3
    assert states["fix"].seeds_wanted == 6 and baseline_seeds == design.baseline_looks[1] and not done


def test_a_point_is_decided_only_at_its_final_look():
    design = make_design("adaptive", 1, 3, 6)
    scores = {"baseline": [INF] * design.baseline_looks[0], "fix": [1.0] * 3}
    decided = evidence.decide(design, scores, {k: [v > INF for v in s] for k, s in scores.items()}, "baseline")
    assert decided["fix"].verdict == "pending"
    scores = {"baseline": [INF] * design.baseline_looks[-1], "fix": [1.0] * 6}
    decided = evidence.decide(design, scores, {k: [v > INF for v in s] for k, s in scores.items()}, "baseline")
    assert decided["fix"].verdict == "fixes" and decided["fix"].replicated


def simulate(design, baseline, points, sweeps, seed, correlation=0.5):
    rng = np.random.default_rng(seed)
    return [evidence.simulate_sweep(design, baseline, points, rng, correlation) for _ in range(sweeps)]


def upper_95(failures: int, trials: int) -> float:
    return float(stats.binomtest(failures, trials).proportion_ci(0.95, method="exact").high)


def test_a_small_simulation_of_the_measured_failure_calls_no_do_nothing_setting():
    """The issue's workload: every trial fails at random with p = 0.5, 19 settings change nothing, one
    remedy makes every seed healthy with its metric one standard deviation better; started at 3 seeds."""
    design = make_design("adaptive", 20, 3, 10)
    runs = simulate(design, SimulatedPoint(0.5), [SimulatedPoint(0.0, 1.0)] + [SimulatedPoint(0.5)] * 19, 40, 7)
    false_calls = sum(r[str(i)].verdict != "no_evidence" for r, _ in runs for i in range(1, 20))
    assert false_calls == 0
    assert sum(r["0"].verdict == "fixes" for r, _ in runs) >= 30


@pytest.mark.slow
def test_the_stated_error_rate_holds_and_a_real_remedy_is_found_over_1000_sweeps():
    """Acceptance: 1000 synthetic sweeps of 20 points (outcomes correlated through shared seeds) per case."""
    sweeps = 1000
    design = make_design("adaptive", 20, 3, 10)

    # No real effect: the rate of sweeps with any false verdict, upper 95% bound, is within alpha + 0.01.
    null = simulate(design, SimulatedPoint(0.5), [SimulatedPoint(0.5)] * 20, sweeps, 11)
    any_false = sum(any(d.verdict in ("fixes", "harmful") for d in r.values()) for r, _ in null)
    assert upper_95(any_false, sweeps) <= design.alpha + 0.01, any_false

    # Some real effects (5 remedies, 15 do-nothing): Holm keeps the family-wise error rate over the nulls.
    mixed_points = [SimulatedPoint(0.0, 1.0)] * 3 + [SimulatedPoint(0.9, -1.0)] * 2 + [SimulatedPoint(0.5)] * 15
    mixed = simulate(design, SimulatedPoint(0.5), mixed_points, sweeps, 12)
    any_false = sum(any(r[str(i)].verdict != "no_evidence" for i in range(5, 20)) for r, _ in mixed)
    assert upper_95(any_false, sweeps) <= design.alpha + 0.01, any_false
    wrong_way = sum(r[str(i)].verdict == "harmful" for r, _ in mixed for i in range(3))
    assert wrong_way == 0

    # Power: every seed healthy where the baseline fails half of them, healthy metric 1 SD better.
    power_points = [SimulatedPoint(0.0, 1.0)] + [SimulatedPoint(0.5)] * 19
    found = simulate(design, SimulatedPoint(0.5), power_points, sweeps, 13)
    power = sum(r["0"].verdict == "fixes" for r, _ in found) / sweeps
    assert power >= 0.8, power

    # Benjamini-Hochberg, when a spec asks for it, keeps the false-discovery rate.
    bh = make_design("adaptive", 20, 3, 10, correction="bh")
    runs = simulate(bh, SimulatedPoint(0.5), mixed_points, sweeps // 2, 14)
    proportions = []
    for r, _ in runs:
        called = [i for i in range(20) if r[str(i)].verdict != "no_evidence"]
        proportions.append(sum(i >= 5 for i in called) / len(called) if called else 0.0)
    assert np.mean(proportions) <= bh.alpha, np.mean(proportions)
