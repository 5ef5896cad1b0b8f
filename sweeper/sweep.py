"""The driver of a sweep: its folder, its mirror (MLflow, or none), its Ray trials round by round, its analysis
and outputs; and resuming, syncing and rebuilding a sweep. `OpenSweep` carries one sweep through it."""

from __future__ import annotations

import dataclasses
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import yaml

from sweeper.errors import SweeperError
from sweeper.health import diagnose
from sweeper.mirror import Mirror, TrialSink, open_mirror
from sweeper.progress import SweepProgress
from sweeper.records import (
    PLAN_SUFFIX,
    RANKING_FILE,
    SPEC_FILE,
    SWEEP_FILE,
    UNFINISHED,
    TrialRecord,
    in_grid_order,
    is_complete,
    is_sweep_folder,
    load_sweep_meta,
    load_trials,
    planned_sweep_dirs,
    save_sweep_meta,
    trial_key,
    write_atomically,
    write_plan,
)
from sweeper.results import Ranking
from sweeper.spec import GridPoint, SweepSpec, load_specs
from sweeper.stores import TRACKING_OFF, is_local_store, runs_link
from sweeper.workload import Workload, load


@dataclass(frozen=True)
class RunOptions:
    """How a sweep's trials run; kept in sweep.json so `resume` runs the rest the same way."""

    max_concurrent: int | None = None
    max_retries: int = 2
    early_stop: bool = True


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    sweep_dir: Path
    parent_run_id: str | None
    ranking: Ranking | None
    """None when the analysis failed (`analysis_error`)."""
    unfinished: int = 0
    analysis_error: Exception | None = None
    """Why the analysis of the finished trials failed; the trials stay, `sweeper report DIR` retries."""
    experiment_id: str | None = None
    """The sweep's MLflow experiment, where it was reached."""
    tracking_uri: str = TRACKING_OFF
    """Where the sweep is mirrored (`none`: nowhere but its folder)."""


def new_sweep_dir(out_root: Path, name: str) -> Path:
    """`<out_root>/<name>-<UTC time>-<6 random hex digits>`, never an existing folder: no earlier result is
    overwritten. The folder's name is the sweep's id in MLflow, so it must differ between two runs started in
    the same second with other `--out` folders and one store: hence the random part."""
    stem = f"{name}-{_utc_stamp()}-{secrets.token_hex(3)}"
    sweep_dir, suffix = out_root / stem, 1
    while sweep_dir.exists():
        suffix += 1
        sweep_dir = out_root / f"{stem}-{suffix}"
    sweep_dir.mkdir(parents=True)
    return sweep_dir


def plan_sweeps(
    specs: list[SweepSpec],
    *,
    spec_file: Path,
    out_root: Path,
    tracking_uri: str,
    address: str | None,
    options: RunOptions,
) -> list[Path]:
    """Check that each sweep's workload can take every point's knobs (`Workload.check_remedies`), start Ray,
    check every sweep against the cluster, then make every sweep's folder and the plan file that lists them,
    so a killed run can be resumed from `out_root`, sweeps never started included. Nothing is written when a
    check fails."""
    for spec in specs:
        spec.check_remedies()
    runner = start_ray(address)
    for spec in specs:
        runner.check_cluster(spec, local_store=tracking_uri if is_local_store(tracking_uri) else None)
    folders = []
    for spec in specs:
        sweep_dir = new_sweep_dir(out_root, spec.name)
        write_atomically(sweep_dir / SPEC_FILE, yaml.safe_dump(_as_run(spec), sort_keys=False))
        save_sweep_meta(
            sweep_dir,
            {
                "sweep_id": sweep_dir.name,
                "name": spec.name,
                "workload": spec.workload,
                "tracking_uri": tracking_uri,
                "options": dataclasses.asdict(options),
            },
        )
        folders.append(sweep_dir)
    write_plan(out_root, f"{spec_file.stem}-{_utc_stamp()}", folders)
    return folders


def _as_run(spec: SweepSpec) -> dict[str, object]:
    """The spec's document with its name resolved (a document of a multi-sweep file may omit it)."""
    return {"name": spec.name, **spec.document}


