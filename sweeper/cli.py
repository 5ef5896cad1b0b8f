"""The `sweeper` command line: run, resume, doctor, validate, list, report, compare, sync, ui, server.

Why this module is long: it is one function per command, each declaring its options where typer parses them,
and the console's fitted tables; the work itself is in `sweeper.api`, `sweeper.sweep` and `sweeper.doctor`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer import rich_utils
from typer.core import TyperGroup, TyperOption

from sweeper import stores
from sweeper.doctor import DOCTOR_SEEDS
from sweeper.errors import SweeperError
from sweeper.spec import SweepSpec, load_specs, only_named

if TYPE_CHECKING:
    from sweeper.results import Ranking
    from sweeper.sweep import RunOptions, SweepOutcome

WORKFLOW_ORDER = ("doctor", "validate", "run", "resume", "report", "compare", "ui", "list", "sync", "server")
"""`--help` lists the commands in the order of the work: examine, check, run, read; then the tools."""


class _InWorkflowOrder(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        known = super().list_commands(ctx)
        return [name for name in WORKFLOW_ORDER if name in known] + [n for n in known if n not in WORKFLOW_ORDER]


_type_of = TyperOption.display_type_rich


def _no_type_for_flags(option: TyperOption, ctx: Any) -> str | None:
    """typer 0.29 under click 8.5 shows every flag as `--debug <bool>`, which reads as taking a value."""
    return None if option.is_flag else _type_of(option, ctx)


TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign, assignment]

app = typer.Typer(
    cls=_InWorkflowOrder,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Settle, with evidence, which remedy fixes a failing training run.",
)
OFF_TERMINAL_WIDTH = 160
"""Console width in a log or a pipe without COLUMNS: wide enough that tables need no wrapping."""
_OFF_TERMINAL = not sys.stdout.isatty() and not os.environ.get("COLUMNS", "").isdigit()  # rich ignores COLUMNS=""
console = Console(width=OFF_TERMINAL_WIDTH if _OFF_TERMINAL else None)  # COLUMNS, else the terminal's width
errors = Console(stderr=True, highlight=False, soft_wrap=True)
if _OFF_TERMINAL:
    # Typer renders --help at 80 columns off a terminal, which splits option names; typer reads this width
    # (its TERMINAL_WIDTH variable) from here.
    rich_utils.MAX_WIDTH = OFF_TERMINAL_WIDTH

DEBUG_VARIABLE = "SWEEPER_DEBUG"
_WIDE = {"on": False}
"""`--wide`: print every column of the ranking and claims tables, however wide."""


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"sweeper {version('sweeper')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show the traceback of an unexpected error (or set {DEBUG_VARIABLE}=1).")
    ] = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="Print every column of the ranking and claims tables, however wide.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_VARIABLE] = "1"
    _WIDE["on"] = wide


SpecPath = Annotated[Path, typer.Argument(help="Sweep spec YAML (one sweep, or several separated by ---).")]


def _fail(message: str) -> NoReturn:
    errors.print(f"error: {message}", markup=False)
    raise typer.Exit(2)


def _specs(path: Path, seeds: int | None = None) -> list[SweepSpec]:
    try:
        specs = load_specs(path)
        return [spec.with_seeds(seeds) for spec in specs] if seeds is not None else specs
    except SweeperError as exc:
        _fail(str(exc))


@app.command()
def validate(
    specs: Annotated[
        list[Path], typer.Argument(help="Sweep spec YAML files (each one sweep, or several separated by ---).")
    ],
) -> None:
    """Check specs without running anything: exit 0 if all are valid, 2 with a one-line error at the first that
    is not. A Keras program's data and model are called once, as written and with each grid point's model knobs."""
    from sweeper.workload import load

    for program in (path for path in specs if path.suffix == ".py"):  # a workload file: its contract alone
        try:
            workload = load(str(program))
            workload.check_remedies([{}])
        except SweeperError as exc:
            _fail(str(exc))
        console.print(f"ok: {program}: workload {workload.name}, metric {workload.metric} ({workload.mode})")
    for sweep in (sweep for spec in specs if spec.suffix != ".py" for sweep in _specs(spec)):
        try:
            sweep.check_remedies()
        except SweeperError as exc:
            _fail(str(exc))
        console.print(f"ok: {sweep.name}: workload {sweep.workload}, {sweep.describe_seeds()}")


@app.command("list")
def list_workloads(
    only: Annotated[
        str | None,
        typer.Argument(
            metavar="[WORKLOAD]", help="One workload: a name, or a workload file (a Keras program) ending in .py."
        ),
    ] = None,
) -> None:
    """The workloads, one line each (their failure, metric and knobs); with WORKLOAD, its knobs with allowed
    values and defaults."""
    from sweeper.workload import available, load

    if not only:
        summary = Table(title="workloads (`sweeper list NAME` shows one's knobs)", title_justify="left")
        for column in ("workload", "metric", "knobs", "the failure as written"):
            summary.add_column(column, overflow="fold")
        for name in available():
            try:
                workload = load(name)
            except SweeperError as exc:
                _fail(str(exc))
            failure = (workload.module.__doc__ or "").strip().splitlines()[0] if workload.module.__doc__ else ""
            knobs = sum(knob.name != "seed" for knob in workload.knobs.values())
            summary.add_row(name, f"{workload.metric} ({workload.mode})", str(knobs), failure)
        console.print(summary)
        return
    try:
        workload = load(only)
        workload.check_remedies([{}])  # a Keras file's data and model are checked as written
    except SweeperError as exc:
        _fail(str(exc))
    table = Table(title=f"{only}  (metric: {workload.metric}, {workload.mode})", title_justify="left")
    for column in ("knob", "default", "values", "what it is"):
        table.add_column(column, overflow="fold")
    for knob in workload.knobs.values():
        if knob.name != "seed":
            table.add_row(knob.name, str(knob.default), knob.describe_values(), knob.doc)
    console.print(table)


TrackingUri = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI; default: MLFLOW_TRACKING_URI or ./mlflow.db.", callback=stores.absolute),
]
Address = Annotated[str | None, typer.Option(help="Address of a running Ray cluster; default: Ray on this machine.")]


@app.command()
def run(
    spec: SpecPath,
    out: Annotated[Path, typer.Option(help="Folder that receives one new sub-folder per sweep.")] = Path("sweeps"),
    seeds: Annotated[
        int | None,
        typer.Option(help="A fixed design: every point and the baseline run seeds 0..N-1 (no adaptive seeding)."),
    ] = None,
    address: Address = None,
    tracking_uri: TrackingUri = None,
    max_concurrent: Annotated[int | None, typer.Option(min=1, help="At most this many trials at once.")] = None,
    max_retries: Annotated[
        int, typer.Option(min=0, max=100, help="Retries of a trial whose worker or node was lost.")
    ] = 2,
    max_trials: Annotated[int, typer.Option(min=1, help="A sweep with more trials needs --yes.")] = 1000,
    yes: Annotated[bool, typer.Option("--yes", help="Run sweeps larger than --max-trials.")] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only the sweep of this name (repeatable).")
    ] = None,
    early_stop: Annotated[
        bool,
        typer.Option(
            "--early-stop/--no-early-stop",
            help="Stop a trial as soon as it diverges (the verdict is the same); --no-early-stop runs it to its end.",
        ),
    ] = True,
) -> None:
    """Run every sweep in SPEC: reproduce the failure, sweep the remedies over seeds, rank them."""
    from sweeper.sweep import RunOptions

    specs = _specs(spec, seeds)  # everything is validated before anything is written or started
    if only:
        try:
            specs = only_named(specs, only)
        except SweeperError as exc:
            _fail(str(exc))
    for sweep in specs:
        if sweep.trial_count > max_trials and not yes:
            _fail(
                f"{spec}: {sweep.name}: {sweep.describe_seeds()}, more than --max-trials {max_trials}; pass --yes "
                "to run them"
            )
    options = RunOptions(max_concurrent=max_concurrent, max_retries=max_retries, early_stop=early_stop)
    _run_specs(spec, specs, out=out, address=address, tracking_uri=tracking_uri, options=options)


def _run_specs(
    spec: Path,
    specs: list[SweepSpec],
    *,
    out: Path,
    address: str | None,
    tracking_uri: str | None,
    options: RunOptions,
) -> list[SweepOutcome]:
    """Plan the sweeps of SPEC into new folders under OUT, print the plan, run them, print each outcome."""
    if out.exists() and not out.is_dir():
        _fail(f"--out: {out} exists and is not a folder")
    from sweeper.stores import check_tracking_uri, default_tracking_uri
    from sweeper.sweep import plan_sweeps

    uri = tracking_uri or default_tracking_uri()
    if problem := check_tracking_uri(uri):
        _fail(problem)
    _graceful_sigterm()
    try:
        folders = plan_sweeps(specs, spec_file=spec, out_root=out, tracking_uri=uri, address=address, options=options)
    except (SweeperError, PermissionError) as exc:
        _fail(str(exc))
    planned = "; ".join(f"{sweep.name}: {sweep.describe_seeds()}" for sweep in specs)
    console.print(
        f"plan: {len(specs)} sweep{'s' if len(specs) > 1 else ''} ({planned}); into {out}/; tracking: {uri}",
        markup=False,
        highlight=False,
    )
    return _run_all(folders, address=address, tracking_uri=uri, resume_from=out)


def _run_all(
    folders: list[Path], *, address: str | None, tracking_uri: str | None, resume_from: Path
) -> list[SweepOutcome]:
    """Run (or finish) the sweep folders together (`run_sweeps`), then print each one's outcome. A sweep
    whose analysis fails does not hide the others (exit status 1 at the end); an interrupted run ends with
    exit status 130."""
    from sweeper.sweep import run_sweeps

    try:
        outcomes = run_sweeps(folders, address=address, tracking_uri=tracking_uri)
    except (SweeperError, PermissionError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # a second Ctrl-C, while Tune was saving its state after the first
        _stop(130, f"interrupted; `sweeper resume {resume_from}` finishes every sweep of this run")
    for outcome in outcomes:
        _print_outcome(outcome)
    unfinished = [outcome for outcome in outcomes if outcome.unfinished]
    if unfinished:
        count = sum(outcome.unfinished for outcome in unfinished)
        names = ", ".join(outcome.sweep_id for outcome in unfinished)
        _stop(
            130,
            f"interrupted: {count} trials of {names} did not finish; `sweeper resume {resume_from}` finishes "
            "every sweep of this run",
        )
    if any(outcome.analysis_error is not None for outcome in outcomes):
        raise typer.Exit(1)
    return outcomes


def _print_outcome(outcome: SweepOutcome) -> None:
    if outcome.analysis_error is not None:
        exc = outcome.analysis_error
        errors.print(
            f"error: the analysis of {outcome.sweep_id} failed ({_one_line(exc)}); its trials are safe in "
            f"{outcome.sweep_dir}/trials; `sweeper report {outcome.sweep_dir}` tries again",
            markup=False,
        )
        if _debugging():
            traceback.print_exception(exc)
        return
    _print_ranking(outcome.ranking)
    console.print(f"outputs: {outcome.sweep_dir}/ (report.md, report.html, ranking.json, trials.csv, plots/)")
    uri = outcome.tracking_uri
    if uri == stores.TRACKING_OFF:
        console.print(
            f"mlflow:  none (this sweep ran without MLflow; `sweeper sync {outcome.sweep_dir} --tracking-uri URI` "
            "mirrors it)",
            markup=False,
        )
        return
    console.print(f"mlflow:  {uri} · parent run {outcome.parent_run_id}")
    if outcome.experiment_id is not None and "://" in uri:
        link, hint = stores.experiment_link(uri, outcome.experiment_id), stores.link_hint(uri)
        line = f"runs:    {link}{hint}"  # a link is never broken: on a line of its own where one would not fit
        console.print(line if len(line) <= console.width else f"runs{hint}:\n{link}", soft_wrap=True, markup=False)


def _graceful_sigterm() -> None:
    """SIGTERM (a scheduler's stop) ends the sweep the way Ctrl-C does: Tune stops the trials, the report is
    written from the finished ones, and `sweeper resume` picks up the rest."""
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))


@app.command()
def resume(
    folder: Annotated[
        Path,
        typer.Argument(
            help="A sweep folder (sweeps/<name>-<time>), or the --out folder of a "
            "killed `sweeper run` to finish every unfinished sweep of it."
        ),
    ],
    address: Address = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Finish sweeps whose driver was killed: finished trials are not run again, MLflow gets no duplicates."""
    from sweeper.sweep import sweeps_to_resume

    try:
        folders = sweeps_to_resume(folder)
    except SweeperError as exc:
        _fail(str(exc))
    if not folders:
        console.print(f"{folder}: every sweep is finished; nothing to resume")
        return
    _graceful_sigterm()
    _run_all(folders, address=address, tracking_uri=tracking_uri, resume_from=folder)


@app.command()
def sync(
    sweep_dir: Annotated[Path, typer.Argument(help="The sweep folder whose results MLflow should have.")],
    tracking_uri: TrackingUri = None,
) -> None:
    """Replay into MLflow every result of a sweep folder that MLflow lacks (after the server was down)."""
    from sweeper.sweep import sync_sweep

    try:
        replayed, uri = sync_sweep(sweep_dir, tracking_uri=tracking_uri)
    except SweeperError as exc:
        _fail(str(exc))
    console.print(f"synced {sweep_dir} to {uri}: {replayed} trials replayed")


def _print_ranking(ranking: Ranking | None) -> None:
    """The report's ranking and claims tables (none when the analysis failed), fitted to the console (see
    `_fitted_table`), then its answer, last, where the eye lands when the sweep ends."""
    if ranking is None:
        return
    from sweeper.report import answer_section, claims_section, ranking_section

    for section in (ranking_section(ranking), claims_section(ranking)):
        if section.rows:
            _fitted_table(f"{ranking.sweep}: {section.title}", section.header, section.rows)
    answer = answer_section(ranking)
    console.print(f"{ranking.sweep}: {answer.title}", style="bold", markup=False, highlight=False)
    for line in answer.paragraphs:
        console.print(line, markup=False, highlight=False)


CONSOLE_LEAVES_OUT = ("score", "healthy-rate difference", "metric shift")
"""Ranking columns left to report.md and report.html unless `--wide`."""
DROPPED_TO_FIT = ("confirmed", "source", "P(beats baseline)", "seeds", "expected")
"""Columns dropped in this order, while the table's narrowest layout is wider than the console."""
NAME_COLUMNS = ("grid point", "change")
"""Columns of grid-point names (`knob=value,knob=value`), shown a knob a line so no name breaks inside."""


def _fitted_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A table that never breaks a word or a knob=value where the console can hold one: names go a knob a
    line, and without `--wide` the columns of CONSOLE_LEAVES_OUT, then of DROPPED_TO_FIT, are left out until
    the narrowest layout (every column at its longest word) fits the console; a line says which. A console
    too narrow even then keeps the names whole and lets rich fold the other columns' words."""
    cells = [
        [cell.replace(",", ",\n") if header[i] in NAME_COLUMNS else cell for i, cell in enumerate(row)] for row in rows
    ]
    wide = _WIDE["on"]
    shown = [i for i, column in enumerate(header) if wide or column not in CONSOLE_LEAVES_OUT]
    narrowest = {
        i: max(len(word) for text in [header[i], *(row[i] for row in cells)] for word in text.split() or [""])
        for i in shown
    }

    def width(columns: list[int]) -> int:
        return sum(narrowest[i] for i in columns) + 3 * len(columns) + 1  # "│ " before each cell, " │" at the end

    dropped = []
    for name in () if wide else DROPPED_TO_FIT:
        if width(shown) <= console.width:
            break
        if name in header and header.index(name) in shown:
            shown.remove(header.index(name))
            dropped.append(name)
    fits = wide or width(shown) <= console.width  # else some word must fold: never a knob=value of a name
    table = Table(title=title, title_justify="left")
    for i in shown:
        keep = fits or header[i] in NAME_COLUMNS
        table.add_column(header[i], overflow="fold", min_width=narrowest[i] if keep else None)
    for row in cells:
        table.add_row(*(row[i] for i in shown))
    # --wide: the table at its natural width, however wide (a console without a limit to crop it to)
    (Console(width=100_000) if wide else console).print(table)
    if dropped:
        console.print(f"({', '.join(dropped)}: left out to fit {console.width} columns; `sweeper --wide` shows them)")


@app.command()
def report(
    sweep: Annotated[
        str,
        typer.Argument(
            help="A sweep folder (its outputs are rewritten in place), or a sweep id "
            "(its output folder's name) or MLflow parent run id to rebuild from MLflow."
        ),
    ],
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI; default: MLFLOW_TRACKING_URI or ./mlflow.db.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder that receives the sweep folder rebuilt from MLflow.")] = Path(
        "sweeps"
    ),
    claims_from: Annotated[
        Path | None,
        typer.Option(help="Judge the claims of this spec file's sweep of the same name (claims added after the run)."),
    ] = None,
) -> None:
    """Analyse a sweep again: from its folder, or from MLflow alone (on any machine that reaches the store)."""
    from sweeper.records import is_sweep_folder
    from sweeper.stores import default_tracking_uri
    from sweeper.sweep import rebuild_sweep, report_folder

    try:
        if is_sweep_folder(Path(sweep)):
            outcome = report_folder(Path(sweep), tracking_uri=tracking_uri, claims_from=claims_from)
        else:
            outcome = rebuild_sweep(
                sweep, tracking_uri=tracking_uri or default_tracking_uri(), out_root=out, claims_from=claims_from
            )
    except SweeperError as exc:
        _fail(str(exc))
    _print_outcome(outcome)
    if outcome.analysis_error is not None:
        raise typer.Exit(1)


