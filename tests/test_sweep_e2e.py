"""A real sweep: the `sweeper` console script, real Ray in-process, a real SQLite MLflow store."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

SPEC = """
name: e2e-listmle
workload: listmle
seeds: 2
smoke: true
grid:
  list_shape: [flattened, grouped, vector]
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    (work / "spec.yaml").write_text(SPEC)
    sweeper = Path(sys.executable).with_name("sweeper")
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [str(sweeper), "run", "spec.yaml", "--max-concurrent", "2"], cwd=work, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sweep_dir,) = (work / "sweeps").iterdir()
    return work, sweep_dir, result.stdout


def test_outputs_have_one_row_per_trial(sweep):
    _, sweep_dir, stdout = sweep
    rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
    assert len(rows) == 3 * 2
    by_point = {}
    for row in rows:
        by_point.setdefault(row["point"], []).append(row)
    assert {row["verdict"] for row in by_point["baseline"]} == {"stuck_zero"}
    assert all(float(row["final_loss"]) == 0.0 for row in by_point["baseline"])
    assert all(float(row["final_loss"]) > 0.1 for row in by_point["list_shape=grouped"])
    assert {row["verdict"] for row in by_point["list_shape=vector"]} == {"error"}  # raised; the sweep went on
    ranking = json.loads((sweep_dir / "ranking.json").read_text())
    assert {p["label"] for p in ranking["points"]} == set(by_point)
    assert "## Ranking" in (sweep_dir / "report.md").read_text()
    assert "remedies ranked" in stdout
    # reused Ray workers: TensorFlow is imported once per worker process, not once per trial
    assert len({row["worker"] for row in rows}) <= 2


def test_mlflow_has_one_parent_and_a_child_per_trial(sweep):
    work, sweep_dir, _ = sweep
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")  # the default store: ./mlflow.db
    experiment = client.get_experiment_by_name("e2e-listmle")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("sweeper.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweeper.kind") == "trial"]
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == sweep_dir.name
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "ranking.json", "report.md"} <= artifacts

    rows = {row["mlflow_run_id"]: row for row in csv.DictReader((sweep_dir / "trials.csv").open())}
    for child in children:
        tags, params = child.data.tags, child.data.params
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        row = rows[child.info.run_id]
        assert tags["sweeper.verdict"] == row["verdict"] and tags["sweeper.trial_key"] == row["trial_key"]
        assert params["list_shape"] == row["list_shape"] and params["seed"] == row["seed"]
        history = client.get_metric_history(child.info.run_id, "loss")
        assert [m.step for m in history] == list(range(1, int(row["steps"]) + 1))
        if row["verdict"] == "error":
            assert child.info.status == "FAILED" and int(row["steps"]) == 0
        else:
            assert child.info.status == "FINISHED" and int(row["steps"]) > 0
            assert history[-1].value == pytest.approx(float(row["final_loss"]))


def test_ui_serves_the_sweep_store_on_loopback(sweep):
    work, _, _ = sweep
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sweeper = Path(sys.executable).with_name("sweeper")
    server = subprocess.Popen(
        [str(sweeper), "ui", "--port", str(port)], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )
    try:
        assert server.stdout.readline().startswith(f"MLflow UI: http://127.0.0.1:{port}")
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                                            "?experiment_name=e2e-listmle", timeout=5) as response:
                    assert json.load(response)["experiment"]["name"] == "e2e-listmle"
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and server.poll() is None, "the MLflow UI did not come up"
                time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
