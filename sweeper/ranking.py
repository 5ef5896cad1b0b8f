"""Remedy statistics over seeds: pure numpy/scipy, no heavy imports. The tests behind the verdicts and the
seeding design are `sweeper.evidence`; this module turns trial outcomes into what they read, and
`sweeper.analysis` builds the ranking from it.

Unhealthy seeds count as failures; they are never dropped:
- for the tests, an unhealthy trial ranks below every healthy one and ties with every other unhealthy one
  (`comparison_scores`);
- for the score shown beside the measured metric, an unhealthy trial counts at the workload's `chance`
  level (what a model that learned nothing gets; `fill_missing_chance` supplies it for trials that raised),
  or the sweep's worst final metric where the workload reports no chance level (`metric_scores`).
The measured final metric (`median_healthy_metric`) is the median over healthy seeds only, shown with how
many seeds were unhealthy, so a point that learned something is never shown at the chance level.

Per grid point: the healthy rate with its 95% Wilson interval; the median healthy metric; the score's mean
(below IQM_FROM seeds) or interquartile mean; the primary test against the baseline (p-values, the adjusted
p-value, P(a seed of the point beats one of the baseline)); the difference in healthy rate with its Newcombe
interval and Boschloo p-values; the Hodges-Lehmann shift of the healthy metric with its Moses interval; the
verdict. Per knob: the main effect of each value (mean over every trial with that value, all other knobs
marginalised) and the knob's importance: eta squared, the share of the variance of the scores' RANKS that
its values explain (the Kruskal-Wallis H over n - 1). Ranks, not the scores themselves: the fallback score
of an unhealthy trial can be -1e297 (an R^2 of a diverging run), and its squared deviation would overflow.
Per claim: a sign test on twin trials (`claim_p_value`, which `analysis.judge_claims` adjusts as a family).

Every number here is finite or None for any input, values near +-1e308 included: means, medians, IQMs and
percentiles are computed on values scaled by a power of two (`scaled_statistic`), which is exact, so
ordinary inputs give the same numbers bit for bit and huge ones do not overflow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt
from scipy import stats

from sweeper import evidence
from sweeper.results import KnobEffect, PairedEffect, ValueEffect
from sweeper.spec import BASELINE_LABEL

Array = npt.NDArray[np.float64]
"""A float array (scores, metrics); a 0/1 or label array where the name says so."""

IQM_FROM = 4
"""Seeds from which the score's centre is the interquartile mean; below, the IQM trims nothing: the mean."""
NOT_TESTABLE = "not testable here"


@dataclass(frozen=True)
class TrialOutcome:
    label: str
    is_baseline: bool
    seed: int
    verdict: str
    final_metric: float | None
    final_loss: float | None
    chance: float | None = None
    knobs: dict[str, Any] = field(default_factory=dict)
    oracle: float | None = None
    """The metric's best reachable value, where the workload reports one (`oracle`)."""
    reason: str = ""
    """Why the diagnosis gave its verdict (for an `error`, the exception's last line)."""

    @property
    def healthy(self) -> bool:
        return self.healthy_metric is not None

    @property
    def healthy_metric(self) -> float | None:
        """The final metric of a healthy trial; None for any other."""
        return self.final_metric if self.verdict == "healthy" and is_finite(self.final_metric) else None


def is_finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def scaled_statistic(statistic: Callable[..., Any], values: Array, **kwargs: Any) -> Any:
    """`statistic(values, **kwargs)` (a mean, median, trimmed mean, percentile: anything that scales with its
    values) computed on `values` times 2**-e and scaled back by 2**e, with e >= 0 the smallest exponent that
    brings every finite magnitude below 1/2 (0 for values already below it).

    Sums and interpolations of float64 values near 1e308 overflow (the mean of two 1e308 is inf); of values
    below 1/2 they cannot, and the result scaled back stays below the largest magnitude, so it is finite.
    Scaling by a power of two is exact for normal numbers, so wherever the plain statistic did not overflow
    the result is the same bit for bit. Infinities and NaN pass through as they would.
    """
    finite = np.abs(values[np.isfinite(values)])
    e = max(0, int(np.frexp(finite.max())[1]) + 1) if finite.size else 0
    return np.ldexp(statistic(np.ldexp(values, -e), **kwargs), e)


