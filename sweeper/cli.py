"""The `sweeper` command line: validate, list, run, report, compare, ui."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from sweeper.errors import SweeperError, did_you_mean, one_of
from sweeper.spec import SweepSpec, load_specs

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Settle, with evidence, which remedy fixes a failing training run.",
)
console = Console(width=None if sys.stdout.isatty() else 160)  # tables stay readable in logs and pipes
errors = Console(stderr=True, highlight=False, soft_wrap=True)

SpecPath = Annotated[Path, typer.Argument(help="Sweep spec YAML (one sweep, or several separated by ---).")]


def _fail(message: str) -> None:
    errors.print(f"error: {message}", markup=False)
    raise typer.Exit(2)


def _specs(path: Path, seeds: int | None = None) -> list[SweepSpec]:
    try:
        specs = load_specs(path)
        return [spec.with_seeds(seeds) for spec in specs] if seeds is not None else specs
    except SweeperError as exc:
        _fail(str(exc))


@app.command()
def validate(spec: SpecPath) -> None:
    """Check a spec without running anything: exit 0 if valid, 2 with a one-line error if not."""
    for sweep in _specs(spec):
        console.print(
            f"ok: {sweep.name}: workload {sweep.workload}, {len(sweep.points)} grid points x {sweep.seeds} seeds "
            f"= {sweep.trial_count} trials"
        )


@app.command("list")
def list_workloads() -> None:
    """The workloads, their metric and their knobs with allowed values and defaults."""
    from sweeper.workload import available, load

    for name in available():
        try:
            workload = load(name)
        except SweeperError as exc:
            _fail(str(exc))
        table = Table(title=f"{name}  (metric: {workload.metric}, {workload.mode})", title_justify="left")
        for column in ("knob", "default", "values", "what it is"):
            table.add_column(column, overflow="fold")
        for knob in workload.knobs.values():
            if knob.name != "seed":
                table.add_row(knob.name, str(knob.default), knob.describe_values(), knob.doc)
        console.print(table)


TrackingUri = Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default: MLFLOW_TRACKING_URI or ./mlflow.db.")]
Address = Annotated[Optional[str], typer.Option(help="Address of a running Ray cluster; default: Ray on this machine.")]


@app.command()
def run(
    spec: SpecPath,
    out: Annotated[Path, typer.Option(help="Folder that receives one new sub-folder per sweep.")] = Path("sweeps"),
    seeds: Annotated[Optional[int], typer.Option(help="Run seeds 0..N-1 instead of the spec's `seeds`.")] = None,
    address: Address = None,
    tracking_uri: TrackingUri = None,
    max_concurrent: Annotated[Optional[int], typer.Option(min=1, help="At most this many trials at once.")] = None,
    max_retries: Annotated[int, typer.Option(min=0, max=100, help="Retries of a trial whose worker or node was lost.")] = 2,
    max_trials: Annotated[int, typer.Option(min=1, help="A sweep with more trials needs --yes.")] = 1000,
    yes: Annotated[bool, typer.Option("--yes", help="Run sweeps larger than --max-trials.")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only the sweep of this name (repeatable).")] = None,
    early_stop: Annotated[bool, typer.Option(
        "--early-stop/--no-early-stop",
        help="Stop a trial as soon as it diverges (the verdict is the same); --no-early-stop runs it to its end.",
    )] = True,
) -> None:
    """Run every sweep in SPEC: reproduce the failure, sweep the remedies over seeds, rank them."""
    specs = _specs(spec, seeds)  # everything is validated before anything is written or started
    if only:
        names = [sweep.name for sweep in specs]
        for name in only:
            if name not in names:
                _fail(f"{spec}: --only: no sweep named {name!r}{did_you_mean(name, names)}; {one_of(names)}")
        specs = [sweep for sweep in specs if sweep.name in only]
    for sweep in specs:
        if sweep.trial_count > max_trials and not yes:
            _fail(f"{spec}: {sweep.name}: {len(sweep.points)} grid points x {sweep.seeds} seeds = {sweep.trial_count} "
                  f"trials, more than --max-trials {max_trials}; pass --yes to run them")
    if out.exists() and not out.is_dir():
        _fail(f"--out: {out} exists and is not a folder")
    from sweeper.sweep import run_sweep
    from sweeper.stores import check_tracking_uri, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    if problem := check_tracking_uri(uri):
        _fail(problem)
    _graceful_sigterm()
    for sweep in specs:
        try:
            outcome = run_sweep(sweep, out_root=out, tracking_uri=uri, address=address, max_concurrent=max_concurrent,
                                max_retries=max_retries, early_stop=early_stop)
        except (SweeperError, PermissionError) as exc:
            _fail(str(exc))
        _print_outcome(outcome, uri)


def _print_outcome(outcome, uri: str) -> None:
    _print_ranking(outcome.ranking)
    console.print(f"outputs: {outcome.sweep_dir}/ (report.md, report.html, ranking.json, trials.csv, plots/)")
    console.print(f"mlflow:  {uri} · parent run {outcome.parent_run_id}")
    if outcome.unfinished:
        console.print(f"{outcome.unfinished} trials did not finish; `sweeper resume {outcome.sweep_dir}` runs them")


def _graceful_sigterm() -> None:
    """SIGTERM (a scheduler's stop) ends the sweep the way Ctrl-C does: Tune saves its state, the report is
    written from the finished trials, and `sweeper resume` picks up the rest."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))


@app.command()
def resume(
    sweep_dir: Annotated[Path, typer.Argument(help="The sweep folder to finish (sweeps/<name>-<time>).")],
    address: Address = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Finish a sweep whose driver was killed: finished trials are not run again, MLflow gets no duplicates."""
    from sweeper.sweep import resume_sweep

    _graceful_sigterm()
    try:
        outcome = resume_sweep(sweep_dir, address=address, tracking_uri=tracking_uri)
    except SweeperError as exc:
        _fail(str(exc))
    _print_outcome(outcome, tracking_uri or "the sweep's store")


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


def _print_ranking(document: dict) -> None:
    """The report's ranking and claims tables, as the report has them."""
    from sweeper.report import claims_section, ranking_section

    for section in (ranking_section(document), claims_section(document)):
        if section.rows:
            table = Table(title=f"{document['sweep']}: {section.title}", title_justify="left")
            for column in section.header:
                table.add_column(column, overflow="fold")
            for row in section.rows:
                table.add_row(*row)
            console.print(table)


@app.command()
def report(
    sweep: Annotated[str, typer.Argument(help="Sweep id (its output folder's name) or its MLflow parent run id.")],
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default: MLFLOW_TRACKING_URI or ./mlflow.db.")] = None,
    out: Annotated[Path, typer.Option(help="Folder that receives the rebuilt sweep folder.")] = Path("sweeps"),
    claims_from: Annotated[Optional[Path], typer.Option(help="Judge the claims of this spec file's sweep of the same name (claims added after the run).")] = None,
) -> None:
    """Rebuild a sweep's outputs from MLflow alone (on any machine that reaches the store)."""
    from sweeper.sweep import rebuild_sweep
    from sweeper.stores import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    try:
        outcome = rebuild_sweep(sweep, tracking_uri=uri, out_root=out, claims_from=claims_from)
    except SweeperError as exc:
        _fail(str(exc))
    _print_ranking(outcome.ranking)
    console.print(f"outputs: {outcome.sweep_dir}/ (report.md, report.html, ranking.json, trials.csv, plots/)")


@app.command()
def compare(
    before: Annotated[str, typer.Argument(help="A sweep folder, or a sweep id / parent run id in MLflow.")],
    after: Annotated[str, typer.Argument(help="The sweep to compare with it (e.g. after a code change).")],
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI for sweep ids.")] = None,
) -> None:
    """The grid points two sweeps share, side by side: verdicts, healthy seeds, IQM, P(after beats before)."""
    import json
    import tempfile

    from sweeper.ranking import compare_sweeps
    from sweeper.report import number

    def ranking_of(ref: str, scratch: Path) -> dict:
        local = Path(ref) / "ranking.json"
        if local.is_file():
            return json.loads(local.read_text())
        from sweeper.stores import default_tracking_uri
        from sweeper.tracking import download_file

        uri = tracking_uri or default_tracking_uri()
        path = download_file(uri, ref, "ranking.json", scratch)
        if path is None:
            _fail(f"{ref}: neither a sweep folder with ranking.json nor a sweep in {uri}")
        return json.loads(path.read_text())

    with tempfile.TemporaryDirectory() as scratch:
        documents = [ranking_of(ref, Path(scratch) / str(i)) for i, ref in enumerate((before, after))]
    try:
        rows = compare_sweeps(*documents)
    except ValueError as exc:
        _fail(str(exc))
    if not rows:
        _fail(f"{before} and {after} share no grid point")
    metric = documents[0]["metric"]
    table = Table(title=f"{documents[0]['sweep']} -> {documents[1]['sweep']}", title_justify="left")
    for column in ("grid point", "verdict", "healthy", f"IQM {metric}", "P(after beats before)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["label"],
            f"{row['verdict_before']} -> {row['verdict_after']}",
            f"{row['healthy_before']} -> {row['healthy_after']}",
            f"{number(row['iqm_before'])} -> {number(row['iqm_after'])}",
            f"{row['prob_after_beats_before']:.2f}",
        )
    console.print(table)


Host = Annotated[str, typer.Option(help="Interface to bind; 127.0.0.1 keeps it off the network, 0.0.0.0 opens it to a cluster.")]
Port = Annotated[int, typer.Option(min=1, max=65535)]


@app.command()
def ui(tracking_uri: TrackingUri = None, host: Host = "127.0.0.1", port: Port = 5000) -> None:
    """Open the MLflow UI on the sweep store (serves until interrupted)."""
    from sweeper.stores import default_tracking_uri, local_store_path

    uri = tracking_uri or default_tracking_uri()
    store = local_store_path(uri)
    if store is not None and not store.exists():
        _fail(f"{store}: no MLflow store here yet; run a sweep first or pass --tracking-uri")
    artifacts = ["--default-artifact-root", (store.parent / "mlartifacts").as_uri()] if store is not None else []
    _serve(uri, artifacts, host, port, "MLflow UI")


@app.command()
def server(
    store: Annotated[Path, typer.Option(help="Folder for the server's SQLite database and its artifacts.")] = Path("mlflow-server"),
    host: Host = "127.0.0.1",
    port: Port = 5000,
) -> None:
    """Start an MLflow tracking server (SQLite backend, artifacts served over HTTP) that cluster nodes can reach."""
    if store.exists() and not store.is_dir():
        _fail(f"--store: {store} exists and is not a folder")
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store.resolve() / 'mlflow.db'}"
    artifacts = ["--serve-artifacts", "--artifacts-destination", (store.resolve() / "artifacts").as_uri()]
    _serve(uri, artifacts, host, port, "MLflow tracking server")


def _serve(uri: str, artifact_options: list[str], host: str, port: int, what: str) -> None:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow is None:
        _fail("the `mlflow` command is not installed in this environment")
    console.print(f"{what}: http://{host}:{port}  (store {uri}; Ctrl-C stops it)")
    command = [mlflow, "server", "--backend-store-uri", uri, *artifact_options, "--host", host, "--port", str(port),
               "--workers", "1"]
    try:
        subprocess.run(command, check=False, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    except KeyboardInterrupt:
        pass


def main() -> None:
    """Run the CLI; a usage mistake (unknown option, bad value) is one line and exit status 2, like a bad spec."""
    try:  # typer 0.2x vendors click
        from typer._click import exceptions as click_errors
    except ImportError:
        from click import exceptions as click_errors

    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError:  # the help is already on the screen
        sys.exit(2)
    except click_errors.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        errors.print(f"error: {where}{exc.format_message()}", markup=False)
        sys.exit(2)
    except click_errors.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
