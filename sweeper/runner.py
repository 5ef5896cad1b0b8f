"""Runs a sweep on Ray Tune: the only module that imports Ray.

One Tune trial per grid point x seed that the sweep folder does not hold yet: a new sweep runs them all, a
resumed one the rest (a fresh Tuner each time, so no stale Tune snapshot can run a finished trial again or
forget one that never started). The trainable wraps the workload's `train`: it stops a trial as soon
as a report is non-finite or exploding (unless the sweep runs with `early_stop=False`), and turns an
exception into an `error` outcome so one broken trial never stops the sweep; Tune's own retries
(`max_retries`) are kept for lost workers and nodes. A driver-side callback keeps every trial's reports,
diagnoses the trial when it ends, writes it to the sweep folder first, queues it for MLflow (`TrialMirror`:
a trial never waits for MLflow) and drives the progress display.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Tune's own CSV, JSON and TensorBoard files of every result: the trial files and MLflow keep them here, and
# the TensorBoard writer alone cost 17 ms per trial on the driver (bench/scale.py, profiled at 300 trials).
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

import experiments  # noqa: E402
import sweeper  # noqa: E402
from sweeper import health  # noqa: E402
from sweeper.errors import SweeperError  # noqa: E402
from sweeper.progress import SweepProgress  # noqa: E402
from sweeper.records import TUNE_DIR, TrialRecord, save_trial, trial_key  # noqa: E402
from sweeper.spec import GridPoint, SweepSpec  # noqa: E402
from sweeper.workload import load, load_shipped, shipped_source  # noqa: E402

if TYPE_CHECKING:
    from sweeper.tracking import TrialMirror

_REPORT = "sweeper_report"  # the workload's own report, kept apart from the keys Tune adds to a result
_ERROR = "sweeper_error"
_ELAPSED = "sweeper_elapsed_s"
_NODE = "sweeper_node"
_LIVE: dict[str, tuple[TrialMirror, SweepProgress | None]] = {}
"""The MLflow mirror and console display of each sweep this process drives. Tune pickles its callbacks with
the experiment state, and a thread or a console cannot be pickled, so a callback finds them here by sweep id
rather than holding them."""


# --- inside the Ray worker ---
class _StopTrial(Exception):
    """Raised from `report` to leave the workload's training loop once the trial has diverged."""


def _trainable(config: dict[str, Any], sweep: dict[str, Any]) -> None:
    # TensorFlow reads these when it is first imported in this worker; every trial of one sweep asks for
    # the same CPUs, so the first trial's setting is right for the reused worker's later trials.
    threads = max(1, int(tune.get_context().get_trial_resources().required_resources.get("CPU", 1)))
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # a GPU share, not the whole GPU

    workload = load_shipped(sweep["workload"], sweep["workload_source"])
    limits = workload.thresholds
    node = ray.get_runtime_context().get_node_id()[:12]
    history: list[dict[str, Any]] = []
    started = time.perf_counter()

    def report(metrics: dict[str, Any]) -> None:
        history.append({key: metrics.get(key) for key in (*health.WATCHED, "step", workload.metric)})
        diverged = health.check_divergence(history, workload.metric, limits)
        tune.report({_REPORT: dict(metrics), _ELAPSED: time.perf_counter() - started, _NODE: node})
        if diverged is not None and sweep["early_stop"]:
            raise _StopTrial(diverged.reason)

    try:
        trial = config["trial"]
        trial_config = workload.make_config({**sweep["base"], **trial["point"]["knobs"], "seed": trial["seed"]})
        workload.train(trial_config, report)
    except _StopTrial:
        pass
    except Exception as exc:  # the trial's outcome, not the sweep's failure
        tune.report({_ERROR: health.trial_error(exc), _ELAPSED: time.perf_counter() - started, _NODE: node})


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


