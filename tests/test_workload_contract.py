"""One contract test run over every registered workload (Gymnasium style)."""

import math
import os
import subprocess
import sys

import pytest

from sweeper.health import diagnose
from sweeper.workload import REQUIRED_REPORT_KEYS, available, load

WORKLOADS = sorted(available())


def test_at_least_the_bundled_workloads_are_found():
    assert "listmle" in WORKLOADS


@pytest.mark.parametrize("name", WORKLOADS)
def test_declarations(name):
    workload = load(name)
    assert workload.mode in ("max", "min") and isinstance(workload.metric, str)
    for knob in workload.knobs.values():
        assert knob.doc, f"{name}.Config.{knob.name} has no docstring"
        assert knob.check(knob.default) == knob.default, f"{name}.Config.{knob.name}: default outside its own type"
    for key, value in workload.smoke.items():
        assert workload.knobs[key].check(value) is not None, f"{name}.SMOKE[{key!r}] = {value!r}"
    assert "seed" not in workload.smoke


@pytest.fixture(scope="module")
def smoke_reports():
    """Each workload's baseline trial at SMOKE size, run once in this process."""
    cache = {}

    def run(name):
        if name not in cache:
            workload = load(name)
            reports = []
            workload.train(workload.make_config(workload.smoke), reports.append)
            cache[name] = reports
        return cache[name]

    return run


@pytest.mark.parametrize("name", WORKLOADS)
def test_smoke_trial_reports_every_required_key(name, smoke_reports):
    workload = load(name)
    reports = smoke_reports(name)
    assert reports, "train() reported nothing"
    steps = [r["step"] for r in reports]
    assert steps == sorted(set(steps)), f"steps are not strictly increasing: {steps}"
    for report in reports:
        for key in (*REQUIRED_REPORT_KEYS, workload.metric):
            assert key in report, f"a report lacks {key!r}: {report}"
        for key, value in report.items():
            assert isinstance(value, int | float) and not isinstance(value, bool), f"{key} = {value!r}"


@pytest.mark.parametrize("name", WORKLOADS)
def test_defaults_reproduce_the_failure(name, smoke_reports):
    """A workload's Config defaults ARE the failing setup: its baseline is not healthy even at smoke size."""
    workload = load(name)
    diagnosis = diagnose(smoke_reports(name), workload.metric, workload.mode)
    assert diagnosis.verdict != "healthy", "the baseline trains healthily: the workload reproduces no failure"


@pytest.mark.parametrize("name", WORKLOADS)
def test_module_runs_one_baseline_trial(name):
    module = load(name).module.__name__
    result = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loss" in result.stdout
