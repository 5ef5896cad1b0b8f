"""The MLflow mirror of a running sweep (`TrialMirror`): Tune's callback only queues, a thread of its own
writes, in order, to a real SQLite store; a store that cannot be reached never holds the sweep up."""

import json
import socket

from mlflow.tracking import MlflowClient

from sweeper.health import diagnose
from sweeper.records import TrialRecord, save_trial
from sweeper.spec import GridPoint
from sweeper.tracking import TAG_VERDICT, SweepTracker, TrialMirror


def _run_trial(mirror: TrialMirror, folder, label: str, losses: list[float]) -> TrialRecord:
    """What the Tune callback does for one trial: start, one queued write per report, save, end."""
    record = TrialRecord(key=f"{label}|seed=0", point=GridPoint({"clip": label}, label, False), seed=0)
    mirror.trial_started(record, "plrank")
    for step, loss in enumerate(losses, 1):
        report = {"step": step, "loss": loss, "grad_norm": 1.0, "ndcg": 0.5 + step / 100}
        record.history.append(report)
        mirror.trial_reported(record, step, report)
    record.diagnosis = diagnose(record.history, "ndcg", "max", None)
    save_trial(folder, record)
    mirror.trial_ended(record, "ndcg")
    return record


def test_every_report_and_verdict_reaches_mlflow_in_order(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, "mirror", "mirror-1", {"steps": 3})
    mirror = TrialMirror(tracker, tmp_path, ({"workload": "plrank"}, {"sweeper.output": str(tmp_path)}))
    records = [_run_trial(mirror, tmp_path, label, losses)
               for label, losses in (("none", [3.0, 2.0, 1.0]), ("value", [1e3, 1e6, float("inf")]))]
    mirror.close()

    saved = {trial["key"]: trial for trial in (json.loads(p.read_text()) for p in (tmp_path / "trials").iterdir())}
    client = MlflowClient(uri)
    parent = client.get_run(tracker.parent_run_id)
    assert parent.data.params["workload"] == "plrank"
    for record in records:
        run = client.get_run(record.run_id)
        assert run.data.tags["mlflow.parentRunId"] == tracker.parent_run_id
        assert run.data.tags[TAG_VERDICT] == record.diagnosis.verdict
        assert [m.value for m in sorted(client.get_metric_history(record.run_id, "loss"), key=lambda m: m.step)] == [
            report["loss"] if report["loss"] != float("inf") else 1.7976931348623157e308 for report in record.history
        ]
        # the trial file is written again once MLflow has the run, so trials.csv can name it
        assert saved[record.key]["run_id"] == record.run_id


def test_a_store_that_cannot_be_reached_leaves_results_in_the_folder(tmp_path, capsys):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tracker = SweepTracker(f"http://127.0.0.1:{port}", "mirror", "mirror-2", {})
    mirror = TrialMirror(tracker, tmp_path, ({}, {}))
    record = _run_trial(mirror, tmp_path, "none", [3.0, 2.0])
    mirror.close()

    assert record.run_id is None
    (saved,) = [json.loads(p.read_text()) for p in (tmp_path / "trials").iterdir()]
    assert saved["verdict"] == record.diagnosis.verdict and len(saved["history"]) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "sweeper sync" in warnings[0]  # once, then it leaves MLflow alone a while
