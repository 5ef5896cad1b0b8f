"""Runs sweeps on Ray Tune: the only module that imports Ray.

One Tune trial per grid point x seed that a sweep folder does not hold yet: a new sweep runs them all, a
resumed one the rest, and the sweeps of one run share one Tuner (a fresh one each run, so no stale Tune
snapshot can run a finished trial again or forget one that never started). Tune is handed the trials one at
a time (`_TrialList`), and a sweep's next round joins the queue as soon as its own round has ended
(`RoundQueue`). The trainable wraps the workload's `train`: it stops a trial as soon
as a report is non-finite or exploding (unless the sweep runs with `early_stop=False`), and turns an
exception into an `error` outcome so one broken trial never stops the sweep; Tune's own retries
(`max_retries`) are kept for lost workers and nodes. A driver-side callback keeps every trial's reports,
diagnoses the trial when it ends, writes it to its sweep's folder first, queues it for its sweep's MLflow
mirror (`TrialMirror`: a trial never waits for MLflow) and drives the progress display.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Tune's own CSV, JSON and TensorBoard files of every result: the trial files and MLflow keep them here, and
# the TensorBoard writer alone cost 17 ms per trial on the driver (bench/scale.py, profiled at 300 trials).
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.experiment import Trial  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

import experiments  # noqa: E402
import sweeper  # noqa: E402
from sweeper import health  # noqa: E402
from sweeper.errors import SweeperError  # noqa: E402
from sweeper.progress import SweepProgress  # noqa: E402
from sweeper.records import TUNE_DIR, TrialRecord, save_trial, trial_key  # noqa: E402
from sweeper.spec import GridPoint, SweepSpec  # noqa: E402
from sweeper.trial import run_trial  # noqa: E402
from sweeper.workload import load, load_shipped, shipped_source  # noqa: E402

if TYPE_CHECKING:
    from sweeper.mirror import TrialSink

_REPORT = "sweeper_report"  # the workload's own report, kept apart from the keys Tune adds to a result
_ERROR = "sweeper_error"
_ELAPSED = "sweeper_elapsed_s"
_STARTED = "sweeper_started"
_NODE = "sweeper_node"
_LIVE: dict[str, tuple[TrialSink, SweepProgress | None]] = {}
"""The mirror's trial sink and console display of each sweep this process drives. Tune pickles its callbacks with
the experiment state, and a thread or a console cannot be pickled, so a callback finds them here by sweep id
rather than holding them."""


# --- what a trial's Tune config holds ---
class _PointConfig(TypedDict):
    knobs: dict[str, object]
    label: str
    is_baseline: bool


class _TrialConfig(TypedDict):
    """One trial as Tune hands it to the trainable: `{"trial": _TrialConfig}`."""

    sweep: str
    point: _PointConfig
    seed: int


class _SweepConfig(TypedDict):
    """What every trial of a sweep shares (once in Ray's object store, not in every trial's config)."""

    workload: str
    workload_source: str | None
    base: dict[str, object]
    early_stop: bool


# --- inside the Ray worker ---
def _trainable(config: dict[str, _TrialConfig], sweeps: dict[str, _SweepConfig]) -> None:
    # TensorFlow reads these when it is first imported in this worker; every trial of one sweep asks for
    # the same CPUs, so the first trial's setting is right for the reused worker's later trials.
    threads = max(1, int(tune.get_context().get_trial_resources().required_resources.get("CPU", 1)))
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # a GPU share, not the whole GPU

    trial = config["trial"]
    sweep = sweeps[trial["sweep"]]
    workload = load_shipped(sweep["workload"], sweep["workload_source"])
    node = ray.get_runtime_context().get_node_id()[:12]
    began, started = time.time(), time.perf_counter()

    def report(metrics: dict[str, object]) -> None:
        tune.report({_REPORT: dict(metrics), _ELAPSED: time.perf_counter() - started, _STARTED: began, _NODE: node})

    overrides = {**sweep["base"], **trial["point"]["knobs"], "seed": trial["seed"]}
    run = run_trial(workload, overrides, on_report=report, early_stop=sweep["early_stop"])
    if run.error is not None:  # the trial's outcome, not the sweep's failure
        elapsed = time.perf_counter() - started
        tune.report({_ERROR: run.error, _ELAPSED: elapsed, _STARTED: began, _NODE: node})


def _trial_dirname(trial: Trial) -> str:
    return f"trial_{trial.trial_id}"


# --- on the driver ---
class _TrialList(Searcher):
    """Hands Tune the trials one at a time, as it makes room for them, from the run's queue (`_ROUNDS`). A
    `grid_search` over the trials would cost Tune a deep copy of the whole list for every trial it creates:
    quadratic, minutes of driver time before the first trial of a 5,000-trial sweep (bench/scale.py). While a
    sweep's round is still running, its next round may come: the list waits (None) rather than ends."""

    def suggest(self, trial_id: str) -> dict[str, _TrialConfig] | None:
        rounds = _ROUNDS
        if rounds is None or not (rounds.queue or rounds.waiting()):
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune's documented end-of-list marker
        return {"trial": rounds.queue.popleft()} if rounds.queue else None

    def on_trial_complete(self, trial_id: str, result: dict[str, object] | None = None, error: bool = False) -> None:
        pass  # nothing to learn: the rounds are planned from the sweep folders (`RoundQueue.trial_done`)


