"""The analysis of a sweep, from its trial records to its `Ranking` (sweeper.results): pure numpy and scipy.

- `planned_trials`: the trials the design wants so far, given the finished ones (the driver runs what is
  missing; `evidence.seeds_to_run` decides);
- `analyze`: every grid point's summary, test and verdict (`rank_points`), each knob's main effect, the
  claims (`judge_claims`) and the compute spent;
- `compare`: two finished sweeps' shared grid points side by side.

The statistics live below: `sweeper.ranking` (what trial outcomes read as) and `sweeper.evidence` (the
tests and the seeding design).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweeper import evidence, health, ranking
from sweeper.health import DIVERGED
from sweeper.records import UNFINISHED, TrialRecord
from sweeper.results import (
    ClaimResult,
    ComputeSummary,
    DesignSummary,
    PointSummary,
    PointTest,
    Ranking,
)
from sweeper.spec import BASELINE_LABEL, Claim, GridPoint, Source, SweepSpec, claim_points
from sweeper.workload import Workload

CLAIMS_RULE = (
    "Each claim is judged on twin trials (same seed and other knobs, the claimed change on vs off), the seed "
    "being the unit: a seed counts once, as improved where the change improves more of its pairs than it "
    "worsens, worsened where the reverse, and pairs whose twins both failed decide nothing. fixes / harmful: "
    "an exact sign test on the seeds; no_effect: the share of untied seeds, or the balance among them, shown "
    "within the claim's margin. The claims are one family, {correction} at alpha = {alpha}. `not shown` means "
    "the test did not "
    "reject: no evidence either way, not evidence against. Twins that both lie in a setting whose outcome is "
    "fixed by construction (the workload's FIXED_OUTCOMES) are left out; a claim with no other twins is `not "
    "testable here`."
)


VERDICT_ORDER = {"fixes": 0, "baseline": 1, "no_evidence": 1, "pending": 1, "harmful": 2}
"""The ranking's tiers: shown to fix it, not shown to change it, shown to make it worse."""


# --- the design's next trials ---
def outcomes_of(records: Sequence[TrialRecord], metric: str) -> list[ranking.TrialOutcome]:
    """The finished trials' outcomes (a trial that never finished is no outcome: the design waits for it)."""
    return ranking.fill_missing_chance(
        [
            ranking.TrialOutcome(
                label=r.point.label,
                is_baseline=r.point.is_baseline,
                seed=r.seed,
                verdict=r.verdict,
                final_metric=r.finite_final(metric),
                final_loss=r.finite_final("loss"),
                chance=r.finite_final("chance"),
                oracle=r.finite_final("oracle"),
                reason=r.reason,
                knobs=r.point.knobs,
            )
            for r in records
            if r.reason != UNFINISHED
        ]
    )


def planned_trials(spec: SweepSpec, workload: Workload, found: dict[str, TrialRecord]) -> list[tuple[GridPoint, int]]:
    """Every trial the sweep's design wants so far, given the finished ones (`evidence.seeds_to_run`: the
    looks, then the confirmation round): each point's first n seeds from `first_seed` and the baseline's, in
    grid order. A sweep is done when all of them are found."""
    groups = _groups(spec, workload, found)
    scores = ranking.scores_by_label(groups, workload.mode)
    wanted, baseline_seeds, _ = evidence.seeds_to_run(spec.design, scores, BASELINE_LABEL)
    wanted[BASELINE_LABEL] = baseline_seeds
    first = spec.first_seed
    return [(point, seed) for point in spec.points for seed in range(first, first + wanted[point.label])]


def _groups(
    spec: SweepSpec, workload: Workload, found: dict[str, TrialRecord]
) -> dict[str, list[ranking.TrialOutcome]]:
    outcomes = outcomes_of(list(found.values()), workload.metric)
    return ranking.by_seed(outcomes, [p.label for p in spec.points], spec.first_seed)


INTERIM_NAMES = 3
"""The interim answer names at most this many points each way."""