def finite_median(values: Iterable[float | None]) -> float | None:
    """The median of the finite values; None when there are none."""
    finite = np.array([float(v) for v in values if is_finite(v)])
    return float(scaled_statistic(np.median, finite)) if finite.size else None


def fill_missing_chance(outcomes: Sequence[TrialOutcome]) -> list[TrialOutcome]:
    """Give a trial that reported no chance level (it raised, or diverged at once) the median chance level
    of the trials with the same seed (same data), else of the whole sweep."""
    known = [(o.seed, o.chance) for o in outcomes if is_finite(o.chance)]
    if not known:
        return list(outcomes)
    overall = finite_median([chance for _, chance in known])
    by_seed: dict[int, list[float]] = {}
    for seed, chance in known:
        by_seed.setdefault(seed, []).append(chance)
    return [
        o if is_finite(o.chance) else dataclasses.replace(o, chance=finite_median(by_seed.get(o.seed, [overall])))
        for o in outcomes
    ]


def comparison_scores(outcomes: Sequence[TrialOutcome], mode: str) -> Array:
    """Higher is better; unhealthy trials get -inf, so they tie with each other and lose to any healthy one."""
    sign = 1.0 if mode == "max" else -1.0
    metrics = [o.healthy_metric for o in outcomes]
    return np.array([sign * m if m is not None else -np.inf for m in metrics], dtype=float)


def metric_scores(outcomes: Sequence[TrialOutcome], mode: str, fallback: float | None) -> Array:
    """In the metric's own units; an unhealthy trial counts at its chance level, else at `fallback`."""
    values = []
    for o in outcomes:
        if o.healthy:
            values.append(o.final_metric)
        elif is_finite(o.chance):
            values.append(o.chance)
        else:
            values.append(fallback if fallback is not None else math.nan)
    return np.array(values, dtype=float)


def worst_metric(outcomes: Sequence[TrialOutcome], mode: str) -> float | None:
    finite = [o.final_metric for o in outcomes if is_finite(o.final_metric)]
    if not finite:
        return None
    return min(finite) if mode == "max" else max(finite)


def iqm(values: Array) -> float:
    """Interquartile mean: the mean of the middle half (scipy's 25% trimmed mean), overflow-free
    (`scaled_statistic`)."""
    return float(scaled_statistic(stats.trim_mean, values, proportiontocut=0.25))