def _utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class OpenSweep:
    """A sweep folder opened to run, analyse or mirror: what the driver carries for one sweep."""

    sweep_dir: Path
    sweep_id: str
    spec: SweepSpec
    workload: Workload
    mirror: Mirror
    options: RunOptions

    def missing(self, found: dict[str, TrialRecord]) -> list[tuple[GridPoint, int]]:
        """The (point, seed) trials its design wants now that `found` lacks."""
        from sweeper.analysis import planned_trials

        return [
            (point, seed)
            for point, seed in planned_trials(self.spec, self.workload, found)
            if trial_key(point.label, seed) not in found
        ]

    def sync_trials(self, found: dict[str, TrialRecord]) -> int | None:
        """Bring the mirror's trial runs up to date with the folder: the number of trials written again, or
        None when the mirror cannot be reached."""
        return self.mirror.sync([found[key] for key in sorted(found)])

    def attach(self, ranking: Ranking | None) -> bool:
        """The spec and the folder's outputs on the mirror, with the ranking's statistics: this analysis's,
        else the one the folder holds (the mirror copies the folder as it is)."""
        if ranking is None and (self.sweep_dir / RANKING_FILE).is_file():
            ranking = Ranking.loads((self.sweep_dir / RANKING_FILE).read_text())
        return self.mirror.attach(ranking)

    def analyse(self) -> tuple[SweepOutcome, bool]:
        """The mirror's trial runs brought up to date first (so trials.csv gets every final run id), then the
        analysis and its outputs, attached to the mirror; and whether the mirror has it all. An analysis that
        fails is returned, not raised: the trials are the expensive part, and they stay."""
        from sweeper.analysis import planned_trials
        from sweeper.outputs import write_report  # numpy, scipy: loaded while Ray starts (`start_ray`)

        found = load_trials(self.sweep_dir, self.spec)
        synced = self.sync_trials(found)
        records = in_grid_order(self.spec, found, planned_trials(self.spec, self.workload, found))
        unfinished = sum(r.reason == UNFINISHED for r in records)
        ranking, analysis_error = None, None
        try:
            ranking = write_report(
                self.spec, self.workload, records, self.sweep_dir, self.sweep_id, self.mirror.report_context()
            )
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the trials must not be lost to it
            analysis_error = exc
        mirrored = synced is not None and self.attach(ranking)
        outcome = SweepOutcome(
            self.sweep_id,
            self.sweep_dir,
            self.mirror.parent_run_id,
            ranking,
            unfinished,
            analysis_error,
            self.mirror.experiment_id,
            self.mirror.tracking_uri,
        )
        return outcome, mirrored

    def finish(self, wall_seconds: float) -> SweepOutcome:
        """Analyse the sweep and end its mirror as the folder stands: FINISHED, KILLED (trials unfinished) or
        FAILED (the analysis failed)."""
        outcome, mirrored = self.analyse()
        compute = dataclasses.asdict(outcome.ranking.compute) if outcome.ranking is not None else {}
        summary = {
            "wall_seconds": wall_seconds,
            "trials": float(len(load_trials(self.sweep_dir, self.spec))),
            **compute,
        }
        status = "KILLED" if outcome.unfinished else "FAILED" if outcome.analysis_error else "FINISHED"
        if not (mirrored and self.mirror.end(status, summary)):
            self.warn_behind()
        return outcome

    def say_interim(self, found: dict[str, TrialRecord], say: Callable[[str], object]) -> None:
        """Before a round that follows a look: what that look shows, provisional (`analysis.interim_answer`)."""
        from sweeper.analysis import interim_answer

        answer = interim_answer(self.spec, self.workload, found)
        if answer is not None:
            say(answer)

    def warn_behind(self) -> None:
        print(
            f"warning: MLflow at {self.mirror.tracking_uri} is behind this sweep; `sweeper sync {self.sweep_dir}` "
            "brings it up to date",
            file=sys.stderr,
        )


def open_sweep(sweep_dir: Path, tracking_uri: str | None = None) -> OpenSweep:
    """An existing sweep folder, with its mirror (the store it ran with unless told otherwise) and run options."""
    if not is_sweep_folder(sweep_dir):
        raise SweeperError(f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE})")
    meta = load_sweep_meta(sweep_dir)
    (spec,) = load_specs(sweep_dir / SPEC_FILE)
    workload = load(spec.workload)
    sweep_id = meta["sweep_id"]
    mirror = open_mirror(tracking_uri or meta["tracking_uri"], spec, workload, sweep_dir, sweep_id)
    return OpenSweep(sweep_dir, sweep_id, spec, workload, mirror, RunOptions(**meta.get("options", {})))


