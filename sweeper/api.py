"""The Python API: what the `sweeper` command does, callable from a notebook or a script.

    from sweeper import api

    rankings = api.run("configs/smoke.yaml", tracking_uri="none")
    for point in rankings[0].points:
        print(point.label, point.verdict, point.healthy, point.median_healthy_metric)

- `run`: every sweep of a spec file (or spec objects), locally or on a Ray cluster; their `Ranking`s.
- `doctor`: a workload (a Keras program file) run as written on calibration seeds, its symptoms and the
  remedies proposed for them, written as a spec to run.
- `load_ranking`: a finished sweep's `Ranking`, from its folder or from MLflow.

Errors are `SweeperError`s with the one line the command line would print. Heavy imports (Ray, MLflow,
TensorFlow) happen inside the calls.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from sweeper.doctor import DOCTOR_SEEDS, Examination, Proposal, examine, propose
from sweeper.errors import SweeperError
from sweeper.records import RANKING_FILE
from sweeper.results import Ranking
from sweeper.spec import SweepSpec, load_specs, only_named
from sweeper.stores import TRACKING_OFF, absolute, check_tracking_uri, default_tracking_uri

__all__ = ["Ranking", "SweeperError", "doctor", "load_ranking", "run"]


def run(
    spec: str | Path | SweepSpec | Sequence[SweepSpec],
    *,
    out: str | Path = "sweeps",
    tracking_uri: str | None = None,
    address: str | None = None,
    seeds: int | None = None,
    only: Sequence[str] = (),
    max_concurrent: int | None = None,
    max_retries: int = 2,
    early_stop: bool = True,
) -> list[Ranking]:
    """Run every sweep of `spec` (a spec file, or spec objects from `sweeper.spec.load_specs`), each into a new
    folder under `out`, and return their rankings in order. `tracking_uri`: the MLflow store (default:
    MLFLOW_TRACKING_URI or ./mlflow.db; "none" for no MLflow); `address`: a Ray cluster (default: Ray on this
    machine); `seeds`: a fixed design of that many seeds instead of the adaptive one; `only`: the sweeps of
    these names alone. A sweep whose analysis
    fails raises SweeperError (its trials stay in its folder; `sweeper report FOLDER` tries again)."""
    from sweeper.sweep import RunOptions, plan_sweeps, run_sweeps

    if isinstance(spec, str | Path):
        spec_file, specs = Path(spec), load_specs(spec)
    else:
        specs = [spec] if isinstance(spec, SweepSpec) else list(spec)
        if not specs:
            raise SweeperError("spec: no sweep to run")
        spec_file = specs[0].path
    if only:
        specs = only_named(specs, list(only), key="only")
    if seeds is not None:
        specs = [sweep.with_seeds(seeds) for sweep in specs]
    out_root = Path(out)
    if out_root.exists() and not out_root.is_dir():
        raise SweeperError(f"out: {out_root} exists and is not a folder")
    uri = absolute(tracking_uri) or default_tracking_uri()
    if problem := check_tracking_uri(uri):
        raise SweeperError(problem)
    options = RunOptions(max_concurrent=max_concurrent, max_retries=max_retries, early_stop=early_stop)
    folders = plan_sweeps(
        specs, spec_file=spec_file, out_root=out_root, tracking_uri=uri, address=address, options=options
    )
    rankings = []
    for outcome in run_sweeps(folders, address=address, tracking_uri=uri):
        if outcome.ranking is None:
            raise SweeperError(
                f"the analysis of {outcome.sweep_id} failed ({outcome.analysis_error}); its trials are safe in "
                f"{outcome.sweep_dir}; `sweeper report {outcome.sweep_dir}` tries again"
            ) from outcome.analysis_error
        rankings.append(outcome.ranking)
    return rankings


def doctor(
    workload: str | Path,
    *,
    seeds: int = len(DOCTOR_SEEDS),
    smoke: bool = False,
    spec_out: str | Path | None = None,
) -> tuple[Examination, Proposal | None]:
    """Run a workload (a Keras program file, or a workload's name) as written on calibration seeds (1000 and
    up), read its symptoms, and write the remedies that address them as a spec (default
    ./doctor-<workload>.yaml) that `run` sweeps on other seeds: what each seed showed, and what was proposed
    and written (None where every seed was healthy: nothing to propose)."""
    examination = examine(str(workload), seeds=seeds, smoke=smoke)
    return examination, propose(examination, Path(spec_out) if spec_out is not None else None)


def load_ranking(ref: str | Path, *, tracking_uri: str | None = None) -> Ranking:
    """A finished sweep's ranking: from its folder's ranking.json, else from MLflow, where `ref` is the sweep's
    id (its folder's name) or its parent run's id in `tracking_uri` (default: MLFLOW_TRACKING_URI or
    ./mlflow.db)."""
    local = Path(ref) / RANKING_FILE
    if local.is_file():
        return Ranking.loads(local.read_text())
    uri = absolute(tracking_uri) or default_tracking_uri()
    missing = SweeperError(f"{ref}: neither a sweep folder with {RANKING_FILE} nor a sweep in {uri}")
    if uri == TRACKING_OFF:
        raise missing
    from sweeper.tracking import download_file

    with tempfile.TemporaryDirectory() as scratch:
        path = download_file(uri, str(ref), RANKING_FILE, Path(scratch))
        if path is None:
            raise missing
        return Ranking.loads(path.read_text())
