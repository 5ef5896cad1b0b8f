"""MLflow tracking: the only module that imports MLflow.

One experiment per sweep name, one parent run per sweep, one child run per trial nested under it through
the `mlflow.parentRunId` tag, found again by its `sweeper.trial_key` tag (so a retried or resumed trial
never leaves a duplicate). Only the driver talks to MLflow, metrics are buffered and written with
`log_batch`, and MLflow is a mirror of the sweep folder: when the store cannot be reached, the tracker
stops trying for a while, the sweep goes on, and `sync` replays what is missing, idempotently.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# A tracking server that is down must cost seconds, not the minutes of MLflow's default retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import requests  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from sweeper.records import TrialRecord, save_trial  # noqa: E402
from sweeper.stores import local_store_path  # noqa: E402

TAG_SWEEP = "sweeper.sweep"
TAG_TRIAL_KEY = "sweeper.trial_key"
TAG_WORKLOAD = "sweeper.workload"
TAG_POINT = "sweeper.point"
TAG_BASELINE = "sweeper.is_baseline"
TAG_VERDICT = "sweeper.verdict"
TAG_REASON = "sweeper.reason"
TAG_WORKER = "sweeper.worker"
TAG_ATTEMPTS = "sweeper.attempts"
TAG_KIND = "sweeper.kind"  # "sweep" for the parent run, "trial" for a child run
SUMMARY_PREFIX = "sweeper."  # summary metrics of a run (sweeper.train_seconds, ...), apart from its reports
_STORED_INFINITY = 1.7976931348623157e308  # MLflow's SQL store keeps +-inf as +-max float

logging.getLogger("mlflow").setLevel(logging.ERROR)  # not "Creating initial MLflow database tables"

_BATCH_LIMIT = 1000  # MLflow's maximum number of metrics in one log_batch call
_FLUSH_EVERY_S = 5.0
RETRY_AFTER_S = 30.0
"""After a failed call the tracker leaves MLflow alone this long, so an outage does not stall the sweep."""
_UNREACHABLE = (MlflowException, requests.RequestException, OSError)
T = TypeVar("T")


class SweepTracker:
    """The MLflow side of one sweep: its parent run and its trials' child runs."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_id: str, base_params: dict[str, Any]):
        self.tracking_uri, self.experiment, self.sweep_id = tracking_uri, experiment, sweep_id
        self.base_params = base_params
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        self._pending: dict[str, list[Metric]] = {}
        self._last_flush: dict[str, float] = {}
        self._down_until = 0.0

    @functools.cached_property
    def client(self) -> MlflowClient:
        """Made at first use: on a new SQLite store that means creating its tables, seconds that the
        `TrialMirror` thread spends while the first trials start."""
        return MlflowClient(self.tracking_uri)

    def _call(self, action: Callable[[], T]) -> T | None:
        """Run one MLflow action; None (and a pause) if the store cannot be reached."""
        if time.monotonic() < self._down_until:
            return None
        try:
            return action()
        except _UNREACHABLE as exc:
            self._down_until = time.monotonic() + RETRY_AFTER_S
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            print(f"warning: MLflow at {self.tracking_uri} failed ({first_line}); the sweep goes on and its folder "
                  f"keeps every result (`sweeper sync` replays them)", file=sys.stderr)
            return None

    # --- the sweep's parent run ---
    def ensure_parent(self, params: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> str | None:
        """The parent run's id, creating the experiment and the run if they do not exist yet."""
        if self.parent_run_id is None:
            self._call(lambda: self._find_or_create_parent(params or {}, tags or {}))
        return self.parent_run_id

    def _find_or_create_parent(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            store = local_store_path(self.tracking_uri)
            # A local store keeps artifacts beside its database rather than under whatever the working
            # directory happens to be; a server chooses its own artifact root.
            location = (store.parent / "mlartifacts" / self.experiment).as_uri() if store else None
            self.experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
        existing = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_SWEEP}` = '{self.sweep_id}' and tags.`{TAG_KIND}` = 'sweep'"
        )
        if existing:
            self.parent_run_id = existing[0].info.run_id
            return
        run = self.client.create_run(
            self.experiment_id, run_name=self.sweep_id, tags={**tags, TAG_SWEEP: self.sweep_id, TAG_KIND: "sweep"}
        )
        self.client.log_batch(run.info.run_id, params=[Param(k, _text(v)) for k, v in params.items()])
        self.parent_run_id = run.info.run_id

    def log_files(self, files: list[Path], plots: Path | None = None) -> bool:
        """Attach output files (and a folder of plots, shown in the MLflow UI) to the parent run."""

        def attach() -> bool:
            for path in files:
                self.client.log_artifact(self.parent_run_id, str(path))
            if plots is not None:
                self.client.log_artifacts(self.parent_run_id, str(plots), artifact_path="plots")
            return True

        return self.ensure_parent() is not None and bool(self._call(attach))

    def end_sweep(self, status: str, summary: dict[str, float]) -> bool:
        def end() -> bool:
            metrics = [Metric(SUMMARY_PREFIX + k, float(v), _now_ms(), 0) for k, v in summary.items()]
            self.client.log_batch(self.parent_run_id, metrics=metrics)
            self.client.set_terminated(self.parent_run_id, status)
            return True

        return self.ensure_parent() is not None and bool(self._call(end))

    # --- one child run per trial ---
    def start_trial(self, record: TrialRecord, workload: str) -> str | None:
        """A fresh child run for the trial; an earlier run of the same trial (an attempt on a lost node,
        or one cut short by a killed driver) is deleted first, so MLflow shows each trial once."""
        if self.ensure_parent() is None:
            return None

        def start() -> str:
            for stale in self._trial_runs(record.key):
                self.client.delete_run(stale.info.run_id)
            run = self.client.create_run(
                self.experiment_id, run_name=record.key, tags={**self._trial_tags(record, workload), TAG_KIND: "trial"}
            )
            params = {**self.base_params, **record.point.knobs, "seed": record.seed}
            self.client.log_batch(run.info.run_id, params=[Param(k, _text(v)) for k, v in params.items()])
            return run.info.run_id

        return self._call(start)

    def log_step(self, run_id: str | None, step: int, metrics: dict[str, float]) -> None:
        """Buffer one report's metrics; they are written every few seconds and when the trial ends."""
        if run_id is None:
            return
        now = _now_ms()
        self._pending.setdefault(run_id, []).extend(Metric(k, v, now, step) for k, v in metrics.items())
        if now / 1000 - self._last_flush.get(run_id, 0.0) >= _FLUSH_EVERY_S:
            self._call(lambda: self._flush(run_id))

    def end_trial(self, record: TrialRecord, metric: str) -> bool:
        """Flush the trial's metrics and close its run with its verdict; False if MLflow did not get it all."""
        if record.run_id is None:
            return False

        def end() -> bool:
            self._flush(record.run_id)
            self.client.log_batch(
                record.run_id,
                metrics=[Metric(SUMMARY_PREFIX + k, v, _now_ms(), 0) for k, v in trial_summary(record, metric).items()],
                tags=[RunTag(k, _text(v)) for k, v in _outcome_tags(record).items()],
            )
            self.client.set_terminated(record.run_id, "FAILED" if record.diagnosis.verdict == "error" else "FINISHED")
            return True

        done = bool(self._call(end))
        self._pending.pop(record.run_id, None)
        return done

    def _flush(self, run_id: str) -> None:
        pending = self._pending.pop(run_id, [])
        for start in range(0, len(pending), _BATCH_LIMIT):
            self.client.log_batch(run_id, metrics=pending[start : start + _BATCH_LIMIT])
        self._last_flush[run_id] = time.time()

    def _trial_runs(self, key: str | None = None) -> list:
        query = f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'"
        if key is not None:
            query += f" and tags.`{TAG_TRIAL_KEY}` = '{_quoted(key)}'"
        return self.client.search_runs([self.experiment_id], query, max_results=50000)

    def _trial_tags(self, record: TrialRecord, workload: str) -> dict[str, str]:
        return {
            "mlflow.parentRunId": self.parent_run_id,
            TAG_TRIAL_KEY: record.key,
            TAG_POINT: record.point.label,
            TAG_WORKLOAD: workload,
            TAG_BASELINE: str(record.point.is_baseline),
            TAG_SWEEP: self.sweep_id,
        }

    # --- bringing MLflow up to date with the sweep folder ---
    def sync(self, records: list[TrialRecord], workload: str, metric: str) -> int | None:
        """Replay every finished trial MLflow lacks (no run with its verdict); the number replayed, or None
        if MLflow cannot be reached. Running it twice replays nothing the second time."""
        if self.ensure_parent() is None:
            return None

        def replay() -> int:
            complete = {run.data.tags[TAG_TRIAL_KEY] for run in self._trial_runs() if TAG_VERDICT in run.data.tags}
            replayed = 0
            for record in records:
                if record.key in complete or record.diagnosis is None:
                    continue
                record.run_id = self.start_trial(record, workload)
                if record.run_id is None:
                    raise MlflowException(f"could not create a run for {record.key}")
                for step, report in enumerate(record.history, 1):
                    self.log_step(record.run_id, int(report.get("step", step)), report_metrics(report))
                if not self.end_trial(record, metric):
                    raise MlflowException(f"could not close the run of {record.key}")
                replayed += 1
            return replayed

        return self._call(replay)


class TrialMirror:
    """Mirrors a running sweep's trials to MLflow from a thread of its own, in the order they happen.

    Ray Tune holds a trial at each report until the driver's callbacks have seen the previous one, so an
    MLflow write made inside a callback is time the trial waits. The callback only queues its writes here;
    this thread creates the parent run (a fresh SQLite store takes seconds to set up) while the first trials
    start, and writes every run, report batch and verdict behind them. `close` waits for the queue to drain.
    """

    def __init__(self, tracker: SweepTracker, sweep_dir: Path, parent: tuple[dict[str, Any], dict[str, str]]):
        self.tracker, self.sweep_dir = tracker, sweep_dir
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="sweeper-mlflow", daemon=True)
        self._thread.start()
        self._queue.put(lambda: tracker.ensure_parent(*parent))

    def trial_started(self, record: TrialRecord, workload: str) -> None:
        def start() -> None:
            record.run_id = self.tracker.start_trial(record, workload)

        self._queue.put(start)

    def trial_reported(self, record: TrialRecord, step: int, report: dict[str, Any]) -> None:
        self._queue.put(lambda: self.tracker.log_step(record.run_id, step, report_metrics(report)))

    def trial_ended(self, record: TrialRecord, metric: str) -> None:
        def end() -> None:
            if self.tracker.end_trial(record, metric):
                save_trial(self.sweep_dir, record)  # again, now with its MLflow run id

        self._queue.put(end)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _write(self) -> None:
        while (action := self._queue.get()) is not None:
            try:
                action()
            except Exception as exc:  # never lose the sweep to its mirror: `sync` replays what is missing
                print(f"warning: writing to MLflow failed ({type(exc).__name__}: {exc}); the sweep goes on",
                      file=sys.stderr)


def trial_summary(record: TrialRecord, metric: str) -> dict[str, float]:
    summary = {"train_seconds": record.train_seconds, "steps": float(len(record.history))}
    for name in ("loss", metric):
        value = record.final(name)
        if value is not None:
            summary[f"final_{name}"] = value
    return summary


def report_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numeric values of one report, as MLflow metrics (the step is the metric's step, not a metric)."""
    return {k: float(v) for k, v in report.items() if isinstance(v, int | float) and k != "step"}


def _outcome_tags(record: TrialRecord) -> dict[str, Any]:
    return {TAG_VERDICT: record.diagnosis.verdict, TAG_REASON: record.diagnosis.reason, TAG_WORKER: record.worker,
            TAG_ATTEMPTS: record.attempts}


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


# --- reading a sweep back ---
def find_sweep(client: MlflowClient, ref: str):
    """The parent run of a sweep, by its run id or by its sweep id (the name of its output folder)."""
    try:
        run = client.get_run(ref)
    except _UNREACHABLE:  # not a run id of this store: try it as a sweep id
        run = None
    if run is not None and run.data.tags.get(TAG_KIND) == "sweep":
        return run
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    found = client.search_runs(
        experiments, f"tags.`{TAG_SWEEP}` = '{_quoted(ref)}' and tags.`{TAG_KIND}` = 'sweep'", max_results=2
    )
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class StoredTrial:
    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    summary: dict[str, float]
    history: list[dict[str, float]]


def load_sweep(tracking_uri: str, ref: str, download_to: Path) -> tuple[Any, Path, list[StoredTrial]] | None:
    """A sweep's parent run, its spec (downloaded into `download_to`) and every trial with its full report
    history; None if the store has no such sweep."""
    client = MlflowClient(tracking_uri)
    parent = find_sweep(client, ref)
    if parent is None:
        return None
    spec_path = Path(client.download_artifacts(parent.info.run_id, "spec.yaml", str(download_to)))
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=50000
    )
    trials = []
    for child in children:
        steps: dict[int, dict[str, float]] = {}
        for key in child.data.metrics:
            if key.startswith(SUMMARY_PREFIX):
                continue
            for metric in client.get_metric_history(child.info.run_id, key):
                value = metric.value
                if abs(value) == _STORED_INFINITY:
                    value = math.copysign(math.inf, value)
                steps.setdefault(metric.step, {"step": metric.step})[key] = value
        summary = {k[len(SUMMARY_PREFIX):]: v for k, v in child.data.metrics.items() if k.startswith(SUMMARY_PREFIX)}
        trials.append(StoredTrial(child.info.run_id, dict(child.data.params), dict(child.data.tags), summary,
                                  [steps[step] for step in sorted(steps)]))
    return parent, spec_path, trials


def download_file(tracking_uri: str, ref: str, name: str, download_to: Path) -> Path | None:
    """One output file of a sweep's parent run (e.g. ranking.json); None if the store has no such sweep."""
    client = MlflowClient(tracking_uri)
    parent = find_sweep(client, ref)
    if parent is None:
        return None
    return Path(client.download_artifacts(parent.info.run_id, name, str(download_to)))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    return str(value)[:6000]  # MLflow's limit on a param or tag value
