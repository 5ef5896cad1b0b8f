"""What a sweep knows about its trials, and the sweep folder's layout: the one place that names its files.

A sweep folder (`<out>/<name>-<UTC time>-<6 random hex digits>/`, its name the sweep id) holds:

    spec.yaml      the sweep's spec as run (one document, its name and seeds resolved)
    sweep.json     sweep id, workload, tracking URI and the run options `resume` reuses
    trials/        one JSON file per finished trial, written before MLflow hears of it
    tune/          Ray Tune's scratch state of the latest run of the sweep (not a result)
    trials.csv, ranking.json, report.md, report.html, plots/    the outputs, rebuilt from trials/

Beside the sweep folders, each `sweeper run` invocation writes a plan file `<spec stem>-<UTC time>.plan.json`
listing the sweep folders it made (all of them made up front, so a sweep that never started is recorded
too): `sweeper resume <out>` finishes every unfinished sweep of every plan there.

The sweep folder is the source of truth, MLflow a mirror that `sweeper sync` can always bring up to date,
and `sweeper resume` knows from `trials/` which trials are done.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError
from sweeper.health import Diagnosis
from sweeper.spec import GridPoint, SweepSpec

UNFINISHED = "the sweep ended before this trial finished"
SPEC_FILE = "spec.yaml"
SWEEP_FILE = "sweep.json"
TRIALS_DIR = "trials"
TUNE_DIR = "tune"
PLOTS_DIR = "plots"
TRIALS_CSV, RANKING_FILE, REPORT_MD, REPORT_HTML = "trials.csv", "ranking.json", "report.md", "report.html"
OUTPUT_FILES = (TRIALS_CSV, RANKING_FILE, REPORT_MD, REPORT_HTML)
PLAN_SUFFIX = ".plan.json"


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
    started: float | None = None
    """When the trial started on its worker, in seconds since the epoch (None in trial files written before
    this was kept): with `train_seconds`, when its slot was busy."""
    worker: str = ""
    """node:pid of the Ray worker process that ran the trial (reused workers run many trials)."""
    attempts: int = 1
    """How many times the trial was started (more than one after a lost worker or node)."""
    run_id: str | None = None
    diagnosis: Diagnosis | None = None

    @property
    def verdict(self) -> str:
        return self._diagnosed().verdict

    @property
    def reason(self) -> str:
        return self._diagnosed().reason

    def _diagnosed(self) -> Diagnosis:
        if self.diagnosis is None:
            raise ValueError(f"{self.key}: the trial is read before it is diagnosed")
        return self.diagnosis

    def final(self, name: str) -> float | None:
        value = self.history[-1].get(name) if self.history else None
        return float(value) if isinstance(value, int | float) else None

    def finite_final(self, name: str) -> float | None:
        value = self.final(name)
        return value if value is not None and math.isfinite(value) else None

    @property
    def finite_train_seconds(self) -> float | None:
        """The trial's training seconds; None where the record holds no finite number (a store that lost it)."""
        return self.train_seconds if math.isfinite(self.train_seconds) else None


def in_grid_order(
    spec: SweepSpec, found: dict[str, TrialRecord], planned: list[tuple[GridPoint, int]]
) -> list[TrialRecord]:
    """Every found trial and every planned one, in grid order, then by seed; a planned trial that never
    finished is an `error` whose reason is UNFINISHED."""
    records = dict(found)
    for point, seed in planned:
        key = trial_key(point.label, seed)
        if key not in records:
            records[key] = TrialRecord(key=key, point=point, seed=seed, diagnosis=Diagnosis("error", UNFINISHED))
    order = {point.label: index for index, point in enumerate(spec.points)}
    return sorted(records.values(), key=lambda r: (order.get(r.point.label, len(order)), r.seed))


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
        "verdict": record.verdict,
        "reason": record.reason,
        "error": record.error,
        "train_seconds": record.train_seconds,
        "started": record.started,
        "worker": record.worker,
        "attempts": record.attempts,
        "run_id": record.run_id,
        "history": record.history,
    }
    # NaN and infinities are results here (a diverged loss), so they are kept as JSON's NaN / Infinity.
    write_atomically(_trial_file(sweep_dir, record.key), json.dumps(document))


