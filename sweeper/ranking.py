"""Remedy statistics over seeds: pure numpy/scipy, no heavy imports.

Unhealthy seeds count as failures; they are never dropped:
- for the metric statistics, an unhealthy trial scores the workload's `chance` level (what a model that
  learned nothing gets; `fill_missing_chance` supplies it for trials that raised), or the sweep's worst
  final metric where the workload reports no chance level;
- for comparisons, an unhealthy trial ranks below every healthy one and ties with every other unhealthy one.

Per grid point:
  healthy_rate        share of healthy seeds, with a 95% Wilson score interval;
  median / iqm        median and interquartile mean of the scores, the IQM with a 95% percentile
                      bootstrap interval (seeded: the same trials always give the same interval);
  prob_beats_baseline P(a random seed of the point beats a random seed of the baseline), ties counting
                      one half: the Mann-Whitney U statistic over n*m;
  verdict             VERDICT_RULE.
Per knob: the main effect of each value (mean over every trial with that value, all other knobs
marginalised) and the knob's importance: eta squared, the share of the variance of the scores' RANKS that
its values explain (the Kruskal-Wallis H over n - 1). Ranks, not the scores themselves: the fallback score
of an unhealthy trial is the sweep's worst final metric, which can be -1e297 (an R^2 of a diverging run),
and its squared deviation would overflow and, finite or not, make the knob that holds it explain all the
variance. On ranks importance depends on the order of the scores only, as P(beats baseline) does.

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
from scipy import stats

FIXES_AT = 0.75
HARMFUL_AT = 0.25
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20211111
VERDICT_RULE = (
    f"`fixes` when a seed of the point beats a seed of the baseline with probability >= {FIXES_AT} "
    f"(unhealthy seeds rank below every healthy one) and at least half its seeds are healthy; "
    f"`harmful` when that probability is <= {HARMFUL_AT}; `no_evidence` otherwise."
)


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

    @property
    def healthy(self) -> bool:
        return self.healthy_metric is not None

    @property
    def healthy_metric(self) -> float | None:
        """The final metric of a healthy trial; None for any other."""
        return self.final_metric if self.verdict == "healthy" and _finite(self.final_metric) else None


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def scaled_statistic(statistic: Callable[..., Any], values: np.ndarray, **kwargs: Any) -> Any:
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
    finite = np.array([float(v) for v in values if _finite(v)])
    return float(scaled_statistic(np.median, finite)) if finite.size else None


def fill_missing_chance(outcomes: Sequence[TrialOutcome]) -> list[TrialOutcome]:
    """Give a trial that reported no chance level (it raised, or diverged at once) the median chance level
    of the trials with the same seed (same data), else of the whole sweep."""
    known = [(o.seed, o.chance) for o in outcomes if _finite(o.chance)]
    if not known:
        return list(outcomes)
    overall = finite_median([chance for _, chance in known])
    by_seed: dict[int, list[float]] = {}
    for seed, chance in known:
        by_seed.setdefault(seed, []).append(chance)
    return [
        o if _finite(o.chance) else dataclasses.replace(o, chance=finite_median(by_seed.get(o.seed, [overall])))
        for o in outcomes
    ]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def comparison_scores(outcomes: Sequence[TrialOutcome], mode: str) -> np.ndarray:
    """Higher is better; unhealthy trials get -inf, so they tie with each other and lose to any healthy one."""
    sign = 1.0 if mode == "max" else -1.0
    metrics = [o.healthy_metric for o in outcomes]
    return np.array([sign * m if m is not None else -np.inf for m in metrics], dtype=float)


def metric_scores(outcomes: Sequence[TrialOutcome], mode: str, fallback: float | None) -> np.ndarray:
    """In the metric's own units; an unhealthy trial counts at its chance level, else at `fallback`."""
    values = []
    for o in outcomes:
        if o.healthy:
            values.append(o.final_metric)
        elif _finite(o.chance):
            values.append(o.chance)
        else:
            values.append(fallback if fallback is not None else math.nan)
    return np.array(values, dtype=float)


def worst_metric(outcomes: Sequence[TrialOutcome], mode: str) -> float | None:
    finite = [o.final_metric for o in outcomes if _finite(o.final_metric)]
    if not finite:
        return None
    return min(finite) if mode == "max" else max(finite)


