"""MLflow tracking: the only module that imports MLflow.

One experiment per sweep name, one parent run per sweep, one child run per trial nested under it through
the `mlflow.parentRunId` tag. Only the driver talks to MLflow (no worker needs to reach the store), and
metrics are buffered and written with `log_batch` (one call per many values, not one per value).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

TAG_SWEEP = "sweeper.sweep"
TAG_TRIAL_KEY = "sweeper.trial_key"
TAG_WORKLOAD = "sweeper.workload"
TAG_POINT = "sweeper.point"
TAG_BASELINE = "sweeper.is_baseline"
TAG_VERDICT = "sweeper.verdict"
TAG_REASON = "sweeper.reason"
TAG_KIND = "sweeper.kind"  # "sweep" for the parent run, "trial" for a child run
TAG_WORKER = "sweeper.worker"
SUMMARY_PREFIX = "sweeper."  # summary metrics of a run (sweeper.train_seconds, ...), apart from its reports
_STORED_INFINITY = 1.7976931348623157e308  # MLflow's SQL store keeps +-inf as +-max float

logging.getLogger("mlflow").setLevel(logging.WARNING)  # not "Creating initial MLflow database tables"

_BATCH_LIMIT = 1000  # MLflow's maximum number of metrics in one log_batch call
_FLUSH_EVERY_S = 5.0


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite file `mlflow.db` in the working directory (absolute, so
    it does not depend on any process's working directory)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def local_store_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, None for any other store."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


class SweepTracker:
    """The MLflow side of one sweep: its parent run and its trials' child runs."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._pending: dict[str, list[Metric]] = {}
        self._last_flush: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (Tune saves its callbacks with the experiment): the client is rebuilt from the URI."""
        state = dict(self.__dict__)
        del state["client"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.client = MlflowClient(self.tracking_uri)

    # --- the sweep's parent run ---
    def start_sweep(self, experiment: str, sweep_id: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            store = local_store_path(self.tracking_uri)
            # A local store keeps artifacts beside its database rather than under whatever the working
            # directory happens to be; a server chooses its own artifact root.
            location = (store.parent / "mlartifacts" / experiment).as_uri() if store else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        run = self.client.create_run(
            self.experiment_id, run_name=sweep_id, tags={**tags, TAG_SWEEP: sweep_id, TAG_KIND: "sweep"}
        )
        self.parent_run_id = run.info.run_id
        self.client.log_batch(self.parent_run_id, params=[Param(k, _text(v)) for k, v in params.items()])
        return self.parent_run_id

    def log_files(self, files: list[Path], plots: Path | None = None) -> None:
        """Attach output files (and a folder of plots, shown in the MLflow UI) to the parent run."""
        for path in files:
            self.client.log_artifact(self.parent_run_id, str(path))
        if plots is not None:
            self.client.log_artifacts(self.parent_run_id, str(plots), artifact_path="plots")

    def end_sweep(self, status: str, summary: dict[str, float]) -> None:
        now = _now_ms()
        self.client.log_batch(
            self.parent_run_id, metrics=[Metric(SUMMARY_PREFIX + k, float(v), now, 0) for k, v in summary.items()]
        )
        self.client.set_terminated(self.parent_run_id, status)

    # --- one child run per trial ---
    def start_trial(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={**tags, "mlflow.parentRunId": self.parent_run_id, TAG_KIND: "trial"},
        )
        self.client.log_batch(run.info.run_id, params=[Param(k, _text(v)) for k, v in params.items()])
        return run.info.run_id

    def log_step(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """Buffer one report's metrics; they are written every few seconds and when the trial ends."""
        now = _now_ms()
        self._pending.setdefault(run_id, []).extend(Metric(k, v, now, step) for k, v in metrics.items())
        if now / 1000 - self._last_flush.get(run_id, 0.0) >= _FLUSH_EVERY_S:
            self._flush(run_id)

    def end_trial(self, run_id: str, status: str, summary: dict[str, float], tags: dict[str, str]) -> None:
        self._flush(run_id)
        now = _now_ms()
        self.client.log_batch(
            run_id,
            metrics=[Metric(SUMMARY_PREFIX + k, v, now, 0) for k, v in summary.items()],
            tags=[RunTag(k, _text(v)) for k, v in tags.items()],
        )
        self.client.set_terminated(run_id, status)

    def _flush(self, run_id: str) -> None:
        pending = self._pending.pop(run_id, [])
        for start in range(0, len(pending), _BATCH_LIMIT):
            self.client.log_batch(run_id, metrics=pending[start : start + _BATCH_LIMIT])
        self._last_flush[run_id] = time.time()


def find_sweep(client: MlflowClient, ref: str):
    """The parent run of a sweep, by its run id or by its sweep id (the name of its output folder)."""
    try:
        run = client.get_run(ref)
    except Exception:  # not a run id of this store: try it as a sweep id
        run = None
    if run is not None and run.data.tags.get(TAG_KIND) == "sweep":
        return run
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(
        experiments, f"tags.`{TAG_SWEEP}` = '{ref}' and tags.`{TAG_KIND}` = 'sweep'", max_results=2
    ) if experiments else []
    if len(found) != 1:
        return None
    return found[0]


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