def run_sweeps(
    sweep_dirs: list[Path], *, address: str | None = None, tracking_uri: str | None = None
) -> list[SweepOutcome]:
    """Run every trial the sweeps' designs want that their folders do not hold yet (a new folder starts at
    the first look, a resumed one where its trial files say it stopped), then analyse, report and bring the
    mirror up to date for each sweep. All the sweeps share one Tuner, so one Ray session serves them and one
    sweep's trials fill the slots another's stragglers leave. A sweep's next round is planned as soon as its
    own round has ended, from its own finished trials (`analysis.planned_trials`, a pure function of its
    folder), so no sweep waits for another, and a killed driver resumes at the same round with the same plan.
    A sweep with no more rounds is analysed and reported while the others go on. A round that loses trials
    (interrupted, or trials lost past their retries) ends the planning of every sweep: each analysis says what
    is unfinished."""
    sweeps = [open_sweep(sweep_dir, tracking_uri) for sweep_dir in sweep_dirs]
    runner = start_ray(address)
    for sweep in sweeps:
        uri = sweep.mirror.tracking_uri
        runner.check_cluster(sweep.spec, local_store=uri if is_local_store(uri) else None)
    found = {sweep.sweep_dir: load_trials(sweep.sweep_dir, sweep.spec) for sweep in sweeps}
    started = time.perf_counter()
    finished: dict[Path, Future[SweepOutcome]] = {}
    # A sweep that runs no more rounds is analysed and reported on a thread of its own (one at a time:
    # matplotlib's pyplot is not thread-safe) while the other sweeps' rounds go on; its mirror's live sink
    # is drained there first.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-report") as reporter:

        def finish(sweep: OpenSweep, sink: TrialSink | None = None) -> None:
            seconds = time.perf_counter() - started

            def drained_then_finished() -> SweepOutcome:
                if sink is not None:
                    sink.close()
                return sweep.finish(seconds)

            finished[sweep.sweep_dir] = reporter.submit(drained_then_finished)

        first = []
        for sweep in sweeps:
            wanted = sweep.missing(found[sweep.sweep_dir])
            if wanted:
                first.append((sweep, wanted))
                sweep.say_interim(found[sweep.sweep_dir], lambda text: print(text, file=sys.stderr))
            else:
                finish(sweep)
        lost = False

        def next_round(
            sweep: OpenSweep, ran: list[tuple[GridPoint, int]], sink: TrialSink, say: Callable[[str], object]
        ) -> list[tuple[GridPoint, int]] | None:
            nonlocal lost
            found[sweep.sweep_dir] = load_trials(sweep.sweep_dir, sweep.spec)
            if lost or any(trial_key(point.label, seed) not in found[sweep.sweep_dir] for point, seed in ran):
                lost = True  # trials lost past their retries: no sweep runs another round
                return None
            wanted = sweep.missing(found[sweep.sweep_dir])
            if wanted:
                sweep.say_interim(found[sweep.sweep_dir], say)
            else:
                finish(sweep, sink)
            return wanted

        if first:
            run_round(first, found, options=first[0][0].options, of=len(sweeps), next_round=next_round)
        for sweep in sweeps:  # interrupted, or a round lost trials: each analysed as it stands
            if sweep.sweep_dir not in finished:
                finish(sweep)
        return [finished[sweep.sweep_dir].result() for sweep in sweeps]


def sweeps_to_resume(path: Path) -> list[Path]:
    """A sweep folder itself, or the unfinished sweeps of every plan in an output folder."""
    if is_sweep_folder(path):
        return [path]
    planned = planned_sweep_dirs(path) if path.is_dir() else []
    if not planned:
        raise SweeperError(
            f"{path}: neither a sweep folder (no {SWEEP_FILE}) nor an output folder with plan files (*{PLAN_SUFFIX})"
        )
    return [folder for folder in planned if not _finished(folder)]


def _finished(sweep_dir: Path) -> bool:
    if not is_sweep_folder(sweep_dir):
        raise SweeperError(f"{sweep_dir}: a plan names this sweep folder, but it is gone")
    return is_complete(sweep_dir)


