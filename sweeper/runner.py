"""Runs a sweep on Ray Tune: the only module that imports Ray.

One Tune trial per grid point x seed. The trainable wraps the workload's `train`: it stops a trial as soon
as a report is non-finite or exploding, and turns an exception into an `error` outcome so one broken
trial never stops the sweep. A driver-side callback keeps every trial's report history, diagnoses it when
the trial ends, writes it to MLflow through the SweepTracker, and drives the progress display.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

# Quiet console (see shared notes): the legacy output engine at verbose=0 prints nothing of its own.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from sweeper import health  # noqa: E402
from sweeper.errors import SweeperError  # noqa: E402
from sweeper.progress import SweepProgress  # noqa: E402
from sweeper.records import TrialRecord, in_grid_order, trial_key  # noqa: E402
from sweeper.spec import GridPoint, SweepSpec  # noqa: E402
from sweeper.tracking import (  # noqa: E402
    TAG_BASELINE,
    TAG_POINT,
    TAG_REASON,
    TAG_SWEEP,
    TAG_TRIAL_KEY,
    TAG_VERDICT,
    TAG_WORKER,
    TAG_WORKLOAD,
    SweepTracker,
)
from sweeper.workload import Workload, load  # noqa: E402

_REPORT = "sweeper_report"  # the workload's own report, kept apart from the keys Tune adds to a result
_ERROR = "sweeper_error"
_ELAPSED = "sweeper_elapsed_s"


# --- inside the Ray worker ---
class _StopTrial(Exception):
    """Raised from `report` to leave the workload's training loop once the trial has diverged."""


def _trainable(config: dict[str, Any]) -> None:
    # TensorFlow reads these when it is first imported in this worker; every trial of one sweep asks for
    # the same CPUs, so the first trial's setting is right for the reused worker's later trials.
    threads = max(1, int(tune.get_context().get_trial_resources().required_resources.get("CPU", 1)))
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # a GPU share, not the whole GPU

    workload = load(config["workload"])
    limits = workload.thresholds
    history: list[dict[str, Any]] = []
    started = time.perf_counter()

    def report(metrics: dict[str, Any]) -> None:
        history.append({key: metrics.get(key) for key in (*health.WATCHED, "step", workload.metric)})
        diverged = health.check_divergence(history, workload.metric, limits)
        tune.report({_REPORT: dict(metrics), _ELAPSED: time.perf_counter() - started})
        if diverged is not None:
            raise _StopTrial(diverged.reason)

    try:
        trial_config = workload.make_config({**config["base"], **config["point"]["knobs"], "seed": config["seed"]})
        workload.train(trial_config, report)
    except _StopTrial:
        pass
    except Exception as exc:  # the trial's outcome, not the sweep's failure
        tune.report({_ERROR: _one_line(exc), _ELAPSED: time.perf_counter() - started})


