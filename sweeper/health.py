"""Diagnosis of one trial from its report history: pure functions, no heavy imports.

`DETECTORS` is the ordered table of verdicts: the first whose check applies wins, `healthy` when none does.
Each row is one verdict, its colour in plots, whether it stops a running trial early, and one function:
a check reading a finished `Trial` (the report history with what several checks share), or a live check
reading the history so far, which `check_divergence` runs after every report for the rows that stop a
trial early (a finished trial is judged by where it fired first); a new verdict is one function and one
row. In order:
  error               the trial raised, or reported nothing;
  non_finite          loss, gradient norm, output scale or metric went NaN or infinite;
  exploding           |loss|, the gradient norm or the output scale passed `exploding_bound`, or grew by a
                      factor of `growth_factor` within `growth_window` reports;
  stuck_zero          |loss| <= `zero_loss_atol` at every report from the first; or the loss fell to
                      |loss| <= `near_zero_loss` and stayed there for the last `stuck_tail` share of the
                      reports while the final metric stayed at chance (the trial learns nothing from a zero loss);
  no_signal           the gradient norm stayed <= `no_signal_grad_norm` at every report: nothing can change;
  dead_units          collapsed, and at least `dead_share` of the hidden ReLU units output zero on the whole
                      probe batch over the late reports;
  vanishing_gradient  collapsed, and the first layer's gradient norm is below `vanishing_ratio` of the last
                      layer's (the instruments' `grad_norm_ratio`) over the late reports;
  saturated           collapsed, and at least `saturated_share` of the hidden sigmoid/tanh units sit in their
                      flat tails on the whole probe batch over the late reports;
  oscillating         collapsed, and the metric swings without trend over the late reports;
  collapsed           the final metric does not clear the workload's `chance` level by `collapse_margin` of the
                      way from chance to its `oracle` (or not at all, without an oracle), misses the
                      workload's declared `metric_floor`, or does not pass the `no_skill` level the trial
                      reported (`sweeper.no_skill`: a model that learned nothing passes it with probability
                      at most FALSE_HEALTHY_RATE);
  healthy             none of the above.

One order of evidence where a trial reports its `no_skill` level: its metric decides whether it learned.
One that learned is healthy unless it raised or diverged, and a detector that fires on it (a zero loss, a
zero gradient, dead units) is a warning in its reason, never its verdict.

Dead units come before a vanished gradient: a layer of dead ReLUs passes back no gradient at all, which
reads as a vanished one. The four instrument verdicts name the cause of a collapse; they never overrule a
trial whose final metric is good (a network with a third of its units dead that still learns is healthy: a
verdict is the trial's outcome, and the readings stay in its history for anyone who wants them). "Late
reports" are the last `stuck_tail` share of the reports that carry the reading, judged by their median, so
one noisy probe neither makes nor breaks a verdict. The instrument readings come from `sweeper.instruments`.

Every threshold is a field of `Thresholds`; a workload may override some with a module-level dict
`THRESHOLDS` (for example a wider `exploding_bound` where large losses are normal).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, TypeGuard

from sweeper.no_skill import FALSE_HEALTHY_RATE

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
    """Share of the last reports over which a fallen loss must stay near zero to count as stuck, and over
    which the instrument and oscillation verdicts read their medians."""
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
    vanishing_ratio: float = 1e-3
    """First layer's gradient norm over the last layer's below which the gradient has vanished on its way
    down. AUTOTRAINER (ICSE 2021) and DeepDiagnosis (ICSE 2022) compare gradients across layers the same way;
    three orders of magnitude is far past the 2-10x spread of a healthy Glorot- or He-initialised net and
    well inside what ten sigmoid layers (at most 0.25 per layer) produce."""
    dead_share: float = 0.5
    """Share of hidden ReLU units dead on the whole probe batch from which a collapse is blamed on dying
    ReLUs: SageMaker Debugger's DeadRelu rule flags a layer at 50% inactive units (`threshold_layer`)."""
    saturated_share: float = 0.5
    """Share of hidden sigmoid/tanh units saturated on the whole probe batch from which a collapse is blamed
    on saturation; the same majority bar as dead units (ours: there is no agreed number)."""
    oscillation_reversals: float = 0.6
    """Share of successive metric changes over the late reports that reverse the previous one's direction
    from which the metric swings rather than drifts: independent noise reverses 2/3 of the time, a trend
    far less."""
    oscillation_trend: float = 0.2
    """...while the net change over those reports is at most this share of the path travelled (no trend)..."""
    oscillation_swing: float = 0.1
    """...and the median swing is at least this share of the chance->oracle gap (or of |chance| without an
    oracle), so the float noise of a flat curve is not a swing."""

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


