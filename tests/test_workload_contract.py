"""One contract test run over every registered workload (Gymnasium style)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.health import diagnose
from sweeper.workload import CHANCE_REPORTED, REQUIRED_REPORT_KEYS, available, load

from conftest import workload_refusal, workload_variant

KERAS_PROGRAMS = sorted(str(path) for path in (Path(__file__).parents[1] / "examples" / "keras").glob("*.py"))
WORKLOADS = [*sorted(available()), *KERAS_PROGRAMS]
"""Every registered workload and every example Keras program (a workload file, see sweeper.keras_model)."""


def test_at_least_the_bundled_workloads_are_found():
    assert "listmle" in WORKLOADS
    assert len(KERAS_PROGRAMS) >= 7


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
    # the defaults and the smoke sizes keep the workload's limits across knobs
    assert workload.broken_limit(workload.make_config({})) is None
    assert workload.broken_limit(workload.make_config(workload.smoke)) is None


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_numeric_knob_has_a_range_around_its_default(name):
    workload = load(name)
    for knob in workload.knobs.values():
        if knob.kind in (int, float) and knob.choices is None and knob.name != "seed":
            assert knob.range is not None, f"{name}.Config.{knob.name} declares no Range"
            assert knob.default in knob.range, f"{name}.Config.{knob.name} = {knob.default!r} outside {knob.range}"
    for key, value in workload.smoke.items():
        assert workload.knobs[key].in_range(value), f"{name}.SMOKE[{key!r}] = {value!r} outside its range"


@pytest.mark.parametrize("name", WORKLOADS)
def test_chance_is_declared(name):
    chance = load(name).chance
    assert chance == CHANCE_REPORTED or (isinstance(chance, float) and math.isfinite(chance))


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
def test_smoke_reports_carry_a_finite_chance(name, smoke_reports):
    """With CHANCE = "reported" the workload must report it; a numeric CHANCE is filled in by Workload.train."""
    workload = load(name)
    for report in smoke_reports(name):
        assert isinstance(report.get("chance"), int | float) and math.isfinite(report["chance"]), report
        if workload.chance != CHANCE_REPORTED:
            assert report["chance"] == workload.chance


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_last_report_carries_a_no_skill_level_below_the_oracle(name, smoke_reports):
    """Every bundled workload and example program reports what a model that learned nothing reaches on its
    own evaluation (`no_skill`, sweeper.no_skill), so its `healthy` means told apart from it, and what its own
    model reached before training (`untrained`)."""
    workload = load(name)
    last = smoke_reports(name)[-1]
    for level in ("no_skill", "untrained"):  # and what the model reached before its first step
        assert isinstance(last.get(level), float) and math.isfinite(last[level]), (level, last)
    if "oracle" in last:
        assert last["no_skill"] < last["oracle"] if workload.mode == "max" else last["no_skill"] > last["oracle"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_defaults_reproduce_the_failure(name, smoke_reports):
    """A workload's Config defaults ARE the failing setup: its baseline is not healthy even at smoke size."""
    workload = load(name)
    diagnosis = diagnose(smoke_reports(name), workload.metric, workload.mode)
    assert diagnosis.verdict != "healthy", "the baseline trains healthily: the workload reproduces no failure"


