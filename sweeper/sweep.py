"""The driver of a sweep: its folder, MLflow parent run, Ray trials, analysis and outputs; and resuming,
syncing and rebuilding a sweep."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import SweeperError
from sweeper.health import diagnose
from sweeper.progress import SweepProgress
from sweeper.records import (
    SWEEP_FILE,
    UNFINISHED,
    TrialRecord,
    in_grid_order,
    load_sweep_meta,
    load_trials,
    save_sweep_meta,
    trial_key,
    write_atomically,
)
from sweeper.spec import SweepSpec, load_specs
from sweeper.workload import Workload, load

OUTPUT_FILES = ("trials.csv", "ranking.json", "report.md", "report.html")


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    sweep_dir: Path
    parent_run_id: str | None
    ranking: dict[str, Any]
    unfinished: int = 0


def new_sweep_dir(out_root: Path, name: str) -> Path:
    """`<out_root>/<name>-<UTC time>`, never an existing folder: no earlier result is overwritten."""
    stem = f"{name}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    sweep_dir, suffix = out_root / stem, 1
    while sweep_dir.exists():
        suffix += 1
        sweep_dir = out_root / f"{stem}-{suffix}"
    sweep_dir.mkdir(parents=True)
    return sweep_dir


def _tracker(spec: SweepSpec, workload: Workload, tracking_uri: str, sweep_id: str):
    from sweeper.tracking import SweepTracker

    return SweepTracker(tracking_uri, spec.name, sweep_id, spec.base_overrides(workload))


def _parent_fields(spec: SweepSpec, sweep_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from sweeper.tracking import TAG_WORKLOAD

    params = {"workload": spec.workload, "seeds": spec.seeds, "smoke": spec.smoke, "grid": spec.grid,
              "fixed": spec.fixed, "spec_file": str(spec.path)}
    return params, {TAG_WORKLOAD: spec.workload, "sweeper.output": str(sweep_dir.resolve())}


def run_sweep(
    spec: SweepSpec,
    *,
    out_root: Path,
    tracking_uri: str,
    address: str | None = None,
    max_concurrent: int | None = None,
    max_retries: int = 2,
    early_stop: bool = True,
) -> SweepOutcome:
    workload = load(spec.workload)
    runner = _start_ray(address)
    runner.check_cluster(spec, tracking_uri)  # before anything is written
    sweep_dir = new_sweep_dir(out_root, spec.name)
    sweep_id = sweep_dir.name
    write_atomically(sweep_dir / "spec.yaml", yaml.safe_dump(spec.document, sort_keys=False))
    save_sweep_meta(sweep_dir, {"sweep_id": sweep_id, "name": spec.name, "workload": spec.workload,
                                "tracking_uri": tracking_uri})
    tracker = _tracker(spec, workload, tracking_uri, sweep_id)
    wall_seconds = _run_trials(spec, workload, sweep_dir, tracker, max_concurrent=max_concurrent,
                               max_retries=max_retries, early_stop=early_stop)
    return _finish(spec, workload, sweep_dir, tracker, wall_seconds)


def _run_trials(spec: SweepSpec, workload: Workload, sweep_dir: Path, tracker, *, done: int = 0, **options) -> float:
    """Run (or resume) the trials on Ray with the console display, MLflow written from a thread of its own
    (`TrialMirror`); the wall seconds it took."""
    from sweeper import runner
    from sweeper.tracking import TrialMirror

    started = time.perf_counter()
    mirror = TrialMirror(tracker, sweep_dir, _parent_fields(spec, sweep_dir))
    try:
        with SweepProgress(tracker.sweep_id, spec.trial_count, workload.metric, workload.mode, done=done) as display:
            runner.run_trials(spec, sweep_dir=sweep_dir, mirror=mirror, display=display, **options)
    finally:
        mirror.close()
    return time.perf_counter() - started


def _start_ray(address: str | None):
    """The runner module, with Ray started. Ray and MLflow are imported only now, after the spec has been
    validated without them; Ray takes seconds to start its processes, and the driver's own heavy imports
    (MLflow, matplotlib for the report) load meanwhile on another thread."""
    preload = threading.Thread(target=_import_driver_modules, daemon=True)
    preload.start()
    from sweeper import runner

    runner.start_ray(address)
    preload.join()
    return runner


def _import_driver_modules() -> None:
    import sweeper.tracking  # noqa: F401
    from sweeper import report

    report.pyplot()


def _open_sweep(sweep_dir: Path, tracking_uri: str | None):
    """An existing sweep folder's spec, workload and MLflow tracker (its own store unless told otherwise)."""
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise SweeperError(f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE})")
    meta = load_sweep_meta(sweep_dir)
    (spec,) = load_specs(sweep_dir / "spec.yaml")
    workload = load(spec.workload)
    return spec, workload, _tracker(spec, workload, tracking_uri or meta["tracking_uri"], meta["sweep_id"])