NextRound = Callable[[str, list[tuple[GridPoint, int]]], list[tuple[GridPoint, int]] | None]
"""Given a sweep id and the trials of its round that just ended (all saved to its folder), the trials of its
next round: [] when the sweep is done, None to plan no more rounds for any sweep (trials were lost)."""


class RoundQueue:
    """The run's queue of trials, round by round per sweep: when the last trial of a sweep's round has been
    saved (`trial_done`), that sweep's next round is planned (`next_round`) and queued at once, whatever the
    other sweeps are doing, so no sweep waits for another's stragglers."""

    def __init__(self, batches: list[Batch], next_round: NextRound | None, display: SweepProgress | None):
        self.queue: deque[_TrialConfig] = deque()
        self.running: dict[str, set[str]] = {}
        self.ran: dict[str, list[tuple[GridPoint, int]]] = {}
        self.next_round, self.display, self.stopped = next_round, display, False
        for batch in batches:
            self._add(batch.sweep_id, batch.trials)

    def waiting(self) -> bool:
        """A round still running may bring more trials."""
        return self.next_round is not None and not self.stopped and any(self.running.values())

    def trial_done(self, sweep_id: str, key: str) -> None:
        outstanding = self.running.get(sweep_id, set())
        outstanding.discard(key)
        if outstanding or self.next_round is None or self.stopped:
            return
        more = self.next_round(sweep_id, self.ran[sweep_id])
        if more is None:
            self.stopped = True
            return
        self._add(sweep_id, more)
        if self.display is not None:
            self.display.plan_more(len(more))

    def _add(self, sweep_id: str, trials: list[tuple[GridPoint, int]]) -> None:
        self.ran[sweep_id] = list(trials)
        self.running[sweep_id] = {trial_key(point.label, seed) for point, seed in trials}
        self.queue.extend(
            _TrialConfig(
                sweep=sweep_id,
                point=_PointConfig(knobs=point.knobs, label=point.label, is_baseline=point.is_baseline),
                seed=seed,
            )
            for point, seed in trials
        )


_ROUNDS: RoundQueue | None = None
"""The queue of the run this process drives; a module global for the reason `_LIVE` is one."""


def _key_of(config: dict[str, _TrialConfig]) -> str:
    return trial_key(config["trial"]["point"]["label"], config["trial"]["seed"])


