"""The MLflow mirror of a running sweep (`TrialMirror`): Tune's callback only queues, a thread of its own
writes, in order, to a real SQLite store; a store that cannot be reached never holds the sweep up, and
no report is lost to it: what MLflow did not take stays pending, and `sync` makes every run hold exactly its
trial file."""

import dataclasses
import json
import math
from types import SimpleNamespace

import pytest
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweeper import tracking
from sweeper.errors import SweeperError
from sweeper.health import diagnose
from sweeper.records import TrialRecord, load_trials, save_trial, trial_key
from sweeper.results import PointSummary, PointTest
from sweeper.spec import GridPoint, load_specs
from sweeper.sweep import rebuild_sweep
from sweeper.tracking import (
    SUMMARY_PREFIX,
    TAG_VERDICT,
    SweepTracker,
    TrialMirror,
    load_sweep,
    report_metrics,
)

from conftest import free_port

STORED_INFINITY = 1.7976931348623157e308  # MLflow's SQL store keeps +-inf as +-max float


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
    records = [
        _run_trial(mirror, tmp_path, label, losses)
        for label, losses in (("none", [3.0, 2.0, 1.0]), ("value", [1e3, 1e6, float("inf")]))
    ]
    mirror.close()

    saved = {trial["key"]: trial for trial in (json.loads(p.read_text()) for p in (tmp_path / "trials").iterdir())}
    client = MlflowClient(uri)
    parent = client.get_run(tracker.parent_run_id)
    assert parent.data.params["workload"] == "plrank"
    for record in records:
        run = client.get_run(record.run_id)
        point = client.get_run(run.data.tags["mlflow.parentRunId"])  # nested under its grid point's run
        assert point.data.tags["sweeper.kind"] == "point" and point.info.run_name == record.point.label
        assert point.data.tags["sweeper.sweep"] == "mirror-1" and "mlflow.parentRunId" not in point.data.tags
        assert run.info.run_name == f"{record.point.label} · seed 0"
        assert run.data.params == {"steps": "3", "clip": record.point.label, "seed": "0"}
        assert run.data.tags[TAG_VERDICT] == record.diagnosis.verdict
        assert [m.value for m in sorted(client.get_metric_history(record.run_id, "loss"), key=lambda m: m.step)] == [
            report["loss"] if report["loss"] != float("inf") else 1.7976931348623157e308 for report in record.history
        ]
        # the trial file is written again once MLflow has the run, so trials.csv can name it
        assert saved[record.key]["run_id"] == record.run_id


def test_a_store_that_cannot_be_reached_leaves_results_in_the_folder(tmp_path, capsys):
    port = free_port()  # a port nobody listens on
    tracker = SweepTracker(f"http://127.0.0.1:{port}", "mirror", "mirror-2", {})
    mirror = TrialMirror(tracker, tmp_path, ({}, {}))
    record = _run_trial(mirror, tmp_path, "none", [3.0, 2.0])
    mirror.close()

    assert record.run_id is None
    (saved,) = [json.loads(p.read_text()) for p in (tmp_path / "trials").iterdir()]
    assert saved["verdict"] == record.diagnosis.verdict and len(saved["history"]) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "sweeper sync" in warnings[0]  # once, then it leaves MLflow alone a while


# --- nothing is lost: faults injected at the client's boundary, a real SQLite store behind it ---
class FaultyClient(MlflowClient):
    """MLflow's own client with faults injected at its boundary. `fail`: the numbers (1, 2, ...) of the
    metric batches that raise, as a server that went down does; `lose`: steps whose metrics are dropped
    while the call succeeds, as the tracker used to lose them (the batch gone, the verdict tagged anyway)."""

    def __init__(self, uri: str, fail=(), lose=()):
        super().__init__(uri)
        self.fail, self.lose, self.batches, self.delivered = set(fail), set(lose), 0, []

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if metrics:
            self.batches += 1
            if self.batches in self.fail:
                raise MlflowException(f"injected fault: metric batch {self.batches} refused")
            metrics = [m for m in metrics if m.step not in self.lose or m.key.startswith(SUMMARY_PREFIX)]
            self.delivered += [(m.key, m.step) for m in metrics if not m.key.startswith(SUMMARY_PREFIX)]
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)