def load_trials(sweep_dir: Path, spec: SweepSpec) -> dict[str, TrialRecord]:
    """The finished trials of a sweep, from its own storage. A trial file that cannot be read (cut short by
    a crash on a filesystem without atomic rename) is named in a warning and left out: its trial runs again."""
    points = {point.label: point for point in spec.points}
    found = {}
    for document in _trial_documents(sweep_dir):
        point = points.get(document["label"])
        if point is None:
            continue
        found[document["key"]] = TrialRecord(
            key=document["key"],
            point=point,
            seed=document["seed"],
            history=document["history"],
            error=document["error"],
            train_seconds=document["train_seconds"],
            started=document.get("started"),
            worker=document["worker"],
            attempts=document["attempts"],
            run_id=document["run_id"],
            diagnosis=Diagnosis(document["verdict"], document["reason"]),
        )
    return found


def finished_keys(sweep_dir: Path) -> set[str]:
    """The keys of the trials the sweep folder holds a readable result for."""
    return {document["key"] for document in _trial_documents(sweep_dir, quiet=True)}


_TRIAL_FIELDS = (
    "key",
    "label",
    "seed",
    "verdict",
    "reason",
    "error",
    "train_seconds",
    "worker",
    "attempts",
    "run_id",
    "history",
)


def _trial_documents(sweep_dir: Path, quiet: bool = False) -> Iterable[dict[str, Any]]:
    for path in sorted((sweep_dir / TRIALS_DIR).glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(document, dict) or any(name not in document for name in _TRIAL_FIELDS):
                raise ValueError("fields are missing")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if not quiet:
                print(
                    f"warning: {path}: unreadable trial file ({str(exc).splitlines()[0][:120]}); its trial "
                    "counts as not finished and runs again on `sweeper resume`",
                    file=sys.stderr,
                )
            continue
        yield document


def save_sweep_meta(sweep_dir: Path, meta: dict[str, Any]) -> None:
    write_atomically(sweep_dir / SWEEP_FILE, json.dumps(meta, indent=2) + "\n")


def load_sweep_meta(sweep_dir: Path) -> dict[str, Any]:
    return json.loads((sweep_dir / SWEEP_FILE).read_text())


def is_sweep_folder(path: Path) -> bool:
    return (path / SWEEP_FILE).is_file()


def is_complete(sweep_dir: Path) -> bool:
    """The sweep's outputs were written with no trial its design wants unfinished (the analysis counts them:
    how many seeds an adaptive design runs is known only from the trials)."""
    try:
        return json.loads((sweep_dir / RANKING_FILE).read_text(encoding="utf-8")).get("unfinished") == 0
    except (OSError, UnicodeDecodeError, ValueError):  # no outputs yet, or cut short: analyse again
        return False


# --- plan files: the sweeps one `sweeper run` invocation set out to run ---
def write_plan(out_root: Path, stem: str, sweep_dirs: list[Path]) -> Path:
    """A new plan file `<out_root>/<stem><PLAN_SUFFIX>` (never an existing one) naming the sweep folders."""
    path, suffix = out_root / f"{stem}{PLAN_SUFFIX}", 1
    while path.exists():
        suffix += 1
        path = out_root / f"{stem}-{suffix}{PLAN_SUFFIX}"
    write_atomically(path, json.dumps({"sweeps": [d.name for d in sweep_dirs]}, indent=2) + "\n")
    return path


def planned_sweep_dirs(out_root: Path) -> list[Path]:
    """The sweep folders of every plan file in `out_root`, oldest plan first, each once; plans that cannot be
    read are named in an error."""
    folders: list[Path] = []
    for plan in sorted(out_root.glob(f"*{PLAN_SUFFIX}"), key=lambda path: (path.stat().st_mtime, path.name)):
        try:
            names = json.loads(plan.read_text(encoding="utf-8"))["sweeps"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise SweeperError(f"{plan}: unreadable plan file ({str(exc).splitlines()[0][:120]})") from None
        folders += [out_root / name for name in names if out_root / name not in folders]
    return folders