def prob_improvement(candidate: np.ndarray, reference: np.ndarray) -> float:
    """P(candidate > reference) + P(tie) / 2 over all pairs, on higher-is-better scores."""
    if candidate.size == 0 or reference.size == 0:
        return math.nan
    greater = (candidate[:, None] > reference[None, :]).sum()
    ties = (candidate[:, None] == reference[None, :]).sum()
    return float((greater + 0.5 * ties) / (candidate.size * reference.size))


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half (scipy's 25% trimmed mean), overflow-free
    (`scaled_statistic`)."""
    return scaled_statistic(stats.trim_mean, values, proportiontocut=0.25, axis=axis)


def bootstrap_iqm_interval(values: np.ndarray, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile bootstrap interval of the IQM of the finite values (degenerate for one value or
    identical values; NaN for none). The resampling, the IQMs and the percentiles all run on the scaled
    values of `scaled_statistic`, so that neither a sum nor an interpolation between two IQMs overflows."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan

    def interval(scaled: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        resamples = rng.choice(scaled, size=(BOOTSTRAP_RESAMPLES, scaled.size), replace=True)
        return np.percentile(iqm(resamples, axis=1), [2.5, 97.5])

    low, high = scaled_statistic(interval, values)
    return float(low), float(high)


def _optional(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def summarize_point(
    group: Sequence[TrialOutcome], baseline: Sequence[TrialOutcome], mode: str, fallback: float | None
) -> dict[str, Any]:
    group = sorted(group, key=lambda o: o.seed)
    healthy = sum(o.healthy for o in group)
    low, high = wilson_interval(healthy, len(group))
    values = metric_scores(group, mode, fallback)
    finite = values[np.isfinite(values)]
    is_baseline = group[0].is_baseline
    # NaN (None) when the sweep holds no baseline trial to compare with
    beats = (
        None
        if is_baseline
        else _optional(prob_improvement(comparison_scores(group, mode), comparison_scores(baseline, mode)))
    )
    return {
        "label": group[0].label,
        "knobs": group[0].knobs,
        "is_baseline": is_baseline,
        "seeds": [o.seed for o in group],
        "verdicts": [o.verdict for o in group],
        "final_metrics": [o.final_metric if _finite(o.final_metric) else None for o in group],
        "scores": [_optional(v) for v in values],
        "healthy": healthy,
        "healthy_rate": healthy / len(group),
        "healthy_rate_ci": [low, high],
        "median": finite_median(values),
        "iqm": _optional(float(iqm(finite))) if finite.size else None,
        "iqm_ci": [_optional(end) for end in bootstrap_iqm_interval(values)],
        "median_loss": finite_median([o.final_loss for o in group]),
        "prob_beats_baseline": beats,
        "verdict": "baseline" if is_baseline else verdict_of(beats, healthy / len(group)),
    }


def verdict_of(prob_beats_baseline: float | None, healthy_rate: float) -> str:
    if prob_beats_baseline is None or math.isnan(prob_beats_baseline):
        return "no_evidence"
    if prob_beats_baseline >= FIXES_AT and healthy_rate >= 0.5:
        return "fixes"
    if prob_beats_baseline <= HARMFUL_AT:
        return "harmful"
    return "no_evidence"


def rank_points(outcomes: Sequence[TrialOutcome], mode: str) -> list[dict[str, Any]]:
    """One summary per grid point, best first: by healthy rate, then comparison score, then IQM."""
    groups: dict[str, list[TrialOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.label, []).append(outcome)
    baseline = [o for o in outcomes if o.is_baseline]
    fallback = worst_metric(outcomes, mode)
    sign = 1.0 if mode == "max" else -1.0

    def order(summary_and_group):
        summary, group = summary_and_group
        iqm_value = summary["iqm"]
        return (
            -summary["healthy_rate"],
            -float(scaled_statistic(np.median, comparison_scores(group, mode))),
            -sign * iqm_value if iqm_value is not None else math.inf,
            summary["label"],
        )

    summaries = [(summarize_point(group, baseline, mode, fallback), group) for group in groups.values()]
    return [summary for summary, _ in sorted(summaries, key=order)]


def main_effects(outcomes: Sequence[TrialOutcome], grid: dict[str, list[Any]], mode: str) -> list[dict[str, Any]]:
    """Per knob: each value's trial count, healthy rate and mean score; the knob's eta squared on the ranks of
    the score and on healthiness (see `_eta_squared`). Knobs with a single value are left out. Most important
    knob first."""
    fallback = worst_metric(outcomes, mode)
    scores = metric_scores(outcomes, mode, fallback)
    healthy = np.array([o.healthy for o in outcomes], dtype=float)
    usable = np.isfinite(scores)
    effects: list[dict[str, Any]] = []
    for knob, values in grid.items():
        if len(values) < 2:
            continue
        rows = []
        for value in values:
            mask = np.array([o.knobs.get(knob) == value for o in outcomes], dtype=bool) & usable
            rows.append(
                {
                    "value": value,
                    "trials": int(mask.sum()),
                    "healthy_rate": float(healthy[mask].mean()) if mask.any() else None,
                    "mean_score": float(scaled_statistic(np.mean, scores[mask])) if mask.any() else None,
                }
            )
        labels = np.array([repr(o.knobs.get(knob)) for o in outcomes])
        effects.append(
            {
                "knob": knob,
                "values": rows,
                "eta_squared_score": _eta_squared(scores[usable], labels[usable]),
                "eta_squared_healthy": _eta_squared(healthy[usable], labels[usable]),
            }
        )
    effects.sort(key=lambda e: (-(e["eta_squared_score"] or 0.0), -(e["eta_squared_healthy"] or 0.0)))
    return effects


def _eta_squared(values: np.ndarray, labels: np.ndarray) -> float | None:
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


def paired_effect(
    outcomes: Sequence[TrialOutcome], change: dict[str, Any], defaults: dict[str, Any], where: dict[str, Any], mode: str
) -> dict[str, Any]:
    """The effect of setting the knobs in `change` (vs their defaults), within the points that match `where`:
    every trial with the change is compared with its twin (same seed, same other knobs, changed knobs at
    their defaults). Returns the number of twin pairs, both healthy rates, median metrics and median final
    losses, and P(with beats without): the share of twin pairs the change improves, ties counting half."""

    def matches(o: TrialOutcome, wanted: dict[str, Any]) -> bool:
        return all(o.knobs.get(k) == v for k, v in wanted.items())

    def twin_key(o: TrialOutcome) -> tuple:
        return (o.seed, tuple(sorted((k, repr(v)) for k, v in o.knobs.items() if k not in change)))

    twins = {twin_key(o): o for o in outcomes if matches(o, where) and matches(o, {k: defaults[k] for k in change})}
    pairs = [
        (o, twins[twin_key(o)]) for o in outcomes if matches(o, where) and matches(o, change) and twin_key(o) in twins
    ]
    if not pairs:
        return {"pairs": 0}
    with_change = [a for a, _ in pairs]
    without = [b for _, b in pairs]
    fallback = worst_metric(outcomes, mode)

    # Twin against twin, not every seed against every seed: the other knobs differ between pairs.
    with_scores, without_scores = comparison_scores(with_change, mode), comparison_scores(without, mode)
    wins = float(np.mean(with_scores > without_scores))
    losses = float(np.mean(with_scores < without_scores))
    return {
        "pairs": len(pairs),
        "healthy_rate_with": float(np.mean([o.healthy for o in with_change])),
        "healthy_rate_without": float(np.mean([o.healthy for o in without])),
        "median_metric_with": finite_median(metric_scores(with_change, mode, fallback)),
        "median_metric_without": finite_median(metric_scores(without, mode, fallback)),
        "median_loss_with": finite_median([o.final_loss for o in with_change]),
        "median_loss_without": finite_median([o.final_loss for o in without]),
        "max_abs_loss_with": max((abs(o.final_loss) for o in with_change if _finite(o.final_loss)), default=None),
        "share_improved": wins,
        "share_worsened": losses,
        "prob_with_beats_without": wins + 0.5 * (1.0 - wins - losses),
    }


def judge_claim(effect: dict[str, Any], expect: str, zero_loss_atol: float) -> bool | None:
    """Whether the measured paired effect bears the claim out; None when the grid cannot tell."""
    if not effect.get("pairs"):
        return None
    p = effect["prob_with_beats_without"]
    if expect == "fixes":
        return p >= FIXES_AT and effect["healthy_rate_with"] >= 0.5
    if expect == "harmful":
        return p <= HARMFUL_AT
    if expect == "no_effect":
        return HARMFUL_AT < p < FIXES_AT
    if expect == "zero_loss":
        return effect["max_abs_loss_with"] is not None and effect["max_abs_loss_with"] <= zero_loss_atol
    raise ValueError(f"unknown expectation {expect!r}")


def compare_sweeps(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid points two ranking documents share (by label): both verdicts, healthy counts and IQMs, and
    P(a seed of `after` beats a seed of `before`), on the same scores as the ranking."""
    if before["metric"] != after["metric"] or before["mode"] != after["mode"]:
        raise ValueError(f"the sweeps measure different metrics: {before['metric']} vs {after['metric']}")
    sign = 1.0 if before["mode"] == "max" else -1.0

    def scores(point: dict[str, Any]) -> np.ndarray:
        return np.array(
            [
                sign * m if v == "healthy" and m is not None else -np.inf
                for v, m in zip(point["verdicts"], point["final_metrics"], strict=True)
            ],
            dtype=float,
        )

    earlier = {p["label"]: p for p in before["points"]}
    return [
        {
            "label": p["label"],
            "verdict_before": earlier[p["label"]]["verdict"],
            "verdict_after": p["verdict"],
            "healthy_before": f"{earlier[p['label']]['healthy']}/{len(earlier[p['label']]['seeds'])}",
            "healthy_after": f"{p['healthy']}/{len(p['seeds'])}",
            "iqm_before": earlier[p["label"]]["iqm"],
            "iqm_after": p["iqm"],
            "prob_after_beats_before": prob_improvement(scores(p), scores(earlier[p["label"]])),
        }
        for p in after["points"]
        if p["label"] in earlier
    ]