def run_round(
    batches: list[tuple[OpenSweep, list[tuple[GridPoint, int]]]],
    found: dict[Path, dict[str, TrialRecord]],
    *,
    options: RunOptions,
    of: int = 1,
    next_round: Callable[
        [OpenSweep, list[tuple[GridPoint, int]], TrialSink, Callable[[str], object]], list[tuple[GridPoint, int]] | None
    ]
    | None = None,
) -> float:
    """Run the given trials of each sweep in `batches` (of `of` sweeps in the run) on one Tuner with the
    console display, each sweep's trials handed to its mirror as they happen, and with `next_round` each
    sweep's later rounds as its own round ends (given the sweep, the trials that ran, its mirror's live sink
    and a way to print above the display); the wall seconds it took. Ray must be started (`start_ray`);
    `found`: each sweep's finished trials, for the progress count."""
    from sweeper import runner

    started = time.perf_counter()
    sinks = {sweep.sweep_id: sweep.mirror.live() for sweep, _ in batches}
    by_id = {sweep.sweep_id: sweep for sweep, _ in batches}
    try:
        done = sum(len(found[sweep.sweep_dir]) for sweep, _ in batches)
        total = done + sum(len(trials) for _, trials in batches)  # planned so far; later rounds join as planned
        # The sweep's name, not its id: the plan line and the outputs line give the id; the status needs room.
        title = batches[0][0].spec.name if of == 1 else f"{len(batches)} of {of} sweeps"
        with SweepProgress(title, total, done=done) as display:
            planner = None
            if next_round is not None:
                plan = next_round

                def planner(sweep_id: str, ran: list[tuple[GridPoint, int]]) -> list[tuple[GridPoint, int]] | None:
                    return plan(by_id[sweep_id], ran, sinks[sweep_id], display.say)

            runner.run_trials(
                [
                    runner.Batch(sweep.sweep_id, sweep.spec, trials, sweep.sweep_dir, sinks[sweep.sweep_id])
                    for sweep, trials in batches
                ],
                display=display,
                next_round=planner,
                **dataclasses.asdict(options),
            )
    finally:
        for sink in sinks.values():
            sink.close()
    return time.perf_counter() - started


def start_ray(address: str | None) -> ModuleType:
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
    from sweeper import plots

    plots.pyplot()


def sync_sweep(sweep_dir: Path, *, tracking_uri: str | None = None) -> tuple[int, str]:
    """Bring the mirror to exactly what a sweep folder holds: every trial run that is missing, incomplete or
    duplicated is written again from its trial file; (trials replayed, tracking URI). A sweep that ran
    without a mirror (`--tracking-uri none`) is mirrored to the `tracking_uri` given, which its folder then
    keeps as its store (`report` and `resume` write there from then on)."""
    sweep = open_sweep(sweep_dir, tracking_uri)
    if sweep.mirror.tracking_uri == TRACKING_OFF:
        raise SweeperError(
            f"--tracking-uri: {sweep_dir} ran without MLflow (--tracking-uri none); name the store to mirror it "
            "to, e.g. --tracking-uri sqlite:///mlflow.db"
        )
    complete = is_complete(sweep_dir)
    unreachable = SweeperError(
        f"--tracking-uri: MLflow at {sweep.mirror.tracking_uri} cannot be reached; nothing was replayed"
    )
    replayed = sweep.sync_trials(load_trials(sweep_dir, sweep.spec))
    if replayed is None:
        raise unreachable
    if replayed and (sweep_dir / RANKING_FILE).is_file():  # trials.csv names the runs: rewrite the outputs
        mirrored = sweep.analyse()[1]
    else:
        mirrored = sweep.attach(None)
    # The sweep's run ends as the folder says; the sweep's own summary metrics are those it logged (if any).
    if not (mirrored and sweep.mirror.end("FINISHED" if complete else "KILLED", {})):
        raise unreachable
    meta = load_sweep_meta(sweep_dir)
    if meta["tracking_uri"] == TRACKING_OFF:
        save_sweep_meta(sweep_dir, {**meta, "tracking_uri": sweep.mirror.tracking_uri})
    return replayed, sweep.mirror.tracking_uri


