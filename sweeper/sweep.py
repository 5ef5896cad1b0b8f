"""The driver of one sweep: output folder, MLflow parent run, Ray trials, ranking, outputs."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper import ranking, report
from sweeper.progress import SweepProgress
from sweeper.spec import SweepSpec
from sweeper.workload import load

if TYPE_CHECKING:
    from sweeper.runner import TrialRecord


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    sweep_dir: Path
    parent_run_id: str
    ranking: dict[str, Any]


def new_sweep_id(name: str) -> str:
    return f"{name}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"


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
    sweep_id = new_sweep_id(spec.name)
    sweep_dir = out_root / sweep_id
    suffix = 1
    while sweep_dir.exists():  # two sweeps of one name in the same second: never reuse a folder
        suffix += 1
        sweep_dir = out_root / f"{sweep_id}-{suffix}"
    sweep_id = sweep_dir.name
    sweep_dir.mkdir(parents=True)

    tracker = SweepTracker(tracking_uri)
    parent_run_id = tracker.start_sweep(
        experiment=spec.name,
        sweep_id=sweep_id,
        params={
            "workload": spec.workload,
            "seeds": spec.seeds,
            "smoke": spec.smoke,
            "grid": spec.grid,
            "fixed": spec.fixed,
            "spec_file": str(spec.path),
        },
        tags={TAG_WORKLOAD: spec.workload, "sweeper.output": str(sweep_dir.resolve())},
    )
    started = time.perf_counter()
    status = "FAILED"
    try:
        with SweepProgress(sweep_id, spec.trial_count, workload.metric, workload.mode) as display:
            records = runner.run_trials(
                spec, sweep_id=sweep_id, sweep_dir=sweep_dir, tracker=tracker, display=display,
                max_concurrent=max_concurrent,
            )
        rows = [_trial_row(spec, workload.metric, record) for record in records]
        outcomes = [
            ranking.TrialOutcome(
                label=r.point.label, is_baseline=r.point.is_baseline, seed=r.seed, verdict=r.diagnosis.verdict,
                final_metric=r.final(workload.metric), final_loss=r.final("loss"), knobs=r.point.knobs,
            )
            for r in records
        ]
        document = report.ranking_document(
            spec, sweep_id, workload.metric, workload.mode, ranking.rank_points(outcomes, workload.mode)
        )
        context = {
            "description": spec.description,
            "spec": f"`{spec.path}`",
            "tracking": f"`{tracking_uri}`, experiment `{spec.name}`, parent run `{parent_run_id}`",
        }
        report.write_outputs(sweep_dir, document, rows, context)
        tracker.log_artifacts(sweep_dir)
        status = "FINISHED"
    finally:
        wall = time.perf_counter() - started
        tracker.end_sweep(status, {"wall_seconds": wall, "trials": float(spec.trial_count)})
    return SweepOutcome(sweep_id, sweep_dir, parent_run_id, document)


def _trial_row(spec: SweepSpec, metric: str, record: TrialRecord) -> dict[str, Any]:
    def clean(value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None

    return {
        "trial_key": record.key,
        "workload": spec.workload,
        "point": record.point.label,
        "is_baseline": record.point.is_baseline,
        **{knob: record.point.knobs[knob] for knob in spec.grid},
        "seed": record.seed,
        "verdict": record.diagnosis.verdict,
        "reason": record.diagnosis.reason,
        "steps": len(record.history),
        "stopped_early": record.stopped_early,
        "final_loss": record.final("loss"),
        "final_metric": record.final(metric),
        "chance": clean(record.final("chance")),
        "oracle": clean(record.final("oracle")),
        "train_seconds": round(record.train_seconds, 3),
        "worker": record.worker,
        "mlflow_run_id": record.run_id,
    }