def resume_sweep(sweep_dir: Path, *, address: str | None = None, tracking_uri: str | None = None) -> SweepOutcome:
    """Finish a sweep whose driver died: finished trials are kept, the rest run; MLflow gets no duplicates."""
    spec, workload, tracker = _open_sweep(sweep_dir, tracking_uri)
    runner = _start_ray(address)
    runner.check_cluster(spec, tracker.tracking_uri)
    done = len(load_trials(sweep_dir, spec))
    wall_seconds = 0.0
    if done < spec.trial_count:
        if not runner.can_resume(sweep_dir):
            raise SweeperError(f"{sweep_dir}: Ray Tune left no experiment state to resume from")
        wall_seconds = _run_trials(spec, workload, sweep_dir, tracker, done=done, resume=True)
    return _finish(spec, workload, sweep_dir, tracker, wall_seconds)


def sync_sweep(sweep_dir: Path, *, tracking_uri: str | None = None) -> tuple[int, str]:
    """Replay into MLflow whatever a sweep folder has and MLflow lacks; (trials replayed, tracking URI)."""
    spec, workload, tracker = _open_sweep(sweep_dir, tracking_uri)
    replayed = _mirror(spec, workload, sweep_dir, tracker, load_trials(sweep_dir, spec))
    if replayed is None:
        raise SweeperError(f"--tracking-uri: MLflow at {tracker.tracking_uri} cannot be reached; nothing was replayed")
    return replayed, tracker.tracking_uri


def _mirror(spec, workload, sweep_dir: Path, tracker, found: dict[str, TrialRecord]) -> int | None:
    """Bring MLflow up to date with the sweep folder: parent run, missing trials, output files."""
    if tracker.ensure_parent(*_parent_fields(spec, sweep_dir)) is None:
        return None
    replayed = tracker.sync([found[key] for key in sorted(found)], spec.workload, workload.metric)
    if replayed is None:
        return None
    outputs = [sweep_dir / name for name in ("spec.yaml", *OUTPUT_FILES) if (sweep_dir / name).exists()]
    plots = sweep_dir / "plots"
    if not tracker.log_files(outputs, plots=plots if plots.is_dir() else None):
        return None
    return replayed


def _finish(spec: SweepSpec, workload: Workload, sweep_dir: Path, tracker, wall_seconds: float) -> SweepOutcome:
    found = load_trials(sweep_dir, spec)
    records = in_grid_order(spec, found)
    unfinished = sum(r.diagnosis.reason == UNFINISHED for r in records)
    context = {"tracking": f"{tracker.tracking_uri}, experiment {spec.name}"}
    document = write_report(spec, workload, records, sweep_dir, tracker.sweep_id, context)
    replayed = _mirror(spec, workload, sweep_dir, tracker, found)
    summary = {"wall_seconds": wall_seconds, "trials": float(spec.trial_count), **document["compute"]}
    status = "KILLED" if unfinished else "FINISHED"
    if replayed is None or not tracker.end_sweep(status, summary):
        print(f"warning: MLflow at {tracker.tracking_uri} is behind this sweep; `sweeper sync {sweep_dir}` "
              "brings it up to date")
    return SweepOutcome(tracker.sweep_id, sweep_dir, tracker.parent_run_id, document, unfinished)


