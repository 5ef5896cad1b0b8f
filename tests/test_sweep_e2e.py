"""A real sweep: the `sweeper` console script, real Ray in-process, a real SQLite MLflow store."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request

import matplotlib.image
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import SWEEPER, clean_env, free_port, server_is_up, sweep_dirs, wait_for

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
    report = (sweep_dir / "report.md").read_text()
    assert "## Ranking" in report and ": Ranking" in stdout
    # the answer first: two seeds cannot carry a test at alpha 0.05, so no fix is claimed, and it says so
    first = report.split("\n## ")[1]
    assert first.startswith("The answer\n") and "The failure: the baseline was unhealthy in 2 of 2 seeds" in first
    assert "No fix found: no grid point was shown to fix the failure" in first
    assert "Claims: this sweep judges none." in first
    assert ": The answer\nThe failure:" in stdout  # and in the console, after the tables
    # reused Ray workers: TensorFlow is imported once per worker process, not once per trial
    assert len({row["worker"] for row in rows}) <= 2
    # when each trial held its slot: started on its worker, for its training seconds, before the sweep ended
    trials = [json.loads(path.read_text()) for path in (sweep_dir / "trials").glob("*.json")]
    ended = (sweep_dir / "ranking.json").stat().st_mtime
    assert all(ended - 600 < t["started"] <= t["started"] + t["train_seconds"] < ended for t in trials)


@pytest.fixture(scope="module")
def ui(sweep):
    """`sweeper ui` over the sweep's store, serving: its address and the lines it printed before serving."""
    work, _, _ = sweep
    port = free_port()
    server = subprocess.Popen(
        [SWEEPER, "ui", "--port", str(port)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env=clean_env(),
    )
    try:
        printed = []
        while not (line := server.stdout.readline()).startswith("MLflow UI:"):
            assert line, "sweeper ui ended before serving"
            printed.append(line.rstrip("\n"))
        address = f"http://127.0.0.1:{port}"
        assert line.startswith(f"MLflow UI: {address}")
        wait_for(lambda: server_is_up(address), 90, "the MLflow UI")
        yield address, printed
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _rest(address: str, endpoint: str, body: dict | None = None) -> dict:
    """One call of MLflow's REST API, as the UI makes it."""
    request = urllib.request.Request(
        f"{address}/api/2.0/mlflow/{endpoint}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _runs_of(address: str, experiment_id: str, kind: str) -> list[dict]:
    found = _rest(
        address,
        "runs/search",
        {"experiment_ids": [experiment_id], "filter": f"tags.`sweeper.kind` = '{kind}'", "max_results": 1000},
    )
    return [
        {
            "info": run["info"],
            "tags": {t["key"]: t["value"] for t in run["data"].get("tags", [])},
            "params": {p["key"]: p["value"] for p in run["data"].get("params", [])},
            "metrics": {m["key"]: m["value"] for m in run["data"].get("metrics", [])},
        }
        for run in found.get("runs", [])
    ]


def test_the_printed_links_open_the_model_training_runs_table_with_the_sweepers_columns(sweep, ui):
    work, sweep_dir, stdout = sweep
    address, printed = ui
    experiment = _rest(address, "experiments/get-by-name?experiment_name=e2e-listmle")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # not MLflow 3's GenAI default
    view = json.loads(tags["mlflow.sharedViewState.sweeper"])
    assert view["columnOrder"][0] == "tags.`sweeper.verdict`" and "params.`list_shape`" in view["selectedColumns"]
    page = f"/#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning&viewStateShareKey=sweeper"
    assert f"runs:    http://127.0.0.1:5000{page} (after `sweeper ui`)" in stdout
    assert printed == [f"e2e-listmle: {address}{page}"]  # `sweeper ui` names each sweep's table on itself
    assert f"MLflow runs: http://127.0.0.1:5000{page}" in (sweep_dir / "report.md").read_text()


def test_mlflow_has_the_sweep_its_points_with_their_statistics_and_each_trial_under_its_point(sweep, ui):
    """The layout as the UI reads it, through MLflow's REST API: the sweep's run; a run per grid point with
    its verdict and statistics, listed under the sweep's run; a run per trial nested under its point, with
    every Config field as a param."""
    from sweeper.workload import load

    _, sweep_dir, _ = sweep
    address, _ = ui
    experiment_id = _rest(address, "experiments/get-by-name?experiment_name=e2e-listmle")["experiment"]["experiment_id"]
    (parent,) = _runs_of(address, experiment_id, "sweep")
    assert parent["info"]["status"] == "FINISHED" and parent["info"]["run_name"] == sweep_dir.name
    artifacts = {a["path"] for a in _rest(address, f"artifacts/list?run_id={parent['info']['run_id']}")["files"]}
    assert {"trials.csv", "ranking.json", "report.md"} <= artifacts

    ranking = json.loads((sweep_dir / "ranking.json").read_text())
    points = {run["info"]["run_name"]: run for run in _runs_of(address, experiment_id, "point")}
    assert set(points) == {p["label"] for p in ranking["points"]}
    labels = [run["info"]["run_name"] for run in sorted(points.values(), key=lambda r: -int(r["info"]["start_time"]))]
    assert labels == ["baseline", "list_shape=grouped", "list_shape=vector"]  # grid order, under the sweep's run
    assert all(int(run["info"]["start_time"]) < int(parent["info"]["start_time"]) for run in points.values())
    for rank, point in enumerate(ranking["points"], 1):
        run = points[point["label"]]
        assert "mlflow.parentRunId" not in run["tags"] and run["info"]["status"] == "FINISHED"
        assert run["tags"]["sweeper.verdict"] == point["verdict"]
        metrics = run["metrics"]
        assert metrics["sweeper.rank"] == rank and metrics["sweeper.seeds"] == 2
        assert metrics["sweeper.healthy_rate"] == point["healthy_rate"]
        finals = [v for v in point["final_metrics"] if v is not None]
        if finals:
            assert metrics["sweeper.median_final_ndcg5"] == pytest.approx(np.median(finals), rel=1e-3)
            assert metrics["sweeper.mean_final_ndcg5"] == pytest.approx(np.mean(finals), rel=1e-3)
        if not point["is_baseline"]:
            assert metrics["sweeper.p_adjusted"] == pytest.approx(point["p_adjusted"], rel=1e-3)
            assert metrics["sweeper.seeds_used"] == point["seeds_used"]

    fields = set(load("listmle").knobs)
    rows = {row["mlflow_run_id"]: row for row in csv.DictReader((sweep_dir / "trials.csv").open())}
    trials = _runs_of(address, experiment_id, "trial")
    assert len(trials) == 6 and set(rows) == {run["info"]["run_id"] for run in trials}
    for run in trials:
        tags, params, row = run["tags"], run["params"], rows[run["info"]["run_id"]]
        assert tags["mlflow.parentRunId"] == points[row["point"]]["info"]["run_id"]
        assert run["info"]["run_name"] == f"{row['point']} · seed {row['seed']}"
        assert set(params) == fields, "every Config field is a param of a trial"
        assert params["list_shape"] == row["list_shape"] and params["seed"] == row["seed"]
        assert params["epochs"] == str(load("listmle").smoke["epochs"])  # the sweep ran at SMOKE size
        assert tags["sweeper.verdict"] == row["verdict"] and tags["sweeper.trial_key"] == row["trial_key"]
        history = _rest(address, f"metrics/get-history?run_id={run['info']['run_id']}&metric_key=loss")
        steps = [m["step"] for m in history.get("metrics", [])]
        assert sorted(int(step) for step in steps) == list(range(1, int(row["steps"]) + 1))
        if row["verdict"] == "error":
            assert run["info"]["status"] == "FAILED" and int(row["steps"]) == 0
        else:
            assert run["info"]["status"] == "FINISHED" and int(row["steps"]) > 0


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


TABLE_ROWS = """(() => {
  const rows = {};  // the runs table splits each row into a pinned part (the run's name) and the columns
  for (const part of document.querySelectorAll('[role=row][row-index]')) {
    const index = Number(part.getAttribute('row-index'));
    const row = rows[index] = rows[index] || {name: null, cells: []};
    const link = part.querySelector('a[href*="/runs/"]');
    if (link) row.name = link.innerText.trim();
    row.cells.push(...part.innerText.split(/\\s+/));
  }
  return Object.keys(rows).sort((a, b) => a - b).map(index => rows[index]);
})()"""
EXPAND = """(() => {
  const named = [...document.querySelectorAll('[role=row][row-index] a[href*="/runs/"]')]
    .find(link => link.innerText.trim() === %s);
  const expander = named && named.closest('[role=row]').querySelector('button');
  if (expander) expander.click();
  return Boolean(expander);
})()"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_printed_link_opens_on_the_points_with_their_verdicts_and_their_trials_in_a_fresh_browser(
    sweep, ui, tmp_path
):
    """What a person sees: `sweeper ui`'s link to the finished sweep, opened in headless Chromium with a new
    profile, lands on the runs table (not MLflow 3's GenAI overview) with the sweep's run, then each grid
    point's run with its verdict; each point's trials open under it, each with its own verdict."""
    from browser import Chromium

    _, sweep_dir, _ = sweep
    _, printed = ui
    link = printed[0].split(": ", 1)[1]
    points = {
        point["label"]: point["verdict"] for point in json.loads((sweep_dir / "ranking.json").read_text())["points"]
    }
    trials = {row["trial_key"]: row["verdict"] for row in csv.DictReader((sweep_dir / "trials.csv").open())}
    with Chromium(CHROMIUM, tmp_path / "profile") as browser:
        browser.open(link)
        rows = browser.wait_for(TABLE_ROWS, lambda rows: len(rows) == 1 + len(points), 120, "the runs table")
        assert "sweeper.verdict" in browser.evaluate("document.body.innerText")  # the shared view's columns
        assert [row["name"] for row in rows] == [sweep_dir.name, "baseline", "list_shape=grouped", "list_shape=vector"]
        for row in rows[1:]:
            assert points[row["name"]] in row["cells"], row
        for label in points:
            assert browser.evaluate(EXPAND % json.dumps(label)), f"{label} has no trials to open"
        rows = browser.wait_for(TABLE_ROWS, lambda rows: len(rows) == 1 + len(points) + len(trials), 60, "the trials")
    point = None
    for row in rows[1:]:  # each trial right under its point
        if row["name"] in points:
            point = row["name"]
            continue
        label, seed = row["name"].split(" · seed ")
        assert label == point, f"{row['name']} is not under its point {point}"
        assert trials[f"{label}|seed={seed}"] in row["cells"], row


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