# --- on the driver ---
class _TrialList(Searcher):
    """Hands Tune the trials one at a time, as it makes room for them. A `grid_search` over the trials would
    cost Tune a deep copy of the whole list for every trial it creates: quadratic, minutes of driver time
    before the first trial of a 5,000-trial sweep (bench/scale.py)."""

    def __init__(self, trials: list[dict[str, Any]]):
        super().__init__()
        self._trials, self._given = trials, 0

    def suggest(self, trial_id: str) -> dict | None:
        if self._given == len(self._trials):
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune's documented end-of-list marker
        self._given += 1
        return {"trial": self._trials[self._given - 1]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # nothing to learn: the list is fixed


def _key_of(config: dict[str, Any]) -> str:
    return trial_key(config["trial"]["point"]["label"], config["trial"]["seed"])


class _SweepCallback(tune.Callback):
    def __init__(self, sweep_dir: Path, workload: str, sweep_id: str):
        self.sweep_dir, self.workload_name, self.sweep_id = sweep_dir, workload, sweep_id
        self.records: dict[str, TrialRecord] = {}
        self.starts: dict[str, int] = {}

    @property
    def workload(self):
        return load(self.workload_name)

    @property
    def mirror(self) -> TrialMirror:
        return _LIVE[self.sweep_id][0]

    @property
    def display(self) -> SweepProgress | None:
        return _LIVE[self.sweep_id][1]

    def _record(self, trial: Any) -> TrialRecord:
        key = _key_of(trial.config)
        if key not in self.records:
            point = GridPoint(**trial.config["trial"]["point"])
            self.records[key] = TrialRecord(key=key, point=point, seed=trial.config["trial"]["seed"])
        return self.records[key]

    def on_trial_start(self, iteration, trials, trial, **info):
        record = self._record(trial)
        # A start after a lost worker begins afresh.
        record.history, record.error, record.diagnosis = [], None, None
        self.starts[record.key] = self.starts.get(record.key, 0) + 1
        record.attempts = self.starts[record.key]
        self.mirror.trial_started(record, self.workload_name)
        if self.display is not None:
            self.display.trial_started(record.key)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = self._record(trial)
        record.train_seconds = result.get(_ELAPSED, record.train_seconds)
        record.worker = f"{result.get(_NODE, '')}:{result.get('pid', '')}"
        if _ERROR in result:
            record.error = result[_ERROR]
            return
        report = result[_REPORT]
        record.history.append(report)
        self.mirror.trial_reported(record, int(report.get("step", len(record.history))), report)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(self._record(trial), ray_error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(self._record(trial), ray_error=_last_line(getattr(trial, "error_file", None)))

    def _finish(self, record: TrialRecord, ray_error: str | None) -> None:
        workload = self.workload
        record.error = record.error or ray_error
        record.diagnosis = health.diagnose(
            record.history, workload.metric, workload.mode, record.error, workload.thresholds
        )
        save_trial(self.sweep_dir, record)  # the sweep folder first: it must hold every result
        self.mirror.trial_ended(record, workload.metric)
        if self.display is not None:
            self.display.trial_finished(record.key, record.point.label, record.verdict, record.final(workload.metric))


def _last_line(path: str | None) -> str:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1][:500] if lines else "the trial failed in Ray"


def start_ray(address: str | None) -> None:
    """Ray in-process on this machine's CPUs (and GPUs), or attached to the cluster at `address`; a
    cluster gets this package and the workloads shipped with the job, so no node needs them installed by hand."""
    if ray.is_initialized():
        return
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    # Tune's TensorBoard logger warns for every NaN or inf it writes; a diverged trial is a result here.
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
    runtime_env = None
    if address:
        runtime_env = {
            "py_modules": [os.path.dirname(sweeper.__file__), os.path.dirname(experiments.__file__)],
            "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_FORCE_GPU_ALLOW_GROWTH": "true"},
        }
    ray.init(
        address=address or "local",
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        runtime_env=runtime_env,
    )


def check_cluster(spec: SweepSpec, tracking_uri: str) -> None:
    """Refuse what the cluster can never do: a per-trial request bigger than all it has (Tune would wait
    forever), or a store only this machine can reach while other nodes take part."""
    from sweeper.stores import is_local_store

    available = ray.cluster_resources()
    for key, asked in (("CPU", spec.cpu), ("GPU", spec.gpu)):
        if asked > available.get(key, 0.0):
            raise SweeperError(
                f"{spec.path}: resources.{key.lower()}: each trial asks for {asked:g} {key}, but the Ray cluster "
                f"has {available.get(key, 0.0):g} in all"
            )
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and is_local_store(tracking_uri):
        raise SweeperError(
            f"--tracking-uri: {tracking_uri} is a store on this machine only, but the Ray cluster has {len(nodes)} "
            "nodes; start a tracking server every node reaches (`sweeper server --host 0.0.0.0 --port 5000`) "
            "and pass --tracking-uri http://HOST:5000"
        )


def run_trials(
    spec: SweepSpec,
    trials: list[tuple[GridPoint, int]],
    *,
    sweep_dir: Path,
    mirror: TrialMirror,
    display: SweepProgress | None,
    max_concurrent: int | None = None,
    max_retries: int = 2,
    early_stop: bool = True,
) -> None:
    """Run the given (grid point, seed) trials of the spec on Ray Tune; each finished trial ends up in the
    sweep folder (`sweeper.records.load_trials`) and, through `mirror`, in MLflow. Tune's state of an earlier
    run of the sweep is scratch: it is replaced, never restored."""
    sweep_id = mirror.tracker.sweep_id
    workload = load(spec.workload)
    shared = {  # once in Ray's object store, not in every trial's config
        "workload": spec.workload,
        "workload_source": shipped_source(spec.workload),  # a workload file reaches every node of a cluster
        "base": spec.base_overrides(workload),
        "early_stop": early_stop,
    }
    trainable = tune.with_resources(tune.with_parameters(_trainable, sweep=shared), {"cpu": spec.cpu, "gpu": spec.gpu})
    tune_dir = sweep_dir.resolve() / TUNE_DIR
    shutil.rmtree(tune_dir, ignore_errors=True)
    listed = [
        {"point": {"knobs": point.knobs, "label": point.label, "is_baseline": point.is_baseline}, "seed": seed}
        for point, seed in trials
    ]
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_TrialList(listed),
            num_samples=len(listed),
            reuse_actors=True,  # TensorFlow is imported once per worker process, not once per trial
            max_concurrent_trials=max_concurrent,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=tune_dir.name,
            storage_path=str(tune_dir.parent),
            verbose=0,
            callbacks=[_SweepCallback(sweep_dir.resolve(), spec.workload, sweep_id)],
            failure_config=tune.FailureConfig(max_failures=max_retries),  # lost workers and nodes only
        ),
    )
    _LIVE[sweep_id] = (mirror, display)
    try:
        # Tune's own console output (the experiment table, "View detailed results here", a box per errored
        # trial) is print()ed to stdout; the progress display and the report replace it. Its legacy engine
        # (RAY_AIR_NEW_OUTPUT=0) is silent, but made short trials 10-15% slower (measured with bench/bare_tune.py).
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            tuner.fit()
    finally:
        _LIVE.pop(sweep_id, None)