def _record(point: GridPoint, seed: int, losses: list[float], metric: str = "ndcg") -> TrialRecord:
    record = TrialRecord(
        key=trial_key(point.label, seed), point=point, seed=seed, train_seconds=1.25 * seed, worker="node:1"
    )
    record.history = [
        {"step": step, "loss": loss, "grad_norm": float("nan") if math.isnan(loss) else 1.0, metric: 0.5 + step / 100}
        for step, loss in enumerate(losses, 1)
    ]
    record.diagnosis = diagnose(record.history, metric, "max", None)
    return record


def _point(label: str) -> GridPoint:
    return GridPoint({"clip": label}, label, False)


def _stored(value: float) -> float:
    return math.copysign(STORED_INFINITY, value) if math.isinf(value) else value


def _run_holds_exactly(client: MlflowClient, run_id: str, record: TrialRecord) -> None:
    """The run holds every report of the trial, each (key, step) once, and the trial's verdict."""
    run = client.get_run(run_id)
    assert run.data.tags[TAG_VERDICT] == record.diagnosis.verdict
    assert run.data.metrics[SUMMARY_PREFIX + "steps"] == len(record.history)
    keys = {key for key in run.data.metrics if not key.startswith(SUMMARY_PREFIX)}
    assert keys == {key for report in record.history for key in report if key != "step"}
    for key in keys:
        stored = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        expected = [(report["step"], _stored(report[key])) for report in record.history]
        assert [step for step, _ in stored] == [step for step, _ in expected], key  # every step, once
        pairs = zip(stored, expected, strict=True)
        assert all(a == b or (math.isnan(a) and math.isnan(b)) for (_, a), (_, b) in pairs), key


def _runs_by_key(client: MlflowClient, tracker: SweepTracker) -> dict[str, list]:
    runs = client.search_runs(
        [tracker.experiment_id],
        f"tags.`sweeper.sweep` = '{tracker.sweep_id}' and tags.`sweeper.kind` = 'trial'",
        max_results=1000,
    )
    found: dict[str, list] = {}
    for run in runs:
        found.setdefault(run.data.tags["sweeper.trial_key"], []).append(run.info.run_id)
    return found


def test_a_batch_that_fails_mid_trial_stays_pending_and_arrives_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "_FLUSH_EVERY_S", -1.0)  # a flush at every report, even within one ms
    monkeypatch.setattr(tracking, "RETRY_AFTER_S", 0.0)  # and a retry at the next one
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, "faulty", "faulty-1", {})
    tracker.client = client = FaultyClient(uri, fail={2, 3})  # the flushes of reports 2 and 3
    mirror = TrialMirror(tracker, tmp_path, ({}, {}))
    record = _run_trial(mirror, tmp_path, "none", [3.0, 2.0, 1.0, 0.5, 0.25])
    mirror.close()

    steps = [step for key, step in client.delivered if key == "loss"]
    assert steps == [1, 2, 3, 4, 5]  # retried at the next flush, in order, each once
    _run_holds_exactly(client, record.run_id, record)
    assert json.loads(next((tmp_path / "trials").iterdir()).read_text())["run_id"] == record.run_id


def test_a_trial_that_ends_while_mlflow_is_down_gets_its_verdict_only_with_all_its_reports(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(tracking, "_FLUSH_EVERY_S", -1.0)  # a flush at every report
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, "faulty", "faulty-2", {})
    tracker.client = client = FaultyClient(uri, fail={2})  # the first flush goes through, the second fails
    record = _record(_point("none"), 0, [3.0, 2.0, 1.0, float("inf")])
    record.run_id = tracker.start_trial(record, "plrank")
    for report in record.history:  # reports 2-4 come during the pause after the failure: kept pending
        tracker.log_step(record.run_id, report["step"], report_metrics(report))
    tracker.end_trial(record, "ndcg")
    assert tracker.catch_up() == [] and tracker.behind  # still paused: nothing written, nothing dropped
    run = client.get_run(record.run_id)
    assert TAG_VERDICT not in run.data.tags and len(client.get_metric_history(record.run_id, "loss")) == 1

    tracker._down_until = 0.0  # the pause is over and MLflow is back
    assert tracker.catch_up() == [record] and not tracker.behind
    _run_holds_exactly(client, record.run_id, record)
    assert len([line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]) == 1


