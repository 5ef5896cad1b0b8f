"""Diagnosis of one trial from its report history: pure functions, no heavy imports.

Verdicts, checked in this order (the first that applies wins):
  error       the trial raised, or reported nothing;
  non_finite  loss, gradient norm, output scale or metric went NaN or infinite;
  exploding   |loss|, the gradient norm or the output scale passed `exploding_bound`, or grew by a
              factor of `growth_factor` within `growth_window` reports;
  stuck_zero  |loss| <= `zero_loss_atol` at every report from the first; or the loss fell to
              |loss| <= `near_zero_loss` and stayed there for the last `stuck_tail` share of the reports
              while the final metric stayed at chance (the trial learns nothing from a zero loss);
  no_signal   the gradient norm stayed <= `no_signal_grad_norm` at every report: nothing can change;
  collapsed   the final metric does not clear the workload's `chance` level by `collapse_margin` of the
              way from chance to its `oracle` (or not at all, without an oracle), or misses the
              workload's declared `metric_floor`;
  healthy     none of the above.

Every threshold is a field of `Thresholds`; a workload may override some with a module-level dict
`THRESHOLDS` (for example a wider `exploding_bound` where large losses are normal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeGuard

VERDICTS = ("healthy", "stuck_zero", "no_signal", "non_finite", "exploding", "collapsed", "error")
DIVERGED = ("non_finite", "exploding")  # the verdicts that stop a trial early

WATCHED = ("loss", "grad_norm", "output_scale")
"""Report keys whose magnitude the divergence checks watch (`output_scale` when a workload reports it)."""


@dataclass(frozen=True)
class Thresholds:
    zero_loss_atol: float = 1e-7
    """A loss whose magnitude never exceeds this is 'exactly or almost exactly' zero: float32 rounding of
    a real loss on any non-trivial batch stays far above it."""
    near_zero_loss: float = 1e-4
    """A loss that falls below this and stays there has stopped carrying a learning signal, for a model
    whose metric is still at chance."""
    stuck_tail: float = 0.5
    """Share of the last reports over which a fallen loss must stay near zero to count as stuck."""
    no_signal_grad_norm: float = 1e-6
    """A global gradient norm that never exceeds this moves no weight; float rounding of a symmetric
    (tied) gradient lands around 1e-8 to 1e-7."""
    exploding_bound: float = 1e6
    """A loss, gradient norm or output scale past this has diverged."""
    growth_factor: float = 1e3
    """Growth of a watched value by this factor within `growth_window` reports is divergence in progress..."""
    growth_window: int = 5
    """...counted over this many consecutive reports..."""
    growth_floor: float = 1.0
    """...from a starting magnitude of at least this (so tiny values going from 1e-6 to 1e-3 do not count)."""
    collapse_margin: float = 0.05
    """Share of the chance->oracle gap a final metric must clear to count as learning anything."""
    metric_floor: float | None = None
    """A workload's own bar for a usable final metric (in its MODE's direction); None: chance decides."""

    @classmethod
    def with_overrides(cls, overrides: dict[str, Any] | None) -> Thresholds:
        known = {f.name for f in fields(cls)}
        unknown = set(overrides or {}) - known
        if unknown:
            raise ValueError(f"unknown thresholds {sorted(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**(overrides or {}))


DEFAULT = Thresholds()


@dataclass(frozen=True)
class Diagnosis:
    verdict: str
    reason: str


def is_number(value: Any) -> TypeGuard[float]:
    """Whether a report value is a number (NaN and infinities included; a bool, None or text is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_divergence(history: Sequence[dict[str, Any]], metric: str, limits: Thresholds = DEFAULT) -> Diagnosis | None:
    """`non_finite` or `exploding` if the LAST report of the history shows it, else None.

    Called inside the trial after every report, so a diverged trial stops at once rather than running to
    its end; `diagnose` calls it on every prefix of a finished history. None for an empty history.
    """
    if not history:
        return None
    report = history[-1]
    step = report.get("step")
    for key in (*WATCHED, metric):
        value = report.get(key)
        if is_number(value) and not math.isfinite(value):
            return Diagnosis("non_finite", f"{key} is {value} at step {step}")
    for key in WATCHED:
        value = report.get(key)
        if not is_number(value):
            continue
        if abs(value) > limits.exploding_bound:
            return Diagnosis("exploding", f"|{key}| = {abs(value):.3g} > {limits.exploding_bound:.0e} at step {step}")
        earlier = [abs(r[key]) for r in history[-limits.growth_window - 1 : -1] if is_number(r.get(key))]
        if earlier:
            start = max(min(earlier), limits.growth_floor)
            if abs(value) >= limits.growth_factor * start:
                return Diagnosis(
                    "exploding",
                    f"|{key}| grew from {start:.3g} to {abs(value):.3g} within {len(earlier)} reports at step {step}",
                )
    return None


def _collapse(final: dict[str, Any], metric: str, mode: str, limits: Thresholds) -> str | None:
    value = final.get(metric)
    if not is_number(value):
        return None
    floor = limits.metric_floor
    if floor is not None and (value < floor if mode == "max" else value > floor):
        return f"final {metric} {value:.4g} misses the workload's floor {floor:.4g}"
    chance = final.get("chance")
    if not is_number(chance):
        return None
    oracle = final.get("oracle")
    margin = limits.collapse_margin * abs(oracle - chance) if is_number(oracle) else 0.0
    if not (value > chance + margin if mode == "max" else value < chance - margin):
        return f"final {metric} {value:.4g} does not beat chance {chance:.4g} by {margin:.3g}"
    return None


def diagnose(
    history: Sequence[dict[str, Any]],
    metric: str,
    mode: str,
    error: str | None = None,
    limits: Thresholds = DEFAULT,
) -> Diagnosis:
    """The verdict for a trial's report history (one dict per report, in order)."""
    if error:
        return Diagnosis("error", error)
    if not history:
        return Diagnosis("error", "the trial reported nothing")

    for end in range(1, len(history) + 1):
        diverged = check_divergence(history[:end], metric, limits)
        if diverged is not None:
            return diverged

    collapse = _collapse(history[-1], metric, mode, limits)
    losses = [r["loss"] for r in history if is_number(r.get("loss"))]
    if losses and all(abs(loss) <= limits.zero_loss_atol for loss in losses):
        return Diagnosis("stuck_zero", f"|loss| <= {limits.zero_loss_atol:g} at all {len(losses)} reports")
    tail = losses[-max(1, math.ceil(limits.stuck_tail * len(losses))) :]
    if len(losses) >= 2 and collapse and all(abs(loss) <= limits.near_zero_loss for loss in tail):
        return Diagnosis(
            "stuck_zero",
            f"|loss| <= {limits.near_zero_loss:g} over the last {len(tail)} of {len(losses)} reports; {collapse}",
        )

    norms = [r["grad_norm"] for r in history if is_number(r.get("grad_norm"))]
    if norms and all(abs(norm) <= limits.no_signal_grad_norm for norm in norms):
        return Diagnosis("no_signal", f"gradient norm <= {limits.no_signal_grad_norm:g} at all {len(norms)} reports")

    if collapse:
        return Diagnosis("collapsed", collapse)
    return Diagnosis("healthy", "")
