"""Diagnosis of one trial from its report history: pure functions, no heavy imports.

Verdicts, checked in this order (the first that applies wins):
  error       the trial raised, or reported nothing;
  non_finite  loss, gradient norm or metric went NaN or infinite;
  exploding   |loss| or the gradient norm passed EXPLODING_BOUND;
  stuck_zero  |loss| <= ZERO_LOSS_ATOL at every report, from the first;
  collapsed   the final metric does not beat the `chance` level the workload reported by more than
              COLLAPSE_MARGIN of the way from chance to the `oracle` (or not at all, without an oracle);
  healthy     none of the above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

VERDICTS = ("healthy", "stuck_zero", "non_finite", "exploding", "collapsed", "error")

ZERO_LOSS_ATOL = 1e-7
"""A loss whose magnitude never exceeds this is 'exactly or almost exactly' zero: float32 rounding of a
real loss on any non-trivial batch stays far above it."""

EXPLODING_BOUND = 1e6
"""A loss or gradient norm past this has diverged; no workload here trains healthily at such a scale."""

COLLAPSE_MARGIN = 0.05
"""Share of the chance->oracle gap a final metric must clear to count as learning anything."""

_WATCHED = ("loss", "grad_norm")


@dataclass(frozen=True)
class Diagnosis:
    verdict: str
    reason: str


def check_report(report: dict[str, Any], metric: str) -> Diagnosis | None:
    """`non_finite` or `exploding` if this report shows it, else None.

    Checked inside the trial after every report, so a diverged trial stops at once rather than running
    to its end; the full history then gets its verdict from `diagnose`.
    """
    for key in (*_WATCHED, metric):
        value = report.get(key)
        if isinstance(value, int | float) and not math.isfinite(value):
            return Diagnosis("non_finite", f"{key} is {value} at step {report.get('step')}")
    for key in _WATCHED:
        value = report.get(key)
        if isinstance(value, int | float) and abs(value) > EXPLODING_BOUND:
            step = report.get("step")
            return Diagnosis("exploding", f"|{key}| = {abs(value):.3g} > {EXPLODING_BOUND:.0e} at step {step}")
    return None


def diagnose(history: list[dict[str, Any]], metric: str, mode: str, error: str | None = None) -> Diagnosis:
    """The verdict for a trial's report history (one dict per report, in order)."""
    if error:
        return Diagnosis("error", error)
    if not history:
        return Diagnosis("error", "the trial reported nothing")

    for report in history:
        diverged = check_report(report, metric)
        if diverged is not None:
            return diverged

    losses = [report["loss"] for report in history if "loss" in report]
    if losses and all(abs(loss) <= ZERO_LOSS_ATOL for loss in losses):
        return Diagnosis("stuck_zero", f"|loss| <= {ZERO_LOSS_ATOL:g} at all {len(losses)} reports")

    final = history[-1]
    value, chance = final.get(metric), final.get("chance")
    if isinstance(value, int | float) and isinstance(chance, int | float):
        oracle = final.get("oracle")
        margin = COLLAPSE_MARGIN * abs(oracle - chance) if isinstance(oracle, int | float) else 0.0
        beats = value > chance + margin if mode == "max" else value < chance - margin
        if not beats:
            return Diagnosis("collapsed", f"final {metric} {value:.4g} does not beat chance {chance:.4g} by {margin:.3g}")
    return Diagnosis("healthy", "")