def write_report(spec: SweepSpec, workload: Workload, records: list[TrialRecord], sweep_dir: Path, sweep_id: str,
                 context: dict[str, str]) -> dict[str, Any]:
    """Analyse the records and write every output file; returns the ranking document."""
    from sweeper import report  # numpy, scipy: loaded while Ray starts (`_start_ray`), not before

    document = report.analyze(spec, workload, records, sweep_id)
    rows = report.trial_rows(spec, workload.metric, records)
    report.write_outputs(sweep_dir, document, records, rows,
                         {"description": spec.description, "spec": str(spec.path), **context})
    return document


def rebuild_sweep(ref: str, *, tracking_uri: str, out_root: Path, claims_from: Path | None = None) -> SweepOutcome:
    """Every output of a sweep, rebuilt from its MLflow runs alone: the spec artifact of the parent run and
    each child run's params, tags and metric histories; every trial is diagnosed again from its history.
    `claims_from`: a spec file whose sweep of the same name brings claims to judge (added after the run)."""
    from sweeper.tracking import TAG_ATTEMPTS, TAG_POINT, TAG_REASON, TAG_VERDICT, TAG_WORKER, load_sweep

    with tempfile.TemporaryDirectory() as scratch:
        loaded = load_sweep(tracking_uri, ref, Path(scratch))
        if loaded is None:
            raise SweeperError(f"{ref}: no sweep with this sweep id or parent run id in {tracking_uri}")
        parent, spec_path, stored = loaded
        (spec,) = load_specs(spec_path)
    if claims_from is not None:
        spec = _with_claims_from(spec, claims_from)
    workload = load(spec.workload)
    points = {point.label: point for point in spec.points}
    found = {}
    for trial in stored:
        point, seed = points.get(trial.tags.get(TAG_POINT)), int(trial.params["seed"])
        verdict = trial.tags.get(TAG_VERDICT)
        if point is None or verdict is None:  # a trial without a verdict never finished: in_grid_order says so
            continue
        record = TrialRecord(
            key=trial_key(point.label, seed), point=point, seed=seed, history=trial.history,
            error=trial.tags.get(TAG_REASON) if verdict == "error" else None,
            train_seconds=trial.summary.get("train_seconds", 0.0), worker=trial.tags.get(TAG_WORKER, ""),
            attempts=int(trial.tags.get(TAG_ATTEMPTS, 1)), run_id=trial.run_id,
        )
        record.diagnosis = diagnose(record.history, workload.metric, workload.mode, record.error, workload.thresholds)
        found[record.key] = record
    sweep_id = parent.info.run_name
    sweep_dir = new_sweep_dir(out_root, f"{sweep_id}-report")
    write_atomically(sweep_dir / "spec.yaml", yaml.safe_dump(spec.document, sort_keys=False))
    document = write_report(spec, workload, in_grid_order(spec, found), sweep_dir, sweep_id,
                            {"rebuilt from": f"{tracking_uri}, parent run {parent.info.run_id}"})
    return SweepOutcome(sweep_id, sweep_dir, parent.info.run_id, document)


def _with_claims_from(spec: SweepSpec, path: Path) -> SweepSpec:
    """The sweep as run, with the claims of the sweep of the same name and grid in another spec file."""
    matching = [other for other in load_specs(path) if other.name == spec.name]
    if not matching:
        raise SweeperError(f"{path}: no sweep named {spec.name!r} to take claims from")
    (other,) = matching
    if (other.workload, other.grid, other.fixed, other.smoke) != (spec.workload, spec.grid, spec.fixed, spec.smoke):
        raise SweeperError(f"{path}: {spec.name}: its workload, grid or fixed knobs differ from the sweep as run")
    return dataclasses.replace(spec, claims=other.claims, document={**spec.document, "claims": other.document.get("claims", [])})