@app.command()
def compare(
    before: Annotated[str, typer.Argument(help="A sweep folder, or a sweep id / parent run id in MLflow.")],
    after: Annotated[str, typer.Argument(help="The sweep to compare with it (e.g. after a code change).")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for sweep ids.")] = None,
) -> None:
    """The grid points two sweeps share, side by side: verdicts, healthy seeds, the median healthy metric,
    P(after beats before) and its rank test's p-value."""
    from sweeper import api
    from sweeper.analysis import compare as compare_rankings
    from sweeper.report import number

    try:
        rankings = [api.load_ranking(ref, tracking_uri=tracking_uri) for ref in (before, after)]
        rows = compare_rankings(*rankings)
    except (SweeperError, ValueError) as exc:
        _fail(str(exc))
    if not rows:
        _fail(f"{before} and {after} share no grid point")
    metric = rankings[0].metric
    _fitted_table(
        f"{rankings[0].sweep} -> {rankings[1].sweep}",
        ["grid point", "verdict", "healthy", f"median healthy {metric}", "P(after beats before)", "p"],
        [
            [
                row.label,
                f"{row.verdict_before} -> {row.verdict_after}",
                f"{row.healthy_before} -> {row.healthy_after}",
                f"{number(row.metric_before)} -> {number(row.metric_after)}",
                number(row.prob_after_beats_before, 2),
                number(row.p_value, 2),
            ]
            for row in rows
        ],
    )


Host = Annotated[
    str, typer.Option(help="Interface to bind; 127.0.0.1 keeps it off the network, 0.0.0.0 opens it to a cluster.")
]
Port = Annotated[int, typer.Option(min=1, max=65535)]


@app.command()
def ui(tracking_uri: TrackingUri = None, host: Host = "127.0.0.1", port: Port = 5000) -> None:
    """Open the MLflow UI on the sweep store (serves until interrupted); print the link to each sweep
    experiment's runs table first."""
    from sweeper.stores import default_tracking_uri, local_store_path

    uri = tracking_uri or default_tracking_uri()
    if uri == stores.TRACKING_OFF:
        _fail("--tracking-uri: none is no MLflow store to open; name one, e.g. --tracking-uri sqlite:///mlflow.db")
    store = local_store_path(uri)
    if store is not None and not store.exists():
        _fail(f"{store}: no MLflow store here yet; run a sweep first or pass --tracking-uri")
    artifacts = ["--default-artifact-root", (store.parent / "mlartifacts").as_uri()] if store is not None else []
    address = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    if store is not None:  # a local store: its sweeps' runs tables on this UI
        from sweeper.tracking import sweep_experiments

        for name, experiment_id in sweep_experiments(uri):
            link = stores.experiment_link(uri, experiment_id, address)
            console.print(f"{name}: {link}", soft_wrap=True, markup=False)
    _serve(uri, artifacts, host, port, "MLflow UI")


@app.command()
def doctor(
    workload: Annotated[
        str, typer.Argument(help="A workload file (a Keras program ending in .py) or a workload name.")
    ],
    seeds: Annotated[
        int, typer.Option(min=1, max=20, help="Calibration seeds to run as written (1000, 1001, ...).")
    ] = len(DOCTOR_SEEDS),
    smoke: Annotated[bool, typer.Option("--smoke", help="Run the workload's SMOKE sizes (and sweep them).")] = False,
    spec_out: Annotated[
        Path | None, typer.Option(help="Where to write the proposed spec; default: ./doctor-<workload>.yaml.")
    ] = None,
    run_it: Annotated[
        bool,
        typer.Option(
            "--run", help="Run the proposed sweep and print its verdicts; if nothing fixes it, the combination round."
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="With --run: folder that receives the sweep's folder.")] = Path("sweeps"),
    tracking_uri: TrackingUri = None,
) -> None:
    """Run WORKLOAD as written on calibration seeds, print its symptoms and the remedies that address them, and
    write them as a spec to edit (`vary: one_at_a_time`); with --run, sweep them over other seeds, and where
    no single remedy fixes it, each two of the best-ranked together on fresh seeds (the combination round)."""
    from sweeper import doctor as rx
    from sweeper.report import number

    try:
        examination = rx.examine(workload, seeds, smoke)
    except SweeperError as exc:
        _fail(str(exc))
    loaded, chosen_seeds = examination.workload, examination.seeds
    for finding in examination.findings:  # read before training: shown first, proposed first
        remedy = f"{finding.why} ({finding.knob})" if finding.knob else finding.why
        console.print(f"finding: {finding.what}: {remedy}", markup=False, highlight=False)
    table = Table(title=f"{loaded.name} as written, calibration seeds {chosen_seeds[0]}-{chosen_seeds[-1]}")
    for column in ("seed", "verdict", f"final {loaded.metric}", "chance", *rx.READINGS, "why"):
        table.add_column(column, overflow="fold")
    for row in examination.rows:
        readings = (number(row.readings.get(key)) for key in rx.READINGS)
        table.add_row(str(row.seed), row.verdict, number(row.final), number(row.chance), *readings, row.reason)
    console.print(table)
    try:
        proposal = rx.propose(examination, spec_out)
    except SweeperError as exc:
        _fail(str(exc))
    if proposal is None:
        console.print(f"no failure in {seeds} seeds: every trial is healthy, so there is nothing to propose")
        return
    for symptom in proposal.symptoms:
        console.print(f"symptom: {symptom.verdict} in {symptom.seeds}/{seeds} seeds")
    for line in proposal.advice:
        console.print(f"  no knob: {line}", markup=False, highlight=False)
    if proposal.spec is None:
        console.print("nothing to sweep: no knob of this program addresses what it shows", markup=False)
        return
    for line in proposal.why:
        console.print(f"  proposed: {line}")
    console.print(
        f"wrote {proposal.spec} (and {rx.report_path(proposal.spec)}, this report for tools); run it with "
        f"`sweeper run {proposal.spec}`"
        + ("" if run_it else f", or `sweeper doctor {workload} --run`, which pairs the best if none fixes it alone")
    )
    if not run_it:
        return
    rounds = [_doctor_round(proposal.spec, out, tracking_uri)]
    combination = rx.combine(examination, proposal, rounds[0])
    if combination is None:
        rx.record(examination, proposal, rounds)
        return
    console.print(
        f"no single remedy was shown to fix it: the combination round tries each two of the best-ranked together "
        f"({combination.spec}):",
        markup=False,
    )
    for line in combination.why:
        console.print(f"  combined: {line}", markup=False, highlight=False)
    console.print(f"  its verdicts are {combination.family}", markup=False, highlight=False)
    rounds.append(_doctor_round(combination.spec, out, tracking_uri))
    rx.record(examination, proposal, rounds, combination)
    fixed = [point.label for point in rounds[1].points if point.verdict == "fixes"]
    found = f"fixes: {'; '.join(fixed)}" if fixed else "no pair was shown to fix it"
    console.print(f"combination round: {found}", markup=False, highlight=False)


def _doctor_round(spec: Path, out: Path, tracking_uri: str | None) -> Ranking:
    """One round of `doctor --run`: the spec's one sweep run with the default options, its ranking."""
    from sweeper.sweep import RunOptions

    (outcome,) = _run_specs(spec, _specs(spec), out=out, address=None, tracking_uri=tracking_uri, options=RunOptions())
    assert outcome.ranking is not None  # `_run_all` exits where an analysis failed
    return outcome.ranking


DATABASE_SCHEMES = ("postgresql://", "postgresql+psycopg2://")
"""What `sweeper server --database` takes (MLflow's SQLAlchemy URIs for PostgreSQL, with the pinned driver)."""


@app.command()
def server(
    store: Annotated[
        Path, typer.Option(help="Folder for the server's artifacts, and its SQLite database unless --database.")
    ] = Path("mlflow-server"),
    database: Annotated[
        str | None,
        typer.Option(
            help="A PostgreSQL database for the runs instead of SQLite (postgresql://USER@HOST:PORT/DB): many "
            "trials a second, many writers."
        ),
    ] = None,
    host: Host = "127.0.0.1",
    port: Port = 5000,
) -> None:
    """Start an MLflow tracking server (SQLite or PostgreSQL backend, artifacts served over HTTP) that cluster
    nodes can reach."""
    if store.exists() and not store.is_dir():
        _fail(f"--store: {store} exists and is not a folder")
    if database is not None and not database.startswith(DATABASE_SCHEMES):
        _fail(f"--database: {database!r} is not a PostgreSQL URI; expected postgresql://USER@HOST:PORT/DB")
    store.mkdir(parents=True, exist_ok=True)
    if database is not None and database.startswith("postgresql://"):
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the driver pinned here is psycopg2.
        database = "postgresql+psycopg2://" + database.removeprefix("postgresql://")
    uri = database or f"sqlite:///{store.resolve() / 'mlflow.db'}"
    artifacts = ["--serve-artifacts", "--artifacts-destination", (store.resolve() / "artifacts").as_uri()]
    _serve(uri, artifacts, host, port, "MLflow tracking server")


def _serve(uri: str, artifact_options: list[str], host: str, port: int, what: str) -> None:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow is None:
        _fail("the `mlflow` command is not installed in this environment")
    shown = re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)  # a password in the URI stays off the console
    console.print(f"{what}: http://{host}:{port}  (store {shown}; Ctrl-C stops it)", markup=False)
    command = [
        mlflow,
        "server",
        "--backend-store-uri",
        uri,
        *artifact_options,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    try:
        subprocess.run(command, check=False, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    except KeyboardInterrupt:
        pass


def _debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def main() -> None:
    """Run the CLI. Every way out is one line on stderr and a documented exit status: 0 done, 1 an unexpected
    error, a sweep whose analysis failed or standard output closed early (`sweeper list | head -1`, silently),
    2 a usage mistake or bad input, 130 interrupted (Ctrl-C or SIGTERM). `--debug` or SWEEPER_DEBUG=1 adds
    the traceback."""
    if len(sys.argv) <= 1:  # `sweeper` alone: the help, as for any other usage mistake with status 2
        app(["--help"], prog_name="sweeper", standalone_mode=False)
        _stop(2, None)
    message = None
    try:
        code = app(standalone_mode=False)
        if code == 130:  # click's answer to a KeyboardInterrupt in a command
            message = "interrupted"
    except SystemExit as exc:  # said its one line already (`_stop`), or rich's exit on a closed pipe
        code = exc.code
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside Tune's own handling (click: KeyboardInterrupt -> Abort)
        _stop(130, "interrupted")
    except BrokenPipeError:  # rich handles its own (exit status 1, stdout sent to /dev/null); print() does not
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's last flush must not raise
        _stop(1, None)
    except typer.TyperException as exc:  # click's usage errors (unknown option, bad value, missing argument)
        _usage_error(exc)
    except Exception as exc:
        if _debugging():
            traceback.print_exc()
        _stop(1, f"unexpected {_one_line(exc)} (`sweeper --debug ...` or {DEBUG_VARIABLE}=1 shows the traceback)")
    _stop(code if isinstance(code, int) else 0, message)


def _usage_error(exc: Exception) -> None:
    context = getattr(exc, "ctx", None)
    where = f"{context.command_path}: " if context is not None else ""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    _stop(2, f"{where}{' '.join(message.split())}")


def _stop(code: int, message: str | None) -> NoReturn:
    """Exit with `code` after one line on stderr. A Ctrl-C from here on (while Ray shuts down) ends the
    process at once, without a traceback."""
    if message:
        errors.print(f"error: {message}", markup=False)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(code)


if __name__ == "__main__":
    main()