def report_folder(sweep_dir: Path, *, tracking_uri: str | None = None, claims_from: Path | None = None) -> SweepOutcome:
    """Analyse a sweep folder's trials again and rewrite its outputs in place (after a failed analysis, or
    with claims added later), and attach them to the sweep's mirror."""
    sweep = open_sweep(sweep_dir, tracking_uri)
    if claims_from is not None:
        sweep = dataclasses.replace(sweep, spec=_with_claims_from(sweep.spec, claims_from))
    outcome, mirrored = sweep.analyse()
    if not mirrored:
        sweep.warn_behind()
    return outcome


def rebuild_sweep(ref: str, *, tracking_uri: str, out_root: Path, claims_from: Path | None = None) -> SweepOutcome:
    """Every output of a sweep, rebuilt from its MLflow runs alone: the spec artifact of the parent run and
    each child run's params, tags and metric histories; every trial is diagnosed again from its history.
    A finished trial whose run lacks reports is refused (`sweeper.tracking.run_is_complete`).
    `claims_from`: a spec file whose sweep of the same name brings claims to judge (added after the run)."""
    from sweeper.analysis import planned_trials
    from sweeper.outputs import write_report
    from sweeper.tracking import load_sweep

    if tracking_uri == TRACKING_OFF:
        raise SweeperError(f"--tracking-uri: {ref} is not a sweep folder, and there is no MLflow store to read it from")
    with tempfile.TemporaryDirectory() as scratch:
        stored = load_sweep(tracking_uri, ref, Path(scratch))
    if stored is None:
        raise SweeperError(f"{ref}: no sweep with this sweep id or parent run id in {tracking_uri}")
    if stored.incomplete:
        named = ", ".join(stored.incomplete[:3]) + (", ..." if len(stored.incomplete) > 3 else "")
        count = len(stored.incomplete)
        raise SweeperError(
            f"{ref}: incomplete MLflow runs for {count} finished trial{'s' if count > 1 else ''} "
            f"({named}) in {tracking_uri}; `sweeper sync <sweep folder>` completes them, or "
            "`sweeper report <sweep folder>` reports from the folder itself"
        )
    spec = stored.spec
    if claims_from is not None:
        spec = _with_claims_from(spec, claims_from)
    workload = load(spec.workload)
    for record in stored.trials.values():  # diagnosed again: the verdict tag is what an older version said
        record.diagnosis = diagnose(record.history, workload.metric, workload.mode, record.error, workload.thresholds)
    parent = stored.parent
    sweep_id = parent.info.run_name
    sweep_dir = new_sweep_dir(out_root, f"{sweep_id}-report")
    write_atomically(sweep_dir / SPEC_FILE, yaml.safe_dump(_as_run(spec), sort_keys=False))
    ranking = write_report(
        spec,
        workload,
        in_grid_order(spec, stored.trials, planned_trials(spec, workload, stored.trials)),
        sweep_dir,
        sweep_id,
        {
            "rebuilt from": f"{tracking_uri}, parent run {parent.info.run_id}",
            "MLflow runs": runs_link(tracking_uri, parent.info.experiment_id),
        },
    )
    return SweepOutcome(
        sweep_id,
        sweep_dir,
        parent.info.run_id,
        ranking,
        experiment_id=parent.info.experiment_id,
        tracking_uri=tracking_uri,
    )


def _with_claims_from(spec: SweepSpec, path: Path) -> SweepSpec:
    """The sweep as run, with the claims of the sweep of the same name and grid in another spec file."""
    matching = [other for other in load_specs(path) if other.name == spec.name]
    if not matching:
        raise SweeperError(f"{path}: no sweep named {spec.name!r} to take claims from")
    (other,) = matching
    as_run = (spec.workload, spec.grid, spec.vary, spec.fixed, spec.baseline, spec.smoke, spec.first_seed)
    if (other.workload, other.grid, other.vary, other.fixed, other.baseline, other.smoke, other.first_seed) != as_run:
        raise SweeperError(
            f"{path}: {spec.name}: its workload, grid, vary, first seed, fixed or baseline knobs differ from the "
            "sweep as run"
        )
    return dataclasses.replace(
        spec, claims=other.claims, document={**spec.document, "claims": other.document.get("claims", [])}
    )