def centre(values: Array) -> tuple[float | None, str]:
    """The finite values' IQM from IQM_FROM seeds on, their mean below (the IQM of 3 values trims nothing), and
    which of the two it is."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None, "mean"
    if finite.size < IQM_FROM:
        return optional(float(scaled_statistic(np.mean, finite))), "mean"
    return optional(float(iqm(finite))), "IQM"


def centre_interval(
    values: Array, every_seed_healthy: bool, best: float | None = None, mode: str = "max"
) -> tuple[float, float] | None:
    """The 95% interval of `centre`'s value, where every seed is healthy; None elsewhere, or below 2 values.
    Its end never passes `best`, the metric's best reachable value where known (an accuracy's 1).

    Chosen by simulation (calibration seed 1011, 400 samples a case, metrics normal or lognormal): the
    Tukey-McLaughlin interval, the trimmed mean plus or minus Student's t on n - 2g - 1 degrees of freedom
    times the winsorized standard deviation over (1 - 2g/n) sqrt(n) (g = the seeds trimmed a side; Wilcox,
    "Introduction to Robust Estimation", 4.4), and below IQM_FROM seeds the plain t interval of the mean. It
    held the centre in 93-98% at 3-10 seeds (87% at 3 lognormal seeds), where the percentile bootstrap held
    it in 67-78% at 3 seeds and 91% at 5: resampling 3-5 values cannot show the spread it has not seen.
    Where seeds mix unhealthy ones (scored at the chance level) with healthy ones, no interval of the centre
    held its level at 3-10 seeds (30% unhealthy: Tukey-McLaughlin 63-70%, bootstrap 64-91%), so none is
    given: the healthy count and P(beats baseline) carry the evidence there."""
    finite = values[np.isfinite(values)]
    if not every_seed_healthy or finite.size < 2 or finite.size < values.size:
        return None
    n = finite.size
    trimmed = int(0.25 * n) if n >= IQM_FROM else 0
    ordered = np.sort(finite)
    winsorized = np.clip(ordered, ordered[trimmed], ordered[n - trimmed - 1])
    centre_value, _ = centre(finite)
    spread = float(scaled_statistic(lambda v: np.std(v, ddof=1), winsorized))
    error = spread / ((1 - 2 * trimmed / n) * math.sqrt(n))
    half_width = float(stats.t.ppf(0.975, n - 2 * trimmed - 1)) * error
    if centre_value is None or not math.isfinite(half_width) or not math.isfinite(centre_value + half_width):
        return None
    low, high = centre_value - half_width, centre_value + half_width
    if best is not None and math.isfinite(best):
        low, high = (
            (low, min(high, max(best, centre_value))) if mode == "max" else (max(low, min(best, centre_value)), high)
        )
    return low, high


def optional(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def by_seed(
    outcomes: Sequence[TrialOutcome], labels: Sequence[str] = (), first_seed: int = 0
) -> dict[str, list[TrialOutcome]]:
    """Each grid point's outcomes in seed order, up to its first missing seed: the design reads seeds
    first_seed, first_seed + 1, ... in order, so a seed past a gap (a trial still running when the sweep
    stopped) waits for it. `labels`: grid points to include even without outcomes (an empty list each)."""
    groups: dict[str, dict[int, TrialOutcome]] = {label: {} for label in labels}
    for outcome in outcomes:
        groups.setdefault(outcome.label, {})[outcome.seed] = outcome
    ordered = {}
    for label, seeds in groups.items():
        run: list[TrialOutcome] = []
        while first_seed + len(run) in seeds:
            run.append(seeds[first_seed + len(run)])
        ordered[label] = run
    return ordered


def scores_by_label(groups: dict[str, list[TrialOutcome]], mode: str) -> dict[str, Array]:
    """The comparison scores of `by_seed`'s groups, as the design reads them (`evidence.Scores`)."""
    return {label: comparison_scores(group, mode) for label, group in groups.items()}


def decisions(
    groups: dict[str, list[TrialOutcome]], mode: str, design: evidence.Design
) -> dict[str, evidence.Decision]:
    """`evidence.decide` on `by_seed`'s groups (with every grid point of the sweep: a point with no finished
    trial stays in the family, and keeps the design waiting)."""
    healthy = {label: [o.healthy for o in group] for label, group in groups.items()}
    return evidence.decide(design, scores_by_label(groups, mode), healthy, baseline_label(groups))


def baseline_label(groups: dict[str, list[TrialOutcome]]) -> str:
    """The label of the group whose outcomes say `is_baseline`; the spec's baseline label when none has any."""
    return next((label for label, group in groups.items() if group and group[0].is_baseline), BASELINE_LABEL)


