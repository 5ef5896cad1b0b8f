"""The Python API (`sweeper.api`) and the no-op mirror behind `--tracking-uri none`: a sweep with no MLflow at
all, mirrored later by `sweeper sync --tracking-uri`; the README's Python block, run as written."""

import re

import pytest
from mlflow.tracking import MlflowClient

from sweeper import api
from sweeper.errors import SweeperError
from sweeper.results import Ranking

from conftest import ROOT, TEST_WORKLOADS, run_python, run_sweeper

TINY_SPEC = f"""
name: tiny-none
workload: {TEST_WORKLOADS / "tiny.py"}
seeds: 3
design: fixed
grid:
  lr: [0.1, 0.5]
"""


@pytest.fixture(scope="module")
def unmirrored(tmp_path_factory):
    """A sweep run with `--tracking-uri none` from a folder of its own, and what the run printed."""
    root = tmp_path_factory.mktemp("none")
    (root / "spec.yaml").write_text(TINY_SPEC)
    result = run_sweeper("run", "spec.yaml", "--out", "out", "--tracking-uri", "none", cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    (sweep_dir,) = (root / "out").glob("tiny-none-*")
    return root, sweep_dir, result


def test_a_sweep_without_mlflow_makes_no_store_and_says_so(unmirrored):
    root, sweep_dir, result = unmirrored
    made = {path.name for path in root.rglob("*")}
    assert not made & {"mlflow.db", "mlruns", "mlartifacts"}, made
    assert "MLflow" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "ran without MLflow" in result.stdout and "parent run" not in result.stdout
    # the plan first, before any trial: the sweeps, the trials planned, where they go
    assert (
        result.stdout.startswith("plan: 1 sweep (tiny-none: 2 grid points x 3 seeds = 6 trials")
        and "into out/;" in result.stdout
    )
    assert "tracking: none: this sweep ran without MLflow" in (sweep_dir / "report.md").read_text()
    assert all(row.endswith(",") for row in (sweep_dir / "trials.csv").read_text().splitlines()[1:])  # no run ids


def test_sync_mirrors_a_sweep_that_ran_without_mlflow(unmirrored, tmp_path):
    _, sweep_dir, _ = unmirrored
    refused = run_sweeper("sync", str(sweep_dir), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert re.match(r"error: --tracking-uri: .* ran without MLflow", refused.stderr), refused.stderr
    store = f"sqlite:///{tmp_path / 'later.db'}"
    synced = run_sweeper("sync", str(sweep_dir), "--tracking-uri", store, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr[-2000:]
    assert "6 trials replayed" in synced.stdout and "warning" not in synced.stderr
    client = MlflowClient(store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny-none"]
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'trial'")
    assert len(runs) == 6 and all(run.info.status == "FINISHED" for run in runs)
    reported = run_sweeper("report", str(sweep_dir), cwd=tmp_path)  # the folder now names the store it was synced to
    assert reported.returncode == 0 and "warning" not in reported.stderr, reported.stderr
    assert f"tracking: {store}, experiment tiny-none" in (sweep_dir / "report.md").read_text()


def test_load_ranking_reads_a_sweep_folder(unmirrored):
    _, sweep_dir, _ = unmirrored
    ranking = api.load_ranking(sweep_dir)
    assert ranking == Ranking.loads((sweep_dir / "ranking.json").read_text())
    assert {p.label for p in ranking.points} == {"baseline", "lr=0.5"} and ranking.metric == "score"
    assert ranking.dumps() == (sweep_dir / "ranking.json").read_text()


def test_load_ranking_refuses_what_is_neither_a_folder_nor_a_sweep(tmp_path):
    with pytest.raises(SweeperError, match="neither a sweep folder with ranking.json nor a sweep in none"):
        api.load_ranking(tmp_path / "nowhere", tracking_uri="none")


def test_run_refuses_a_sweep_name_the_file_lacks():
    with pytest.raises(SweeperError, match=r"only: no sweep named 'smoke-dq'; did you mean 'smoke-dqn'"):
        api.run(ROOT / "configs" / "smoke.yaml", only=["smoke-dq"], tracking_uri="none")


def readme_python_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```", start)]


@pytest.mark.slow
def test_the_readmes_python_block_runs_as_written(tmp_path):
    for folder in ("examples", "configs"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    code = readme_python_block()
    assert code.startswith("from sweeper import api\n") and "api.run(" in code
    result = run_python(code, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.split(" ", 1)[0] != "")
    assert lines["output_activation=sigmoid"].startswith("fixes"), result.stdout
    assert lines["baseline"].startswith("baseline"), result.stdout
    assert not (tmp_path / "mlflow.db").exists()
