"""What a sweep knows about its trials, and the sweep's own storage of it.

Every finished trial is written to `<sweep dir>/trials/<id>.json` before MLflow hears of it: the sweep
folder is the source of truth, MLflow a mirror that `sweeper sync` can always bring up to date, and
`sweeper resume` knows from these files which trials are done.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.health import Diagnosis
from sweeper.spec import GridPoint, SweepSpec

UNFINISHED = "the sweep ended before this trial finished"
TRIALS_DIR = "trials"
SWEEP_FILE = "sweep.json"


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
    """node:pid of the Ray worker process that ran the trial (reused workers run many trials)."""
    attempts: int = 1
    """How many times the trial was started (more than one after a lost worker or node)."""
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


# --- the sweep's own storage ---
def write_atomically(path: Path, data: str | bytes) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.chmod(temporary, 0o644)  # mkstemp makes the file private; outputs are meant to be shared
    os.replace(temporary, path)


def _trial_file(sweep_dir: Path, key: str) -> Path:
    return sweep_dir / TRIALS_DIR / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def save_trial(sweep_dir: Path, record: TrialRecord) -> None:
    (sweep_dir / TRIALS_DIR).mkdir(exist_ok=True)
    document = {
        "key": record.key,
        "label": record.point.label,
        "seed": record.seed,
        "verdict": record.diagnosis.verdict,
        "reason": record.diagnosis.reason,
        "error": record.error,
        "train_seconds": record.train_seconds,
        "worker": record.worker,
        "attempts": record.attempts,
        "run_id": record.run_id,
        "history": record.history,
    }
    # NaN and infinities are results here (a diverged loss), so they are kept as JSON's NaN / Infinity.
    write_atomically(_trial_file(sweep_dir, record.key), json.dumps(document))


def load_trials(sweep_dir: Path, spec: SweepSpec) -> dict[str, TrialRecord]:
    """The finished trials of a sweep, from its own storage."""
    points = {point.label: point for point in spec.points}
    found = {}
    for path in sorted((sweep_dir / TRIALS_DIR).glob("*.json")):
        document = json.loads(path.read_text())
        point = points.get(document["label"])
        if point is None:
            continue
        found[document["key"]] = TrialRecord(
            key=document["key"], point=point, seed=document["seed"], history=document["history"],
            error=document["error"], train_seconds=document["train_seconds"], worker=document["worker"],
            attempts=document["attempts"], run_id=document["run_id"],
            diagnosis=Diagnosis(document["verdict"], document["reason"]),
        )
    return found


def finished_keys(sweep_dir: Path) -> set[str]:
    """The keys of the trials the sweep folder holds a result for."""
    return {json.loads(path.read_text())["key"] for path in (sweep_dir / TRIALS_DIR).glob("*.json")}


def save_sweep_meta(sweep_dir: Path, meta: dict[str, Any]) -> None:
    write_atomically(sweep_dir / SWEEP_FILE, json.dumps(meta, indent=2) + "\n")


def load_sweep_meta(sweep_dir: Path) -> dict[str, Any]:
    return json.loads((sweep_dir / SWEEP_FILE).read_text())
