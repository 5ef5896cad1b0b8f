"""Verdicts as tests, and where seeds go: pure numpy/scipy, no Ray, so the whole rule can be simulated.

The primary test of a grid point against the baseline
------------------------------------------------------
Each seed's outcome is a score, higher is better: the final metric of a healthy trial (signed by the
workload's mode), and -inf for an unhealthy one, so unhealthy seeds tie with each other below every healthy
seed. The question is the one the word `fixes` asks: is P(a seed of the point beats a seed of the
baseline), ties counting one half, above 1/2? The statistic is Brunner and Munzel's W, that probability's
estimate over its standard error, which each side's spread enters on its own, on the logit scale
(`_studentized`), so the test stays within its level where the spreads differ (a risky remedy that fails
most seeds and is best when it works), where the Mann-Whitney U, which tests "same distribution", is called
at 2-3x alpha. Its
p-value comes from the permutation null, conditional on the tie pattern (`rank_test`; Neubert and Brunner's
studentized permutation test, 2007): exact where the point and the baseline are exchangeable, every split
of the pooled seeds enumerated up to EXACT_LIMIT splits, beyond that from seeded random splits.
The test is unpaired (why: below): the point and the baseline may run different numbers of seeds. Seeds are
shared (seed s draws the same data in every point), so under "the knob does nothing" a point's outcome on
seed s is positively correlated with the baseline's, which narrows the spread of the estimate: the unpaired
test is then conservative. A point gets two one-sided p-values (`fixes`: it ranks above the baseline;
`harmful`: below) and one p-value for the family, twice the smaller one (capped at 1), so that picking the
direction after looking costs what it should.

The family and its error rate
-----------------------------
A sweep's grid points (the baseline excepted) form one family, adjusted by Holm (family-wise error rate:
the probability of calling any do-nothing point `fixes` or `harmful` is at most alpha, under any dependence
between the points) or, if the spec asks for `correction: bh`, Benjamini-Hochberg (false-discovery rate at
most alpha when the p-values are independent or positively dependent; the shared baseline, the shared seeds
and the two-sided p-values are not known to give that, so under BH the rate is the simulated one, not a
guarantee). A spec's claims form a second family, adjusted the same way (`analysis.judge_claims`).

The design: where seeds go (`seeds_wanted`)
--------------------------------------------
Adaptive (the default): looks at `seeds`, then LOOK_GROWTH times as many each time, up to `max_seeds`
(3, 5, 8, 10); the baseline, compared with every point, runs BASELINE_SHARE x sqrt(points) times a point's
seeds at each look (Dunnett's square root, scaled by simulation; at most BASELINE_SHARE_CAP times).
At every look each running point is tested.
Efficacy: alpha is spent over the looks (`spending`: a Hwang-Shih-DeCani function of the seeds, a look where
no p-value could reach its share giving it to the next), and a point's look-adjusted p-value is the smallest,
over its looks so far, of the look's p-value over the look's share. That is a Bonferroni test over the looks:
valid whatever the dependence between looks, which permutation p-values leave unknown. Holm (or BH) over the
points' look-adjusted values calls a point as soon as it holds, and a called point stops there. This is the
graphical Holm procedure with group-sequential tests of Maurer and Bretz (2013): a call passes its level on
to the rest, and since the values only fall as looks are added, a call is never taken back. A point a claim
of the spec pairs on is not stopped by a call (`Design.keep`): the claims keep their seeds. Futility: at an
interim look a point not called whose one-sided p-value towards fixing is above `FUTILITY_P` and towards
harm above `FUTILITY_P_HARMFUL` is dropped (it shows no sign of a fix; non-binding, so it costs no level);
it stays in the family.
A look is taken when every trial it needs has finished (the runner plans a sweep's next round from its
finished trials), so no trial is running when a look decides; seeds beyond a point's last look (left by an
earlier run or another design) are reported but never tested. An estimate from a point called at an
interim look is biased away from no effect (it stopped because it looked large): the report says so.
Fixed (`--seeds N`): every point and the baseline run N seeds, one look.

Why unpaired, although seed s draws the same data in every point: the only exact test that uses the pairing
permutes within a seed, and n shared seeds give it 2^n splits, so its smallest one-sided p-value is 2^-n
(1/32 at 5 seeds, 1/1024 at 10), far above what Holm over a family asks at the looks where a point could
stop (alpha x a look's share / points, halved for one side: 0.00125 for 10 points at half of alpha). The
unpaired test's splits number C(n + m, n) (3003 at 5 against 10) and it stays valid, conservatively, when the
seeds correlate.

Confirmation (`confirm: true` in the spec): after the looks, every point called `fixes` runs a confirmation
round on fresh seeds (`Design.confirm`: half its design's last look's seeds past its own last look, against
as many baseline seeds past the baseline's last look as a point's last look), and is re-tested on them alone
(`_confirmation`). "Confirmed" means that test's Holm-adjusted one-sided p-value, over the points called
`fixes`, is at most alpha. The verdict itself stays the looks': the confirmation seeds never enter it. A fixed
design (one look) has no confirmation round.

Why this module is long: the tests, the design that plans seeds around them, the confirmation round and the
simulation that runs all three are one rule; the simulation must call the real decision code, and a design
read apart from the tests it stops on would not say why it stops.

Calibration: FUTILITY_P, BASELINE_SHARE, LOOK_GROWTH and SPENDING_GAMMA were chosen with the simulation in
`bench/design_sim.py` on random-number seeds 1000 and up; the tests check the error rate and the power on
seeds below 1000.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats

Array = npt.NDArray[np.float64]
"""A float array (scores, metrics); a 0/1 or label array where the name says so."""

FUTILITY_P = 0.2
"""An interim look drops a point whose one-sided p-value towards `fixes` is above this and whose p-value
towards `harmful` is above FUTILITY_P_HARMFUL."""
FUTILITY_P_HARMFUL = 0.05
"""The futility bound towards `harmful`: a point leaning to harm goes on only where its lean is this strong
(a `harmful` verdict is worth fewer seeds than a fix: the user drops such a setting either way)."""
BASELINE_SHARE = 0.65
"""At every look the baseline runs this times sqrt(points) times a point's seeds (at least as many): a
baseline compared with more points is worth more seeds (Dunnett's square root), by a factor chosen by
simulation (bench/design_sim.py) for the fewest trials at the design's power; at most BASELINE_SHARE_CAP."""
BASELINE_SHARE_CAP = 3.0
"""The baseline's share stops here (107 points would ask 6.7): at `MAX_SEEDS` (300) a point, the baseline stays
below seed 1000, where the calibration seeds begin."""
LOOK_GROWTH = 1.5
"""Each look runs this many times the previous look's seeds (rounded, at least one more), up to max_seeds:
3, 5, 8, 10 by default."""
SPENDING_GAMMA = -2.0
"""The Hwang-Shih-DeCani spending function's shape (`spending`): 0 spends alpha in proportion to the seeds,
below 0 saves it for the last look (O'Brien-Fleming-like), above 0 spends it early (Pocock-like)."""
DETECTABLE_POWER = 0.8
"""A dropped point's report states the smallest effect its look carries on with this probability
(`carried_on_at`)."""
DETECTABLE_DRAWS = 4000
CONFIRM_SHARE = 0.5
"""A `fixes` point's confirmation round runs this share of its final look's seeds, fresh, against as many fresh
baseline seeds as its final look (5 against 10 for 10 seeds): the smallest one-sided p-value there,
1 / C(15, 5) = 3.3e-4, stays below alpha under Holm over up to 150 points called `fixes`. Chosen for that and
for its cost (half a point's seeds again), not by looking at any result."""
DESIGN_POWER = 0.81
"""The adaptive design's power for the effect it is designed for, from `python bench/design_sim.py`."""
EXACT_LIMIT = 200_000
"""The rank test enumerates every split of the pooled seeds when there are at most this many; beyond it the
permutation null is sampled (MONTE_CARLO_RESAMPLES, seeded)."""
MONTE_CARLO_RESAMPLES = 99_999
MONTE_CARLO_FLOOR = 2 / (MONTE_CARLO_RESAMPLES + 1)
"""The smallest family p-value a sampled null can give (twice the one-sided 1 / (resamples + 1)): a p-value
there means "at most this", which is how the report prints it."""
MONTE_CARLO_SEED = 20211111
SPLITS_AT_ONCE = 20_000
"""Splits whose statistic is computed in one numpy pass (memory: about 20,000 x seeds^2 x 8 bytes at most)."""


Scores = Mapping[str, Sequence[float] | Array]
"""Each point's scores by label, in seed order 0, 1, ..."""


# --- tests ---
@dataclass(frozen=True)
class RankTest:
    p_fixes: float
    """One-sided: the point's seeds rank above the baseline's more often than chance would have them."""
    p_harmful: float
    p_value: float
    """For the family: min(1, 2 * min(p_fixes, p_harmful))."""
    prob_superiority: float
    """U / (n m): P(a seed of the point beats a seed of the baseline), ties counting one half."""
    prob_superiority_ci: tuple[float, float]
    """Its 95% interval, the test inverted (`beats_interval`)."""
    exact: bool
    """The permutation null was enumerated (else sampled, MONTE_CARLO_RESAMPLES)."""


def rank_test(point: Sequence[float] | Array, baseline: Sequence[float] | Array) -> RankTest | None:
    """The primary test on scores (higher is better, -inf for an unhealthy seed); None when a side is empty."""
    x, y = np.asarray(point, dtype=float), np.asarray(baseline, dtype=float)
    n, m = x.size, y.size
    if n == 0 or m == 0:
        return None
    levels, counts = np.unique(np.concatenate([x, y]), return_counts=True)  # the tie pattern, in rank order
    pooled = np.repeat(np.arange(levels.size), counts)  # each seed's tie group: all the statistic reads
    observed = np.zeros((1, n + m), dtype=bool)
    # The point's seeds as positions in the pooled order: within a tie group any of its positions will do.
    for group, taken in zip(*np.unique(np.searchsorted(levels, x), return_counts=True), strict=True):
        start = int(np.searchsorted(pooled, group))
        observed[0, start : start + taken] = True
    w_observed, theta, variance = (float(v[0]) for v in _studentized(pooled, observed))
    null, exact = _null_w(n, m, tuple(int(c) for c in counts))
    # The same splits give the same W bit for bit; the tolerance only guards against a reordered sum.
    tolerance = 1e-9 * max(1.0, abs(w_observed)) if math.isfinite(w_observed) else 0.0
    at_least = len(null) - int(np.searchsorted(null, w_observed - tolerance, side="left"))
    at_most = int(np.searchsorted(null, w_observed + tolerance, side="right"))
    if exact:
        p_fixes, p_harmful = at_least / len(null), at_most / len(null)
    else:  # a sampled null: the observed split counts as one of the resamples, which keeps the test valid
        p_fixes, p_harmful = (at_least + 1) / (len(null) + 1), (at_most + 1) / (len(null) + 1)
    return RankTest(
        p_fixes=p_fixes,
        p_harmful=p_harmful,
        p_value=min(1.0, 2 * min(p_fixes, p_harmful)),
        prob_superiority=theta,
        prob_superiority_ci=beats_interval(theta, variance, n, m, null),
        exact=exact,
    )


def beats_interval(theta: float, variance: float, n: int, m: int, null: Array) -> tuple[float, float]:
    """The 95% interval of P(a point seed beats a baseline seed) that matches the rank test, from the
    observed split's estimate `theta` and its variance (`_studentized`), n point and m baseline seeds: the
    test inverted on the logit scale with the quantiles of its own permutation null of W (`null`, sorted), which Pauly,
    Asendorf and Konietschke (2016) show holds away from 1/2 as well: logit(theta) - W's 97.5% and 2.5%
    quantiles times its standard error, mapped back, so the ends stay inside [0, 1] and the interval leaves
    out 1/2 where the two-sided test at 0.05 rejects. Where the standard error reads 0 (every point seed
    beats, or loses to, every baseline seed) it cannot be used: the interval is then the one the largest
    possible variance gives; every seed tied tells nothing: (0, 1). Simulated on calibration seed 1010
    (normal metrics and mixtures with unhealthy seeds, 1000 samples a case): it held P(beats) in 93-98% at
    10 seeds against 10 or 30 and agreed with the test in every sample there; at 3-5 seeds a side (interim
    looks, which call nothing) it held it in 90-98% and disagreed with the test mostly where no seed
    overlaps, as Wilson's interval on 3 trials cannot leave out 1/2."""
    if variance <= 1e-12:
        if theta == 0.5:
            return 0.0, 1.0
        # The largest variance any two distributions give at P = theta is theta (1 - theta) / min(n, m)
        # (Birnbaum and Klose, 1957): solving for theta is Wilson's interval with min(n, m) trials.
        return wilson(round(theta * min(n, m)), min(n, m))
    logit_error = math.sqrt(variance) / (theta * (1 - theta))
    centre = math.log(theta / (1 - theta))
    upper_w, lower_w = np.quantile(null, 0.975, method="higher"), np.quantile(null, 0.025, method="lower")
    low = 0.0 if math.isinf(upper_w) else float(special.expit(centre - upper_w * logit_error))
    high = 1.0 if math.isinf(lower_w) else float(special.expit(centre - lower_w * logit_error))
    return low, high


def _studentized(pooled: npt.NDArray[np.int64], point_rows: npt.NDArray[np.bool_]) -> tuple[Array, Array, Array]:
    """The Brunner-Munzel statistic W, on the logit scale, the estimate of P(a point seed beats a baseline
    seed), ties one half, and that estimate's variance, of each split (a row of `point_rows`: True where the
    pooled seed is the point's) of the `pooled` seeds (their tie groups, sorted). A seed's placement is how
    many seeds of the other side it beats (ties one half); theta is the point's mean placement over m, its
    variance comes from the placements' variances over each side (Brunner and Munzel, 2000), and W =
    logit(theta) / the standard error of logit(theta), theta (1 - theta) times the logit's slope: the
    range-preserving form of Pauly, Asendorf and Konietschke (2016). Why the logit: on the plain scale the
    estimate and its standard error move together where one side is a mixture (a risky remedy that fails most
    seeds: the fewer seeds work, the lower theta and the smaller its error), so the plain W's tails are
    lopsided and the permutation test of it was called at 5.8-6.5% at alpha 0.05 with 10 seeds against 30
    (calibration seeds 1007-1008); the logit evens them out (4.3%). Where the error is 0 (no overlap, or
    every seed tied), W is +-inf by the sign of theta - 1/2, or 0."""
    beats = np.sign(pooled[:, None] - pooled[None, :]) * 0.5 + 0.5  # 1, 1/2 or 0: seed a against seed b
    n = int(point_rows[0].sum())
    m = pooled.size - n
    against_baseline = (~point_rows).astype(float) @ beats.T  # each seed's placement among the baseline's
    against_point = point_rows.astype(float) @ beats.T
    placed_x = against_baseline[point_rows].reshape(-1, n)
    placed_y = against_point[~point_rows].reshape(-1, m)
    theta = placed_x.sum(axis=1) / (n * m)
    spread_x = placed_x.var(axis=1, ddof=1) if n > 1 else np.zeros(len(placed_x))
    spread_y = placed_y.var(axis=1, ddof=1) if m > 1 else np.zeros(len(placed_y))
    variance = spread_x / (n * m * m) + spread_y / (m * n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        # On the logit scale (delta method: the standard error of logit theta is theirs over theta (1 - theta)).
        w = np.log(theta / (1 - theta)) * theta * (1 - theta) / np.sqrt(variance)
        w = np.where(variance > 1e-12, w, np.sign(theta - 0.5) * np.inf)
    return np.nan_to_num(w, nan=0.0, posinf=np.inf, neginf=-np.inf), theta, variance


@functools.lru_cache(maxsize=256)  # an enumerated null holds up to EXACT_LIMIT values
def _null_w(n: int, m: int, tie_counts: tuple[int, ...]) -> tuple[Array, bool]:
    """The permutation distribution of W (sorted) for n point and m baseline seeds whose pooled values tie in
    groups of `tie_counts` (in rank order): it depends on nothing else, so it is computed once per pattern.
    Every split of the pooled seeds when there are at most EXACT_LIMIT, else MONTE_CARLO_RESAMPLES seeded
    random ones."""
    pooled = np.repeat(np.arange(len(tie_counts)), tie_counts)
    total = n + m
    exact = math.comb(total, n) <= EXACT_LIMIT
    if exact:
        chosen = np.array(list(itertools.combinations(range(total), n)), dtype=np.int64).reshape(-1, n)
    else:
        rng = np.random.default_rng(MONTE_CARLO_SEED)
        chosen = np.argsort(rng.random((MONTE_CARLO_RESAMPLES, total)), axis=1)[:, :n]
    values = []
    for start in range(0, len(chosen), SPLITS_AT_ONCE):
        rows = np.zeros((min(SPLITS_AT_ONCE, len(chosen) - start), total), dtype=bool)
        np.put_along_axis(rows, chosen[start : start + SPLITS_AT_ONCE], True, axis=1)
        values.append(_studentized(pooled, rows)[0])
    return np.sort(np.concatenate(values)), exact


@functools.lru_cache(maxsize=256)
def _null_u(n: int, m: int, tie_counts: tuple[int, ...]) -> tuple[Array, bool]:
    """The permutation distribution of U (sorted) for n point and m baseline seeds whose pooled values tie in
    groups of `tie_counts` (in rank order): it depends on nothing else, so it is computed once per pattern,
    by `scipy.stats.permutation_test` over the midranks."""
    ends = np.cumsum(tie_counts)
    midranks = np.repeat(ends - (np.asarray(tie_counts) - 1) / 2.0, tie_counts)
    if min(n, m) == 1:  # scipy asks for two values a side; with one, the N splits are N choices of one seed
        point_sums = midranks if n == 1 else midranks.sum() - midranks
        return np.sort(point_sums - n * (n + 1) / 2), True
    exact = math.comb(n + m, n) <= EXACT_LIMIT
    result = stats.permutation_test(
        (midranks[:n], midranks[n:]),
        lambda a, b, axis: np.sum(a, axis=axis),
        permutation_type="independent",
        vectorized=True,
        n_resamples=np.inf if exact else MONTE_CARLO_RESAMPLES,
        alternative="greater",
        rng=np.random.default_rng(MONTE_CARLO_SEED),
    )
    return np.sort(result.null_distribution - n * (n + 1) / 2), exact


@functools.cache
def carried_on_at(point_seeds: int, baseline_seeds: int) -> float:
    """The smallest P(a seed of the point beats one of the baseline) that an interim look at these seeds
    carries on (one-sided p_fixes at most FUTILITY_P) with probability DETECTABLE_POWER: what a point dropped
    there could have been and still be missed one time in five. The effect is a shift of a normal metric with
    every seed healthy on both sides, so P(beats) = Phi(shift / sqrt 2); by simulation (DETECTABLE_DRAWS
    draws, the same ones for every shift, seeded); 1.0 where no shift is carried on that often."""
    n, m = point_seeds, baseline_seeds
    null, _ = _null_w(n, m, (1,) * (n + m))
    rng = np.random.default_rng(MONTE_CARLO_SEED)
    x, y = rng.standard_normal((DETECTABLE_DRAWS, n)), rng.standard_normal((DETECTABLE_DRAWS, m))
    for shift in np.arange(0.0, 6.0, 0.02):
        positions = np.argsort(np.argsort(np.concatenate([x + shift, y], axis=1), axis=1), axis=1)
        rows = np.zeros((DETECTABLE_DRAWS, n + m), dtype=bool)
        np.put_along_axis(rows, positions[:, :n], True, axis=1)  # the point's seeds in the pooled order
        w = _studentized(np.arange(n + m), rows)[0]
        p_fixes = (len(null) - np.searchsorted(null, w - 1e-9, side="left")) / len(null)
        if np.mean(p_fixes <= FUTILITY_P) >= DETECTABLE_POWER:
            return float(stats.norm.cdf(shift / math.sqrt(2)))
    return 1.0


@dataclass(frozen=True)
class RateTest:
    difference: float
    """Healthy rate of the point minus the baseline's."""
    interval: tuple[float, float]
    """95% Newcombe (hybrid score) interval of the difference, from the two Wilson intervals."""
    p_fixes: float
    """One-sided Boschloo exact test: the point is healthy more often."""
    p_harmful: float


def rate_test(healthy: int, n: int, baseline_healthy: int, m: int) -> RateTest | None:
    """The secondary readout: the difference in healthy rate, with its interval and exact p-values."""
    if n == 0 or m == 0:
        return None
    p1, p2 = healthy / n, baseline_healthy / m
    l1, u1 = wilson(healthy, n)
    l2, u2 = wilson(baseline_healthy, m)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    greater, less = _boschloo(healthy, n, baseline_healthy, m)
    return RateTest(d, (max(-1.0, low), min(1.0, high)), greater, less)


@functools.lru_cache(maxsize=4096)
def _boschloo(healthy: int, n: int, baseline_healthy: int, m: int) -> tuple[float, float]:
    if healthy == baseline_healthy == 0 or (healthy == n and baseline_healthy == m):
        return 1.0, 1.0  # nothing varies: scipy would divide by zero
    table = np.array([[healthy, baseline_healthy], [n - healthy, m - baseline_healthy]])
    return tuple(  # type: ignore[return-value]
        float(min(1.0, stats.boschloo_exact(table, alternative=side).pvalue)) for side in ("greater", "less")
    )


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (scipy's binomtest); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def adjust(p_values: Sequence[float], correction: str) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), or Benjamini-Hochberg's (false-discovery
    rate, scipy's `false_discovery_control`): reject where the adjusted p-value is at most alpha."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return []
    if correction == "bh":
        return [float(v) for v in stats.false_discovery_control(p, method="bh")]
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * (p.size - np.arange(p.size))))
    adjusted = np.empty_like(p)
    adjusted[order] = stepped
    return [float(v) for v in adjusted]


# --- the design ---
@dataclass(frozen=True)
class Design:
    kind: str
    """adaptive | fixed"""
    looks: tuple[int, ...]
    """A point's seeds at each look; the last is the final test."""
    baseline_looks: tuple[int, ...]
    """The baseline's seeds at each look."""
    alpha: float
    correction: str
    spend: tuple[float, ...] = (1.0,)
    """The share of alpha each look may spend (summing to 1; `spending`): a point's look-adjusted p-value is
    the smallest of its looks' p-values, each over its look's share."""
    confirm: tuple[int, int] = (0, 0)
    """Fresh seeds of the confirmation round after the looks, for each point called `fixes` and for the
    baseline; (0, 0): no confirmation round (the default, and a fixed design)."""
    keep: frozenset[str] = frozenset()
    """Points a spec's claims pair on: a call does not stop them, so the claims keep their seeds (they run on
    to the last look, their verdict already given, unless futility drops them first)."""

    def smallest_adjusted_p(self, points: int) -> float:
        """The smallest adjusted p-value a point can reach: every seed of it above (or below) every seed of the
        baseline at the final look; Holm's first step multiplies it by the number of points, Benjamini-
        Hochberg's by 1 when every point is that extreme."""
        n, m = self.looks[-1], self.baseline_looks[-1]
        return min(1.0, 2 / math.comb(n + m, n) / self.spend[-1] * (max(points, 1) if self.correction == "holm" else 1))

    def first_look_can_go_on(self) -> bool:
        """Whether a point can pass the first interim look at all: its smallest one-sided p-value there (every
        seed beyond every seed of the baseline) must be at most FUTILITY_P, else every point is dropped."""
        return (
            self.kind == "fixed" or 1 / math.comb(self.looks[0] + self.baseline_looks[0], self.looks[0]) <= FUTILITY_P
        )

    def confirmation_seeds(self, baseline_seeds: int) -> tuple[int, int]:
        """The confirmation round's seeds: how many more a point called `fixes` runs past its last look, and the
        seeds the baseline has run once the round is done, where the looks left it at `baseline_seeds`."""
        return self.confirm[0], baseline_seeds + self.confirm[1]

    def _dropped_misses(self) -> str:
        """What a point dropped at each interim look could still have been (`carried_on_at`)."""
        looks = [
            f"{carried_on_at(n, m):.2f} at {n} seeds (against {m})"
            for n, m in zip(self.looks[:-1], self.baseline_looks[:-1], strict=True)
        ]
        return (
            "A dropped point was not shown to change the failure, which is no evidence that it does nothing: "
            f"a look carries on, with power {DETECTABLE_POWER}, a remedy whose seed beats a baseline seed with "
            f"probability at least {' and '.join(looks)}, and may drop a smaller effect (all seeds healthy, a "
            "normal metric shifted)."
        )

    def describe(self, points: int) -> str:
        final = self.looks[-1]
        family = (
            "Holm (family-wise error rate)"
            if self.correction == "holm"
            else "Benjamini-Hochberg (false-discovery rate)"
        )
        if self.kind == "fixed":
            floor = self.smallest_adjusted_p(points)
            seeds = (
                f"Fixed design: every point and the baseline run {final} seeds, one look; with {final} seeds a side "
                f"no adjusted p-value can go below {floor:.2g}"
                + (f", so no verdict can reach alpha = {self.alpha}." if floor > self.alpha else ".")
            )
        else:
            shares = ", ".join(f"{share:.2f}" for share in self.spend)
            seeds = (
                f"Adaptive design: each point runs {', then '.join(map(str, self.looks))} seeds and the baseline "
                f"{', then '.join(map(str, self.baseline_looks))}. At every look a point is tested, and its "
                f"look-adjusted p-value is the smallest of its looks' p-values, each over its look's share of "
                f"alpha ({shares}; Bonferroni over the looks, so the looks' dependence cannot raise the error "
                f"rate); {family.split(' (')[0]} over those values calls a point as soon as it holds, and a called "
                f"point stops there (Maurer and Bretz, 2013). At an interim look a point not called whose one-sided "
                f"p-value is above {FUTILITY_P} towards fixing and above {FUTILITY_P_HARMFUL} towards harm is "
                f"dropped (futility, non-binding). A point that stops early shows "
                f"estimates biased away from no effect (it stopped because they looked large). A look is taken "
                f"when every trial it needs has finished; seeds beyond a point's last look (from an earlier run) "
                f"are shown but never tested. The default design (3 to 10 seeds) is built for a remedy "
                f"that makes every seed healthy where the baseline fails half of them, its healthy metric one "
                f"standard deviation better: in a simulated sweep of 20 points it finds it with power "
                f"{DESIGN_POWER} (bench/design_sim.py). {self._dropped_misses()}"
            )
            if self.keep:
                seeds += (
                    f" The {len(self.keep)} points the claims pair on are not stopped by a call: they run on to the "
                    "last look, so each claim keeps the seeds it is judged on."
                )
            if any(self.confirm):
                seeds += (
                    f" A point called `fixes` then runs {self.confirm[0]} fresh seeds against {self.confirm[1]} "
                    "fresh baseline seeds, which no look used: it is confirmed where that test alone holds at "
                    "alpha, Holm over the points called `fixes`."
                )
        return (
            f"{'The grid point is' if points == 1 else f'Each of the {points} grid points is'} tested against the "
            "baseline: whether P(a seed of the point beats a seed of the baseline) is above or below 1/2, by the "
            "studentized permutation Brunner-Munzel test (on the logit scale) on the final metric (unhealthy "
            "seeds tied below every healthy one; exact up to "
            f"{EXACT_LIMIT:,} splits of the seeds, else {MONTE_CARLO_RESAMPLES:,} seeded random splits), unpaired, "
            f"one-sided each way, the family's p-value twice the smaller; {family} at alpha = {self.alpha}. {seeds}"
        )


def spending(looks: Sequence[int], baseline_looks: Sequence[int], points: int, alpha: float) -> tuple[float, ...]:
    """Each look's share of alpha: the Hwang-Shih-DeCani spending function with SPENDING_GAMMA at the looks'
    information fractions (a point's seeds over its last look's), except that a look where no p-value can
    reach its share under Holm's first step (every seed beyond every seed of the baseline: 2 / C(n + m, n)
    against alpha x share / points) gives its share to the next look: it is fixed by the design's seeds and
    the number of points, never by a result."""
    fractions = [n / looks[-1] for n in looks]
    gamma = SPENDING_GAMMA
    cumulative = [t if abs(gamma) < 1e-9 else (1 - math.exp(-gamma * t)) / (1 - math.exp(-gamma)) for t in fractions]
    shares = [round(b - a, 9) for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]
    carried = 0.0
    spend = []
    for index, (n, m, share) in enumerate(zip(looks, baseline_looks, shares, strict=True)):
        share += carried
        reachable = 2 / math.comb(n + m, n) <= alpha * share / max(points, 1)
        if reachable or index == len(looks) - 1:
            spend.append(share)
            carried = 0.0
        else:
            spend.append(0.0)
            carried = share
    return tuple(spend)


def make_design(
    kind: str,
    points: int,
    seeds: int,
    max_seeds: int,
    alpha: float = 0.05,
    correction: str = "holm",
    confirm: bool = False,
    keep: frozenset[str] = frozenset(),
) -> Design:
    """The looks of a sweep with `points` grid points besides the baseline; `confirm`: a confirmation round
    on fresh seeds after the looks for every point called `fixes` (`Design.confirm`); `keep`: the points a
    call does not stop (`Design.keep`)."""
    if kind == "fixed" or max_seeds <= seeds:
        return Design("fixed", (seeds,), (seeds,), alpha, correction)
    looks = [seeds]
    while looks[-1] < max_seeds:
        looks.append(min(max_seeds, max(looks[-1] + 1, _rounded(LOOK_GROWTH * looks[-1]))))
    share = min(BASELINE_SHARE * math.sqrt(max(points, 1)), BASELINE_SHARE_CAP)
    baseline = tuple(max(look, _rounded(share * look)) for look in looks)
    spend = spending(looks, baseline, points, alpha)
    rounds = (math.ceil(CONFIRM_SHARE * looks[-1]), looks[-1]) if confirm else (0, 0)
    return Design("adaptive", tuple(looks), baseline, alpha, correction, spend, rounds, keep)


def _rounded(value: float) -> int:
    """Half up (Python's round() goes to even: 4.5 -> 4)."""
    return math.floor(value + 0.5)


@dataclass(frozen=True)
class PointState:
    seeds_wanted: int
    status: str
    """running | dropped | final (its last look is done: the design's last, or an earlier one that called it)"""
    dropped_at: int | None = None
    stopped_at: int | None = None
    """The interim look (a point's seeds) at which it was called and stopped; None if it was not."""
    look_p: float = 1.0
    """Its look-adjusted p-value so far: min over its looks of the look's p-value over the look's share."""
    deciding: RankTest | None = None
    """The test at the look that gave `look_p` (its direction is the verdict's)."""


def seeds_wanted(design: Design, scores: Scores, baseline: str) -> tuple[dict[str, PointState], int, bool]:
    """Where the seeds go next, from the scores so far of every point (by label, in seed order 0, 1, ...):
    each point's state and the seeds it needs now, the seeds the baseline needs now, and whether the design
    is done (every point dropped, called or at its final look, with the seeds that look needs)."""
    states = {label: PointState(design.looks[0], "running") for label in scores if label != baseline}
    base = scores.get(baseline, ())
    for index, (look, base_look) in enumerate(zip(design.looks, design.baseline_looks, strict=True)):
        active = [label for label, state in states.items() if state.status == "running"]
        final = index == len(design.looks) - 1
        short = len(base) < base_look or any(len(scores[label]) < look for label in active)
        if short:
            for label in active:
                states[label] = dataclasses.replace(states[label], seeds_wanted=look)
            return states, base_look, False
        tests = {label: rank_test(scores[label][:look], base[:base_look]) for label in active}
        for label, test in tests.items():
            state = dataclasses.replace(states[label], seeds_wanted=look)
            look_p = test.p_value / design.spend[index] if test is not None and design.spend[index] > 0 else 1.0
            if state.deciding is None or look_p < state.look_p:
                state = dataclasses.replace(state, look_p=min(1.0, look_p), deciding=test)
            states[label] = state
        adjusted = dict(zip(states, adjust([s.look_p for s in states.values()], design.correction), strict=True))
        for label, test in tests.items():
            called = adjusted[label] <= design.alpha
            if called and not final and label not in design.keep:  # called: it stops here
                states[label] = dataclasses.replace(states[label], status="final", stopped_at=look)
            elif final:
                states[label] = dataclasses.replace(states[label], status="final")
            elif called:
                pass  # a claim pairs on it: it runs on, called already
            elif test is not None and test.p_fixes > FUTILITY_P and test.p_harmful > FUTILITY_P_HARMFUL:
                states[label] = dataclasses.replace(states[label], status="dropped", dropped_at=look)
        if all(state.status != "running" for state in states.values()):
            return states, base_look, True
    raise AssertionError("unreachable: the last look returns")


def seeds_to_run(design: Design, scores: Scores, baseline: str) -> tuple[dict[str, int], int, bool]:
    """The seeds each point and the baseline need now: the looks' (`seeds_wanted`), then, once every point is
    decided, the confirmation round of the points called `fixes` (`Design.confirm`); and whether the design is
    done."""
    states, baseline_seeds, done = seeds_wanted(design, scores, baseline)
    wanted = {label: state.seeds_wanted for label, state in states.items()}
    if not done or not any(design.confirm):
        return wanted, baseline_seeds, done
    decisions = decide(design, scores, {}, baseline, readouts=False)
    called = [label for label, decision in decisions.items() if decision.verdict == "fixes"]
    if not called:
        return wanted, baseline_seeds, True
    extra, through = design.confirmation_seeds(baseline_seeds)
    for label in called:
        wanted[label] += extra
    return wanted, through, _round_has_run(scores, baseline, wanted, through, called)


# --- decisions ---
@dataclass(frozen=True)
class Decision:
    """One point's tests and verdict, from the seeds the design asked for."""

    status: str
    """running | dropped | final (its last look is done)"""
    dropped_at: int | None
    """The interim look (a point's seeds) at which it was dropped; None if it was not."""
    seeds_used: int
    baseline_seeds_used: int
    test: RankTest | None
    """The primary test on the seeds used (its last look); None when a side has no seed yet."""
    rate: RateTest | None
    """The secondary readout (healthy rates), which decides nothing; None where left out or a side is empty."""
    p_adjusted: float | None = None
    """The look-adjusted p-value adjusted over the family; None until the point's last look is done."""
    verdict: str = "pending"
    """fixes | harmful | no_evidence | pending"""
    stopped_at: int | None = None
    """The interim look (a point's seeds) at which it was called and stopped early: its estimates are biased
    away from no effect. None if it ran to the design's last look, or was not called."""
    confirmation_p: float | None = None
    """`fixes` only: the one-sided p-value on the confirmation round's fresh seeds (`_confirmation`); None
    until they have all run, or where there is no such round."""
    confirmation_p_adjusted: float | None = None
    confirmed: bool | None = None


def decide(
    design: Design,
    scores: Scores,
    healthy: Mapping[str, Sequence[bool] | npt.NDArray[np.bool_]],
    baseline: str,
    readouts: bool = True,
) -> dict[str, Decision]:
    """Every point's tests and verdict (fixes | harmful | no_evidence | pending), from the scores the design
    asked for: the family adjustment of the look-adjusted p-values (`seeds_wanted`), the direction from the
    look that gave a point its value. A point is decided once its last look is done; a dropped point is
    `no_evidence`. `readouts=False` leaves out the secondary readout (`rate_test`), which decides nothing."""
    states, baseline_seeds, _ = seeds_wanted(design, scores, baseline)
    base = list(scores.get(baseline, ()))
    base_ok = list(healthy.get(baseline, ()))
    adjusted = adjust([state.look_p for state in states.values()], design.correction)
    results = {}
    for (label, state), p_adjusted in zip(states.items(), adjusted, strict=True):
        n = min(len(scores[label]), state.seeds_wanted)
        m = min(len(base), design.baseline_looks[design.looks.index(state.seeds_wanted)])
        decided = state.status != "running"
        results[label] = Decision(
            status=state.status,
            dropped_at=state.dropped_at,
            seeds_used=n,
            baseline_seeds_used=m,
            test=rank_test(scores[label][:n], base[:m]),
            rate=rate_test(int(sum(healthy[label][:n])), n, int(sum(base_ok[:m])), m) if readouts else None,
            p_adjusted=p_adjusted if decided else None,
            verdict=_verdict(state, p_adjusted, design.alpha) if decided else "pending",
            stopped_at=state.stopped_at,
        )
    return _confirmation(design, scores, baseline, baseline_seeds, results)


def _verdict(state: PointState, p_adjusted: float, alpha: float) -> str:
    test = state.deciding
    if state.status == "dropped" or test is None or p_adjusted > alpha:
        return "no_evidence"
    return "fixes" if test.p_fixes <= test.p_harmful else "harmful"


def _round_has_run(scores: Scores, baseline: str, wanted: Mapping[str, int], through: int, called: list[str]) -> bool:
    """Whether every seed of the confirmation round of the points `called` (and of the baseline) has run."""
    return len(scores.get(baseline, ())) >= through and all(len(scores[label]) >= wanted[label] for label in called)


def _confirmation(
    design: Design, scores: Scores, baseline: str, baseline_seeds: int, results: dict[str, Decision]
) -> dict[str, Decision]:
    """Re-test each `fixes` point on its confirmation round's fresh seeds against the baseline's, Holm over the
    points called `fixes`; fills `confirmation_p`, `confirmation_p_adjusted` and `confirmed` once every seed of
    the round has run (None before, and where there is no round: not `fixes`, or no round asked for)."""
    called = [label for label, d in results.items() if d.verdict == "fixes"]
    if not any(design.confirm) or not called:
        return results
    extra, through = design.confirmation_seeds(baseline_seeds)
    wanted = {label: results[label].seeds_used + extra for label in called}
    if not _round_has_run(scores, baseline, wanted, through, called):
        return results
    p_values = []
    for label in called:
        fresh = scores[label][results[label].seeds_used : wanted[label]]
        test = rank_test(fresh, scores[baseline][baseline_seeds:through])
        p_values.append(test.p_fixes if test is not None else 1.0)
    confirmed = dict(results)
    for label, p, adjusted in zip(called, p_values, adjust(p_values, "holm"), strict=True):
        confirmed[label] = dataclasses.replace(
            results[label], confirmation_p=p, confirmation_p_adjusted=adjusted, confirmed=adjusted <= design.alpha
        )
    return confirmed


# --- simulation ---
@dataclass(frozen=True)
class SimulatedPoint:
    fail: float
    """Probability that a seed is unhealthy."""
    shift: float = 0.0
    """The healthy metric's mean, in standard deviations above the baseline's (higher is better)."""


def simulate_sweep(
    design: Design,
    baseline: SimulatedPoint,
    points: Sequence[SimulatedPoint],
    rng: np.random.Generator,
    correlation: float = 0.5,
) -> tuple[dict[str, Decision], int]:
    """One synthetic sweep through the real decision code (`seeds_wanted`, then `decide`): the verdict of each
    point (labelled by its index) and the trials the design spent. Outcomes are correlated across points as
    real seeds are: seed s shares a latent draw between every point, for health (a Gaussian copula) and for
    the metric, with `correlation` the share of the variance it explains."""
    everyone = [baseline, *points]
    shared = np.sqrt(correlation)
    own = np.sqrt(1.0 - correlation)

    def outcomes(columns: int) -> npt.NDArray[np.float64]:
        seed_health, seed_metric = rng.standard_normal(columns), rng.standard_normal(columns)
        latent = shared * seed_health + own * rng.standard_normal((len(everyone), columns))
        fails = np.array([p.fail for p in everyone])[:, None]
        unhealthy = stats.norm.cdf(latent) < fails
        metric = np.array([p.shift for p in everyone])[:, None] + shared * seed_metric
        metric = metric + own * rng.standard_normal((len(everyone), columns))
        return np.where(unhealthy, -np.inf, metric)

    # The looks' seeds first, then the confirmation round's, so its draws leave the looks' as they were.
    looks = max(design.looks[-1], design.baseline_looks[-1])
    scores = np.hstack([outcomes(looks), outcomes(max(design.confirm))])
    unhealthy = np.isneginf(scores)
    labels = ["baseline", *map(str, range(len(points)))]
    revealed = dict.fromkeys(labels, 0)
    while True:
        seen = {label: scores[row, : revealed[label]] for row, label in enumerate(labels)}
        wanted, base_need, done = seeds_to_run(design, seen, "baseline")
        if done:
            break
        revealed["baseline"] = max(revealed["baseline"], base_need)
        for label, seeds in wanted.items():
            revealed[label] = max(revealed[label], seeds)
    seen = {label: scores[row, : revealed[label]] for row, label in enumerate(labels)}
    healthy = {label: ~unhealthy[row, : revealed[label]] for row, label in enumerate(labels)}
    return decide(design, seen, healthy, "baseline", readouts=False), sum(revealed.values())


@dataclass(frozen=True)
class Shift:
    """The shift of the healthy metric, point minus baseline, with its 95% interval (ends may be infinite)."""

    estimate: float
    low: float
    high: float


def metric_shift(point: Sequence[float], baseline: Sequence[float]) -> Shift | None:
    """The shift of the healthy metric (point minus baseline, in the metric's units): the Hodges-Lehmann
    estimate (median of every pairwise difference) with its 95% distribution-free (Moses) interval, read off
    the same exact U distribution the rank test uses; None with fewer than one healthy seed a side."""
    x, y = np.asarray(point, dtype=float), np.asarray(baseline, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    n, m = x.size, y.size
    if n == 0 or m == 0:
        return None
    differences = np.sort((x[:, None] - y[None, :]).ravel())
    null, _ = _null_u(n, m, (1,) * (n + m))
    # k differences are cut from each end: the largest k with P(U <= k - 1) <= 2.5%.
    k = int(np.sum(np.searchsorted(null, np.arange(n * m + 1) - 1, side="right") <= 0.025 * len(null))) - 1
    with np.errstate(over="ignore", invalid="ignore"):  # differences of values near 1e308: inf, reported as None
        estimate = float(np.median(differences))
    if k == 0:
        return Shift(estimate, -math.inf, math.inf)
    return Shift(estimate, float(differences[k - 1]), float(differences[-k]))
