"""Faults injected into real sweeps (the fault matrix): a driver killed at random moments, a killed run of
several sweeps, a tracking server that is down or restarted mid-sweep, two sweeps sharing one SQLite store,
a lost Ray node.

Each test runs real `sweeper` processes against a real Ray and a real MLflow (SQLite, or an `mlflow server`
on 127.0.0.1); they take minutes, so they are marked slow and run in CI's second pass.
"""

import csv
import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import psycopg2
import pytest
from mlflow.tracking import MlflowClient

from sweeper.records import planned_sweep_dirs

from conftest import (
    SWEEPER,
    TEST_WORKLOADS,
    free_port,
    ray_answer,
    run_sweeper,
    server_is_up,
    start_ray_node,
    start_sweeper,
    sweep_dirs,
    wait_for,
)
from conftest import clean_env as env

pytestmark = pytest.mark.slow

SPEC = """
name: fault-listmle
workload: listmle
seeds: 2
design: fixed
smoke: true
grid:
  list_shape: [flattened, grouped]
  labels: [graded, constant]
"""  # 4 points x 2 seeds = 8 trials of a few seconds


def finished_trials(out: Path) -> list[Path]:
    return sorted(out.glob("*/trials/*.json"))


def nodes_that_finished(out: Path) -> set[str]:
    return {json.loads(path.read_text())["worker"].split(":")[0] for path in finished_trials(out)}


def child_runs(client: MlflowClient, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("sweeper.kind") == "trial"], [
        r for r in runs if r.data.tags.get("sweeper.kind") == "sweep"
    ]


def points_of(sweep_dir: Path) -> dict:
    ranking = json.loads((sweep_dir / "ranking.json").read_text())
    return {p["label"]: (p["verdicts"], p["final_metrics"], p["verdict"]) for p in ranking["points"]}


def trial_results(out: Path) -> dict[str, dict]:
    """Every trial file's content but its MLflow run id (a resume may give a trial's run a new one)."""
    documents = [json.loads(path.read_text()) for path in finished_trials(out)]
    return {doc["key"]: {k: v for k, v in doc.items() if k != "run_id"} for doc in documents}


def assert_once_everywhere(out: Path, store: str, experiment: str, trials: int) -> None:
    """Every trial once in the folder and once in MLflow, under the one run of its grid point; no run left
    RUNNING."""
    keys = [json.loads(path.read_text())["key"] for path in finished_trials(out)]
    assert len(keys) == len(set(keys)) == trials
    client = MlflowClient(store)
    children, parents = child_runs(client, experiment)
    assert sorted(run.data.tags["sweeper.trial_key"] for run in children) == sorted(keys)
    points = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.`sweeper.kind` = 'point'", max_results=1000
    )
    point_of = {run.info.run_id: run.data.tags["sweeper.point"] for run in points}
    assert len(point_of) == len(set(point_of.values()))  # one run per grid point
    assert all(point_of[run.data.tags["mlflow.parentRunId"]] == run.data.tags["sweeper.point"] for run in children)
    assert {run.info.status for run in children + parents + points} <= {"FINISHED", "FAILED"}