def main_effects(outcomes: Sequence[TrialOutcome], grid: dict[str, list[Any]], mode: str) -> list[KnobEffect]:
    """Per knob: each value's trial count, healthy rate and mean score; the knob's eta squared on the ranks of
    the score and on healthiness (see `_eta_squared`). Knobs with a single value are left out. Most important
    knob first."""
    fallback = worst_metric(outcomes, mode)
    scores = metric_scores(outcomes, mode, fallback)
    healthy = np.array([o.healthy for o in outcomes], dtype=float)
    usable = np.isfinite(scores)
    effects: list[KnobEffect] = []
    for knob, values in grid.items():
        if len(values) < 2:
            continue
        rows = []
        for value in values:
            mask = np.array([o.knobs.get(knob) == value for o in outcomes], dtype=bool) & usable
            rows.append(
                ValueEffect(
                    value=value,
                    trials=int(mask.sum()),
                    healthy_rate=float(healthy[mask].mean()) if mask.any() else None,
                    mean_score=float(scaled_statistic(np.mean, scores[mask])) if mask.any() else None,
                )
            )
        labels = np.array([repr(o.knobs.get(knob)) for o in outcomes])
        effects.append(
            KnobEffect(
                knob=knob,
                values=tuple(rows),
                eta_squared_score=_eta_squared(scores[usable], labels[usable]),
                eta_squared_healthy=_eta_squared(healthy[usable], labels[usable]),
            )
        )
    effects.sort(key=lambda e: (-(e.eta_squared_score or 0.0), -(e.eta_squared_healthy or 0.0)))
    return effects


def _eta_squared(values: Array, labels: npt.NDArray[np.str_]) -> float | None:
    """Between-group over total sum of squares of the RANKS of the values (ties get their average rank): the
    share of the ranks' variance the labels explain, the Kruskal-Wallis H (tie-corrected) over n - 1; None
    when the values do not vary.

    Ranks lie in 1..n, so no square overflows whatever the values, and an outlier (a fallback score of
    -1e297) weighs as one rank, not as all the variance. For a 0/1 variable such as healthiness the ranks
    are an affine map of the values, so its eta squared is the classical one."""
    ranks = stats.rankdata(values)
    total = float(((ranks - ranks.mean()) ** 2).sum()) if ranks.size else 0.0
    if total == 0.0:
        return None
    between = sum(
        float((labels == label).sum()) * (float(ranks[labels == label].mean()) - float(ranks.mean())) ** 2
        for label in np.unique(labels)
    )
    return between / total


def twin_pairs(
    outcomes: Sequence[TrialOutcome], change: dict[str, Any], defaults: dict[str, Any], where: dict[str, Any]
) -> list[tuple[TrialOutcome, TrialOutcome]]:
    """Every trial with the change (within the points matching `where`) beside its twin: the same seed and
    other knobs, the changed knobs at their defaults."""

    def matches(o: TrialOutcome, wanted: dict[str, Any]) -> bool:
        return all(o.knobs.get(k) == v for k, v in wanted.items())

    def twin_key(o: TrialOutcome) -> tuple[int, tuple[tuple[str, str], ...]]:
        return (o.seed, tuple(sorted((k, repr(v)) for k, v in o.knobs.items() if k not in change)))

    twins = {twin_key(o): o for o in outcomes if matches(o, where) and matches(o, {k: defaults[k] for k in change})}
    return [
        (o, twins[twin_key(o)]) for o in outcomes if matches(o, where) and matches(o, change) and twin_key(o) in twins
    ]


