"""The verdicts' tests and the seeding design: small cases checked by hand, then synthetic sweeps run through
the real decision code (`evidence.simulate_sweep`: `seeds_wanted`, then `decide`).

The simulations draw from random-number seeds below 1000; the design's constants were chosen on seeds 1000
and up (bench/design_sim.py), so no seed here both tuned and judges."""

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from sweeper import evidence
from sweeper.evidence import SimulatedPoint, adjust, make_design, metric_shift, rank_test, seeds_wanted

INF = -math.inf


def brunner_munzel(x, y) -> float:
    """W as scipy computes it (its sign turned: positive where x ranks above y), moved to the logit scale:
    logit(theta) over (theta - 1/2) / W, the standard error, times theta (1 - theta); +-inf where the
    standard error is 0 (scipy's nan), 0 where every seed ties."""
    theta = np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y])
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its p-value at a 0 standard error, not read here
        w = -stats.brunnermunzel(x, y).statistic
    if not np.isfinite(w):
        return np.sign(theta - 0.5) * math.inf if theta != 0.5 else 0.0
    if w == 0:
        return 0.0
    return math.log(theta / (1 - theta)) * theta * (1 - theta) / ((theta - 0.5) / w)


@pytest.mark.parametrize(
    "x, y",
    [([3.0, 5.0, 9.0], [1.0, 2.0, 4.0, 6.0, 7.0]), ([INF, 5.0, 9.0], [INF, INF, 4.0, 6.0, 7.0])],
    ids=["distinct", "two unhealthy seeds a side"],
)
def test_the_rank_test_is_the_brunner_munzel_permutation_test_by_brute_force(x, y):
    """The studentized permutation test (Neubert and Brunner, 2007): W of every split of the pooled seeds, by
    scipy's `brunnermunzel`, against the observed one."""
    pooled = x + y
    observed = brunner_munzel(x, y)
    null = []
    for chosen in itertools.combinations(range(len(pooled)), len(x)):
        rest = [v for i, v in enumerate(pooled) if i not in chosen]
        null.append(brunner_munzel([pooled[i] for i in chosen], rest))
    test = rank_test(x, y)
    assert test.exact
    assert test.p_fixes == pytest.approx(np.mean(np.asarray(null) >= observed - 1e-9))
    assert test.p_harmful == pytest.approx(np.mean(np.asarray(null) <= observed + 1e-9))
    assert test.prob_superiority == pytest.approx(np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y]))


def test_a_perfect_split_has_the_smallest_p_value_its_sizes_allow():
    test = rank_test([1.0] * 3, [INF] * 3)
    assert test.p_fixes == pytest.approx(1 / math.comb(6, 3)) and test.p_harmful == 1.0
    assert test.p_value == pytest.approx(2 / 20)
    # all tied: nothing either way
    assert rank_test([INF] * 3, [INF] * 9).p_value == 1.0
    assert rank_test([], [1.0]) is None


def test_the_interval_of_p_beats_covers_it_and_agrees_with_the_test():
    """`beats_interval` on 300 samples per case of 10 seeds against 10 (random-number seed 41): normal metrics
    shifted so that P(beats) is 1/2, 0.76 and 0.92. It holds P(beats) in about 95% of them (on calibration
    seed 1010, 93-98% at 3-10 seeds a side, mixtures of unhealthy seeds included) and leaves out 1/2 exactly
    where the test rejects at 0.05."""
    rng = np.random.default_rng(41)
    for shift in (0.0, 1.0, 2.0):
        theta = stats.norm.cdf(shift / math.sqrt(2))
        tests = [rank_test(rng.normal(shift, 1, 10), rng.normal(0, 1, 10)) for _ in range(300)]
        covered = np.mean([t.prob_superiority_ci[0] <= theta <= t.prob_superiority_ci[1] for t in tests])
        assert 0.92 <= covered <= 0.985, (shift, covered)
        for t in tests:
            low, high = t.prob_superiority_ci
            assert (t.p_value <= 0.05) == (not low <= 0.5 <= high) and low <= t.prob_superiority <= high


def test_the_interval_of_p_beats_where_every_seed_wins_or_ties():
    """No overlap leaves the standard error at 0: the interval is the widest variance's, Wilson's with
    min(n, m) trials (Birnbaum and Klose's bound); every seed tied says nothing."""
    assert rank_test(np.arange(10.0) + 100, np.arange(30.0)).prob_superiority_ci == pytest.approx(
        evidence.wilson(10, 10)
    )
    assert rank_test([INF] * 10, np.arange(30.0)).prob_superiority_ci == pytest.approx(evidence.wilson(0, 10))
    assert rank_test([INF] * 3, [INF] * 9).prob_superiority_ci == (0.0, 1.0)


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


