"""Where a sweep is mirrored besides its folder: the two protocols the driver and the runner call, and the
backends behind them.

The sweep folder is the source of truth; a mirror only copies it somewhere to compare and browse. A backend
implements `Mirror` (what the driver calls once per sweep: sync the finished trials, attach the outputs,
end the sweep) and hands out a `TrialSink` for each round of trials (what the runner calls as trials start,
report and end; it must never make a trial wait). Two backends:
- MLflow (`sweeper.tracking.MlflowMirror`, the default: a SQLite file or a tracking server);
- none (`NoMirror`, `--tracking-uri none`): nothing is written anywhere but the folder, and no store is
  made; `sweeper sync FOLDER --tracking-uri URI` mirrors the folder to MLflow later.
A backend that cannot be reached says so by returning None or False; the sweep goes on without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from sweeper.records import TrialRecord
from sweeper.results import Ranking
from sweeper.spec import SweepSpec
from sweeper.stores import TRACKING_OFF
from sweeper.workload import Workload


class TrialSink(Protocol):
    """A round's trials as they happen (called from Ray Tune's callbacks on the driver: each call returns at
    once). `close` waits until everything handed over is written, or given up for `Mirror.sync`."""

    def trial_started(self, record: TrialRecord, workload: str) -> None: ...

    def trial_reported(self, record: TrialRecord, step: int, report: dict[str, Any]) -> None: ...

    def trial_ended(self, record: TrialRecord, metric: str) -> None: ...

    def close(self) -> None: ...


class Mirror(Protocol):
    """One sweep's copy somewhere else than its folder."""

    @property
    def tracking_uri(self) -> str:
        """Where the copy is, as the user named it (`none` for no copy)."""
        ...

    @property
    def parent_run_id(self) -> str | None:
        """The sweep's own run there, once known."""
        ...

    @property
    def experiment_id(self) -> str | None: ...

    def report_context(self) -> dict[str, str]:
        """Lines for the report's introduction: where the sweep is mirrored, and a link to browse it."""
        ...

    def live(self) -> TrialSink:
        """A sink for the next round's trials."""
        ...

    def sync(self, records: Sequence[TrialRecord]) -> int | None:
        """Make the copy hold exactly these finished trials; the number of trials rewritten, or None if the
        backend cannot be reached (nothing is lost: the folder keeps every trial)."""
        ...

    def attach(self, ranking: Ranking | None) -> bool:
        """The folder's spec and output files, and the ranking's statistics (None: the analysis failed), on
        the sweep's copy; whether the backend has them."""
        ...

    def end(self, status: str, summary: dict[str, float]) -> bool:
        """End the sweep's copy with `status` (FINISHED, KILLED or FAILED) and its summary numbers."""
        ...


class _NoSink:
    def trial_started(self, record: TrialRecord, workload: str) -> None:
        pass

    def trial_reported(self, record: TrialRecord, step: int, report: dict[str, Any]) -> None:
        pass

    def trial_ended(self, record: TrialRecord, metric: str) -> None:
        pass

    def close(self) -> None:
        pass


class NoMirror:
    """No copy: the sweep lives in its folder alone (`--tracking-uri none`)."""

    tracking_uri = TRACKING_OFF
    parent_run_id = None
    experiment_id = None

    def __init__(self, sweep_dir: Path):
        self.sweep_dir = sweep_dir

    def report_context(self) -> dict[str, str]:
        return {
            "tracking": f"none: this sweep ran without MLflow (`sweeper sync {self.sweep_dir} --tracking-uri URI` "
            "mirrors it later)"
        }

    def live(self) -> TrialSink:
        return _NoSink()

    def sync(self, records: Sequence[TrialRecord]) -> int | None:
        return 0

    def attach(self, ranking: Ranking | None) -> bool:
        return True

    def end(self, status: str, summary: dict[str, float]) -> bool:
        return True


def open_mirror(tracking_uri: str, spec: SweepSpec, workload: Workload, sweep_dir: Path, sweep_id: str) -> Mirror:
    """The sweep's mirror at `tracking_uri`: none for TRACKING_OFF, else MLflow (imported only then)."""
    if tracking_uri == TRACKING_OFF:
        return NoMirror(sweep_dir)
    from sweeper.tracking import MlflowMirror

    return MlflowMirror(tracking_uri, spec, workload, sweep_dir, sweep_id)
