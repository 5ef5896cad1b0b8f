"""Issue 12's failing case, run for real: a one-file workload (plain SGD on badly scaled features) whose
baseline reports an R^2 near -1e200 and beyond before its loss turns inf, and declares CHANCE = 0.0.

The sweep runs without early stopping so the histories carry the huge and non-finite values all the way to
the analysis, which must still write a full report."""

import csv
import json

import pytest

from conftest import TEST_WORKLOADS, run_sweeper, sweep_dirs

SPEC = """
name: sgd-scaling
workload: {workload}
seeds: 5
design: fixed
grid:
  feature_scaling: [raw, standardized]
  learning_rate: [0.01, 1.0e-9]
claims:
  - claim: Standardising the features fixes the divergence
    set: {{feature_scaling: standardized}}
    where: {{learning_rate: 0.01}}
    expect: fixes
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    work = tmp_path_factory.mktemp("sgd")
    workload = str(TEST_WORKLOADS / "sgd_regression.py")
    (work / "spec.yaml").write_text(SPEC.format(workload=workload))
    result = run_sweeper(
        "run", "spec.yaml", "--no-early-stop", "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", cwd=work
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = sweep_dirs(work / "sweeps")
    return sweep_dir


def test_the_analysis_writes_every_output(sweep):
    for name in ("report.md", "report.html", "ranking.json", "trials.csv"):
        assert (sweep / name).stat().st_size > 0
    histories = [json.loads(path.read_text())["history"] for path in (sweep / "trials").glob("*.json")]
    assert min(r["val_r2"] for h in histories for r in h if abs(r["val_r2"]) < float("inf")) < -1e200


def test_the_baseline_diverges_and_standardising_fixes_it(sweep):
    ranking = json.loads((sweep / "ranking.json").read_text())
    points = {p["label"]: p for p in ranking["points"]}
    assert set(points["baseline"]["verdicts"]) <= {"non_finite", "exploding"}
    fixed = points["feature_scaling=standardized"]
    # 5 healthy seeds against 5 diverged: p = 2 / C(10, 5) = 0.0079, x3 points by Holm
    assert fixed["verdicts"] == ["healthy"] * 5 and fixed["verdict"] == "fixes"
    assert ranking["points"][0]["label"] == "feature_scaling=standardized"
    (claim,) = ranking["claims"]
    assert claim["holds"] is True


def test_a_trial_that_ends_below_chance_is_not_healthy(sweep):
    rows = list(csv.DictReader((sweep / "trials.csv").open()))
    below = [row for row in rows if row["final_metric"] and float(row["final_metric"]) < 0.0]
    assert below, "the too-small learning rate should end below R^2 0"
    assert all(row["verdict"] != "healthy" for row in below)
    assert all(row["chance"] == "0.0" for row in rows if row["verdict"] != "error")
