"""`sweeper doctor`: symptoms -> remedy families -> a spec (pure functions), and the command on a real program."""

import json

import pytest
import yaml

from sweeper.doctor import (
    DOCTOR_SEEDS,
    FAMILIES,
    Examination,
    SeedResult,
    Symptom,
    doctor_spec,
    examine,
    late_readings,
    proposals,
    propose,
    symptoms,
)
from sweeper.errors import SweeperError
from sweeper.health import VERDICTS
from sweeper.workload import load

from conftest import TEST_WORKLOADS


def test_every_unhealthy_verdict_but_error_has_remedy_families():
    assert set(FAMILIES) == set(VERDICTS) - {"healthy", "error"}


def test_symptoms_count_the_unhealthy_verdicts_commonest_first():
    found = symptoms([("collapsed", "a"), ("healthy", ""), ("dead_units", "b"), ("dead_units", "c")])
    assert found == [Symptom("dead_units", 2, ("b", "c")), Symptom("collapsed", 1, ("a",))]
    assert symptoms([("healthy", "")]) == []


def test_late_readings_are_medians_over_the_late_half():
    history = [{"dead_share": v} for v in (0.0, 0.0, 0.6, 0.8, 0.7)] + [{"grad_norm": float("nan")}]
    assert late_readings(history, 0.5) == {"dead_share": 0.7}


@pytest.fixture(scope="module")
def keras_tiny():
    return load(str(TEST_WORKLOADS / "keras_tiny.py"))


def test_proposals_follow_the_symptoms_with_the_as_written_value_first(keras_tiny):
    grid = proposals([Symptom("dead_units", 3, ())], keras_tiny, "binary_crossentropy")
    assert list(grid) == ["learning_rate", "hidden_activation", "kernel_initializer"]
    assert grid["learning_rate"] == (0.01, 0.001, 0.0001)
    assert grid["hidden_activation"][0] == "as_written" and "leaky_relu" in grid["hidden_activation"]
    # a knob two symptoms share comes once, where the commoner symptom put it
    grid = proposals([Symptom("exploding", 2, ()), Symptom("dead_units", 1, ())], keras_tiny, None)
    assert list(grid) == [
        "global_clipnorm",
        "learning_rate",
        "normalization",
        "hidden_activation",
        "kernel_initializer",
    ]
    assert grid["global_clipnorm"] == (0.0, 1.0)


def test_a_classification_loss_is_not_swapped_but_a_regression_loss_is(keras_tiny):
    assert "loss" not in proposals([Symptom("no_signal", 3, ())], keras_tiny, "binary_crossentropy")
    grid = proposals([Symptom("no_signal", 3, ())], keras_tiny, "mean_squared_error")
    assert grid["loss"] == ("as_written", "mean_absolute_error", "huber")


def test_a_workload_without_the_generic_knobs_gets_only_those_it_has():
    tiny = load(str(TEST_WORKLOADS / "tiny.py"))  # knobs shape, lr, steps: none of the families' knobs
    assert proposals([Symptom("exploding", 3, ())], tiny, None) == {}


def test_examine_runs_the_program_as_written_on_calibration_seeds(sgd_workload):
    examination = examine(sgd_workload, seeds=2, smoke=True)
    assert examination.workload.name == "sgd_regression" and examination.workload_ref == sgd_workload
    assert examination.seeds == (1000, 1001) and examination.smoke
    assert [row.seed for row in examination.rows] == [1000, 1001]
    for row in examination.rows:  # raw features: the loss blows up within the first epoch
        assert row.verdict == "exploding" and "|loss|" in row.reason and row.chance == 0.0
        assert row.final < 0 and "grad_norm" in row.readings
    assert [(s.verdict, s.seeds) for s in examination.symptoms] == [("exploding", 2)]


def test_examine_refuses_what_does_not_load(tmp_path):
    with pytest.raises(SweeperError, match="nosuchworkload"):
        examine("nosuchworkload")
    with pytest.raises(SweeperError, match="at least one"):
        examine(str(TEST_WORKLOADS / "tiny.py"), seeds=0)


