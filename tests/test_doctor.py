"""`sweeper doctor`: symptoms -> remedy families -> a spec (pure functions), and the command on a real program."""

import dataclasses
import json

import pytest
import yaml

from sweeper.doctor import (
    COMBINED_KNOBS,
    DOCTOR_SEEDS,
    FAMILIES,
    Examination,
    SeedResult,
    Symptom,
    combination_grid,
    combine,
    doctor_spec,
    examine,
    late_readings,
    proposals,
    propose,
    symptoms,
)
from sweeper.errors import SweeperError
from sweeper.findings import Finding
from sweeper.health import VERDICTS
from sweeper.results import PointSummary
from sweeper.spec import load_specs
from sweeper.workload import load

from conftest import ROOT, TEST_WORKLOADS, made_ranking, run_sweeper


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


def test_the_value_a_finding_points_to_is_proposed_first(keras_tiny):
    finding = Finding("categorical_crossentropy reads ...", "output_activation", "a softmax ...", "softmax")
    grid = proposals([Symptom("collapsed", 3, ())], keras_tiny, "categorical_crossentropy", [finding])
    assert grid["output_activation"] == ("as_written", "softmax", "linear", "sigmoid")
    as_written = {"output_activation": "linear"}  # never the program as written
    grid = proposals([], keras_tiny, "categorical_crossentropy", [finding], as_written)
    assert grid == {"output_activation": ("as_written", "softmax", "sigmoid")}


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


# --- the combination round ---
ROUND_ONE = {
    "learning_rate": (0.01, 0.001, 0.0001),
    "hidden_activation": ("as_written", "relu", "tanh"),
    "global_clipnorm": (0.0, 1.0),
    "normalization": ("none", "batch"),
}


def ranked(*changes: tuple[str, object], verdict="no_evidence", raised=False, seeds=3) -> list[PointSummary]:
    """First-round points in rank order, each changing one knob of ROUND_ONE (None: the baseline)."""
    points = []
    for change in changes:
        knobs = {knob: values[0] for knob, values in ROUND_ONE.items()}
        if change is not None:
            knobs[change[0]] = change[1]
        points.append(
            PointSummary(
                label="baseline" if change is None else f"{change[0]}={change[1]}",
                knobs=knobs,
                is_baseline=change is None,
                seeds=tuple(range(seeds if change is not None else 3 * seeds)),
                verdicts=("error" if raised and change == ("global_clipnorm", 1.0) else "non_finite",) * seeds,
                final_metrics=(None,) * seeds,
                scores=(0.5,) * seeds,
                healthy=0,
                unhealthy=seeds,
                healthy_rate=0.0,
                healthy_rate_ci=(0.0, 0.56),
                median_healthy_metric=None,
                median_score=0.5,
                score_centre=None,
                score_centre_kind="mean",
                score_centre_ci=None,
                median_loss=None,
                error=None,
                verdict="baseline" if change is None else verdict,
            )
        )
    return points


ORDER = (
    ("learning_rate", 0.0001),
    ("global_clipnorm", 1.0),
    ("hidden_activation", "tanh"),
    None,
    ("learning_rate", 0.001),
    ("hidden_activation", "relu"),
    ("normalization", "batch"),
)


def test_the_combination_round_pairs_each_knobs_best_ranked_value_the_findings_knobs_first():
    finding = Finding("no hidden layer has an activation", "hidden_activation", "a nonlinearity")
    grid = combination_grid(ranked(*ORDER, raised=True), ROUND_ONE, [finding])
    # the clipping point never ran (every trial raised), so it is no evidence for anything and is left out
    assert grid == {  # every point failed alike: each knob's boldest value (the first proposed activation)
        "hidden_activation": ("as_written", "relu"),
        "learning_rate": (0.01, 0.0001),
        "normalization": ("none", "batch"),
    }
    in_rank_order = ["learning_rate", "global_clipnorm", "hidden_activation", "normalization"]
    assert list(combination_grid(ranked(*ORDER), ROUND_ONE)) == in_rank_order[:COMBINED_KNOBS]
    assert combination_grid(ranked(None, ("learning_rate", 0.001)), ROUND_ONE) == {}  # one knob: nothing to pair
    # where every value failed alike, the ranking cannot tell them apart: the boldest change is paired
    tied = ranked(("learning_rate", 0.001), ("hidden_activation", "tanh"), ("learning_rate", 0.0001))
    tied += ranked(("hidden_activation", "relu"))
    assert combination_grid(tied, ROUND_ONE) == {
        "learning_rate": (0.01, 0.0001),
        "hidden_activation": ("as_written", "relu"),  # the first proposed
    }
    told_apart = [dataclasses.replace(tied[0], healthy=1), *tied[1:]]
    assert combination_grid(told_apart, ROUND_ONE)["learning_rate"] == (0.01, 0.001)