def test_a_driver_killed_at_random_moments_is_resumed_to_the_uninterrupted_result(tmp_path):
    """SIGKILL (the driver and the Ray it started) at 5 seeded random moments of one sweep, each followed by
    a resume (or by the run again where the kill came before the sweep's folder existed), then a resume to
    its end: every trial once in the folder and in MLflow, and the same ranking as an uninterrupted sweep."""
    (tmp_path / "spec.yaml").write_text(SPEC.replace("smoke: true", "smoke: true\nfixed: {epochs: 100}"))  # ~5 s each
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "killed"
    run = [SWEEPER, "run", "spec.yaml", "--out", str(out), "--tracking-uri", store, "--max-concurrent", "1"]
    rng = random.Random(1212)
    kills = []
    for _ in range(5):
        command = [SWEEPER, "resume", str(out)] if list(out.glob("*.plan.json")) else run
        log = (tmp_path / f"driver-{len(kills)}.log").open("w")
        driver = subprocess.Popen(command, cwd=tmp_path, env=env(), start_new_session=True, stdout=log, stderr=log)
        # A seeded moment: after 0 or 1 more trial finishes (0: while Ray starts, maybe before the folder exists),
        # then 0.5-4 s on (between trials, or inside one).
        target, delay = len(finished_trials(out)) + rng.randint(0, 1), rng.uniform(0.5, 4.0)
        wait_for(lambda n=target, d=driver: len(finished_trials(out)) >= n or d.poll() is not None, 600, "the moment")
        time.sleep(delay)
        assert driver.poll() is None, (tmp_path / f"driver-{len(kills)}.log").read_text()[-3000:]
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        log.close()
        kills.append((target, round(delay, 1), len(finished_trials(out))))
    before = trial_results(out)
    resumed = run_sweeper("resume", str(out), cwd=tmp_path, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    print(f"\nkills (after trial n, + s; trials finished then): {kills}")
    (sweep_dir,) = planned_sweep_dirs(out)
    after = trial_results(out)
    assert {key: after[key] for key in before} == before  # finished trials were not run again
    assert_once_everywhere(out, store, "fault-listmle", 8)

    clean_out = tmp_path / "clean"
    clean_store = f"sqlite:///{tmp_path / 'clean.db'}"
    clean = run_sweeper("run", "spec.yaml", "--out", str(clean_out), "--tracking-uri", clean_store, cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr[-3000:]
    (clean_dir,) = sweep_dirs(clean_out)
    assert points_of(sweep_dir) == points_of(clean_dir)  # the same ranking as an uninterrupted sweep


def test_a_killed_run_of_two_sweeps_is_resumed_from_its_out_folder(tmp_path):
    """Killed in the first of two sweeps: `sweeper resume OUT` finishes the first and runs the second, which
    had never started."""
    second = SPEC.replace("fault-listmle", "fault-second").replace("  labels: [graded, constant]\n", "")
    (tmp_path / "spec.yaml").write_text(SPEC + "---" + second)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "sweeps"
    driver = start_sweeper(
        "run",
        "spec.yaml",
        "--out",
        str(out),
        "--tracking-uri",
        store,
        "--max-concurrent",
        "1",
        cwd=tmp_path,
        quiet=True,
    )
    wait_for(lambda: len(finished_trials(out)) >= 2, 600, "two finished trials")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    first, never_started = planned_sweep_dirs(out)
    assert not list(never_started.glob("trials/*.json"))

    resumed = run_sweeper("resume", str(out), cwd=tmp_path, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert len(list(first.glob("trials/*.json"))) == 8 and len(list(never_started.glob("trials/*.json"))) == 4
    for sweep_dir, experiment, trials in ((first, "fault-listmle", 8), (never_started, "fault-second", 4)):
        assert len(list(csv.DictReader((sweep_dir / "trials.csv").open()))) == trials
        children, parents = child_runs(MlflowClient(store), experiment)
        assert len(children) == trials and len(parents) == 1
    again = run_sweeper("resume", str(out), cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "nothing to resume" in again.stdout


SHARED_STORE_SPEC = """
name: shared-store
workload: {workload}
seeds: 12
design: fixed
grid:
  feature_scaling: [raw, standardized]
"""  # 24 trials of milliseconds each: MLflow writes as fast as the driver makes them


def test_two_sweeps_writing_to_one_sqlite_store_at_once_both_complete(tmp_path):
    """Two drivers, one SQLite file, one experiment name (created by whichever comes first)."""
    (tmp_path / "spec.yaml").write_text(SHARED_STORE_SPEC.format(workload=TEST_WORKLOADS / "sgd_regression.py"))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    drivers = [
        start_sweeper("run", "spec.yaml", "--out", f"out{i}", "--tracking-uri", store, cwd=tmp_path) for i in range(2)
    ]
    for driver in drivers:
        stdout, stderr = driver.communicate(timeout=900)
        assert driver.returncode == 0, stdout[-2000:] + stderr[-2000:]
        assert "warning" not in stderr, stderr[-2000:]  # MLflow took every write at once, none left to `sync`
    client = MlflowClient(store)
    children, parents = child_runs(client, "shared-store")
    assert len(parents) == 2 and len(children) == 48
    for i in range(2):
        (sweep_dir,) = sweep_dirs(tmp_path / f"out{i}")
        mine = [run for run in children if run.data.tags["sweeper.sweep"] == sweep_dir.name]
        assert len({run.data.tags["sweeper.trial_key"] for run in mine}) == len(mine) == 24
        assert all(
            len(client.get_metric_history(run.info.run_id, "loss")) == int(run.data.metrics["sweeper.steps"])
            for run in mine
        )


def test_a_tracking_server_that_is_down_loses_nothing(tmp_path):
    """Down when the sweep starts, back while it runs: no result is lost, and `sync` replays what MLflow
    missed, once (a second sync replays nothing)."""
    (tmp_path / "spec.yaml").write_text(SPEC.replace("smoke: true", "smoke: true\nfixed: {epochs: 6}"))
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    out = tmp_path / "sweeps"
    driver = start_sweeper(
        "run", "spec.yaml", "--out", str(out), "--tracking-uri", uri, "--max-concurrent", "1", cwd=tmp_path
    )
    server = None
    try:
        wait_for(lambda: len(finished_trials(out)) >= 2, 600, "two trials finished with no tracking server")
        server = start_sweeper(
            "server", "--store", str(tmp_path / "server"), "--port", str(port), cwd=tmp_path, quiet=True
        )
        stdout, stderr = driver.communicate(timeout=900)
        assert driver.returncode == 0, stdout[-3000:] + stderr[-3000:]
        assert "warning: MLflow at" in stderr  # said so, and went on
        (sweep_dir,) = sweep_dirs(out)
        rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
        assert len(rows) == 8  # every result is in the sweep folder

        wait_for(lambda: server_is_up(uri), 300, "the MLflow server")
        synced = run_sweeper("sync", str(sweep_dir), cwd=tmp_path, timeout=300)
        assert synced.returncode == 0, synced.stderr[-3000:]
        client = MlflowClient(uri)
        children, parents = child_runs(client, "fault-listmle")
        assert len(parents) == 1 and len(children) == 8 and parents[0].info.status == "FINISHED"
        assert {r.data.tags["sweeper.trial_key"] for r in children} == {row["trial_key"] for row in rows}
        for run in children:
            row = next(row for row in rows if row["trial_key"] == run.data.tags["sweeper.trial_key"])
            assert run.data.tags["sweeper.verdict"] == row["verdict"]
            assert len(client.get_metric_history(run.info.run_id, "loss")) == int(row["steps"])
        artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
        assert {"ranking.json", "report.html", "trials.csv"} <= artifacts
        run_ids = {row["trial_key"]: row["mlflow_run_id"] for row in csv.DictReader((sweep_dir / "trials.csv").open())}
        assert run_ids == {r.data.tags["sweeper.trial_key"]: r.info.run_id for r in children}  # rewritten by sync

        again = run_sweeper("sync", str(sweep_dir), cwd=tmp_path, timeout=300)
        assert again.returncode == 0 and "0 trials replayed" in again.stdout, again.stderr
        assert len(child_runs(client, "fault-listmle")[0]) == 8
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def test_a_two_node_cluster_survives_a_lost_node(tmp_path, postgres):
    """A Ray head and a second node as separate processes on 127.0.0.1, an MLflow server on 127.0.0.1 over
    PostgreSQL (as a cluster's store would be); the second node is killed mid-sweep and its trial is retried
    on the head."""
    ports = [free_port() for _ in range(9)]
    head_port, mlflow_port = ports[0], ports[1]
    cluster_env = env(RAY_AUTH_MODE="token")  # one token for head, node and driver (see shared notes)
    head = start_ray_node("--head", f"--port={head_port}", "--num-cpus=1", "--include-dashboard=false", env=cluster_env)
    node = start_ray_node(
        f"--address=127.0.0.1:{head_port}",
        "--num-cpus=1",
        f"--node-manager-port={ports[2]}",
        f"--object-manager-port={ports[3]}",
        f"--runtime-env-agent-port={ports[4]}",
        f"--dashboard-agent-listen-port={ports[5]}",
        f"--dashboard-agent-grpc-port={ports[6]}",
        f"--metrics-export-port={ports[7]}",
        "--min-worker-port=11000",
        "--max-worker-port=11100",
        env=cluster_env,
    )
    server = start_sweeper(
        "server",
        *("--store", str(tmp_path / "server"), "--database", postgres, "--port", str(mlflow_port)),
        cwd=tmp_path,
        quiet=True,
    )
    # Trials of a few seconds, so that the second node is inside one when it is killed.
    (tmp_path / "spec.yaml").write_text(SPEC.replace("smoke: true", "smoke: true\nfixed: {epochs: 60}"))
    out = tmp_path / "sweeps"
    uri = f"http://127.0.0.1:{mlflow_port}"

    def alive_nodes() -> int:
        answer = ray_answer(f"127.0.0.1:{head_port}", "sum(node['Alive'] for node in ray.nodes())", cluster_env)
        return int(answer) if answer is not None else 0

    try:
        wait_for(lambda: server_is_up(uri), 120, f"the MLflow server over PostgreSQL at {uri}")
        wait_for(lambda: alive_nodes() == 2, 300, "both Ray nodes")
        refused = subprocess.run(
            [
                SWEEPER,
                "run",
                "spec.yaml",
                "--address",
                f"127.0.0.1:{head_port}",
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'local.db'}",
            ],
            cwd=tmp_path,
            env=cluster_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert refused.returncode == 2 and "sweeper server" in refused.stderr, refused.stderr[-2000:]
        assert not out.exists()

        run_on_cluster = ["run", "spec.yaml", "--address", f"127.0.0.1:{head_port}", "--tracking-uri", uri]
        driver = start_sweeper(*run_on_cluster, "--out", str(out), cwd=tmp_path, RAY_AUTH_MODE="token")
        # Both nodes must have finished a trial before one is lost: the second node's first TensorFlow import
        # can take longer than the head's first two trials, and then nothing would show it took part.
        wait_for(lambda: len(nodes_that_finished(out)) == 2, 900, "a trial finished on each node")
        os.killpg(node.pid, signal.SIGKILL)  # the second node and its worker processes, mid-trial
        stdout, stderr = driver.communicate(timeout=1200)
        assert driver.returncode == 0, stdout[-3000:] + stderr[-3000:]
        assert f"MLflow at {uri} failed" not in stderr  # the server over PostgreSQL took every write
        (sweep_dir,) = sweep_dirs(out)
        rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
        assert len(rows) == 8 and all(row["verdict"] != "error" for row in rows)
        assert len({row["worker"].split(":")[0] for row in rows}) == 2  # trials ran on both nodes
        assert max(int(row["attempts"]) for row in rows) >= 2  # the lost node's trial ran again

        client = MlflowClient(uri)
        children, parents = child_runs(client, "fault-listmle")
        assert len(parents) == 1
        assert sorted(r.data.tags["sweeper.trial_key"] for r in children) == sorted(row["trial_key"] for row in rows)
        assert {r.data.tags["sweeper.attempts"] for r in children} >= {"1", "2"}
        with psycopg2.connect(postgres) as database, database.cursor() as cursor:  # the runs live in PostgreSQL
            cursor.execute("select count(*) from runs where lifecycle_stage = 'active'")
            assert cursor.fetchone()[0] == 1 + 4 + 8  # the sweep, its four points, its trials
    finally:
        for process in (node, head, server):  # `ray start --block` takes its node's processes down with it
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=120)


BOUNCE_SPEC = """
name: bounce-listmle
workload: listmle
seeds: 4
design: fixed
smoke: true
fixed: {epochs: 900}
grid:
  list_shape: [flattened, grouped]
"""  # 2 points x 4 seeds = 8 trials of 10-30 s, a report every ~10 ms: longer than the 5 s between flushes


def test_a_tracking_server_restarted_twice_mid_sweep_loses_no_report(tmp_path):
    """The MLflow server goes down for seconds twice while trials report: after `sweeper sync`, every trial
    has exactly one run, holding exactly its trial file's reports (every step, every key, once)."""
    (tmp_path / "spec.yaml").write_text(BOUNCE_SPEC)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    out = tmp_path / "sweeps"

    def start_server() -> subprocess.Popen:
        return start_sweeper(
            "server", "--store", str(tmp_path / "server"), "--port", str(port), cwd=tmp_path, quiet=True
        )

    def closed_runs() -> int:
        """Trial runs with their verdict: the driver's mirror is writing to this server."""
        from mlflow.exceptions import MlflowException

        try:
            return sum("sweeper.verdict" in run.data.tags for run in child_runs(MlflowClient(uri), "bounce-listmle")[0])
        except (MlflowException, AttributeError):  # no experiment yet
            return 0

    server = start_server()
    driver = None
    try:
        wait_for(lambda: server_is_up(uri), 300, "the MLflow server")
        driver = start_sweeper(
            "run", "spec.yaml", "--out", str(out), "--tracking-uri", uri, "--max-concurrent", "1", cwd=tmp_path
        )
        stdout_lines, stderr_lines = read_in_background(driver.stdout), read_in_background(driver.stderr)

        def warnings() -> list[str]:
            return [line for line in stderr_lines if line.startswith("warning: MLflow at")]

        for outage in (1, 2):  # each once the mirror writes again (it pauses 30 s after a failure)
            wait_for(
                lambda n=outage: len(finished_trials(out)) >= n and closed_runs() >= n,
                600,
                f"{outage} finished trials in MLflow",
            )
            time.sleep(3)  # into the next trial, past its first flush
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
            # Down until the sweep has met the outage, however fast this machine's trials and server start are
            wait_for(lambda n=outage: len(warnings()) >= n or driver.poll() is not None, 300, "the sweep to see it")
            assert len(warnings()) >= outage, "the sweep ended before the outage: " + "".join(stderr_lines[-20:])
            server = start_server()
            wait_for(lambda: server_is_up(uri), 300, "the MLflow server again")
        driver.wait(timeout=900)
        stdout, stderr = "".join(stdout_lines.join()), "".join(stderr_lines.join())
        assert driver.returncode == 0, stdout[-3000:] + stderr[-3000:]

        (sweep_dir,) = sweep_dirs(out)
        synced = run_sweeper("sync", str(sweep_dir), cwd=tmp_path, timeout=300)
        assert synced.returncode == 0, synced.stderr[-3000:]
        trials = {doc["key"]: doc for doc in (json.loads(path.read_text()) for path in finished_trials(out))}
        assert len(trials) == 8
        client = MlflowClient(uri)
        children, parents = child_runs(client, "bounce-listmle")
        assert len(parents) == 1
        assert sorted(run.data.tags["sweeper.trial_key"] for run in children) == sorted(trials)  # one run each
        for run in children:
            trial = trials[run.data.tags["sweeper.trial_key"]]
            assert run.info.run_id == trial["run_id"] and run.data.tags["sweeper.verdict"] == trial["verdict"]
            keys = {key for report in trial["history"] for key in report if key != "step"}
            assert {key for key in run.data.metrics if not key.startswith("sweeper.")} == keys
            for key in keys:
                stored = sorted((m.step, repr(m.value)) for m in client.get_metric_history(run.info.run_id, key))
                expected = [  # a key absent from a report (update_ratio at the first) is not logged there
                    (report["step"], repr(stored_value(report[key]))) for report in trial["history"] if key in report
                ]
                assert stored == expected, (trial["key"], key)  # every step once, every value (NaN too)
        again = run_sweeper("sync", str(sweep_dir), cwd=tmp_path, timeout=300)
        assert again.returncode == 0 and "0 trials replayed" in again.stdout, again.stdout + again.stderr
        behind = [line for line in stderr.splitlines() if "is behind" in line]
        print(
            f"\n{len(warnings())} MLflow failures during the sweep; at its end: {behind or 'up to date'}; "
            f"then {synced.stdout.strip()}"
        )
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


class read_in_background(list[str]):  # noqa: N801 (read like the function it is used as)
    """A process's output lines as they come, read by a thread (so the test can watch while the pipe never
    fills); `join` waits for the end of the stream and gives them all."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.append(line)

    def join(self) -> list[str]:
        self._thread.join(timeout=60)
        return self


def stored_value(value: float) -> float:
    """A report value as MLflow's SQL store keeps it: +-inf as +-max float."""
    return float(value) if abs(value) != float("inf") else 1.7976931348623157e308 * (1 if value > 0 else -1)