def trial_error(exc: BaseException) -> str:
    """The one line a trial that raised is recorded as (its `error` verdict's reason): the exception's type and
    the last line of its message, where TensorFlow puts the real cause (after the traced user code)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:500]


def error_line(reason: str) -> str:
    """The last line of an `error` verdict's reason, the one a person reads (console, answer); "" if empty."""
    lines = reason.strip().splitlines()
    return lines[-1] if lines else ""


def late_values(history: Sequence[dict[str, Any]], key: str, share: float) -> list[float]:
    """A report key's finite values over the last `share` of the reports that carry it."""
    values = [r[key] for r in history if is_number(r.get(key)) and math.isfinite(r[key])]
    return values[-max(1, math.ceil(share * len(values))) :] if values else []


def late_median(history: Sequence[dict[str, Any]], key: str, share: float) -> float | None:
    """The median of `late_values`, or None where no report carries the key."""
    values = late_values(history, key, share)
    return statistics.median(values) if values else None


def check_divergence(history: Sequence[dict[str, Any]], metric: str, limits: Thresholds = DEFAULT) -> Diagnosis | None:
    """The first detector with `stops_early`, in `DETECTORS` order, whose live check fires on the LAST
    report of the history (`non_finite`, `exploding`), else None.

    Called inside the trial after every report, so a diverged trial stops at once rather than running to
    its end; `diagnose` calls it on every prefix of a finished history. None for an empty history.
    """
    if not history:
        return None
    for detector in DETECTORS:
        if detector.stops_early and detector.live is not None:  # a stopping detector has one: __post_init__
            reason = detector.live(history, metric, limits)
            if reason is not None:
                return Diagnosis(detector.verdict, reason)
    return None


@dataclass(frozen=True)
class Trial:
    """What the detectors read: one finished trial's reports and how to judge its metric."""

    history: Sequence[dict[str, Any]]
    metric: str
    mode: str
    error: str | None
    limits: Thresholds

    @cached_property
    def first_divergence(self) -> Diagnosis | None:
        """The earliest report at which the trial diverged, as `check_divergence` saw it live."""
        for end in range(1, len(self.history) + 1):
            diverged = check_divergence(self.history[:end], self.metric, self.limits)
            if diverged is not None:
                return diverged
        return None

    @cached_property
    def collapse(self) -> str | None:
        """Why the final metric counts as learning nothing, or None."""
        final, limits = self.history[-1], self.limits
        value = final.get(self.metric)
        if not is_number(value):
            return None
        floor = limits.metric_floor
        if floor is not None and (value < floor if self.mode == "max" else value > floor):
            return f"final {self.metric} {value:.4g} misses the workload's floor {floor:.4g}"
        chance = final.get("chance")
        if not is_number(chance):
            return None
        if not self.passes(value, chance, self.margin):
            return f"final {self.metric} {value:.4g} does not beat chance {chance:.4g} by {self.margin:.3g}"
        no_skill = final.get("no_skill")
        if is_number(no_skill) and not self.passes(value, no_skill):
            return (
                f"final {self.metric} {value:.4g} is not told apart from no skill: a model that learned nothing "
                f"passes {no_skill:.4g} here at most {FALSE_HEALTHY_RATE:.0%} of the time"
            )
        return None

    @cached_property
    def learned(self) -> bool:
        """Whether the final metric is told apart from a model that learned nothing: the trial reported its
        no-skill level (`no_skill`) and its metric passes it and the chance floor, and, where the trial
        reported it, beats its own model before training (`untrained`) by the practical margin. Then no
        detector but a divergence or an error overrules it: what they find is a warning (`diagnose`). Without
        the last clause an untrained net whose random weights happen to rank by the features would pass for
        one that learned, and its zero loss and zero gradient would be demoted to warnings."""
        final = self.history[-1] if self.history else {}
        value = final.get(self.metric)
        if not (is_number(final.get("no_skill")) and is_number(value) and math.isfinite(value)):
            return False
        if self.collapse is not None:
            return False
        untrained = final.get("untrained")
        return not is_number(untrained) or self.passes(value, untrained, self.margin)

    def passes(self, value: float, level: float, by: float = 0.0) -> bool:
        """Whether VALUE is better than LEVEL by more than BY, in the metric's direction."""
        return value > level + by if self.mode == "max" else value < level - by

    @property
    def margin(self) -> float:
        """The practical margin: `collapse_margin` of the way from chance to the oracle (0 without both)."""
        return self.limits.collapse_margin * self.gap if self.gap is not None else 0.0

    @property
    def gap(self) -> float | None:
        """|oracle - chance| of the final report, where both are known."""
        final = self.history[-1]
        chance, oracle = final.get("chance"), final.get("oracle")
        return abs(oracle - chance) if is_number(chance) and is_number(oracle) else None

    def late(self, key: str) -> list[float]:
        """The key's finite values over the last `stuck_tail` share of the reports that carry it."""
        return late_values(self.history, key, self.limits.stuck_tail)

    def late_median(self, key: str) -> float | None:
        return late_median(self.history, key, self.limits.stuck_tail)