def test_combine_writes_a_pairs_round_on_seeds_the_first_round_never_used(tmp_path, keras_tiny):
    row = SeedResult(1000, "non_finite", "loss is nan at step 3", None, 0.5, {})
    examination = Examination(keras_tiny, str(TEST_WORKLOADS / "keras_tiny.py"), (1000,), True, (row,))
    proposal = propose(examination, tmp_path / "doctor.yaml")
    assert list(proposal.grid) == ["global_clipnorm", "learning_rate", "normalization"]
    changes = [("learning_rate", proposal.grid["learning_rate"][2]), None, ("normalization", "batch")]
    changes += [("global_clipnorm", 1.0), ("learning_rate", proposal.grid["learning_rate"][1])]
    first = ranked(*changes, seeds=4)
    for point in first:  # the first round ran only the proposal's knobs
        point.knobs.pop("hidden_activation")
    assert combine(examination, proposal, made_ranking(ranked(("normalization", "batch"), verdict="fixes"))) is None
    combination = combine(examination, proposal, made_ranking(first))
    assert combination is not None and combination.spec == tmp_path / "doctor-combined.yaml"
    assert combination.first_seed == 12  # the baseline ran seeds 0-11
    assert "a second family at alpha 0.05" in combination.family and "at most 0.1" in combination.family
    assert combination.why[0] == "learning_rate=0.0001: alone 0/4 healthy, no_evidence"
    (spec,) = load_specs(combination.spec)
    assert spec.vary == "pairs" and spec.first_seed == 12 and spec.smoke
    assert [p.label for p in spec.points] == [
        "baseline",
        "learning_rate=0.0001,normalization=batch",
        "learning_rate=0.0001,global_clipnorm=1.0",
        "normalization=batch,global_clipnorm=1.0",
    ]
    text = combination.spec.read_text()
    assert text.startswith("# Written by `sweeper doctor") and combination.family in text
    report = json.loads((tmp_path / "doctor.json").read_text())
    assert report["combination"]["grid"] == {knob: list(values) for knob, values in combination.grid.items()}
    assert report["combination"]["first_seed"] == 12 and report["combination"]["why"] == list(combination.why)
    (round_one,) = report["rounds"]
    assert [point["label"] for point in round_one["points"]] == [point.label for point in first]


@pytest.mark.slow
def test_a_fault_that_needs_two_changes_is_fixed_by_the_combination_round(tmp_path):
    """examples/keras/broken_numerics.py: a linear network with N(0, 1) weights, MSE and SGD at 3.0 goes NaN;
    no single remedy fixes it, the combination round's pair of a scaled start and a smaller step does, on
    seeds the first round never used; the console and doctor.json say the same."""
    program = tmp_path / "broken_numerics.py"
    program.write_text((ROOT / "examples" / "keras" / "broken_numerics.py").read_text())
    result = run_sweeper("doctor", str(program), "--run", "--tracking-uri", "none", cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "doctor-broken_numerics.json").read_text())
    first, second = report["rounds"]
    assert not [point for point in first["points"] if point["verdict"] == "fixes"]
    baseline = next(point for point in first["points"] if point["label"] == "baseline")
    assert report["combination"]["first_seed"] == baseline["seeds"]  # the first round's baseline ran 0..n-1
    assert "no single remedy was shown to fix it" in result.stdout and report["combination"]["family"] in " ".join(
        result.stdout.split()
    )
    fixes = {point["label"]: point for point in second["points"] if point["verdict"] == "fixes"}
    (pair,) = [label for label in fixes if "kernel_initializer=" in label and "learning_rate=0.03" in label]
    assert 0.7 < fixes[pair]["median_healthy_metric"] < 0.9, second["points"]
    said = " ".join(result.stdout.split())
    assert "combination round: fixes: " in said and pair in said.split("combination round: fixes: ")[1]