def test_the_adaptive_design_grows_its_looks_and_gives_a_shared_baseline_more_seeds():
    design = make_design("adaptive", 20, 3, 10)
    assert design.looks == (3, 5, 8, 10)
    share = evidence.BASELINE_SHARE * math.sqrt(20)
    assert design.baseline_looks == tuple(math.floor(share * n + 0.5) for n in design.looks)
    assert make_design("adaptive", 1, 3, 10).baseline_looks == design.looks  # never fewer than a point's
    assert make_design("fixed", 20, 3, 10).looks == (3,)
    assert make_design("adaptive", 4, 3, 3).kind == "fixed"  # nothing to adapt
    # 3 seeds a side: 2 / C(6, 3) = 0.1 at best, x3 points: no verdict can reach 0.05
    assert make_design("fixed", 3, 3, 3).smallest_adjusted_p(3) == pytest.approx(0.3)
    assert design.smallest_adjusted_p(20) < 1e-3


def test_alpha_is_spent_over_the_looks_and_a_look_that_cannot_call_gives_its_share_on():
    design = make_design("adaptive", 20, 3, 10)
    assert sum(design.spend) == pytest.approx(1.0) and len(design.spend) == len(design.looks)
    # 3 seeds against 9: 2 / C(12, 3) = 0.009 at best, above 0.05 x any share / 20 points: its share moves on
    assert design.spend[0] == 0.0 and design.spend[1] > 0.2
    # gamma 0 spends in proportion to the seeds: 3/10, then 2/10, 3/10 and 2/10 of alpha
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evidence, "SPENDING_GAMMA", 0.0)
        spent = evidence.spending((3, 5, 8, 10), (30, 50, 80, 100), 1, 0.05)
    assert spent == pytest.approx((0.3, 0.2, 0.3, 0.2))
    # below 0, more of it is saved for the last looks
    assert evidence.spending((3, 5, 8, 10), (30, 50, 80, 100), 1, 0.05)[-1] > 0.3
    assert make_design("fixed", 20, 10, 10).spend == (1.0,)


def test_a_hopeless_point_is_dropped_at_the_first_look_and_a_promising_one_goes_on():
    design = make_design("adaptive", 2, 3, 10)
    base = design.baseline_looks[0]
    scores = {"baseline": [INF] * base, "same": [INF] * 3, "fix": [1.0] * 3}
    states, baseline_seeds, done = seeds_wanted(design, scores, "baseline")
    assert states["same"].status == "dropped" and states["same"].dropped_at == 3
    assert states["fix"].seeds_wanted == 5 and baseline_seeds == design.baseline_looks[1] and not done


def test_a_point_settled_at_an_interim_look_is_called_and_stops_there():
    """Every seed of `fix` beats every baseline seed at the second look (5 against 5): one-sided p 1/252, the
    family's p 2/252 over that look's share 0.5 = 0.016, Holm over 2 points 0.032 <= 0.05: called at 5 seeds,
    while `lean`, healthy in 4 of 5, goes on."""
    design = evidence.Design("adaptive", (3, 5, 10), (3, 5, 10), 0.05, "holm", (0.0, 0.5, 0.5))
    scores = {"baseline": [INF] * 5, "fix": [1.0] * 5, "lean": [1.0] * 4 + [INF]}
    states, baseline_seeds, done = seeds_wanted(design, scores, "baseline")
    assert states["fix"].status == "final" and states["fix"].stopped_at == 5
    assert states["fix"].look_p == pytest.approx(2 / 252 / 0.5)
    assert states["lean"].status == "running" and states["lean"].seeds_wanted == 10 and not done
    healthy = {k: [v > INF for v in s] for k, s in scores.items()}
    decided = evidence.decide(design, scores, healthy, "baseline")
    assert decided["fix"].verdict == "fixes" and decided["fix"].stopped_at == 5
    assert decided["fix"].p_adjusted == pytest.approx(2 * 2 / 252 / 0.5)
    assert decided["lean"].verdict == "pending"


def test_a_point_a_claim_pairs_on_is_called_but_runs_on_to_the_last_look():
    """A claim is judged on twin pairs over seeds, so a point it pairs on (`Design.keep`) is not stopped by a
    call: it runs on, and its verdict stays `fixes`."""
    design = evidence.Design("adaptive", (3, 5, 10), (3, 5, 10), 0.05, "holm", (0.0, 0.5, 0.5), keep=frozenset({"fix"}))
    states, _, done = seeds_wanted(design, {"baseline": [INF] * 5, "fix": [1.0] * 5}, "baseline")
    assert states["fix"].status == "running" and states["fix"].seeds_wanted == 10 and not done
    scores = {"baseline": [INF] * 10, "fix": [1.0] * 10}
    fix = evidence.decide(design, scores, {k: [v > INF for v in s] for k, s in scores.items()}, "baseline")["fix"]
    assert fix.verdict == "fixes" and fix.stopped_at is None and fix.seeds_used == 10