def interim_answer(spec: SweepSpec, workload: Workload, found: dict[str, TrialRecord]) -> str | None:
    """What the looks so far show, for the console between rounds: the points already called (a look's test,
    adjusted over the family, held: they stop there), then, marked provisional, the points going on, by the
    direction their test leans (the strongest first), with their healthy seeds and P(beats baseline), and how
    many were dropped; after the last look, the points called `fixes` that the confirmation round is about
    to re-test. None before the first look, where nothing goes on, and for a fixed design (one look). A lean
    is no verdict."""
    if spec.design.kind != "adaptive" or not found:
        return None
    groups = _groups(spec, workload, found)
    decided = ranking.decisions(groups, workload.mode, spec.design)
    going = sorted(
        ((label, d, d.test) for label, d in decided.items() if d.status == "running" and d.test is not None),
        key=lambda item: (item[2].p_fixes > item[2].p_harmful, min(item[2].p_fixes, item[2].p_harmful)),
    )
    if not going:
        called = [label for label, d in decided.items() if d.verdict == "fixes" and d.confirmed is None]
        if not called or not any(spec.design.confirm):
            return None
        return f"{spec.name}: called fixes: {', '.join(called)}; confirming on fresh seeds that no look used."

    def healthy(label: str, seeds: int) -> str:
        return f"{sum(o.healthy for o in groups[label][:seeds])}/{seeds} healthy"

    def leaning(towards_fix: bool) -> str | None:
        named = [
            f"{label} ({healthy(label, d.seeds_used)}, P(beats baseline) {test.prob_superiority:.2f})"
            for label, d, test in going
            if (test.p_fixes <= test.p_harmful) == towards_fix
        ]
        more = f" and {len(named) - INTERIM_NAMES} more" if len(named) > INTERIM_NAMES else ""
        return ", ".join(named[:INTERIM_NAMES]) + more if named else None

    seeds = max(d.seeds_used for _, d, _ in going)
    baseline_seeds = max(d.baseline_seeds_used for _, d, _ in going)
    dropped = sum(d.status == "dropped" for d in decided.values())
    called = [
        f"{label} {d.verdict} at {d.seeds_used} seeds ({healthy(label, d.seeds_used)})"
        for label, d in decided.items()
        if d.verdict in ("fixes", "harmful")
    ]
    parts = [f"called: {', '.join(called)}"] if called else []
    parts += [
        f"going on, leaning to {word}: {named}"
        for word, named in (("fix", leaning(True)), ("harm", leaning(False)))
        if named is not None
    ]
    if dropped:
        parts.append(f"dropped, not shown: {dropped} points")
    return (
        f"{spec.name}, after {seeds} seeds a point (the baseline "
        f"{healthy(ranking.baseline_label(groups), baseline_seeds)}): "
        + "; ".join(parts)
        + ". A lean is no verdict: the points going on are provisional."
    )


# --- the ranking ---
def analyze(spec: SweepSpec, workload: Workload, records: Sequence[TrialRecord], sweep_id: str) -> Ranking:
    """Everything the report says, as numbers."""
    outcomes = outcomes_of(records, workload.metric)
    design = spec.design
    return Ranking(
        sweep=sweep_id,
        name=spec.name,
        workload=spec.workload,
        metric=workload.metric,
        mode=workload.mode,
        seeds=spec.seeds,
        max_seeds=spec.max_seeds,
        design=DesignSummary(
            kind=design.kind,
            looks=design.looks,
            baseline_looks=design.baseline_looks,
            alpha=design.alpha,
            correction=design.correction,
            futility_p=evidence.FUTILITY_P if design.kind == "adaptive" else None,
            confirm=design.confirm,
            spend=design.spend,
            futility_p_harmful=evidence.FUTILITY_P_HARMFUL if design.kind == "adaptive" else None,
        ),
        grid=spec.grid,
        fixed=spec.fixed,
        baseline=spec.baseline,
        smoke=spec.smoke,
        verdict_rule=design.describe(len(spec.points) - 1),
        points=tuple(rank_points(outcomes, workload.mode, design, [p.label for p in spec.points], spec.first_seed)),
        vary=spec.vary,
        # One knob at a time from the baseline, each point is already its knob's effect; averaging a knob's
        # value over the other knobs' points would mix their effects in.
        main_effects=tuple(
            ranking.main_effects(outcomes, spec.grid, workload.mode) if spec.vary == "cartesian" else ()
        ),
        claims=tuple(judge_claims(spec, workload, outcomes)),
        claims_rule=CLAIMS_RULE.format(
            correction="Holm" if design.correction == "holm" else "Benjamini-Hochberg", alpha=design.alpha
        ),
        compute=compute_summary(records),
        unfinished=sum(r.reason == UNFINISHED for r in records),
    )