@pytest.mark.parametrize("name", WORKLOADS)
def test_module_runs_one_baseline_trial(name):
    if name in KERAS_PROGRAMS:
        pytest.skip("a Keras program has no main of its own: sweeper trains it (the smoke tests above)")
    module = load(name).module.__name__
    result = subprocess.run(
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loss" in result.stdout


def tiny(tmp_path, *changes):
    """The path of a tiny workload file, with (old, new) text replacements applied."""
    return workload_variant(tmp_path / "tiny.py", "tiny.py", *changes)


refusal = workload_refusal


def test_a_workload_without_chance_is_told_what_to_add(tmp_path):
    path = tiny(tmp_path, ("CHANCE = 0.0\n", ""))
    assert refusal(path) == (
        f"workload 'tiny' ({path}) breaks the contract: it does not define CHANCE; add CHANCE = <the metric of a "
        'model that learned nothing, e.g. 0.0 for R^2 or kappa>, or CHANCE = "reported" if every report carries '
        "a `chance` key"
    )


@pytest.mark.parametrize("value", ['"report"', "None", "True", "float('nan')", "float('inf')", "[0.0]"])
def test_a_chance_that_is_neither_a_number_nor_reported_is_refused(tmp_path, value):
    message = refusal(tiny(tmp_path, ("CHANCE = 0.0", f"CHANCE = {value}")))
    assert "breaks the contract: CHANCE is" in message and 'nor "reported"; add CHANCE = ' in message


@pytest.mark.parametrize(
    "change, fragment",
    [
        (("= 0.1\n", "= 0.0\n"), "Config.lr defaults to 0.0, outside its range (0, 1]"),
        (("= 3\n", "= 1000\n"), "Config.steps defaults to 1000, outside its range [1, 100]"),
        (('{"steps": 2}', '{"steps": 0}'), "SMOKE sets steps = 0, outside its range [1, 100]"),
        (('{"steps": 2}', '{"lr": 2}'), "SMOKE sets lr = 2, outside its range (0, 1]"),
        (('{"steps": 2}', '{"steps": "2"}'), "SMOKE sets steps = '2'; steps expects int"),
        (
            ('shape: Literal["a", "b"]', "shape: Annotated[str, Range(0, 1)]"),
            "Config.shape: a Range fits an int or float knob, not str",
        ),
        (
            ('shape: Literal["a", "b"]', 'shape: Annotated[Literal["a", "b"], Range(0, 1)]'),
            "Config.shape: a Range fits an int or float knob, not a Literal set",
        ),
        (
            ("seed: int = 0", "seed: int = 0\n    flag: Annotated[bool, Range(0, 1)] = False"),
            "Config.flag: a Range fits an int or float knob, not bool",
        ),
        (("Range(1, 100)]", "Range(1, 100), Range(1, 10)]"), "Config.steps: declares 2 Ranges; a knob has at most one"),
        (("Range(1, 100)]", "Range(100, 1)]"), "cannot be imported at line 16: ValueError: Range(low=100, high=1"),
        (
            ('SMOKE = {"steps": 2}', 'SMOKE = {"steps": 2}\nFIXED_OUTCOMES = [({"shape": "c"}, "x")]'),
            "sets shape = 'c'",
        ),
        (('SMOKE = {"steps": 2}', 'SMOKE = {"steps": 2}\nFIXED_OUTCOMES = [{"shape": "a"}]'), "FIXED_OUTCOMES[0] is"),
    ],
)
def test_the_contract_refuses_ranges_that_do_not_fit(tmp_path, change, fragment):
    message = refusal(tiny(tmp_path, change))
    assert fragment in message and message.startswith(f"workload 'tiny' ({tmp_path / 'tiny.py'}) "), message


def test_ranges_stay_optional(tmp_path):
    workload = load(str(tiny(tmp_path, ("Annotated[int, Range(1, 100)]", "int"))))
    assert workload.knobs["steps"].range is None and workload.knobs["steps"].describe_values() == "int"
    assert workload.knobs["lr"].describe_values() == "float in (0, 1]"


def test_a_numeric_chance_fills_in_reports_without_one(tmp_path):
    workload = load(str(tiny(tmp_path, ("CHANCE = 0.0", "CHANCE = 0.25"))))
    reports = []
    workload.train(workload.make_config({}), reports.append)
    assert [r["chance"] for r in reports] == [0.25, 0.25, 0.25]
    reports = []
    workload.train(workload.make_config({"shape": "b"}), reports.append)  # it reports its own: kept
    assert [r["chance"] for r in reports] == [-1.0, -1.0, -1.0]


def test_a_reported_chance_is_passed_through_as_it_is(tmp_path):
    workload = load(str(tiny(tmp_path, ("CHANCE = 0.0", 'CHANCE = "reported"'))))
    reports = []
    workload.train(workload.make_config({}), reports.append)
    assert reports and all("chance" not in r for r in reports)


def test_a_workload_file_is_imported_once_by_its_resolved_path(tmp_path, monkeypatch):
    path = tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    workload = load("./tiny.py")
    assert workload.name == "tiny" and load(str(path)).module is workload.module
    assert workload.module.__name__.startswith("_sweeper_workload_file_tiny_")


def test_a_workload_file_that_fails_to_import_is_one_line(tmp_path):
    path = tiny(tmp_path, ("import Range\n", "import Range\nimport no_such_module_here\n"))
    assert refusal(path) == (
        f"workload 'tiny' ({path}) cannot be imported at line 8: "
        "ModuleNotFoundError: No module named 'no_such_module_here'"
    )
    assert refusal(tmp_path / "missing.py") == f"{tmp_path / 'missing.py'}: no such workload file"
