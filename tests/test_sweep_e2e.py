"""A real sweep: the `sweeper` console script, real Ray in-process, a real SQLite MLflow store."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request

import matplotlib.image
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import SWEEPER, clean_env, free_port, sweep_dirs

SPEC = """
name: e2e-listmle
workload: listmle
seeds: 2
design: fixed
smoke: true
grid:
  list_shape: [flattened, grouped, vector]
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    (work / "spec.yaml").write_text(SPEC)
    result = subprocess.run(
        [SWEEPER, "run", "spec.yaml", "--max-concurrent", "2"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sweep_dir,) = sweep_dirs(work / "sweeps")
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
    assert ": Ranking" in stdout
    # reused Ray workers: TensorFlow is imported once per worker process, not once per trial
    assert len({row["worker"] for row in rows}) <= 2


def test_the_experiment_is_model_training_and_the_printed_link_opens_its_runs_table(sweep):
    work, _, stdout = sweep
    experiment = MlflowClient(f"sqlite:///{work / 'mlflow.db'}").get_experiment_by_name("e2e-listmle")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not MLflow 3's GenAI default
    link = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}?workflowType=machine_learning"
    assert f"runs:    {link} (after `sweeper ui`)" in stdout


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
    port = free_port()
    server = subprocess.Popen(
        [SWEEPER, "ui", "--port", str(port)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout.readline().startswith(f"MLflow UI: http://127.0.0.1:{port}")
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=e2e-listmle",
                    timeout=10,
                ) as response:
                    assert json.load(response)["experiment"]["name"] == "e2e-listmle"
                    break
            except OSError:  # refused, reset or timed out while the server starts
                assert time.monotonic() < deadline and server.poll() is None, "the MLflow UI did not come up"
                time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_report_rebuilds_the_same_ranking_from_mlflow_alone(sweep, tmp_path):
    """From another folder, with nothing but the store: the same ranking.json and trials.csv."""
    work, sweep_dir, _ = sweep
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [SWEEPER, "report", sweep_dir.name, "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (rebuilt,) = sweep_dirs(elsewhere / "sweeps")
    assert (rebuilt / "ranking.json").read_text() == (sweep_dir / "ranking.json").read_text()
    assert (rebuilt / "trials.csv").read_text() == (sweep_dir / "trials.csv").read_text()
    assert {p.name for p in (rebuilt / "plots").iterdir()} == {p.name for p in (sweep_dir / "plots").iterdir()}

    compared = subprocess.run(
        [SWEEPER, "compare", str(sweep_dir), str(rebuilt)], capture_output=True, text=True, timeout=120, env=clean_env()
    )
    assert compared.returncode == 0, compared.stderr
    assert "baseline -> baseline" in compared.stdout
    # the same trials: every point ties with itself, P(after beats before) 0.5
    assert len(re.findall(r"(?<![\d.])0\.5(?![\d])", compared.stdout)) == 3
    unknown = subprocess.run(
        [SWEEPER, "report", "no-such-sweep", "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2 and "no-such-sweep" in unknown.stderr


def test_the_parent_run_carries_the_report_and_its_plots(sweep):
    work, sweep_dir, _ = sweep
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("e2e-listmle").experiment_id], "tags.`sweeper.kind` = 'sweep'"
    )
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"spec.yaml", "report.html", "report.md", "ranking.json", "trials.csv", "plots"} <= names
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/ranking.png", "plots/learning_curves.png", "plots/grad_norms.png"} <= plots


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_html_shows_its_plots_in_a_real_browser(sweep, tmp_path):
    """Headless Chromium renders report.html; the verdict colours, used only by the plots, are on screen."""
    _, sweep_dir, _ = sweep
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,4000",
            f"--screenshot={shot}",
            (sweep_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round()
    for colour in ("#2e7d32", "#1565c0", "#757575"):  # healthy, stuck_zero and error in the plots
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).max(axis=-1) <= 8).sum() > 500, f"no {colour} on screen"


def test_report_judges_claims_added_after_the_run(sweep, tmp_path):
    work, sweep_dir, _ = sweep
    claims = SPEC + (
        "claims:\n  - {claim: Grouping fixes it, set: {list_shape: grouped}, expect: fixes,\n"
        "     source: {file: 000_d839642e40c27b5a.txt, quote: Example 3}}\n"
    )
    (tmp_path / "claims.yaml").write_text(claims)
    store = f"sqlite:///{work / 'mlflow.db'}"
    result = subprocess.run(
        [
            SWEEPER,
            "report",
            sweep_dir.name,
            "--tracking-uri",
            store,
            "--claims-from",
            str(tmp_path / "claims.yaml"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (rebuilt,) = sweep_dirs(tmp_path / "out")
    (claim,) = json.loads((rebuilt / "ranking.json").read_text())["claims"]
    assert claim["claim"] == "Grouping fixes it" and claim["measured"]["pairs"] == 2 and claim["holds"] is not None
    assert claim["source"] == {"file": "000_d839642e40c27b5a.txt", "quote": "Example 3"}
    assert "Grouping fixes it" in (rebuilt / "report.md").read_text()
    assert "000_d839642e40c27b5a.txt: “Example 3”" in (rebuilt / "report.md").read_text()

    (tmp_path / "other.yaml").write_text(claims.replace("vector]", "vector]\n  labels: [graded, constant]"))
    refused = subprocess.run(
        [
            SWEEPER,
            "report",
            sweep_dir.name,
            "--tracking-uri",
            store,
            "--claims-from",
            str(tmp_path / "other.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "differ from the sweep as run" in refused.stderr