def rank_points(
    outcomes: Sequence[ranking.TrialOutcome],
    mode: str,
    design: evidence.Design,
    labels: Sequence[str] = (),
    first_seed: int = 0,
) -> list[PointSummary]:
    """One summary per grid point with outcomes, the baseline included, best first, in the order of the
    evidence: the points shown to fix it, then those not shown to change it (the baseline among them), then
    those shown to make it worse (`VERDICT_ORDER`); within each, by the lower end of the healthy rate's 95%
    Wilson interval (so 3/3 healthy seeds, lower end 0.44, rank below 9/10, 0.60), then the median comparison
    score (unhealthy seeds last), then the median healthy metric. A point on a few seeds never ranks above a
    `fixes` point it has not been shown to beat. `labels`: every grid point of the sweep, so that one without
    outcomes stays in the family; `first_seed`: the sweep's first seed."""
    groups: dict[str, list[ranking.TrialOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.label, []).append(outcome)
    ordered = ranking.by_seed(outcomes, labels, first_seed)
    decided = ranking.decisions(ordered, mode, design)
    baseline = ordered.get(ranking.baseline_label(ordered), [])
    shifts = {  # the effect on the metric, over the seeds the test used
        label: evidence.metric_shift(
            [ranking.or_nan(o.healthy_metric) for o in ordered[label][: decision.seeds_used]],
            [ranking.or_nan(o.healthy_metric) for o in baseline[: decision.baseline_seeds_used]],
        )
        for label, decision in decided.items()
    }
    fallback = ranking.worst_metric(outcomes, mode)
    sign = 1.0 if mode == "max" else -1.0

    def order(
        summary_and_group: tuple[PointSummary, list[ranking.TrialOutcome]],
    ) -> tuple[int, float, float, float, str]:
        summary, group = summary_and_group
        metric = summary.median_healthy_metric
        return (
            VERDICT_ORDER[summary.verdict],
            -summary.healthy_rate_ci[0],
            -float(ranking.scaled_statistic(np.median, ranking.comparison_scores(group, mode))),
            -sign * metric if metric is not None else math.inf,
            summary.label,
        )

    summaries = [
        (summarize_point(group, decided.get(label), shifts.get(label), mode, fallback), group)
        for label, group in groups.items()
    ]
    return [summary for summary, _ in sorted(summaries, key=order)]


def summarize_point(
    group: Sequence[ranking.TrialOutcome],
    decision: evidence.Decision | None,
    shift: evidence.Shift | None,
    mode: str,
    fallback: float | None,
) -> PointSummary:
    """A grid point's seeds, summaries and, but for the baseline (`decision` None), its test and verdict."""
    group = sorted(group, key=lambda o: o.seed)
    healthy = sum(o.healthy for o in group)
    values = ranking.metric_scores(group, mode, fallback)
    score_centre, centre_kind = ranking.centre(values)
    is_baseline = group[0].is_baseline
    return PointSummary(
        label=group[0].label,
        knobs=group[0].knobs,
        is_baseline=is_baseline,
        seeds=tuple(o.seed for o in group),
        verdicts=tuple(o.verdict for o in group),
        final_metrics=tuple(o.final_metric if ranking.is_finite(o.final_metric) else None for o in group),
        scores=tuple(ranking.optional(v) for v in values),
        healthy=healthy,
        unhealthy=len(group) - healthy,
        healthy_rate=healthy / len(group),
        healthy_rate_ci=evidence.wilson(healthy, len(group)),
        median_healthy_metric=ranking.finite_median([o.healthy_metric for o in group]),
        median_score=ranking.finite_median(values),
        score_centre=score_centre,
        score_centre_kind=centre_kind,
        score_centre_ci=ranking.centre_interval(
            values, healthy == len(group), ranking.finite_median([o.oracle for o in group]), mode
        ),
        median_loss=ranking.finite_median([o.final_loss for o in group]),
        error=_commonest_error(group),
        verdict=decision.verdict if decision is not None else "baseline" if is_baseline else "no_evidence",
        test=None if decision is None else point_test(decision, shift),
    )


ERROR_SHOWN = 160
"""Characters of an error message the answer and the ranking show (trials.csv keeps it whole)."""


def _commonest_error(group: Sequence[ranking.TrialOutcome]) -> str | None:
    """The message its errored trials raised most often, cut to ERROR_SHOWN; None where none raised."""
    messages = [line for o in group if o.verdict == "error" and (line := health.error_line(o.reason))]
    if not messages:
        return None
    message = max(set(messages), key=messages.count)
    return message if len(message) <= ERROR_SHOWN else message[: ERROR_SHOWN - 1] + "…"


def point_test(decision: evidence.Decision, shift: evidence.Shift | None) -> PointTest:
    """A decision as the ranking states it: every number finite or None."""
    test, rate = decision.test, decision.rate
    return PointTest(
        status=decision.status,
        dropped_at=decision.dropped_at,
        stopped_at=decision.stopped_at,
        seeds_used=decision.seeds_used,
        baseline_seeds_used=decision.baseline_seeds_used,
        p_fixes=test.p_fixes if test else None,
        p_harmful=test.p_harmful if test else None,
        p_value=test.p_value if test else None,
        p_adjusted=decision.p_adjusted,
        prob_superiority=test.prob_superiority if test else None,
        prob_superiority_ci=test.prob_superiority_ci if test else None,
        exact=test.exact if test else None,
        healthy_rate_difference=rate.difference if rate else None,
        healthy_rate_difference_ci=(
            (ranking.optional(rate.interval[0]), ranking.optional(rate.interval[1])) if rate else None
        ),
        healthy_rate_p_fixes=rate.p_fixes if rate else None,
        healthy_rate_p_harmful=rate.p_harmful if rate else None,
        metric_shift=ranking.optional(shift.estimate) if shift else None,
        metric_shift_ci=(ranking.optional(shift.low), ranking.optional(shift.high)) if shift else None,
        confirmation_p=decision.confirmation_p,
        confirmation_p_adjusted=decision.confirmation_p_adjusted,
        confirmed=decision.confirmed,
    )


def compute_summary(records: Sequence[TrialRecord]) -> ComputeSummary:
    """Training seconds spent, and those saved by stopping diverged trials: each stopped trial would have
    run as many steps as the median trial that ran to its end, at its own seconds per step. A trial without
    a finite number of seconds counts as 0 s."""
    finished_steps = [len(r.history) for r in records if r.history and r.verdict not in (*DIVERGED, "error")]
    full = statistics.median(finished_steps) if finished_steps else None
    stopped = [r for r in records if r.verdict in DIVERGED and r.history]
    saved = 0.0
    if full is not None:
        saved = sum(max(0.0, full - len(r.history)) * (r.finite_train_seconds or 0.0) / len(r.history) for r in stopped)
    spent = sum(r.finite_train_seconds or 0.0 for r in records)
    return ComputeSummary(
        train_seconds=round(spent, 3),
        stopped_early=len(stopped),
        estimated_seconds_saved=round(saved, 3),
        saved_share=round(saved / (spent + saved), 4) if spent + saved > 0 else 0.0,
    )


# --- the claims ---
def fixed_outcome(spec: SweepSpec, workload: Workload, knobs: dict[str, Any]) -> str | None:
    """Why a trial with these grid knobs has an outcome fixed by construction (the workload's FIXED_OUTCOMES,
    on the whole Config the trial runs with), or None."""
    config = {name: knob.default for name, knob in workload.knobs.items()}
    config.update(spec.base_overrides(workload), **knobs)
    for when, why in workload.fixed_outcomes:
        if all(config.get(key) == value for key, value in when.items()):
            return f"{', '.join(f'{k}={v}' for k, v in when.items())}: {why}"
    return None


def judge_claims(spec: SweepSpec, workload: Workload, outcomes: Sequence[ranking.TrialOutcome]) -> list[ClaimResult]:
    """Every claim of the spec: where it is testable (from the spec and the workload alone), what its twin
    pairs measured, its p-value and adjusted p-value (one family), and whether it holds."""
    defaults = spec.defaults(workload)
    fallback = ranking.worst_metric(outcomes, workload.mode)
    judged = []
    for claim in spec.claims:
        informative, left_out = set(), set()
        # A zero_loss claim is about the trials with the change, whatever their twins: there a fixed outcome
        # (a loss that is exactly 0, or an exception) is the answer, not a setting to leave out.
        comparative = claim.expect != "zero_loss"
        for point, twin in claim_points(spec.points, claim.change, claim.where, defaults):
            reason = fixed_outcome(spec, workload, point.knobs)
            if reason is not None and comparative and fixed_outcome(spec, workload, twin) is not None:
                left_out.add(reason)
            else:
                informative.add(point.label)
        pairs = [
            (a, b)
            for a, b in ranking.twin_pairs(outcomes, claim.change, defaults, claim.where)
            if a.label in informative
        ]
        effect = ranking.paired_effect(pairs, workload.mode, fallback)
        judged.append(
            ClaimResult(
                claim=claim.text,
                change=claim.change,
                where=claim.where,
                expect=claim.expect,
                margin=claim.margin,
                source=claim_source(claim),
                testable=bool(informative),
                left_out=tuple(sorted(left_out)),
                p_value=ranking.claim_p_value(effect, claim.expect, claim.margin) if informative else None,
                measured=effect,
                p_adjusted=None,
                holds=None,
                status="",
            )
        )
    tested = [index for index, item in enumerate(judged) if item.p_value is not None]
    adjusted = dict(
        zip(tested, evidence.adjust([judged[i].p_value or 0.0 for i in tested], spec.correction), strict=True)
    )
    results = []
    for index, item in enumerate(judged):
        item = dataclasses.replace(item, p_adjusted=adjusted.get(index))
        holds, status = _claim_status(item, spec.alpha, workload.thresholds.zero_loss_atol)
        results.append(dataclasses.replace(item, holds=holds, status=status))
    return results


def claim_source(claim: Claim) -> dict[str, str] | str | None:
    """The claim's source as ranking.json keeps it: {file, quote}, "project", or None."""
    return dataclasses.asdict(claim.source) if isinstance(claim.source, Source) else claim.source


def _claim_status(item: ClaimResult, alpha: float, zero_loss_atol: float) -> tuple[bool | None, str]:
    if not item.testable:
        return None, ranking.NOT_TESTABLE
    if not item.measured.pairs:
        return None, "cannot tell"
    if item.expect == "zero_loss":  # a statement about every trial with the change, not a test
        largest = item.measured.max_abs_loss_with
        holds = largest is not None and largest <= zero_loss_atol
        return holds, "holds" if holds else "does not hold"
    if item.p_value is None:  # every pair's twins both failed: nothing decides
        return None, "cannot tell"
    holds = item.p_adjusted is not None and item.p_adjusted <= alpha
    return holds, "holds" if holds else "not shown"


# --- two sweeps side by side ---
@dataclass(frozen=True)
class Comparison:
    """A grid point two sweeps share: both verdicts, healthy counts and median healthy metrics, and the rank
    test of the later sweep's seeds against the earlier one's (unadjusted)."""

    label: str
    verdict_before: str
    verdict_after: str
    healthy_before: str
    """`healthy/seeds`"""
    healthy_after: str
    metric_before: float | None
    metric_after: float | None
    prob_after_beats_before: float | None
    p_value: float | None


def compare(before: Ranking, after: Ranking) -> list[Comparison]:
    """The grid points two rankings share (by label), in `after`'s order; ValueError if they measure
    different metrics."""
    if before.metric != after.metric or before.mode != after.mode:
        raise ValueError(f"the sweeps measure different metrics: {before.metric} vs {after.metric}")
    sign = 1.0 if before.mode == "max" else -1.0

    def scores(point: PointSummary) -> list[float]:
        return [
            sign * m if v == "healthy" and m is not None else -math.inf
            for v, m in zip(point.verdicts, point.final_metrics, strict=True)
        ]

    earlier = {p.label: p for p in before.points}
    rows = []
    for p in after.points:
        if p.label not in earlier:
            continue
        old = earlier[p.label]
        test = evidence.rank_test(scores(p), scores(old))
        rows.append(
            Comparison(
                label=p.label,
                verdict_before=old.verdict,
                verdict_after=p.verdict,
                healthy_before=f"{old.healthy}/{len(old.seeds)}",
                healthy_after=f"{p.healthy}/{len(p.seeds)}",
                metric_before=old.median_healthy_metric,
                metric_after=p.median_healthy_metric,
                prob_after_beats_before=None if test is None else test.prob_superiority,
                p_value=None if test is None else test.p_value,
            )
        )
    return rows