def _error(trial: Trial) -> str | None:
    if trial.error:
        return trial.error
    return None if trial.history else "the trial reported nothing"


def _non_finite(history: Sequence[dict[str, Any]], metric: str, limits: Thresholds) -> str | None:
    report = history[-1]
    for key in (*WATCHED, metric):
        value = report.get(key)
        if is_number(value) and not math.isfinite(value):
            return f"{key} is {value} at step {report.get('step')}"
    return None


def _exploding(history: Sequence[dict[str, Any]], metric: str, limits: Thresholds) -> str | None:
    report = history[-1]
    step = report.get("step")
    for key in WATCHED:
        value = report.get(key)
        if not is_number(value):
            continue
        if abs(value) > limits.exploding_bound:
            return f"|{key}| = {abs(value):.3g} > {limits.exploding_bound:.0e} at step {step}"
        earlier = [abs(r[key]) for r in history[-limits.growth_window - 1 : -1] if is_number(r.get(key))]
        if earlier:
            start = max(min(earlier), limits.growth_floor)
            if abs(value) >= limits.growth_factor * start:
                return f"|{key}| grew from {start:.3g} to {abs(value):.3g} within {len(earlier)} reports at step {step}"
    return None


def _stuck_zero(trial: Trial) -> str | None:
    limits, losses = trial.limits, [r["loss"] for r in trial.history if is_number(r.get("loss"))]
    if losses and all(abs(loss) <= limits.zero_loss_atol for loss in losses):
        return f"|loss| <= {limits.zero_loss_atol:g} at all {len(losses)} reports"
    tail = losses[-max(1, math.ceil(limits.stuck_tail * len(losses))) :]
    if len(losses) >= 2 and trial.collapse and all(abs(loss) <= limits.near_zero_loss for loss in tail):
        where = f"over the last {len(tail)} of {len(losses)} reports"
        return f"|loss| <= {limits.near_zero_loss:g} {where}; {trial.collapse}"
    return None


def _no_signal(trial: Trial) -> str | None:
    norms = [r["grad_norm"] for r in trial.history if is_number(r.get("grad_norm"))]
    bound = trial.limits.no_signal_grad_norm
    if norms and all(abs(norm) <= bound for norm in norms):
        return f"gradient norm <= {bound:g} at all {len(norms)} reports"
    return None


def _memorising(trial: Trial) -> str | None:
    """Training learns while validation does not: the training split's own metric (the METRIC's key without
    `val_`, which a Keras program reports) ends past chance by the practical margin and past the no-skill
    level, and better than its first report by the margin, while the validation metric collapsed."""
    if not (trial.collapse and trial.metric.startswith("val_")):
        return None
    key = trial.metric[len("val_") :]
    values = [r[key] for r in trial.history if is_number(r.get(key))]
    final = trial.history[-1]
    bars = [level for level in (final.get("chance"), final.get("no_skill")) if is_number(level)]
    if len(values) < 2 or not bars:
        return None
    margin = trial.margin
    if all(trial.passes(values[-1], bar, margin) for bar in bars) and trial.passes(values[-1], values[0], margin):
        return f"training {key} {values[0]:.4g} -> {values[-1]:.4g} learns while {trial.collapse}"
    return None


def _vanishing_gradient(trial: Trial) -> str | None:
    ratio = trial.late_median("grad_norm_ratio")
    if trial.collapse and ratio is not None and ratio < trial.limits.vanishing_ratio:
        return f"first/last layer gradient norm {ratio:.2g} < {trial.limits.vanishing_ratio:g}; {trial.collapse}"
    return None


def _dead_units(trial: Trial) -> str | None:
    share = trial.late_median("dead_share")
    if trial.collapse and share is not None and share >= trial.limits.dead_share:
        return f"{share:.0%} of hidden ReLU units dead (bar {trial.limits.dead_share:.0%}); {trial.collapse}"
    return None


def _saturated(trial: Trial) -> str | None:
    share = trial.late_median("saturated_share")
    if trial.collapse and share is not None and share >= trial.limits.saturated_share:
        bar = trial.limits.saturated_share
        return f"{share:.0%} of hidden sigmoid/tanh units saturated (bar {bar:.0%}); {trial.collapse}"
    return None