def _one_line(exc: Exception) -> str:
    """The exception's type and the last line of its message: TensorFlow puts the real cause (after the
    traced user code) on the last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:500]


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


# --- on the driver ---
class _SweepCallback(tune.Callback):
    def __init__(self, workload: Workload, tracker: SweepTracker, display: SweepProgress | None, sweep_id: str):
        self.workload, self.tracker, self.display, self.sweep_id = workload, tracker, display, sweep_id
        self.records: dict[str, TrialRecord] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment; the console display stays with this process."""
        return {**self.__dict__, "display": None}

    def _record(self, trial: Any) -> TrialRecord:
        config = trial.config
        point = GridPoint(**config["point"])
        key = trial_key(point.label, config["seed"])
        if key not in self.records:
            self.records[key] = TrialRecord(key=key, point=point, seed=config["seed"])
        return self.records[key]

    def on_trial_start(self, iteration, trials, trial, **info):
        record = self._record(trial)
        record.run_id = self.tracker.start_trial(
            run_name=record.key,
            params={**trial.config["base"], **record.point.knobs, "seed": record.seed},
            tags={
                TAG_TRIAL_KEY: record.key,
                TAG_POINT: record.point.label,
                TAG_WORKLOAD: self.workload.name,
                TAG_BASELINE: str(record.point.is_baseline),
                TAG_SWEEP: self.sweep_id,
            },
        )
        if self.display is not None:
            self.display.trial_started(record.key)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = self._record(trial)
        record.train_seconds = result.get(_ELAPSED, record.train_seconds)
        record.worker = f"{result.get('node_ip', '')}:{result.get('pid', '')}"
        if _ERROR in result:
            record.error = result[_ERROR]
            return
        metrics = result[_REPORT]
        record.history.append(metrics)
        step = int(metrics.get("step", len(record.history)))
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and k != "step"}
        self.tracker.log_step(record.run_id, step, numeric)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(self._record(trial), ray_error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(self._record(trial), ray_error=_last_line(getattr(trial, "error_file", None)))

    def _finish(self, record: TrialRecord, ray_error: str | None) -> None:
        record.error = record.error or ray_error
        record.diagnosis = health.diagnose(
            record.history, self.workload.metric, self.workload.mode, record.error, self.workload.thresholds
        )
        summary = {"train_seconds": record.train_seconds, "steps": float(len(record.history))}
        for name in ("loss", self.workload.metric):
            value = record.final(name)
            if value is not None:
                summary[f"final_{name}"] = value
        self.tracker.end_trial(
            record.run_id,
            status="FAILED" if record.diagnosis.verdict == "error" else "FINISHED",
            summary=summary,
            tags={TAG_VERDICT: record.diagnosis.verdict, TAG_REASON: record.diagnosis.reason, TAG_WORKER: record.worker},
        )
        if self.display is not None:
            self.display.trial_finished(
                record.key, record.point.label, record.diagnosis.verdict, record.final(self.workload.metric)
            )


def _last_line(path: str | None) -> str:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        return lines[-1][:500] if lines else "the trial failed in Ray"
    except (OSError, TypeError):
        return "the trial failed in Ray"


def start_ray(address: str | None) -> None:
    """Ray in-process on this machine's CPUs (and GPUs), or attached to the cluster at `address`."""
    if ray.is_initialized():
        return
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    ray.init(
        address=address or "local",
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )


def check_resources(spec: SweepSpec) -> None:
    """Refuse a per-trial request the cluster can never meet: Tune would otherwise wait for it forever."""
    available = ray.cluster_resources()
    for key, asked in (("CPU", spec.cpu), ("GPU", spec.gpu)):
        if asked > available.get(key, 0.0):
            raise SweeperError(
                f"{spec.path}: resources.{key.lower()}: each trial asks for {asked:g} {key}, but the Ray cluster "
                f"has {available.get(key, 0.0):g} in all"
            )


def run_trials(
    spec: SweepSpec,
    *,
    sweep_id: str,
    sweep_dir: Path,
    tracker: SweepTracker,
    display: SweepProgress,
    max_concurrent: int | None = None,
) -> list[TrialRecord]:
    """Run every trial of the spec on Ray Tune; one record per trial, in grid order."""
    workload = load(spec.workload)
    callback = _SweepCallback(workload, tracker, display, sweep_id)
    points = [{"knobs": p.knobs, "label": p.label, "is_baseline": p.is_baseline} for p in spec.points]
    tuner = tune.Tuner(
        tune.with_resources(_trainable, {"cpu": spec.cpu, "gpu": spec.gpu}),
        param_space={
            "workload": spec.workload,
            "base": spec.base_overrides(workload),
            "point": tune.grid_search(points),
            "seed": tune.grid_search(list(range(spec.seeds))),
        },
        tune_config=tune.TuneConfig(
            reuse_actors=True,  # TensorFlow is imported once per worker process, not once per trial
            max_concurrent_trials=max_concurrent,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(sweep_dir.resolve()),
            verbose=0,
            callbacks=[callback],
        ),
    )
    tuner.fit()
    return in_grid_order(spec, callback.records)