def test_a_call_passes_its_level_on_holm_over_the_looks():
    """Holm over look-adjusted p-values: once `a` is called at alpha / 2, `b` needs only alpha, and its
    earlier looks count too (Maurer and Bretz)."""
    design = evidence.Design("adaptive", (5, 10), (5, 10), 0.05, "holm", (0.5, 0.5))
    baseline = [0.0, 0.1, 0.2, 0.3, 0.4]
    a = [2.0, 2.1, 2.2, 2.3, 2.4]  # beats every baseline seed: 2 / C(10, 5) = 0.0079, over its share 0.016
    b = [1.0, 1.1, 1.2, 1.3, 0.35]  # one seed loses to one baseline seed
    alone = rank_test(b, baseline).p_value / 0.5
    assert 0.025 < alone <= 0.05  # not called at alpha / 2 ...
    states, _, done = seeds_wanted(design, {"baseline": baseline, "a": a, "b": b}, "baseline")
    assert states["a"].look_p == pytest.approx(2 / math.comb(10, 5) / 0.5)
    assert states["b"].look_p == pytest.approx(alone)
    assert states["a"].stopped_at == 5 and states["b"].stopped_at == 5 and done  # ... but at alpha, after a's call


def test_a_fixes_point_is_confirmed_on_fresh_seeds_that_never_decide_its_verdict():
    design = make_design("adaptive", 2, 3, 5, confirm=True)
    assert design.looks == (3, 5) and design.baseline_looks == (3, 5) and design.confirm == (3, 5)
    decided = {"baseline": [INF] * 5, "fix": [1.0] * 5, "same": [INF] * 3}
    wanted, baseline_seeds, done = evidence.seeds_to_run(design, decided, "baseline")
    assert wanted == {"fix": 5 + 3, "same": 3} and baseline_seeds == 5 + 5 and not done  # only `fixes` confirms
    for fresh, confirmed in (([2.0] * 3, True), ([INF] * 3, False)):
        scores = {**decided, "fix": [1.0] * 5 + fresh, "baseline": [INF] * 10}
        assert evidence.seeds_to_run(design, scores, "baseline")[2]  # done
        healthy = {k: [v > INF for v in s] for k, s in scores.items()}
        fix = evidence.decide(design, scores, healthy, "baseline")["fix"]
        assert fix.verdict == "fixes" and fix.seeds_used == 5 and fix.baseline_seeds_used == 5  # the looks' seeds
        assert fix.confirmed is confirmed and fix.confirmation_p == pytest.approx(1 / 56 if confirmed else 1.0)
    assert make_design("adaptive", 2, 3, 10).confirm == (0, 0)  # the default: no round
    fixed = make_design("fixed", 2, 5, 5, confirm=True)
    assert (
        fixed.confirm == (0, 0)
        and evidence.seeds_to_run(fixed, {"baseline": [INF] * 5, "fix": [1.0] * 5}, "baseline")[2]
    )


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
    # Holm keeps the rate of sweeps with any false call within alpha: at most 2 of 40 (0 or 1 is typical)
    sweeps_with_a_false_call = sum(any(r[str(i)].verdict != "no_evidence" for i in range(1, 20)) for r, _ in runs)
    assert sweeps_with_a_false_call <= 2
    assert sum(r["0"].verdict == "fixes" for r, _ in runs) >= 28


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


@pytest.mark.slow
def test_five_strong_remedies_among_ten_cost_at_most_six_tenths_of_a_fixed_design():
    """Issue 25's case: 10 points, 5 strong remedies (every seed healthy where the baseline fails half of them,
    the healthy metric 2 SD better) and 5 that change nothing, 1000 sweeps (random-number seed 51). The
    default design spends at most 0.6 x the fixed 10-seed design's 110 trials on average (the simulated mean
    is not above 66 at the 1% level: it sits at the bound, 65.0 on calibration seed 1000 with
    `bench/design_sim.py`, 66.0 here), finds the remedies (at least 98% of them), and the upper 95% bound of
    the rate of sweeps calling a do-nothing point is within alpha + 0.01."""
    sweeps = 1000
    design = make_design("adaptive", 10, 3, 10)
    points = [SimulatedPoint(0.0, 2.0)] * 5 + [SimulatedPoint(0.5)] * 5
    runs = simulate(design, SimulatedPoint(0.5), points, sweeps, 51)
    spent = np.array([trials for _, trials in runs], dtype=float)
    trials = spent.mean()
    found = np.mean([sum(r[str(i)].verdict == "fixes" for i in range(5)) / 5 for r, _ in runs])
    false = sum(any(r[str(i)].verdict != "no_evidence" for i in range(5, 10)) for r, _ in runs)
    print(f"\n5 strong + 5 null: {trials:.1f} trials ({trials / 110:.2f}x fixed), found {found:.3f}, false {false}")
    assert stats.ttest_1samp(spent, 0.6 * 110, alternative="greater").pvalue > 0.01, trials
    assert found >= 0.98, found
    assert upper_95(false, sweeps) <= design.alpha + 0.01, false


