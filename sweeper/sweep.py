"""The driver of one sweep: output folder, MLflow parent run, Ray trials, analysis, outputs."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from sweeper import report
from sweeper.errors import SweeperError
from sweeper.health import diagnose
from sweeper.progress import SweepProgress
from sweeper.records import TrialRecord, in_grid_order, trial_key
from sweeper.spec import SweepSpec, load_specs
from sweeper.workload import Workload, load

OUTPUT_FILES = ("spec.yaml", "trials.csv", "ranking.json", "report.md", "report.html")


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    sweep_dir: Path
    parent_run_id: str
    ranking: dict[str, Any]


def new_sweep_dir(out_root: Path, name: str) -> Path:
    """`<out_root>/<name>-<UTC time>`, never an existing folder: no earlier result is overwritten."""
    stem = f"{name}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    sweep_dir, suffix = out_root / stem, 1
    while sweep_dir.exists():
        suffix += 1
        sweep_dir = out_root / f"{stem}-{suffix}"
    sweep_dir.mkdir(parents=True)
    return sweep_dir


def run_sweep(
    spec: SweepSpec,
    *,
    out_root: Path,
    tracking_uri: str,
    address: str | None = None,
    max_concurrent: int | None = None,
) -> SweepOutcome:
    # Ray and MLflow are imported here, after the spec has been validated without them.
    from sweeper import runner
    from sweeper.tracking import TAG_WORKLOAD, SweepTracker

    workload = load(spec.workload)
    runner.start_ray(address)
    runner.check_resources(spec)  # before anything is written
    sweep_dir = new_sweep_dir(out_root, spec.name)
    sweep_id = sweep_dir.name
    report.write_atomically(sweep_dir / "spec.yaml", yaml.safe_dump(spec.document, sort_keys=False))

    tracker = SweepTracker(tracking_uri)
    parent_run_id = tracker.start_sweep(
        experiment=spec.name,
        sweep_id=sweep_id,
        params={"workload": spec.workload, "seeds": spec.seeds, "smoke": spec.smoke, "grid": spec.grid,
                "fixed": spec.fixed, "spec_file": str(spec.path)},
        tags={TAG_WORKLOAD: spec.workload, "sweeper.output": str(sweep_dir.resolve())},
    )
    tracker.log_files([sweep_dir / "spec.yaml"])
    started = time.perf_counter()
    status, document = "FAILED", {}
    try:
        with SweepProgress(sweep_id, spec.trial_count, workload.metric, workload.mode) as display:
            records = runner.run_trials(
                spec, sweep_id=sweep_id, sweep_dir=sweep_dir, tracker=tracker, display=display,
                max_concurrent=max_concurrent,
            )
        document = write_report(spec, workload, records, sweep_dir, sweep_id,
                                {"tracking": f"{tracking_uri}, experiment {spec.name}, parent run {parent_run_id}"})
        tracker.log_files([sweep_dir / name for name in OUTPUT_FILES[1:]], plots=sweep_dir / "plots")
        status = "FINISHED"
    finally:
        summary = {"wall_seconds": time.perf_counter() - started, "trials": float(spec.trial_count)}
        summary.update({k: float(v) for k, v in document.get("compute", {}).items()})
        tracker.end_sweep(status, summary)
    return SweepOutcome(sweep_id, sweep_dir, parent_run_id, document)


def write_report(spec: SweepSpec, workload: Workload, records: list[TrialRecord], sweep_dir: Path, sweep_id: str,
                 context: dict[str, str]) -> dict[str, Any]:
    """Analyse the records and write every output file; returns the ranking document."""
    document = report.analyze(spec, workload, records, sweep_id)
    rows = report.trial_rows(spec, workload.metric, records)
    report.write_outputs(sweep_dir, document, records, rows,
                         {"description": spec.description, "spec": str(spec.path), **context})
    return document


def rebuild_sweep(ref: str, *, tracking_uri: str, out_root: Path) -> SweepOutcome:
    """Every output of a sweep, rebuilt from its MLflow runs alone: the spec artifact of the parent run and
    each child run's params, tags and metric histories; every trial is diagnosed again from its history."""
    from sweeper.tracking import TAG_POINT, TAG_REASON, TAG_VERDICT, TAG_WORKER, load_sweep

    with tempfile.TemporaryDirectory() as scratch:
        loaded = load_sweep(tracking_uri, ref, Path(scratch))
        if loaded is None:
            raise SweeperError(f"{ref}: no sweep with this sweep id or parent run id in {tracking_uri}")
        parent, spec_path, stored = loaded
        (spec,) = load_specs(spec_path)
    workload = load(spec.workload)
    points = {point.label: point for point in spec.points}
    found = {}
    for trial in stored:
        point, seed = points.get(trial.tags.get(TAG_POINT)), int(trial.params["seed"])
        if point is None:
            continue
        verdict = trial.tags.get(TAG_VERDICT)
        record = TrialRecord(
            key=trial_key(point.label, seed), point=point, seed=seed, history=trial.history,
            error=trial.tags.get(TAG_REASON) if verdict == "error" else None,
            train_seconds=trial.summary.get("train_seconds", 0.0), worker=trial.tags.get(TAG_WORKER, ""),
            run_id=trial.run_id,
        )
        if verdict is not None:  # a trial without a verdict never finished: in_grid_order says so
            record.diagnosis = diagnose(record.history, workload.metric, workload.mode, record.error, workload.thresholds)
        found[record.key] = record
    sweep_id = parent.info.run_name
    sweep_dir = new_sweep_dir(out_root, f"{sweep_id}-report")
    report.write_atomically(sweep_dir / "spec.yaml", yaml.safe_dump(spec.document, sort_keys=False))
    document = write_report(spec, workload, in_grid_order(spec, found), sweep_dir, sweep_id,
                            {"rebuilt from": f"{tracking_uri}, parent run {parent.info.run_id}"})
    return SweepOutcome(sweep_id, sweep_dir, parent.info.run_id, document)
