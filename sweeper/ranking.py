"""Remedy statistics over seeds: pure numpy, no heavy imports.

Every trial gets a score: its final metric if its verdict is `healthy`, else the worst possible score, so
an unhealthy seed counts as a failure and is never dropped. Per grid point:
  healthy_rate        share of healthy seeds, with a 95% Wilson score interval;
  median_metric       median final metric over the seeds that reported one (healthy or not);
  prob_beats_baseline P(score of a random seed of the point > score of a random seed of the baseline),
                      ties counting one half (the Mann-Whitney U statistic over n*m);
  verdict             VERDICT_RULE below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FIXES_AT = 0.75
HARMFUL_AT = 0.25
VERDICT_RULE = (
    f"`fixes` when the point beats the baseline with probability >= {FIXES_AT} (unhealthy seeds score worst) "
    f"and at least half its seeds are healthy; `harmful` when that probability is <= {HARMFUL_AT}; "
    "`no_evidence` otherwise."
)


@dataclass(frozen=True)
class TrialOutcome:
    label: str
    is_baseline: bool
    seed: int
    verdict: str
    final_metric: float | None
    final_loss: float | None
    knobs: dict[str, Any] = field(default_factory=dict)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def scores(outcomes: Sequence[TrialOutcome], mode: str) -> np.ndarray:
    """Scores oriented so that higher is better; unhealthy or metric-less trials get -inf."""
    sign = 1.0 if mode == "max" else -1.0
    return np.array(
        [
            sign * o.final_metric
            if o.verdict == "healthy" and o.final_metric is not None and math.isfinite(o.final_metric)
            else -np.inf
            for o in outcomes
        ]
    )


def prob_improvement(candidate: np.ndarray, reference: np.ndarray) -> float:
    """P(candidate > reference) + P(tie) / 2 over all pairs, on higher-is-better scores."""
    if candidate.size == 0 or reference.size == 0:
        return math.nan
    greater = (candidate[:, None] > reference[None, :]).sum()
    ties = (candidate[:, None] == reference[None, :]).sum()
    return float((greater + 0.5 * ties) / (candidate.size * reference.size))


def _median(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def rank_points(outcomes: Sequence[TrialOutcome], mode: str) -> list[dict[str, Any]]:
    """One summary per grid point, best first: by healthy rate, then median score, then median metric."""
    by_label: dict[str, list[TrialOutcome]] = {}
    for outcome in outcomes:
        by_label.setdefault(outcome.label, []).append(outcome)
    baseline = [o for o in outcomes if o.is_baseline]
    baseline_scores = scores(baseline, mode)

    summaries = []
    for label, group in by_label.items():
        group = sorted(group, key=lambda o: o.seed)
        healthy = sum(o.verdict == "healthy" for o in group)
        low, high = wilson_interval(healthy, len(group))
        point_scores = scores(group, mode)
        is_baseline = group[0].is_baseline
        beats = None if is_baseline else prob_improvement(point_scores, baseline_scores)
        summaries.append(
            (float(np.median(point_scores)), {
                "label": label,
                "knobs": group[0].knobs,
                "is_baseline": is_baseline,
                "seeds": [o.seed for o in group],
                "verdicts": [o.verdict for o in group],
                "healthy": healthy,
                "healthy_rate": healthy / len(group),
                "healthy_rate_ci": [low, high],
                "median_metric": _median([o.final_metric for o in group]),
                "median_loss": _median([o.final_loss for o in group]),
                "prob_beats_baseline": beats,
                "verdict": "baseline" if is_baseline else _verdict(beats, healthy / len(group)),
            })
        )
    sign = 1.0 if mode == "max" else -1.0
    summaries.sort(
        key=lambda pair: (
            -pair[1]["healthy_rate"],
            -pair[0],
            -sign * pair[1]["median_metric"] if pair[1]["median_metric"] is not None else math.inf,
        )
    )
    return [summary for _, summary in summaries]


def _verdict(prob_beats_baseline: float | None, healthy_rate: float) -> str:
    if prob_beats_baseline is None or math.isnan(prob_beats_baseline):
        return "no_evidence"
    if prob_beats_baseline >= FIXES_AT and healthy_rate >= 0.5:
        return "fixes"
    if prob_beats_baseline <= HARMFUL_AT:
        return "harmful"
    return "no_evidence"