@pytest.mark.slow
def test_a_false_fixes_call_is_confirmed_at_most_alpha_of_the_time_and_a_real_one_mostly():
    """The confirmation round (`confirm: true`, `Design.confirm`), simulated on random-number seeds below
    1000. A false `fixes` call was selected by its seeds' luck; the fresh seeds owe it nothing, so it is
    confirmed at most alpha of the time, whatever selected it (the old "replicated", which re-tested seeds of
    the final test, held for 61-66% of false calls). One point that changes nothing, a small design (3 to 6
    seeds) at alpha 0.2 so that false calls are common enough to count, 15000 sweeps. A remedy of the
    design's size (every seed healthy where the baseline fails half, 1 SD better; 20 points) is confirmed in
    at least 75% of its calls."""
    small = make_design("adaptive", 1, 3, 6, alpha=0.2, confirm=True)
    null = simulate(small, SimulatedPoint(0.5), [SimulatedPoint(0.5)], 15000, 21)
    calls = [r["0"] for r, _ in null if r["0"].verdict == "fixes"]
    confirmed = sum(bool(d.confirmed) for d in calls)
    assert len(calls) >= 200 and all(d.confirmed is not None for d in calls)  # enough false calls to count
    assert stats.binomtest(confirmed, len(calls), small.alpha, alternative="greater").pvalue > 0.001, (
        confirmed,
        len(calls),
    )

    design = make_design("adaptive", 20, 3, 10, confirm=True)
    found = simulate(design, SimulatedPoint(0.5), [SimulatedPoint(0.0, 1.0)] + [SimulatedPoint(0.5)] * 19, 200, 22)
    called = [r["0"] for r, _ in found if r["0"].verdict == "fixes"]
    assert sum(bool(d.confirmed) for d in called) / len(called) >= 0.75, len(called)
    print(
        f"\nfalse fixes calls confirmed: {confirmed}/{len(calls)}; real remedy confirmed: "
        f"{sum(bool(d.confirmed) for d in called)}/{len(called)} calls"
    )


def test_a_dropped_look_states_the_smallest_effect_it_carries_on_four_times_in_five():
    """`carried_on_at`, checked against a simulation of its own on other random numbers: at the effect it
    states the look carries on about 80% of the time, at a clearly smaller one far less; more seeds see less."""
    from scipy import stats as scipy_stats

    theta = evidence.carried_on_at(3, 9)
    assert 0.5 < theta < 1.0 and evidence.carried_on_at(6, 18) < theta
    rng = np.random.default_rng(5)

    def carried_on(p_beats: float) -> float:
        shift = math.sqrt(2) * scipy_stats.norm.ppf(p_beats)
        tests = [rank_test(rng.normal(shift, 1, 3), rng.normal(0, 1, 9)) for _ in range(2000)]
        return float(np.mean([t.p_fixes <= evidence.FUTILITY_P for t in tests]))

    assert 0.76 <= carried_on(theta) <= 0.84
    assert carried_on(theta - 0.1) < 0.7
    assert "0.81 at 3 seeds (against 9)" in make_design("adaptive", 20, 3, 10).describe(20)


@pytest.mark.slow
def test_a_risky_remedy_that_beats_the_baseline_half_the_time_is_rarely_called():
    """P(a seed of the point beats a seed of the baseline) = 1/2 exactly, with spreads that differ: the point
    fails 2 seeds in 3 and, when it works, beats every baseline seed; the baseline fails half. The rank test
    alone (no family to hide in) at the default design's final look, 10 seeds against 30, on 3000 simulated
    remedies (random-number seed 31): called, either way, in at most alpha. On calibration seeds 1008 and 1009
    the studentized test on the logit scale was called in 4.3% and 4.4% (at 10 against 10 seeds, 4.8% and
    5.1%), the plain studentized test in 5.8% (seed 1008) and the Mann-Whitney U in 12.4%."""
    rng = np.random.default_rng(31)
    called = 0
    for _ in range(3000):
        point = np.where(rng.random(10) < 2 / 3, INF, 6 + rng.standard_normal(10))
        baseline = np.where(rng.random(30) < 0.5, INF, rng.standard_normal(30))
        called += rank_test(point, baseline).p_value <= 0.05
    print(f"\nrisky remedy called either way: {called}/3000")
    assert called / 3000 <= 0.05, called
