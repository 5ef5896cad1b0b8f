"""`sweeper.trial.run_trial`: the in-process trial loop that a Ray worker and `sweeper doctor` share."""

from dataclasses import dataclass
from typing import Any

import pytest

from sweeper import health
from sweeper.trial import TrialRun, run_trial


@dataclass
class FakeWorkload:
    """Reports `reports` in turn, then raises `fails` if given; its config is the overrides it was given."""

    reports: list[dict[str, Any]]
    fails: Exception | None = None
    metric: str = "score"
    thresholds: health.Thresholds = health.DEFAULT

    def make_config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        if "bad" in overrides:
            raise ValueError(f"no knob {overrides['bad']!r}")
        return dict(overrides)

    def train(self, config: Any, report) -> None:
        for values in self.reports:
            report(values)
        if self.fails is not None:
            raise self.fails


def steps(*losses: float) -> list[dict[str, Any]]:
    return [{"step": step, "loss": loss, "score": 0.5} for step, loss in enumerate(losses, start=1)]


def test_a_healthy_trial_keeps_every_report_as_written():
    reports = [{**r, "dead_share": 0.1} for r in steps(1.0, 0.9, 0.8)]
    run = run_trial(FakeWorkload(reports), {"seed": 0})
    assert run == TrialRun(tuple(reports), None)
    assert run.history[0] is not reports[0]  # a copy: the workload may reuse its dict


def test_divergence_stops_the_trial_only_with_early_stop():
    workload = FakeWorkload(steps(1.0, float("inf"), 0.5, 0.4))
    stopped = run_trial(workload, {"seed": 0})
    assert [r["step"] for r in stopped.history] == [1, 2] and stopped.error is None
    full = run_trial(workload, {"seed": 0}, early_stop=False)
    assert [r["step"] for r in full.history] == [1, 2, 3, 4] and full.error is None


def test_an_exploding_trial_stops_too():
    run = run_trial(FakeWorkload(steps(1.0, 2e6, 1.0)), {"seed": 0})
    assert len(run.history) == 2
    assert health.check_divergence(run.history, "score").verdict == "exploding"


def test_an_exception_is_the_trials_error_line():
    boom = RuntimeError("out of memory")
    run = run_trial(FakeWorkload(steps(1.0, 0.9), fails=boom), {"seed": 0})
    assert run.error == health.trial_error(boom)
    assert len(run.history) == 2  # the reports before it are kept


def test_a_config_the_workload_refuses_is_the_trials_error():
    run = run_trial(FakeWorkload(steps(1.0)), {"bad": "x"})
    assert run.history == () and run.error == health.trial_error(ValueError("no knob 'x'"))


def test_on_report_sees_every_report_including_the_one_that_stops_the_trial():
    seen: list[dict[str, Any]] = []
    run = run_trial(FakeWorkload(steps(1.0, 0.9, float("nan"), 0.8)), {"seed": 0}, on_report=seen.append)
    assert seen == list(run.history) and [r["step"] for r in seen] == [1, 2, 3]
    seen.clear()
    run_trial(FakeWorkload(steps(1.0, float("nan"), 0.8)), {"seed": 0}, on_report=seen.append, early_stop=False)
    assert [r["step"] for r in seen] == [1, 2, 3]


def test_a_failing_on_report_is_the_trials_error():
    def refuse(values: dict[str, Any]) -> None:
        raise ConnectionError("lost the driver")

    run = run_trial(FakeWorkload(steps(1.0, 0.9)), {"seed": 0}, on_report=refuse)
    assert run.error == health.trial_error(ConnectionError("lost the driver")) and len(run.history) == 1


def test_interrupts_are_not_trial_errors():
    with pytest.raises(KeyboardInterrupt):
        run_trial(FakeWorkload(steps(1.0), fails=KeyboardInterrupt()), {"seed": 0})
