"""MLflow tracking: the only module that imports MLflow, and the one place that turns a trial into an
MLflow run and back.

One experiment per sweep name, marked as model training, laid out in three levels:
- the sweep's run (`sweeper.kind` = "sweep"): the spec's settings as params, the outputs as artifacts;
- one run per grid point ("point", named by its label, `list_shape=grouped`): every Config value but the
  seed as params, its statistics over the seeds (`point_statistics`: healthy rate, median and mean final
  metric, p-values, seeds used) as metrics, its verdict as a tag; written again in place whenever the
  sweep's analysis changes them (a resume, a sync, a new round of seeds);
- under each point one run per trial ("trial", `list_shape=grouped · seed 2`): every Config value and the
  seed as params, every report as step metrics, its verdict as a tag.
A point's run is a top-level run, not a child of the sweep's run: MLflow's runs table opens with every
parent collapsed and no link can expand one, so nested points would hide behind a click. Point runs start
a millisecond apart just before their sweep's run, so the table (newest first) lists the sweep's run and
then its points in grid order, each with its trials nested under it. The experiment also carries a
shared view of that table (`runs_view`: verdict, statistics and knobs as columns), which the links
`sweeper` prints open (`stores.experiment_link`).

Runs are found by their tags alone (`sweeper.sweep` = the sweep id, `sweeper.kind`, `sweeper.point`,
`sweeper.trial_key`), never by `mlflow.parentRunId` (set only for the UI's nesting), so a retried or
resumed trial never leaves a duplicate. Only the driver talks to MLflow; metrics are buffered and written
with `log_batch`, and a report leaves the buffer only once MLflow has it. MLflow is a mirror of the sweep
folder: when the store cannot be reached the tracker stops trying for a while and the sweep goes on; a
trial's run gets its verdict tag last, once every report and summary metric arrived; and `sync` compares
every run with its trial file and recreates the runs that differ, idempotently.

`MlflowMirror` is this backend of `sweeper.mirror.Mirror`, the only part the driver sees.

Why this module is long: it is the one place that imports MLflow and the one owner of the MLflow record
format, written (the sweep's, points' and trials' runs) and read back (`load_sweep`); the writer's jobs
(setup, point runs, buffered trial runs, sync) share one client, one outage pause and one cache of run ids.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import json
import logging
import math
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
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

from sweeper.health import Diagnosis  # noqa: E402
from sweeper.records import (  # noqa: E402
    OUTPUT_FILES,
    PLOTS_DIR,
    SPEC_FILE,
    TrialRecord,
    save_trial,
    trial_key,
)
from sweeper.results import PointSummary, Ranking  # noqa: E402
from sweeper.spec import GridPoint, SweepSpec, load_specs  # noqa: E402
from sweeper.stores import RUNS_VIEW_KEY, local_store_path, runs_link  # noqa: E402
from sweeper.workload import Workload  # noqa: E402

TAG_SWEEP = "sweeper.sweep"
TAG_TRIAL_KEY = "sweeper.trial_key"
TAG_WORKLOAD = "sweeper.workload"
TAG_POINT = "sweeper.point"
TAG_BASELINE = "sweeper.is_baseline"
TAG_VERDICT = "sweeper.verdict"
TAG_REASON = "sweeper.reason"
TAG_WORKER = "sweeper.worker"
TAG_ATTEMPTS = "sweeper.attempts"
TAG_KIND = "sweeper.kind"  # "sweep", "point" (a grid point's statistics) or "trial"
TAG_PARENT = "mlflow.parentRunId"  # the UI's nesting only
TAG_RUN_NAME = "mlflow.runName"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""Marks a sweep's experiment as model training (MLflow 3 otherwise files it under GenAI)."""
VIEW_TAG = "mlflow.sharedViewState." + RUNS_VIEW_KEY
"""The experiment tag that holds the runs table's shared view (MLflow's "share view" keeps it there and
loads it for `?viewStateShareKey=<key>`)."""
SUMMARY_PREFIX = "sweeper."  # summary metrics of a run (sweeper.train_seconds, ...), apart from its reports
_STORED_INFINITY = 1.7976931348623157e308  # MLflow's SQL store keeps +-inf as +-max float

logging.getLogger("mlflow").setLevel(logging.ERROR)  # not "Creating initial MLflow database tables"

_BATCH_LIMIT = 1000  # MLflow's maximum number of metrics in one log_batch call
_PARAMS_LIMIT = 100  # ... and of params
_FLUSH_EVERY_S = 5.0
_PAGE = 50000  # MLflow's maximum page of search_runs
LOCKED_RETRY_WAITS_S = (0.1, 0.3, 1.0, 3.0)
"""Waits before trying an action again when SQLite answers "database is locked" (another writer's turn)."""
RETRY_AFTER_S = 30.0
"""After a failed call the tracker leaves MLflow alone this long, so an outage does not stall the sweep."""
_UNREACHABLE = (MlflowException, requests.RequestException, OSError)
T = TypeVar("T")
Row = tuple[str, int, float]  # one metric value of a report: key, step, value


