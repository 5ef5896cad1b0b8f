"""One trial of a workload in this process: the loop that a Ray worker (`sweeper.runner`) and `sweeper doctor`
both run.

`run_trial` makes the workload's config, calls its `train` with a `report` that keeps every report, checks
it for divergence (`health.check_divergence`) and, once the trial has diverged, leaves the workload's loop
(unless `early_stop=False`); any other exception from the workload becomes the trial's error line
(`health.trial_error`), so one broken trial is an outcome, never the caller's failure. No Ray, no MLflow, no
TensorFlow here: a workload imports TensorFlow inside its own `train`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sweeper import health


class TrialWorkload(Protocol):
    """What a trial needs of a workload (`sweeper.workload.Workload` has it)."""

    @property
    def metric(self) -> str: ...

    @property
    def thresholds(self) -> health.Thresholds: ...

    def make_config(self, overrides: dict[str, Any]) -> Any: ...

    def train(self, config: Any, report: Callable[[dict[str, Any]], None]) -> None: ...


@dataclass(frozen=True)
class TrialRun:
    """What one trial left: its reports, in order, and its error line if the workload raised."""

    history: tuple[dict[str, Any], ...]
    error: str | None = None


class _StopTrial(Exception):
    """Raised from `report` to leave the workload's training loop once the trial has diverged."""


def run_trial(
    workload: TrialWorkload,
    overrides: dict[str, Any],
    *,
    on_report: Callable[[dict[str, Any]], None] | None = None,
    early_stop: bool = True,
) -> TrialRun:
    """Train `workload` once with the config made from `overrides`, in this process.

    `on_report` sees every report (a copy of the workload's dict) after the divergence check and before the
    trial stops on it; with `early_stop`, the report that shows `non_finite` or `exploding` is the last one.
    A config the workload refuses is the trial's error, as is anything `train` or `on_report` raises.
    """
    history: list[dict[str, Any]] = []
    metric, limits = workload.metric, workload.thresholds

    def report(values: dict[str, Any]) -> None:
        kept = dict(values)
        history.append(kept)
        diverged = health.check_divergence(history, metric, limits)
        if on_report is not None:
            on_report(kept)
        if diverged is not None and early_stop:
            raise _StopTrial(diverged.reason)

    error = None
    try:
        workload.train(workload.make_config(overrides), report)
    except _StopTrial:
        pass
    except Exception as exc:  # noqa: BLE001 - the trial's outcome, not its caller's failure
        error = health.trial_error(exc)  # the line a sweep records for it
    return TrialRun(tuple(history), error)