def test_sync_brings_every_run_to_exactly_its_trial_file(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    inf, nan = float("inf"), float("nan")
    records = {
        name: _record(_point(name), seed, losses)
        for seed, (name, losses) in enumerate(
            [
                ("holes", [3.0, 2.0, 1.0, 0.5]),
                ("unfinished", [3.0, 2.0, 1.0]),
                ("complete", [3.0, 2.0, inf, nan]),
                ("absent", [3.0, 1.0]),
                ("extra", [3.0, 2.0, 1.0]),
            ]
        )
    }
    for record in records.values():
        save_trial(tmp_path, record)
    live = SweepTracker(uri, "sync", "sync-1", {"steps": 4})
    live.client = FaultyClient(uri, lose={2})  # the old tracker's loss: report 2 gone, the verdict tagged
    for name in ("holes", "unfinished"):
        records[name].run_id = live.start_trial(records[name], "plrank")
        for report in records[name].history:
            live.log_step(records[name].run_id, report["step"], report_metrics(report))
    live.end_trial(records["holes"], "ndcg")  # "unfinished": its driver was killed before the end
    assert live.catch_up() == [records["holes"]]
    live.client = MlflowClient(uri)
    for name in ("complete", "extra"):
        records[name].run_id = live.start_trial(records[name], "plrank")
        for report in records[name].history:
            live.log_step(records[name].run_id, report["step"], report_metrics(report))
        live.end_trial(records[name], "ndcg")
    assert len(live.catch_up()) == 2
    client = MlflowClient(uri)
    client.log_metric(records["extra"].run_id, "loss", 2.0, step=2)  # the same step again, later
    complete_run = records["complete"].run_id

    def sync() -> tuple[int | None, SweepTracker]:  # as `sweeper sync` does it: a fresh tracker, the trial files
        tracker = SweepTracker(uri, "sync", "sync-1", {"steps": 4})
        found = load_trials(tmp_path, SimpleNamespace(points=[_point(name) for name in records]))
        return tracker.sync([found[key] for key in sorted(found)], "plrank", "ndcg", tmp_path), tracker

    replayed, tracker = sync()
    assert replayed == 4  # holes, unfinished, absent, extra
    saved = {trial["key"]: trial for trial in (json.loads(p.read_text()) for p in (tmp_path / "trials").iterdir())}
    runs = _runs_by_key(client, tracker)
    assert sorted(runs) == sorted(record.key for record in records.values())
    for record in records.values():
        (run_id,) = runs[record.key]  # one run per trial
        assert saved[record.key]["run_id"] == run_id  # the trial file names its new run
        _run_holds_exactly(client, run_id, record)
    assert runs[records["complete"].key] == [complete_run]  # left as it was

    again, tracker = sync()
    assert again == 0 and _runs_by_key(client, tracker) == runs


def test_rebuild_refuses_a_run_that_lacks_reports(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "spec.yaml").write_text(
        "name: refuse\nworkload: listmle\nseeds: 1\ndesign: fixed\nsmoke: true\n"
        "grid:\n  list_shape: [flattened, grouped]\n"
    )
    (spec,) = load_specs(tmp_path / "spec.yaml")
    tracker = SweepTracker(uri, "refuse", "refuse-1", {})
    tracker.client = FaultyClient(uri, lose={3})
    records = [_record(point, 0, [3.0, 2.0, 1.0, 0.5], metric="ndcg5") for point in spec.points]
    for record in records:
        save_trial(tmp_path, record)
        record.run_id = tracker.start_trial(record, "listmle")
        for report in record.history:
            tracker.log_step(record.run_id, report["step"], report_metrics(report))
        tracker.end_trial(record, "ndcg5")
        assert tracker.catch_up() == [record]
        tracker.client = MlflowClient(uri)  # only the first trial loses a report
    assert tracker.log_files([tmp_path / "spec.yaml"])

    with pytest.raises(SweeperError) as refused:
        rebuild_sweep("refuse-1", tracking_uri=uri, out_root=tmp_path / "rebuilt")
    message = str(refused.value)
    assert "1 finished trial (" in message and records[0].key in message and records[1].key not in message
    assert "sweeper sync <sweep folder>" in message and "\n" not in message
    assert not (tmp_path / "rebuilt").exists()
    incomplete = load_sweep(uri, "refuse-1", tmp_path)
    assert incomplete.incomplete == [records[0].key] and set(incomplete.trials) == {r.key for r in records}

    found = load_trials(tmp_path, spec)
    assert SweepTracker(uri, "refuse", "refuse-1", {}).sync(list(found.values()), "listmle", "ndcg5", tmp_path) == 1
    stored = load_sweep(uri, "refuse-1", tmp_path)
    assert stored.incomplete == []
    assert {key: record.history for key, record in stored.trials.items()} == {r.key: r.history for r in records}


def test_an_experiment_made_before_is_marked_model_training_when_a_sweep_reaches_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("older", artifact_location=(tmp_path / "artifacts").as_uri())
    assert "mlflow.experimentKind" not in client.get_experiment_by_name("older").tags
    tracker = tracking.SweepTracker(uri, "older", "older-sweep", {})
    assert tracker.ensure_parent() is not None
    assert client.get_experiment_by_name("older").tags["mlflow.experimentKind"] == "custom_model_development"


def _point_entry(
    label: str, seeds: int, healthy: int, finals: list[float | None], verdict: str, **tests
) -> PointSummary:
    """A grid point's summary with the fields the point's run reads; `tests`: its test's fields (none for the
    baseline), the rest of them None, a final test on every seed."""
    test = None
    if tests:
        blank = dict.fromkeys(f.name for f in dataclasses.fields(PointTest))
        test = PointTest(**{**blank, "status": "final", "seeds_used": seeds, "baseline_seeds_used": seeds, **tests})
    return PointSummary(
        label=label,
        knobs={"clip": label},
        is_baseline=label == "none",
        seeds=tuple(range(seeds)),
        verdicts=("healthy",) * healthy + ("stuck_zero",) * (seeds - healthy),
        final_metrics=tuple(finals),
        scores=tuple(finals),
        healthy=healthy,
        unhealthy=seeds - healthy,
        healthy_rate=healthy / seeds,
        healthy_rate_ci=(0.0, 1.0),
        median_healthy_metric=finals[-1],
        median_score=None,
        score_centre=0.5,
        score_centre_kind="mean",
        score_centre_ci=None,
        median_loss=None,
        error=None,
        verdict=verdict,
        test=test,
    )


def test_a_points_statistics_by_hand():
    point = _point_entry(
        "value", 4, 3, [0.2, None, 0.4, 0.9], "fixes", seeds_used=4, baseline_seeds_used=4, p_value=0.0143,
        p_adjusted=0.04286, confirmed=True, status="final",
    )  # fmt: skip
    metrics, tags = tracking.point_statistics(point, "ndcg", rank=1)
    assert metrics == {
        "sweeper.rank": 1.0,
        "sweeper.seeds": 4.0,
        "sweeper.healthy": 3.0,
        "sweeper.healthy_rate": 0.75,
        "sweeper.median_final_ndcg": 0.4,  # over the 3 finite finals
        "sweeper.mean_final_ndcg": 0.5,
        "sweeper.std_final_ndcg": 0.3606,  # sqrt(((0.3)^2 + 0.1^2 + 0.4^2) / 2), to 4 digits
        "sweeper.median_healthy_ndcg": 0.9,
        "sweeper.score": 0.5,
        "sweeper.seeds_used": 4.0,
        "sweeper.baseline_seeds_used": 4.0,
        "sweeper.p_value": 0.0143,
        "sweeper.p_adjusted": 0.04286,
    }
    assert tags == {"sweeper.verdict": "fixes", "sweeper.status": "final", "sweeper.confirmed": "True"}
    baseline = _point_entry("none", 1, 0, [None], "baseline")
    metrics, tags = tracking.point_statistics(baseline, "ndcg", rank=2)
    assert set(metrics) == {f"sweeper.{k}" for k in ("rank", "seeds", "healthy", "healthy_rate", "score")}
    assert tags == {"sweeper.verdict": "baseline"}


def test_a_points_run_is_updated_in_place_when_its_statistics_change_and_only_then(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = [GridPoint({"clip": "none"}, "none", True), _point("value")]
    tracker = SweepTracker(uri, "points", "points-1", {"clip": "none", "lr": 0.1, "seed": 0}, grid, "ndcg")
    assert tracker.ensure_parent() is not None
    # what log_points reads of a Ranking: its metric and its points
    first = SimpleNamespace(metric="ndcg", points=(
        _point_entry("value", 3, 1, [0.4, 0.5, 0.6], "no_evidence", p_value=0.3, p_adjusted=0.3),
        _point_entry("none", 3, 0, [0.1, 0.1, 0.1], "baseline"),
    ))  # fmt: skip
    assert tracker.log_points(first)
    client = MlflowClient(uri)

    def point_runs() -> dict[str, object]:
        runs = client.search_runs([tracker.experiment_id], "tags.`sweeper.kind` = 'point'")
        return {run.info.run_name: run for run in runs}

    runs = point_runs()
    assert set(runs) == {"none", "value"} and runs["value"].data.tags["sweeper.verdict"] == "no_evidence"
    assert runs["value"].data.params == {"clip": "value", "lr": "0.1"}  # every Config value but the seed
    value_run = runs["value"].info.run_id
    assert tracker.log_points(first)  # the same analysis again: nothing new
    assert len(client.get_metric_history(value_run, "sweeper.p_adjusted")) == 1

    later = SimpleNamespace(metric="ndcg", points=(  # a new round of seeds: 6 each, now a fix
        _point_entry("value", 6, 6, [0.6] * 6, "fixes", p_value=0.002, p_adjusted=0.002),
        _point_entry("none", 6, 0, [0.1] * 6, "baseline"),
    ))  # fmt: skip
    resumed = SweepTracker(uri, "points", "points-1", {"clip": "none", "lr": 0.1, "seed": 0}, grid, "ndcg")
    assert resumed.log_points(later)
    runs = point_runs()
    assert runs["value"].info.run_id == value_run and runs["value"].data.tags["sweeper.verdict"] == "fixes"
    history = client.get_metric_history(value_run, "sweeper.p_adjusted")
    assert sorted((m.step, m.value) for m in history) == [(3, 0.3), (6, 0.002)]
    assert runs["value"].data.metrics["sweeper.healthy_rate"] == 1.0
    assert resumed.end_sweep("FINISHED", {})
    assert {run.info.status for run in point_runs().values()} == {"FINISHED"}


def test_sync_moves_the_runs_of_an_older_layout_under_their_points_in_place(tmp_path):
    """Runs written before point runs existed (nested under the sweep's run, the knobs and seed as their only
    params) keep their ids and results; sync nests each under its point, names it and adds every Config
    value, once."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = [_point("none"), _point("value")]
    records = [_record(point, seed, [3.0, 2.0, 1.0]) for point in grid for seed in (0, 1)]
    older = SweepTracker(uri, "layout", "layout-1", {})
    assert older.ensure_parent() is not None
    client = MlflowClient(uri)
    for record in records:
        run = client.create_run(
            older.experiment_id,
            run_name=record.key,
            tags={
                "mlflow.parentRunId": older.parent_run_id,
                "sweeper.sweep": "layout-1",
                "sweeper.kind": "trial",
                "sweeper.trial_key": record.key,
                "sweeper.point": record.point.label,
            },
        )
        client.log_batch(run.info.run_id, params=[Param("clip", record.point.label), Param("seed", str(record.seed))])
        record.run_id = run.info.run_id
        for report in record.history:
            older.log_step(record.run_id, report["step"], report_metrics(report))
        older.end_trial(record, "ndcg")
        save_trial(tmp_path, record)
    assert len(older.catch_up()) == len(records)
    before = {record.key: record.run_id for record in records}

    def sync() -> int | None:
        tracker = SweepTracker(uri, "layout", "layout-1", {"clip": "none", "lr": 0.1, "seed": 0}, grid, "ndcg")
        found = load_trials(tmp_path, SimpleNamespace(points=grid))
        return tracker.sync([found[key] for key in sorted(found)], "plrank", "ndcg", tmp_path)

    assert sync() == 0  # nothing replayed: every run held its trial's results
    points = {
        r.info.run_name: r.info.run_id
        for r in client.search_runs([older.experiment_id], "tags.`sweeper.kind` = 'point'")
    }
    for record in records:
        run = client.get_run(before[record.key])
        assert run.data.tags["mlflow.parentRunId"] == points[record.point.label]
        assert run.info.run_name == f"{record.point.label} · seed {record.seed}"
        assert run.data.params == {"clip": record.point.label, "lr": "0.1", "seed": str(record.seed)}
        _run_holds_exactly(client, run.info.run_id, record)
    assert sync() == 0
    assert len(client.search_runs([older.experiment_id], "")) == 1 + 2 + 4  # the sweep, 2 points, 4 trials