def open_client(tracking_uri: str) -> MlflowClient:
    """An MLflow client whose store is ready. A new SQLite store gets its tables from MLflow's schema
    migrations at first use, and two processes doing that at once race: measured with two sweeps started
    together on a new store, one failed with "duplicate column name: step" and, once in four, the other's
    first runs were lost to the copy of a table. So the first use of a local store in a process is made
    under an exclusive lock on a file beside it (`<db>.lock`); after that, SQLite's own locking serves."""
    store = local_store_path(tracking_uri)
    if store is None:
        return MlflowClient(tracking_uri)
    with open(store.with_name(store.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)  # creates or upgrades the schema now, under the lock
    return client


class SweepTracker:
    """The MLflow side of one sweep: its run, its grid points' runs and its trials' runs.

    Nothing here drops a report: `_pending` keeps each run's metrics until MLflow has acknowledged them
    (a failed batch stays, in order, for the next flush; MLflow ignores a row sent twice with the same
    timestamp), and a trial that ended is closed, with its verdict tag last, by `catch_up` once every
    metric arrived, however long MLflow was away. A trial whose run could not even be started gets its
    whole run from its record then.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        sweep_id: str,
        config: dict[str, Any],
        points: Sequence[GridPoint] = (),
        metric: str | None = None,
    ):
        self.tracking_uri, self.experiment, self.sweep_id = tracking_uri, experiment, sweep_id
        self.config = config
        """Every Config value at the sweep's base (defaults, SMOKE, baseline, fixed); with a trial's knobs and
        seed over it, the params of the trial's run."""
        self.points = list(points)
        """The grid, in order: each point's run is made with the sweep's run (others when first needed)."""
        self.metric = metric
        """The workload's final metric, which the experiment's runs view shows; None: no view is written."""
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        self._parent_start = 0
        self._point_runs: dict[str, str] = {}
        """Per grid point label, the id of its run."""
        self._trial_run_ids: dict[str, list[str]] = {}
        """Per trial key, the ids of its runs in MLflow: read once with the sweep's run, then kept up to date
        here, so starting a trial never searches the store (a search per trial grows with the store)."""
        self._parent_fields: tuple[dict[str, Any], dict[str, str]] = ({}, {})
        self._workload = ""
        self._pending: dict[str, list[Metric]] = {}
        """Per run id, the metrics MLflow has not acknowledged yet, in the order they were reported."""
        self._last_flush: dict[str, float] = {}
        self._unclosed: dict[str, tuple[TrialRecord, str]] = {}
        """Per trial key, the ended trials whose runs are not closed yet (record, metric), in order."""
        self._delivered: set[str] = set()
        """Runs this tracker closed after MLflow acknowledged every one of their metrics."""
        self._down_until = 0.0

    @functools.cached_property
    def client(self) -> MlflowClient:
        """Made at first use: on a new SQLite store that means creating its tables, seconds that the
        `TrialMirror` thread spends while the first trials start."""
        return open_client(self.tracking_uri)

    def _call(self, action: Callable[[], T]) -> T | None:
        """Run one MLflow action; None (and a pause) if the store cannot be reached. A SQLite store that
        another sweep holds locked for a moment is tried again a few times first (every action is safe to
        repeat: a trial's run is started afresh, a metric batch carries its own timestamps)."""
        if time.monotonic() < self._down_until:
            return None
        try:
            for wait in LOCKED_RETRY_WAITS_S:
                try:
                    return action()
                except MlflowException as exc:
                    if "database is locked" not in str(exc):
                        raise
                    time.sleep(wait)
            return action()
        except _UNREACHABLE as exc:
            self._down_until = time.monotonic() + RETRY_AFTER_S
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            print(
                f"warning: MLflow at {self.tracking_uri} failed ({first_line}); the sweep goes on and its folder "
                f"keeps every result (`sweeper sync` replays them)",
                file=sys.stderr,
            )
            return None

    # --- the sweep's parent run ---
    def ensure_parent(self, params: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> str | None:
        """The parent run's id, creating the experiment and the run if they do not exist yet (with the
        params and tags of the first call that gave them, should that call have found MLflow down)."""
        if params is not None or tags is not None:
            self._parent_fields = (params or {}, tags or {})
        if self.parent_run_id is None:
            self._call(self._find_or_create_parent)
        return self.parent_run_id

    def _find_or_create_parent(self) -> None:
        params, tags = self._parent_fields
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
            if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:  # made by an older version
                self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND)
            experiment_tags = found.tags
        else:
            experiment_tags = {}
            store = local_store_path(self.tracking_uri)
            # A local store keeps artifacts beside its database rather than under whatever the working
            # directory happens to be; a server chooses its own artifact root.
            location = (store.parent / "mlartifacts" / self.experiment).as_uri() if store else None
            try:
                self.experiment_id = self.client.create_experiment(
                    self.experiment, artifact_location=location, tags=dict([EXPERIMENT_KIND])
                )
            except MlflowException:  # another sweep of the same name created it first
                created = self.client.get_experiment_by_name(self.experiment)
                if created is None:
                    raise
                self.experiment_id = created.experiment_id
        if self.metric is not None:
            view = json.dumps(runs_view(self.metric, sorted({k for p in self.points for k in p.knobs})))
            if experiment_tags.get(VIEW_TAG) != view:  # the latest sweep's columns
                self.client.set_experiment_tag(self.experiment_id, VIEW_TAG, view)
        existing = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_SWEEP}` = '{_quoted(self.sweep_id)}' and tags.`{TAG_KIND}` = 'sweep'"
        )
        if existing:
            run = existing[0]
        else:
            run = self.client.create_run(
                self.experiment_id, run_name=self.sweep_id, tags={**tags, TAG_SWEEP: self.sweep_id, TAG_KIND: "sweep"}
            )
            self._log_params(run.info.run_id, params)
        self._parent_start = run.info.start_time
        self.parent_run_id = run.info.run_id
        self._point_runs = {r.data.tags.get(TAG_POINT): r.info.run_id for r in self._runs("point")}
        self._trial_run_ids = {}
        for trial_run in self._runs("trial"):
            self._trial_run_ids.setdefault(trial_run.data.tags.get(TAG_TRIAL_KEY), []).append(trial_run.info.run_id)
        for point in self.points:
            self._point_run(point)

    def _point_run(self, point: GridPoint) -> str:
        """The id of the point's run, made if it does not exist yet (its statistics come with the analysis)."""
        if point.label not in self._point_runs:
            labels = [p.label for p in self.points]
            order = labels.index(point.label) if point.label in labels else len(labels) + len(self._point_runs)
            run = self.client.create_run(
                self._experiment,
                start_time=self._parent_start - 1 - order,  # listed under the sweep's run, in grid order
                run_name=point.label,
                tags={
                    TAG_SWEEP: self.sweep_id,
                    TAG_KIND: "point",
                    TAG_POINT: point.label,
                    TAG_BASELINE: str(point.is_baseline),
                    TAG_WORKLOAD: self._workload or self._parent_fields[0].get("workload", ""),
                },
            )
            self._log_params(run.info.run_id, {k: v for k, v in {**self.config, **point.knobs}.items() if k != "seed"})
            self._point_runs[point.label] = run.info.run_id
        return self._point_runs[point.label]

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(k, _text(v)) for k, v in params.items()]
        for start in range(0, len(items), _PARAMS_LIMIT):
            self.client.log_batch(run_id, params=items[start : start + _PARAMS_LIMIT])

    @property
    def _parent(self) -> str:
        """The parent run's id, for calls made once `ensure_parent` has found or made it."""
        if self.parent_run_id is None:
            raise MlflowException("the sweep's parent run is not known yet")
        return self.parent_run_id

    @property
    def _experiment(self) -> str:
        if self.experiment_id is None:
            raise MlflowException("the sweep's experiment is not known yet")
        return self.experiment_id

    def log_files(self, files: list[Path], plots: Path | None = None) -> bool:
        """Attach output files (and a folder of plots, shown in the MLflow UI) to the parent run."""

        def attach() -> bool:
            for path in files:
                self.client.log_artifact(self._parent, str(path))
            if plots is not None:
                self.client.log_artifacts(self._parent, str(plots), artifact_path=PLOTS_DIR)
            return True

        return self.ensure_parent() is not None and bool(self._call(attach))

    def end_sweep(self, status: str, summary: dict[str, float]) -> bool:
        """End the sweep's run and its points' runs with `status`, the sweep's summary metrics logged."""

        def end() -> bool:
            metrics = [Metric(SUMMARY_PREFIX + k, float(v), _now_ms(), 0) for k, v in summary.items()]
            self.client.log_batch(self._parent, metrics=metrics)
            for run_id in (self._parent, *self._point_runs.values()):
                self.client.set_terminated(run_id, status)
            return True

        return self.ensure_parent() is not None and bool(self._call(end))

    # --- one run per grid point ---
    def log_points(self, ranking: Ranking) -> bool:
        """Each grid point's statistics (`point_statistics`) and verdict from the ranking, on the
        point's run. Only what changed is written, a metric at the step of the point's seed count, so the
        same analysis written twice changes nothing and a new round of seeds adds one step to each chart.
        The points of a sweep whose run has ended end with the same status. (A statistic an analysis no
        longer gives keeps its last value: MLflow cannot delete a metric.)"""

        def write() -> bool:
            stored = {run.data.tags.get(TAG_POINT): run for run in self._runs("point")}
            now = _now_ms()
            for rank, point in enumerate(ranking.points, 1):
                run_id = self._point_run(GridPoint(point.knobs, point.label, point.is_baseline))
                metrics, tags = point_statistics(point, ranking.metric, rank)
                run = stored.get(point.label)
                had_metrics, had_tags = (run.data.metrics, run.data.tags) if run is not None else ({}, {})
                step = len(point.seeds)
                self.client.log_batch(
                    run_id,
                    metrics=[
                        Metric(k, v, now, step)
                        for k, v in metrics.items()
                        if k not in had_metrics or _stored(v) != _stored(had_metrics[k])
                    ],
                    tags=[RunTag(k, v) for k, v in tags.items() if had_tags.get(k) != v],
                )
            ended = self.client.get_run(self._parent).info.status
            for label, run_id in self._point_runs.items():  # a finished sweep's points end as it did
                run = stored.get(label)
                if ended != "RUNNING" and (run is None or run.info.status != ended):
                    self.client.set_terminated(run_id, ended)
            return True

        return self.ensure_parent() is not None and bool(self._call(write))

    # --- one run per trial, under its point's run ---
    def start_trial(self, record: TrialRecord, workload: str) -> str | None:
        """A fresh child run for the trial; an earlier run of the same trial (an attempt on a lost node,
        or one cut short by a killed driver) is deleted first, so MLflow shows each trial once."""
        self._workload = workload
        self._unclosed.pop(record.key, None)  # a trial started again replaces its earlier attempt
        if record.run_id is not None:
            self._forget(record.run_id)
        if self.ensure_parent() is None:
            return None
        return self._call(lambda: self._start(record, workload))

    def _start(self, record: TrialRecord, workload: str, stale: list | None = None) -> str:
        """A new run for the trial, its earlier runs (`stale`, else those this tracker knows of) deleted."""
        earlier = self._trial_run_ids.pop(record.key, [])
        for run_id in earlier if stale is None else [run.info.run_id for run in stale]:
            self.client.delete_run(run_id)
            self._forget(run_id)
        run = self.client.create_run(
            self._experiment,
            run_name=trial_run_name(record),
            tags={**self._trial_tags(record, workload), TAG_KIND: "trial"},
        )
        self._log_params(run.info.run_id, self._trial_params(record))
        self._trial_run_ids[record.key] = [run.info.run_id]
        return run.info.run_id

    def _trial_params(self, record: TrialRecord) -> dict[str, Any]:
        return {**self.config, **record.point.knobs, "seed": record.seed}

    def log_step(self, run_id: str | None, step: int, metrics: dict[str, float]) -> None:
        """Buffer one report's metrics; they are written every few seconds and when the trial ends."""
        if run_id is None:  # no run (MLflow was down at the start): the trial's run is written whole at its end
            return
        now = _now_ms()
        self._pending.setdefault(run_id, []).extend(Metric(k, v, now, step) for k, v in metrics.items())
        if now / 1000 - self._last_flush.get(run_id, 0.0) >= _FLUSH_EVERY_S:
            self._call(lambda: self._flush(run_id))

    def end_trial(self, record: TrialRecord, metric: str) -> None:
        """The trial has ended: queue the closing of its run (its summary metrics, then its verdict tag),
        which `catch_up` does as soon as MLflow has every report before it."""
        if record.run_id is not None:
            self._pending.setdefault(record.run_id, []).extend(_summary_metrics(record, metric, _now_ms()))
        self._unclosed[record.key] = (record, metric)

    def catch_up(self) -> list[TrialRecord]:
        """Close the runs of ended trials, in order, while MLflow answers; the records now closed (their
        `run_id` set), whose trial files the caller saves again."""
        closed = []
        for key, (record, metric) in list(self._unclosed.items()):
            if not self._call(functools.partial(self._close, record, metric)):
                break
            del self._unclosed[key]
            closed.append(record)
        return closed

    @property
    def behind(self) -> bool:
        """Whether an ended trial's run still waits to be closed."""
        return bool(self._unclosed)

    def _close(self, record: TrialRecord, metric: str) -> bool:
        """Every pending metric of the trial's run, its status, and its outcome tags last (the verdict tag
        says the run is complete); a trial that has no run yet gets one, with every report. Raises if
        MLflow fails; what it had not acknowledged stays pending."""
        if record.run_id is None:
            if self.parent_run_id is None:
                self._find_or_create_parent()
            self._replay(record, metric, self._workload, stale=None)
        run_id = record.run_id
        assert run_id is not None
        self._flush(run_id)
        self.client.set_terminated(run_id, _status(record))
        self.client.log_batch(run_id, tags=[RunTag(k, _text(v)) for k, v in _outcome_tags(record).items()])
        self._delivered.add(run_id)
        self._pending.pop(run_id, None)
        self._last_flush.pop(run_id, None)
        return True

    def _replay(self, record: TrialRecord, metric: str, workload: str, stale: list | None) -> None:
        """A new run for the trial (its earlier runs deleted), with every report and summary metric pending."""
        run_id = self._start(record, workload, stale)
        record.run_id = run_id
        now = _now_ms()
        # Each value its own timestamp: MLflow would take two equal rows (key, value, time, step) for one.
        self._pending[run_id] = [
            Metric(key, value, now + index, step) for index, (key, step, value) in enumerate(report_rows(record))
        ]
        self._pending[run_id] += _summary_metrics(record, metric, now)

    def _flush(self, run_id: str) -> None:
        """Write the run's pending metrics; each batch leaves the buffer only once MLflow has it."""
        pending = self._pending.get(run_id, [])
        while pending:
            batch = pending[:_BATCH_LIMIT]
            self.client.log_batch(run_id, metrics=batch)
            del pending[: len(batch)]
        self._last_flush[run_id] = time.time()

    def _forget(self, run_id: str) -> None:
        """A run that is (or is about to be) deleted: nothing more is written to it."""
        self._pending.pop(run_id, None)
        self._last_flush.pop(run_id, None)
        self._delivered.discard(run_id)

    def _runs(self, kind: str) -> list:
        """The sweep's runs of one kind ("point", "trial"), by their tags."""
        query = f"tags.`{TAG_SWEEP}` = '{_quoted(self.sweep_id)}' and tags.`{TAG_KIND}` = '{kind}'"
        return _search_all(self.client, [self._experiment], query)

    def _trial_tags(self, record: TrialRecord, workload: str) -> dict[str, str]:
        return {
            TAG_PARENT: self._point_run(record.point),  # the UI's nesting; runs are found by the tags below
            TAG_TRIAL_KEY: record.key,
            TAG_POINT: record.point.label,
            TAG_WORKLOAD: workload,
            TAG_BASELINE: str(record.point.is_baseline),
            TAG_SWEEP: self.sweep_id,
        }

    # --- bringing MLflow up to date with the sweep folder ---
    def sync(self, records: list[TrialRecord], workload: str, metric: str, sweep_dir: Path) -> int | None:
        """Make every finished trial's run hold exactly its trial file: each run is compared with its
        record (tags, summary, every report: the history of each metric key), and a run that differs in
        any way, a missing run and duplicate runs are replaced by one new run written from the record,
        whose trial file is saved again with the new run id. The number of trials whose runs changed, or
        None if MLflow cannot be reached. Running it twice changes nothing the second time."""
        self._down_until = 0.0  # one try now, whatever pause the live mirror was in
        self._workload = workload
        if self.ensure_parent() is None:
            return None

        def bring_up_to_date() -> int:
            while self._unclosed:  # runs the live mirror could not close yet: finish them first
                key, (record, ended_metric) = next(iter(self._unclosed.items()))
                self._close(record, ended_metric)
                del self._unclosed[key]
            runs: dict[str, list] = {}
            for run in self._runs("trial"):
                runs.setdefault(run.data.tags.get(TAG_TRIAL_KEY), []).append(run)
            changed = 0
            for record in records:  # finished trials, from the sweep folder: each one diagnosed
                found = runs.get(record.key, [])
                keep = next((run for run in found if self._mirrors(run, record, metric)), None)
                stale = [run for run in found if run is not keep]
                if keep is not None:
                    for run in stale:
                        self.client.delete_run(run.info.run_id)
                        self._forget(run.info.run_id)
                    self._fix_layout(keep, record)
                    run_id = keep.info.run_id
                    self._trial_run_ids[record.key] = [run_id]
                else:
                    self._replay(record, metric, workload, stale)
                    self._close(record, metric)
                    run_id = record.run_id
                changed += bool(stale) or keep is None
                if record.run_id != run_id or keep is None:
                    record.run_id = run_id
                    save_trial(sweep_dir, record)
            return changed

        return self._call(bring_up_to_date)

    def _fix_layout(self, run, record: TrialRecord) -> None:
        """A run that holds its trial's results, brought to this layout in place: under its point's run, named
        for its point and seed, every Config value a param (a run written by an older version lacks some; a
        param already there keeps its value, which is what the trial ran with)."""
        for key, value in {TAG_PARENT: self._point_run(record.point), TAG_RUN_NAME: trial_run_name(record)}.items():
            if run.data.tags.get(key) != value:
                self.client.set_tag(run.info.run_id, key, value)
        missing = {k: v for k, v in self._trial_params(record).items() if k not in run.data.params}
        if missing:
            self._log_params(run.info.run_id, missing)

    def _mirrors(self, run, record: TrialRecord, metric: str) -> bool:
        """Whether a run holds exactly what the trial's record says: its tags, params, status and summary,
        and every report, each (key, step) once. The cheap checks on what the run search returned come
        first; the metric histories (one call per report key) are read only when those pass, and not for
        a run this tracker itself delivered in full."""
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        expected_tags = {TAG_POINT: record.point.label, **_outcome_tags(record)}
        if any(tags.get(k) != _text(v) for k, v in expected_tags.items()):
            return False
        if any(params.get(k) != _text(v) for k, v in {**record.point.knobs, "seed": record.seed}.items()):
            return False
        if run.info.status != _status(record):
            return False
        summary = {SUMMARY_PREFIX + k: v for k, v in trial_summary(record, metric).items()}
        if not _same_values(summary, {k: v for k, v in metrics.items() if k.startswith(SUMMARY_PREFIX)}):
            return False
        rows = report_rows(record)
        latest: dict[str, tuple[int, float]] = {}
        for key, step, value in rows:
            if key not in latest or step >= latest[key][0]:
                latest[key] = (step, value)
        reported = {k: v for k, v in metrics.items() if not k.startswith(SUMMARY_PREFIX)}
        if not _same_values({k: value for k, (_, value) in latest.items()}, reported):
            return False
        if run.info.run_id in self._delivered:
            return True
        history = self.client.get_metric_history
        stored = [(m.key, m.step, m.value) for key in latest for m in history(run.info.run_id, key)]
        return _canonical(stored) == _canonical(rows)


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
        self._queue.put(lambda: self.tracker.end_trial(record, metric))

    def close(self) -> None:
        """Wait for the queue to drain. Runs still unclosed then (MLflow down at the end) are left to the
        `sync` that ends the sweep, which the same tracker does."""
        self._queue.put(None)
        self._thread.join()

    def _write(self) -> None:
        while (action := self._queue.get()) is not None:
            try:
                action()
                if self.tracker.behind:  # ended trials close as soon as MLflow has all of their reports
                    for record in self.tracker.catch_up():
                        save_trial(self.sweep_dir, record)  # again, now with its MLflow run id
            except Exception as exc:  # never lose the sweep to its mirror: `sync` replays what is missing
                print(
                    f"warning: writing to MLflow failed ({type(exc).__name__}: {exc}); the sweep goes on",
                    file=sys.stderr,
                )


class MlflowMirror:
    """A sweep's MLflow side as the driver sees it (`sweeper.mirror.Mirror`): its tracker, with the sweep's
    run's params and tags (the spec's settings, the workload, the folder)."""

    def __init__(self, tracking_uri: str, spec: SweepSpec, workload: Workload, sweep_dir: Path, sweep_id: str):
        # Every run's params hold every Config value its trials run with.
        config = dataclasses.asdict(workload.make_config(spec.base_overrides(workload)))
        self.tracker = SweepTracker(tracking_uri, spec.name, sweep_id, config, spec.points, workload.metric)
        self.spec, self.workload, self.sweep_dir = spec, workload, sweep_dir
        params = {
            "workload": spec.workload,
            "seeds": spec.seeds,
            "max_seeds": spec.max_seeds,
            "design": spec.design.kind,
            "alpha": spec.alpha,
            "correction": spec.correction,
            "smoke": spec.smoke,
            "grid": spec.grid,
            "fixed": spec.fixed,
            "baseline": spec.baseline,
            "vary": spec.vary,
            "spec_file": str(spec.path),
        }
        self.parent_fields = (params, {TAG_WORKLOAD: spec.workload, "sweeper.output": str(sweep_dir.resolve())})

    @property
    def tracking_uri(self) -> str:
        return self.tracker.tracking_uri

    @property
    def parent_run_id(self) -> str | None:
        return self.tracker.parent_run_id

    @property
    def experiment_id(self) -> str | None:
        return self.tracker.experiment_id

    def report_context(self) -> dict[str, str]:
        context = {"tracking": f"{self.tracking_uri}, experiment {self.spec.name}"}
        if self.experiment_id is not None:
            context["MLflow runs"] = runs_link(self.tracking_uri, self.experiment_id)
        return context

    def live(self) -> TrialMirror:
        return TrialMirror(self.tracker, self.sweep_dir, self.parent_fields)

    def sync(self, records: Sequence[TrialRecord]) -> int | None:
        if self.tracker.ensure_parent(*self.parent_fields) is None:
            return None
        return self.tracker.sync(list(records), self.spec.workload, self.workload.metric, self.sweep_dir)

    def attach(self, ranking: Ranking | None) -> bool:
        outputs = [self.sweep_dir / name for name in (SPEC_FILE, *OUTPUT_FILES) if (self.sweep_dir / name).exists()]
        plots = self.sweep_dir / PLOTS_DIR
        attached = self.tracker.log_files(outputs, plots=plots if plots.is_dir() else None)
        return attached and (ranking is None or self.tracker.log_points(ranking))

    def end(self, status: str, summary: dict[str, float]) -> bool:
        return self.tracker.end_sweep(status, summary)


# --- a trial, a grid point and the runs table as MLflow has them ---
def trial_run_name(record: TrialRecord) -> str:
    """`list_shape=grouped · seed 2`: a trial's run reads on its own in the runs table."""
    return f"{record.point.label} · seed {record.seed}"


def point_statistics(point: PointSummary, metric: str, rank: int) -> tuple[dict[str, float], dict[str, str]]:
    """A grid point's run: its metrics (`sweeper.<statistic>`) and tags, from its summary in the ranking. The
    final-metric statistics are over the seeds whose final metric is finite (the spread is the sample
    standard deviation); a statistic the analysis did not give (no test for the baseline, one seed for a
    spread) is left out."""
    finals = [value for value in point.final_metrics if value is not None]
    test = point.test
    values: dict[str, float | int | None] = {
        "rank": rank,
        "seeds": len(point.seeds),
        "healthy": point.healthy,
        "healthy_rate": point.healthy_rate,
        f"median_final_{metric}": statistics.median(finals) if finals else None,
        f"mean_final_{metric}": statistics.fmean(finals) if finals else None,
        f"std_final_{metric}": statistics.stdev(finals) if len(finals) > 1 else None,
        f"median_healthy_{metric}": point.median_healthy_metric,
        "score": point.score_centre,
    }
    if test is not None:
        values |= {
            "seeds_used": test.seeds_used,
            "baseline_seeds_used": test.baseline_seeds_used,
            "p_value": test.p_value,
            "p_adjusted": test.p_adjusted,
            "prob_superiority": test.prob_superiority,
            "healthy_rate_difference": test.healthy_rate_difference,
            "metric_shift": test.metric_shift,
        }
    # Four significant digits: a table to read (ranking.json keeps every digit).
    metrics = {SUMMARY_PREFIX + k: float(f"{v:.4g}") for k, v in values.items() if v is not None}
    tags = {TAG_VERDICT: point.verdict}
    if test is not None:
        tags["sweeper.status"] = test.status  # final, or dropped at an interim look
        if test.stopped_at is not None:
            tags["sweeper.stopped_at"] = str(test.stopped_at)  # called at an interim look
        if test.confirmed is not None:
            tags["sweeper.confirmed"] = str(test.confirmed)
    return metrics, tags


def runs_view(metric: str, knobs: Sequence[str]) -> dict[str, Any]:
    """The runs table's shared view: the verdict first, then the points' statistics beside the trials' final
    metric, the seed and the swept knobs (MLflow's column keys; the order is what the table shows)."""
    columns = [
        f"tags.`{TAG_VERDICT}`",
        f"metrics.`{SUMMARY_PREFIX}healthy_rate`",
        f"metrics.`{SUMMARY_PREFIX}p_adjusted`",
        f"metrics.`{SUMMARY_PREFIX}median_final_{metric}`",
        f"metrics.`{SUMMARY_PREFIX}final_{metric}`",
        f"metrics.`{SUMMARY_PREFIX}seeds`",
        "params.`seed`",
        *(f"params.`{knob}`" for knob in knobs),
    ]
    return {"selectedColumns": columns, "columnOrder": columns}


def trial_summary(record: TrialRecord, metric: str) -> dict[str, float]:
    """The run's summary metrics (`sweeper.<name>`, at step 0); `steps` and `report_values` count its
    reports and their metric values, so a run can be checked complete without the sweep folder."""
    summary = {
        "train_seconds": record.train_seconds,
        "steps": float(len(record.history)),
        "report_values": float(sum(len(report_metrics(report)) for report in record.history)),
    }
    for name in ("loss", metric):
        value = record.final(name)
        if value is not None:
            summary[f"final_{name}"] = value
    return summary


def report_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numeric values of one report, as MLflow metrics (the step is the metric's step, not a metric)."""
    return {k: float(v) for k, v in report.items() if isinstance(v, int | float) and k != "step"}


def report_rows(record: TrialRecord) -> list[Row]:
    """Every metric value of the trial's reports, in order, as its run holds them."""
    return [
        (key, int(report.get("step", index)), value)
        for index, report in enumerate(record.history, 1)
        for key, value in report_metrics(report).items()
    ]


def _summary_metrics(record: TrialRecord, metric: str, timestamp: int) -> list[Metric]:
    return [Metric(SUMMARY_PREFIX + k, float(v), timestamp, 0) for k, v in trial_summary(record, metric).items()]


def _status(record: TrialRecord) -> str:
    return "FAILED" if record.verdict == "error" else "FINISHED"


def _outcome_tags(record: TrialRecord) -> dict[str, Any]:
    return {
        TAG_VERDICT: record.verdict,
        TAG_REASON: record.reason,
        TAG_WORKER: record.worker,
        TAG_ATTEMPTS: record.attempts,
    }


def _stored(value: float) -> tuple[bool, float]:
    """A value as MLflow's store gives it back (+-inf as +-max float), comparable even when NaN."""
    if math.isnan(value):
        return True, 0.0
    if math.isinf(value):
        return False, math.copysign(_STORED_INFINITY, value)
    return False, value


def _same_values(expected: dict[str, float], stored: dict[str, float]) -> bool:
    return expected.keys() == stored.keys() and all(_stored(v) == _stored(stored[k]) for k, v in expected.items())


def _canonical(rows: list[Row]) -> list[tuple[str, int, tuple[bool, float]]]:
    return sorted((key, step, _stored(value)) for key, step, value in rows)


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


def _search_all(client: MlflowClient, experiment_ids: list[str], query: str) -> list:
    runs: list = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, query, max_results=_PAGE, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


# --- reading a sweep back ---
def sweep_experiments(tracking_uri: str) -> list[tuple[str, str]]:
    """(name, id) of every experiment of the store that holds a sweep, by name."""
    client = open_client(tracking_uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if not experiments:
        return []
    sweeps = _search_all(client, list(experiments), f"tags.`{TAG_KIND}` = 'sweep'")
    return sorted({(experiments[run.info.experiment_id], run.info.experiment_id) for run in sweeps})


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
class StoredSweep:
    parent: Any
    """The sweep's parent run."""
    spec: SweepSpec
    """The spec the sweep ran, from the parent run's spec.yaml."""
    trials: dict[str, TrialRecord]
    """The finished trials (runs with a verdict tag) of the spec's grid, by key, with their stored verdict."""
    incomplete: list[str]
    """Keys of finished trials whose runs do not hold all of their reports (see `run_is_complete`), or that
    have more than one finished run."""


def load_sweep(tracking_uri: str, ref: str, download_to: Path) -> StoredSweep | None:
    """A sweep read back from its MLflow runs alone (the spec downloaded into `download_to`); None if the
    store has no such sweep."""
    client = open_client(tracking_uri)
    parent = find_sweep(client, ref)
    if parent is None:
        return None
    (spec,) = load_specs(client.download_artifacts(parent.info.run_id, SPEC_FILE, str(download_to)))
    points = {point.label: point for point in spec.points}
    sweep_id = parent.data.tags.get(TAG_SWEEP, parent.info.run_name)
    children = _search_all(
        client,
        [parent.info.experiment_id],
        f"tags.`{TAG_SWEEP}` = '{_quoted(sweep_id)}' and tags.`{TAG_KIND}` = 'trial'",
    )
    trials: dict[str, TrialRecord] = {}
    incomplete: set[str] = set()
    for child in children:
        tags, params = child.data.tags, child.data.params
        point, verdict = points.get(tags.get(TAG_POINT)), tags.get(TAG_VERDICT)
        if point is None or verdict is None:  # a trial without a verdict never finished: in_grid_order says so
            continue
        if "seed" not in params:
            incomplete.add(tags.get(TAG_TRIAL_KEY, child.info.run_id))
            continue
        seed = int(params["seed"])
        key = trial_key(point.label, seed)
        rows = [
            (name, m.step, _from_store(m.value))
            for name in child.data.metrics
            if not name.startswith(SUMMARY_PREFIX)
            for m in client.get_metric_history(child.info.run_id, name)
        ]
        summary = {k[len(SUMMARY_PREFIX) :]: v for k, v in child.data.metrics.items() if k.startswith(SUMMARY_PREFIX)}
        if key in trials or not run_is_complete(rows, summary):
            incomplete.add(key)
        steps: dict[int, dict[str, float]] = {}
        for name, step, value in rows:
            steps.setdefault(step, {"step": step})[name] = value
        trials[key] = TrialRecord(
            key=key,
            point=point,
            seed=seed,
            history=[steps[step] for step in sorted(steps)],
            error=tags.get(TAG_REASON) if verdict == "error" else None,
            train_seconds=summary.get("train_seconds", 0.0),
            worker=tags.get(TAG_WORKER, ""),
            attempts=int(tags.get(TAG_ATTEMPTS, 1)),
            run_id=child.info.run_id,
            diagnosis=Diagnosis(verdict, tags.get(TAG_REASON, "")),
        )
    return StoredSweep(parent, spec, trials, sorted(incomplete))


def run_is_complete(rows: list[Row], summary: dict[str, float]) -> bool:
    """Whether a finished run's report history is whole, judged from the run alone: it has exactly
    `sweeper.steps` distinct steps and `sweeper.report_values` values, no (key, step) twice. A run written
    before `report_values` existed must carry every report key at every step."""
    if "steps" not in summary:
        return False
    pairs = {(key, step) for key, step, _ in rows}
    steps = {step for _, step in pairs}
    keys = {key for key, _ in pairs}
    values = summary.get("report_values", len(steps) * len(keys))
    return len(pairs) == len(rows) == values and len(steps) == summary["steps"]


def _from_store(value: float) -> float:
    return math.copysign(math.inf, value) if abs(value) == _STORED_INFINITY else value


def download_file(tracking_uri: str, ref: str, name: str, download_to: Path) -> Path | None:
    """One output file of a sweep's parent run (e.g. ranking.json); None if the store has no such sweep."""
    client = open_client(tracking_uri)
    parent = find_sweep(client, ref)
    if parent is None:
        return None
    return Path(client.download_artifacts(parent.info.run_id, name, str(download_to)))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    return str(value)[:6000]  # MLflow's limit on a param or tag value