def test_propose_writes_the_spec_with_its_header(tmp_path, sgd_workload):
    program = tmp_path / "prog.py"
    program.write_text((TEST_WORKLOADS / "sgd_regression.py").read_text())
    examination = examine(str(program), seeds=2, smoke=True)
    proposal = propose(examination, tmp_path / "out.yaml")
    assert proposal is not None and proposal.spec == tmp_path / "out.yaml"
    assert [s.verdict for s in proposal.symptoms] == ["exploding"]
    assert list(proposal.grid) == ["learning_rate"] and proposal.why == (
        "learning_rate: for exploding: a smaller step",
    )
    text = proposal.spec.read_text()
    assert text.startswith(f"# Written by `sweeper doctor {program}`:\n")
    assert "calibration seeds 1000-1001" in text and "#   learning_rate: for exploding: a smaller step" in text
    assert yaml.safe_load(text) == proposal.document
    assert proposal.document["workload"] == "./prog.py" and proposal.document["smoke"] is True


def test_propose_has_nothing_for_a_healthy_program_and_writes_nothing(tmp_path):
    examination = examine(str(TEST_WORKLOADS / "tiny.py"), seeds=1)
    assert [row.verdict for row in examination.rows] == ["healthy"]
    assert propose(examination, tmp_path / "out.yaml") is None
    assert not (tmp_path / "out.yaml").exists()


def test_propose_refuses_symptoms_the_workload_has_no_knobs_for(tmp_path):
    tiny = load(str(TEST_WORKLOADS / "tiny.py"))
    row = SeedResult(1000, "exploding", "|loss| = 2e+06", 0.1, 0.0, {})
    examination = Examination(tiny, "tiny.py", (1000,), False, (row,))
    with pytest.raises(SweeperError, match="^tiny.py: symptoms exploding, but the workload has none of the knobs"):
        propose(examination, tmp_path / "out.yaml")
    assert not (tmp_path / "out.yaml").exists()


def test_the_doctor_runs_a_failing_program_and_writes_a_spec_that_loads(tmp_path):
    from typer.testing import CliRunner

    from sweeper.cli import app
    from sweeper.spec import load_specs

    program = tmp_path / "prog.py"
    # the tiny program with a softmax over its single output unit: the output is 1 whatever the input
    program.write_text(
        (TEST_WORKLOADS / "keras_tiny.py").read_text().replace('(1, activation="sigmoid")', '(1, activation="softmax")')
    )
    spec = tmp_path / "proposed.yaml"
    result = CliRunner().invoke(app, ["doctor", str(program), "--smoke", "--seeds", "2", "--spec-out", str(spec)])
    assert result.exit_code == 0, result.output
    assert f"calibration seeds {DOCTOR_SEEDS[0]}-{DOCTOR_SEEDS[1]}" in result.output
    document = yaml.safe_load(spec.read_text())
    assert document["workload"] == "./prog.py" and document["vary"] == "one_at_a_time" and document["smoke"]
    assert "output_activation" in document["grid"]
    (loaded,) = load_specs(spec)
    assert loaded.workload == str(program)
    assert doctor_spec("x", "./prog.py", [], {})["grid"] == {}
    # doctor.json holds what the console showed: the finding first, each seed's verdict, the proposals
    report = json.loads(spec.with_suffix(".json").read_text())
    (finding,) = report["findings"]
    assert finding["knob"] == "output_activation" and f"finding: {finding['what']}" in result.output
    assert [row["seed"] for row in report["seeds"]] == list(DOCTOR_SEEDS[:2])
    assert all(f"│ {row['seed']} │ {row['verdict']}" in result.output for row in report["seeds"])
    assert report["proposals"] == document["grid"] and report["as_written"]["output_activation"] == "softmax"
    assert "softmax" not in report["proposals"]["output_activation"]


def test_a_symptom_no_knob_reaches_is_said_plainly_and_nothing_is_proposed(tmp_path, keras_tiny):
    """Memorising (training learns, validation stays at no skill): no knob fixes labels that carry no signal;
    the doctor says so, writes no spec, and its report for tools holds the advice."""
    row = SeedResult(1000, "memorising", "training accuracy 0.5 -> 0.9 learns while ...", 0.5, 0.5, {})
    examination = Examination(keras_tiny, "prog.py", (1000,), False, (row,))
    proposal = propose(examination, tmp_path / "out.yaml")
    assert proposal.spec is None and proposal.grid == {} and not (tmp_path / "out.yaml").exists()
    assert "no knob fixes" in proposal.advice[0] and proposal.advice[0].startswith("memorising: ")
    assert json.loads((tmp_path / "out.json").read_text())["advice"] == list(proposal.advice)