def oscillation(values: Sequence[float], scale: float, limits: Thresholds = DEFAULT) -> str | None:
    """Why a metric series swings without trend, or None: most successive changes reverse direction, the
    net change is a small share of the path, and the median swing is a visible share of `scale`."""
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    moves = [step for step in steps if step != 0]
    if len(moves) < 4 or scale <= 0:
        return None
    reversals = sum(a * b < 0 for a, b in zip(moves, moves[1:], strict=False)) / (len(moves) - 1)
    path = sum(abs(step) for step in steps)
    swing = statistics.median(abs(step) for step in moves)
    if (
        reversals >= limits.oscillation_reversals
        and abs(values[-1] - values[0]) <= limits.oscillation_trend * path
        and swing >= limits.oscillation_swing * scale
    ):
        net = values[-1] - values[0]
        return f"{reversals:.0%} of {len(moves)} changes reverse, median swing {swing:.3g}, net {net:+.3g}"
    return None


def _oscillating(trial: Trial) -> str | None:
    if not trial.collapse:
        return None
    chance = trial.history[-1].get("chance")
    scale = trial.gap if trial.gap is not None else (abs(chance) if is_number(chance) else 0.0)
    swings = oscillation(trial.late(trial.metric), scale, trial.limits)
    return f"{trial.metric} swings: {swings}; {trial.collapse}" if swings else None


def _collapsed(trial: Trial) -> str | None:
    return trial.collapse


LiveCheck = Callable[[Sequence[dict[str, Any]], str, Thresholds], str | None]
"""A check on the history so far (report history, metric, thresholds): the reason its LAST report shows
the verdict, or None."""


@dataclass(frozen=True)
class Detector:
    verdict: str
    colour: str
    """Its colour in the report's plots."""
    stops_early: bool
    """Its live check runs after every report (`check_divergence`): a trial that shows it stops at once
    (unless the sweep runs with `early_stop=False`)."""
    check: Callable[[Trial], str | None] | None = None
    """The reason a finished trial has this verdict, or None; for a detector that does not stop trials."""
    live: LiveCheck | None = None
    """For a detector that stops trials, instead: the reason the latest report shows it. A finished trial
    has this verdict where it is what stopped it (`Trial.first_divergence`)."""

    def __post_init__(self) -> None:
        if (self.live is not None) != self.stops_early or (self.check is None) == (self.live is None):
            raise ValueError(f"detector {self.verdict!r}: a live check if it stops a trial early, else a check")

    def reason(self, trial: Trial) -> str | None:
        """Why the finished trial has this verdict, or None."""
        if self.check is not None:
            return self.check(trial)
        first = trial.first_divergence
        return first.reason if first is not None and first.verdict == self.verdict else None


DETECTORS = (
    Detector("error", "#757575", False, _error),
    Detector("non_finite", "#4e0000", True, live=_non_finite),
    Detector("exploding", "#c62828", True, live=_exploding),
    Detector("stuck_zero", "#1565c0", False, _stuck_zero),
    Detector("no_signal", "#6a1b9a", False, _no_signal),
    Detector("memorising", "#ad1457", False, _memorising),
    Detector("dead_units", "#5d4037", False, _dead_units),
    Detector("vanishing_gradient", "#8d6e63", False, _vanishing_gradient),
    Detector("saturated", "#f9a825", False, _saturated),
    Detector("oscillating", "#00838f", False, _oscillating),
    Detector("collapsed", "#ef6c00", False, _collapsed),
)
HEALTHY_COLOUR = "#2e7d32"
VERDICTS = ("healthy", *(d.verdict for d in DETECTORS))
COLOURS = {"healthy": HEALTHY_COLOUR, **{d.verdict: d.colour for d in DETECTORS}}
DIVERGED = tuple(d.verdict for d in DETECTORS if d.stops_early)  # the verdicts that stop a trial early


def diagnose(
    history: Sequence[dict[str, Any]],
    metric: str,
    mode: str,
    error: str | None = None,
    limits: Thresholds = DEFAULT,
) -> Diagnosis:
    """The verdict for a trial's report history (one dict per report, in order): the first row of
    `DETECTORS` whose check gives a reason, else healthy. A trial whose metric is told apart from its
    no-skill level (`Trial.learned`) is healthy unless it raised or diverged: any other detector that fires
    is named in its reason as a warning."""
    trial = Trial(history, metric, mode, error, limits)
    warnings = []
    for detector in DETECTORS:
        reason = detector.reason(trial)
        if reason is None:
            continue
        if trial.learned and detector.verdict != "error" and not detector.stops_early:
            warnings.append(f"{detector.verdict}: {reason}")  # a trial that learned, and what makes it fragile
            continue
        return Diagnosis(detector.verdict, reason)
    return Diagnosis("healthy", f"warning: {'; '.join(warnings)}" if warnings else "")
