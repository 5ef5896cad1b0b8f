"""Faults injected into real sweeps: a killed driver, a tracking server that is down, a lost Ray node.

Each test runs real `sweeper` processes against a real Ray and a real MLflow (SQLite, or an `mlflow
server` on 127.0.0.1); they take minutes, so they are marked slow and run in CI's second pass.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
SWEEPER = str(Path(sys.executable).with_name("sweeper"))
RAY = str(Path(sys.executable).with_name("ray"))

SPEC = """
name: fault-listmle
workload: listmle
seeds: 2
smoke: true
grid:
  list_shape: [flattened, grouped]
  labels: [graded, constant]
"""  # 4 points x 2 seeds = 8 trials of a few seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def env(**extra) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**base, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def finished_trials(out: Path) -> list[Path]:
    return sorted(out.glob("*/trials/*.json"))


def child_runs(client: MlflowClient, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("sweeper.kind") == "trial"], [r for r in runs if r.data.tags.get("sweeper.kind") == "sweep"]


def points_of(sweep_dir: Path) -> dict:
    ranking = json.loads((sweep_dir / "ranking.json").read_text())
    return {p["label"]: (p["verdicts"], p["final_metrics"], p["verdict"]) for p in ranking["points"]}


def test_a_sweep_whose_driver_is_killed_is_resumed_without_reruns_or_duplicates(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--tracking-uri", store, "--max-concurrent", "1"]

    killed_out = tmp_path / "killed"
    driver = subprocess.Popen([SWEEPER, "run", "spec.yaml", "--out", str(killed_out), *common], cwd=tmp_path,
                              env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: len(finished_trials(killed_out)) >= 3, 600, "three finished trials")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, at once
    driver.wait()
    before = {path.name: path.read_bytes() for path in finished_trials(killed_out)}
    assert 3 <= len(before) < 8
    (sweep_dir,) = killed_out.iterdir()

    resumed = subprocess.run([SWEEPER, "resume", str(sweep_dir)], cwd=tmp_path, env=env(), capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = {path.name: path.read_bytes() for path in finished_trials(killed_out)}
    assert len(after) == 8
    assert {name: after[name] for name in before} == before  # finished trials were not run again
    rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
    assert len(rows) == 8 and all(row["verdict"] in ("healthy", "stuck_zero", "collapsed") for row in rows)

    client = MlflowClient(store)
    children, parents = child_runs(client, "fault-listmle")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["sweeper.trial_key"] for r in children) == sorted(row["trial_key"] for row in rows)

    clean_out = tmp_path / "clean"
    clean = subprocess.run([SWEEPER, "run", "spec.yaml", "--out", str(clean_out), "--tracking-uri",
                            f"sqlite:///{tmp_path / 'clean.db'}"], cwd=tmp_path, env=env(), capture_output=True,
                           text=True, timeout=900)
    assert clean.returncode == 0, clean.stderr[-3000:]
    (clean_dir,) = clean_out.iterdir()
    assert points_of(sweep_dir) == points_of(clean_dir)  # the same ranking as an uninterrupted sweep


def server_is_up(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_a_tracking_server_that_is_down_loses_nothing(tmp_path):
    """Down when the sweep starts, back while it runs: no result is lost, and `sync` replays what MLflow
    missed, once (a second sync replays nothing)."""
    (tmp_path / "spec.yaml").write_text(SPEC.replace("smoke: true", "smoke: true\nfixed: {epochs: 6}"))
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    out = tmp_path / "sweeps"
    driver = subprocess.Popen([SWEEPER, "run", "spec.yaml", "--out", str(out), "--tracking-uri", uri,
                               "--max-concurrent", "1"], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    server = None
    try:
        wait_for(lambda: len(finished_trials(out)) >= 2, 600, "two trials finished with no tracking server")
        server = subprocess.Popen([SWEEPER, "server", "--store", str(tmp_path / "server"), "--port", str(port)],
                                  cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        stdout, stderr = driver.communicate(timeout=900)
        assert driver.returncode == 0, stdout[-3000:] + stderr[-3000:]
        assert "warning: MLflow at" in stderr  # said so, and went on
        (sweep_dir,) = out.iterdir()
        rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
        assert len(rows) == 8  # every result is in the sweep folder

        wait_for(lambda: server_is_up(uri), 300, "the MLflow server")
        synced = subprocess.run([SWEEPER, "sync", str(sweep_dir)], cwd=tmp_path, env=env(), capture_output=True,
                                text=True, timeout=300)
        assert synced.returncode == 0, synced.stderr[-3000:]
        client = MlflowClient(uri)
        children, parents = child_runs(client, "fault-listmle")
        assert len(parents) == 1 and len(children) == 8
        assert {r.data.tags["sweeper.trial_key"] for r in children} == {row["trial_key"] for row in rows}
        for run in children:
            row = next(row for row in rows if row["trial_key"] == run.data.tags["sweeper.trial_key"])
            assert run.data.tags["sweeper.verdict"] == row["verdict"]
            assert len(client.get_metric_history(run.info.run_id, "loss")) == int(row["steps"])
        artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
        assert {"ranking.json", "report.html", "trials.csv"} <= artifacts

        again = subprocess.run([SWEEPER, "sync", str(sweep_dir)], cwd=tmp_path, env=env(), capture_output=True,
                               text=True, timeout=300)
        assert again.returncode == 0 and "0 trials replayed" in again.stdout, again.stderr
        assert len(child_runs(client, "fault-listmle")[0]) == 8
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def test_a_two_node_cluster_survives_a_lost_node(tmp_path):
    """A Ray head and a second node as separate processes on 127.0.0.1, an MLflow server on 127.0.0.1;
    the second node is killed mid-sweep and its trial is retried on the head."""
    ports = [free_port() for _ in range(9)]
    head_port, mlflow_port = ports[0], ports[1]
    cluster_env = env(RAY_AUTH_MODE="token")  # one token for head, node and driver (see shared notes)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={head_port}", "--num-cpus=1",
         "--include-dashboard=false", "--block"],
        env=cluster_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    node = subprocess.Popen(
        [RAY, "start", f"--address=127.0.0.1:{head_port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
         f"--node-manager-port={ports[2]}", f"--object-manager-port={ports[3]}",
         f"--runtime-env-agent-port={ports[4]}", f"--dashboard-agent-listen-port={ports[5]}",
         f"--dashboard-agent-grpc-port={ports[6]}", f"--metrics-export-port={ports[7]}",
         "--min-worker-port=11000", "--max-worker-port=11100", "--block"],
        env=cluster_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server = subprocess.Popen([SWEEPER, "server", "--store", str(tmp_path / "server"), "--port", str(mlflow_port)],
                              cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    (tmp_path / "spec.yaml").write_text(SPEC.replace("smoke: true", "smoke: true\nfixed: {epochs: 8}"))
    out = tmp_path / "sweeps"
    uri = f"http://127.0.0.1:{mlflow_port}"
    def alive_nodes() -> int:
        probe = subprocess.run(
            [sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{head_port}', logging_level='ERROR'); "
             "print(sum(node['Alive'] for node in ray.nodes()))"],
            env=cluster_env, capture_output=True, text=True, timeout=120)
        return int(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 and probe.stdout.strip() else 0

    try:
        wait_for(lambda: alive_nodes() == 2, 300, "both Ray nodes")
        refused = subprocess.run([SWEEPER, "run", "spec.yaml", "--address", f"127.0.0.1:{head_port}",
                                  "--tracking-uri", f"sqlite:///{tmp_path / 'local.db'}"], cwd=tmp_path,
                                 env=cluster_env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and "sweeper server" in refused.stderr, refused.stderr[-2000:]
        assert not out.exists()

        driver = subprocess.Popen([SWEEPER, "run", "spec.yaml", "--address", f"127.0.0.1:{head_port}",
                                   "--tracking-uri", uri, "--out", str(out)], cwd=tmp_path, env=cluster_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        wait_for(lambda: len(finished_trials(out)) >= 2, 900, "two trials finished on the cluster")
        os.killpg(node.pid, signal.SIGKILL)  # the second node and its worker processes, mid-trial
        stdout, stderr = driver.communicate(timeout=1200)
        assert driver.returncode == 0, stdout[-3000:] + stderr[-3000:]
        (sweep_dir,) = out.iterdir()
        rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
        assert len(rows) == 8 and all(row["verdict"] != "error" for row in rows)
        assert len({row["worker"].split(":")[0] for row in rows}) == 2  # trials ran on both nodes
        assert max(int(row["attempts"]) for row in rows) >= 2  # the lost node's trial ran again

        client = MlflowClient(uri)
        children, parents = child_runs(client, "fault-listmle")
        assert len(parents) == 1
        assert sorted(r.data.tags["sweeper.trial_key"] for r in children) == sorted(row["trial_key"] for row in rows)
        assert {r.data.tags["sweeper.attempts"] for r in children} >= {"1", "2"}
    finally:
        for process in (node, head, server):  # `ray start --block` takes its node's processes down with it
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=120)