def paired_effect(
    pairs: Sequence[tuple[TrialOutcome, TrialOutcome]], mode: str, fallback: float | None
) -> PairedEffect:
    """What twin pairs measured: both healthy rates, median metrics and final losses, the pairs the change
    improves, worsens or leaves tied (unhealthy twins tie with each other below any healthy one), and the
    same by seed, the unit the claim's test counts (`seed_signs`)."""
    if not pairs:
        return PairedEffect(pairs=0)
    with_change = [a for a, _ in pairs]
    without = [b for _, b in pairs]
    with_scores, without_scores = comparison_scores(with_change, mode), comparison_scores(without, mode)
    wins, losses = int(np.sum(with_scores > without_scores)), int(np.sum(with_scores < without_scores))
    signs = seed_signs(pairs, mode)
    return PairedEffect(
        pairs=len(pairs),
        improved=wins,
        worsened=losses,
        tied=len(pairs) - wins - losses,
        healthy_rate_with=float(np.mean([o.healthy for o in with_change])),
        healthy_rate_without=float(np.mean([o.healthy for o in without])),
        median_metric_with=finite_median(metric_scores(with_change, mode, fallback)),
        median_metric_without=finite_median(metric_scores(without, mode, fallback)),
        median_loss_with=finite_median([o.final_loss for o in with_change]),
        median_loss_without=finite_median([o.final_loss for o in without]),
        max_abs_loss_with=max((abs(o.final_loss) for o in with_change if is_finite(o.final_loss)), default=None),
        prob_with_beats_without=(wins + 0.5 * (len(pairs) - wins - losses)) / len(pairs),
        both_unhealthy=sum(not a.healthy and not b.healthy for a, b in pairs),
        seeds=len(signs),
        seeds_improved=sum(sign > 0 for sign in signs.values()),
        seeds_worsened=sum(sign < 0 for sign in signs.values()),
    )


def seed_signs(pairs: Sequence[tuple[TrialOutcome, TrialOutcome]], mode: str) -> dict[int, int]:
    """Each seed's one observation of a claim: +1 where the change improves more of the seed's twin pairs than
    it worsens, -1 where it worsens more, 0 where they balance. Pairs whose twins both failed decide nothing
    (they tie by construction) and are left out; a seed with no other pair has no observation."""
    counts: dict[int, int] = {}
    for with_change, without in pairs:
        if not with_change.healthy and not without.healthy:
            continue
        a, b = comparison_scores([with_change, without], mode)
        counts[with_change.seed] = counts.get(with_change.seed, 0) + int(np.sign(a - b))
    return {seed: int(np.sign(total)) for seed, total in sorted(counts.items())}


def claim_p_value(effect: PairedEffect, expect: str, margin: float | None) -> float | None:
    """The claim's one-sided p-value from its twin pairs, counted by seed (`seed_signs`: pairs of one seed
    share its data, so a seed is one observation however many grid points it pairs); None for `zero_loss`
    (a statement about every trial, not a test) and where no seed has a pair that decides.

    fixes / harmful: an exact sign test (scipy's binomtest) on the seeds that are not tied: does the change
    improve (worsen) more seeds than it worsens (improves)? With one pair a seed it is the sign test on the
    pairs.

    no_effect: P(a seed's sign is +) - P(-) = s (2q - 1), with s the share of untied seeds and q the share
    improved among them, is shown within +-2 margin in either of two ways, each at its own level, so the
    p-value is twice the smaller (Bonferroni): |q - 1/2| < margin (two one-sided sign tests on the untied
    seeds, TOST), which bounds it since s <= 1; or s < 2 margin (an exact binomial test on the share of
    untied seeds), which bounds it since |q - 1/2| <= 1/2. Twins that always tie (a change that builds the
    same arrays) pass the second; twins that both fail decide nothing, so a claim whose twins always fail
    shows no effect only if some seed has other pairs; a handful of seeds passes neither."""
    if not effect.seeds or expect == "zero_loss":
        return None
    wins, losses = effect.seeds_improved, effect.seeds_worsened
    untied = wins + losses
    if expect in ("fixes", "harmful"):
        if untied == 0:
            return 1.0
        side = "greater" if expect == "fixes" else "less"
        return float(stats.binomtest(wins, untied, 0.5, alternative=side).pvalue)
    assert margin is not None, "a no_effect claim has a margin (sweeper.spec)"
    rarely_untied = float(stats.binomtest(untied, effect.seeds, min(1.0, 2 * margin), alternative="less").pvalue)
    balanced = 1.0
    if untied:
        above = float(stats.binomtest(wins, untied, 0.5 - margin, alternative="greater").pvalue)
        below = float(stats.binomtest(wins, untied, 0.5 + margin, alternative="less").pvalue)
        balanced = max(above, below)
    return min(1.0, 2 * min(balanced, rarely_untied))