class _SweepCallback(tune.Callback):
    """The driver's side of every trial of the run, whichever of its sweeps a trial belongs to."""

    def __init__(self, sweeps: dict[str, tuple[Path, str, str]]):
        self.sweeps = sweeps
        """Per sweep id: its folder, its workload and its name."""
        self.records: dict[tuple[str, str], TrialRecord] = {}
        self.starts: dict[tuple[str, str], int] = {}

    def _record(self, trial: Trial) -> tuple[str, TrialRecord]:
        """The trial's sweep id and its record."""
        sweep_id = trial.config["trial"]["sweep"]
        key = (sweep_id, _key_of(trial.config))
        if key not in self.records:
            point = GridPoint(**trial.config["trial"]["point"])
            self.records[key] = TrialRecord(key=key[1], point=point, seed=trial.config["trial"]["seed"])
        return sweep_id, self.records[key]

    def on_trial_start(self, iteration, trials, trial, **info):
        sweep_id, record = self._record(trial)
        # A start after a lost worker begins afresh.
        record.history, record.error, record.diagnosis = [], None, None
        self.starts[(sweep_id, record.key)] = self.starts.get((sweep_id, record.key), 0) + 1
        record.attempts = self.starts[(sweep_id, record.key)]
        mirror, display = _LIVE[sweep_id]
        mirror.trial_started(record, self.sweeps[sweep_id][1])
        if display is not None:
            display.trial_started(self._shown(sweep_id, record.key))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        sweep_id, record = self._record(trial)
        record.train_seconds = result.get(_ELAPSED, record.train_seconds)
        record.started = result.get(_STARTED, record.started)
        record.worker = f"{result.get(_NODE, '')}:{result.get('pid', '')}"
        if _ERROR in result:
            record.error = result[_ERROR]
            return
        report = result[_REPORT]
        record.history.append(report)
        _LIVE[sweep_id][0].trial_reported(record, int(report.get("step", len(record.history))), report)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(*self._record(trial), ray_error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(*self._record(trial), ray_error=_last_line(getattr(trial, "error_file", None)))

    def _finish(self, sweep_id: str, record: TrialRecord, ray_error: str | None) -> None:
        sweep_dir, workload_name, _ = self.sweeps[sweep_id]
        workload = load(workload_name)
        record.error = record.error or ray_error
        record.diagnosis = health.diagnose(
            record.history, workload.metric, workload.mode, record.error, workload.thresholds
        )
        save_trial(sweep_dir, record)  # the sweep folder first: it must hold every result
        mirror, display = _LIVE[sweep_id]
        mirror.trial_ended(record, workload.metric)
        if display is not None:
            shown, final = self._shown(sweep_id, record.key), record.final(workload.metric)
            raised = health.error_line(record.reason) if record.verdict == "error" else ""
            display.trial_finished(
                shown, record.point.label, record.verdict, final, workload.metric, workload.mode, error=raised
            )
        if _ROUNDS is not None:
            _ROUNDS.trial_done(sweep_id, record.key)

    def _shown(self, sweep_id: str, key: str) -> str:
        """A trial as the progress display names it: its key, after its sweep's name when several run."""
        return f"{self.sweeps[sweep_id][2]}: {key}" if len(self.sweeps) > 1 else key


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


def check_cluster(spec: SweepSpec, *, local_store: str | None) -> None:
    """Refuse what the cluster can never do: a per-trial request bigger than all it has (Tune would wait
    forever), or a store only this machine can reach (`local_store`, its URI) while other nodes take part."""
    available = ray.cluster_resources()
    for key, asked in (("CPU", spec.cpu), ("GPU", spec.gpu)):
        if asked > available.get(key, 0.0):
            raise SweeperError(
                f"{spec.path}: resources.{key.lower()}: each trial asks for {asked:g} {key}, but the Ray cluster "
                f"has {available.get(key, 0.0):g} in all"
            )
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and local_store is not None:
        raise SweeperError(
            f"--tracking-uri: {local_store} is a store on this machine only, but the Ray cluster has {len(nodes)} "
            "nodes; start a tracking server every node reaches (`sweeper server --host 0.0.0.0 --port 5000`) "
            "and pass --tracking-uri http://HOST:5000"
        )


@dataclass(frozen=True)
class Batch:
    """One sweep's share of a run: which of its trials to run, where they go."""

    sweep_id: str
    spec: SweepSpec
    trials: list[tuple[GridPoint, int]]
    sweep_dir: Path
    mirror: TrialSink


def run_trials(
    batches: list[Batch],
    *,
    display: SweepProgress | None,
    next_round: NextRound | None = None,
    max_concurrent: int | None = None,
    max_retries: int = 2,
    early_stop: bool = True,
) -> None:
    """Run the given (grid point, seed) trials of one or more sweeps on one Ray Tune run, so that one sweep's
    trials fill the slots another's stragglers leave, and, with `next_round`, each sweep's later rounds as
    soon as its own round has ended; each finished trial ends up in its sweep's folder
    (`sweeper.records.load_trials`) and, through its sweep's mirror, in MLflow. Each trial asks for its own
    sweep's resources. Tune's state is scratch (in the first sweep's folder): replaced, never restored."""
    global _ROUNDS
    shared: dict[str, _SweepConfig] = {}  # once in Ray's object store, not in every trial's config
    resources = {}
    for batch in batches:
        sweep_id, spec = batch.sweep_id, batch.spec
        shared[sweep_id] = _SweepConfig(
            workload=spec.workload,
            workload_source=shipped_source(spec.workload),  # a workload file reaches every node of a cluster
            base=spec.base_overrides(load(spec.workload)),
            early_stop=early_stop,
        )
        resources[sweep_id] = tune.PlacementGroupFactory([{"CPU": spec.cpu, "GPU": spec.gpu}])
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, sweeps=shared), lambda config: resources[config["trial"]["sweep"]]
    )
    tune_dir = batches[0].sweep_dir.resolve() / TUNE_DIR
    shutil.rmtree(tune_dir, ignore_errors=True)
    callback = _SweepCallback({b.sweep_id: (b.sweep_dir.resolve(), b.spec.workload, b.spec.name) for b in batches})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_TrialList(),
            num_samples=-1,  # until the list ends (`_TrialList`): later rounds are planned as the run goes
            reuse_actors=True,  # TensorFlow is imported once per worker process, not once per trial
            max_concurrent_trials=max_concurrent,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=tune_dir.name,
            storage_path=str(tune_dir.parent),
            verbose=0,
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=max_retries),  # lost workers and nodes only
        ),
    )
    for batch in batches:
        _LIVE[batch.sweep_id] = (batch.mirror, display)
    _ROUNDS = RoundQueue(batches, next_round, display)
    try:
        # Tune's own console output (the experiment table, "View detailed results here", a box per errored
        # trial) is print()ed to stdout; the progress display and the report replace it. Its legacy engine
        # (RAY_AIR_NEW_OUTPUT=0) is silent, but made short trials 10-15% slower (measured with bench/bare_tune.py).
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            tuner.fit()
    finally:
        _ROUNDS = None
        for batch in batches:
            _LIVE.pop(batch.sweep_id, None)
