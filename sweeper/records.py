"""What a sweep knows about one trial, whichever way it was learned: live from Ray, or rebuilt from MLflow."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sweeper.health import Diagnosis
from sweeper.spec import GridPoint, SweepSpec

UNFINISHED = "the sweep ended before this trial finished"


def trial_key(label: str, seed: int) -> str:
    """Deterministic name of a trial: its grid point and seed."""
    return f"{label}|seed={seed}"


@dataclass
class TrialRecord:
    key: str
    point: GridPoint
    seed: int
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every report of the workload, in order."""
    error: str | None = None
    train_seconds: float = 0.0
    """Seconds from the start of the workload's `train` to its last report."""
    worker: str = ""
    """node_ip:pid of the Ray worker process that ran the trial (reused workers run many trials)."""
    run_id: str | None = None
    diagnosis: Diagnosis | None = None

    def final(self, name: str) -> float | None:
        value = self.history[-1].get(name) if self.history else None
        return float(value) if isinstance(value, int | float) else None

    def finite_final(self, name: str) -> float | None:
        value = self.final(name)
        return value if value is not None and math.isfinite(value) else None


def in_grid_order(spec: SweepSpec, found: dict[str, TrialRecord]) -> list[TrialRecord]:
    """One record per grid point and seed, in grid order; a trial that never finished is an `error`."""
    records = []
    for point in spec.points:
        for seed in range(spec.seeds):
            key = trial_key(point.label, seed)
            record = found.get(key) or TrialRecord(key=key, point=point, seed=seed)
            if record.diagnosis is None:
                record.diagnosis = Diagnosis("error", UNFINISHED)
            records.append(record)
    return records
