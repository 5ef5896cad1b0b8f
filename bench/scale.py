"""How the driver's cost grows with the number of trials: sweeper beside bare Ray Tune, at 1,000 and 5,000
trials of a workload whose trials take about a millisecond (bench/workloads/millisecond.py), so nearly all of the
wall time is the harness's.

    .venv/bin/python bench/scale.py                          # 1,000 and 5,000 trials, both harnesses, once
    .venv/bin/python bench/scale.py --trials 1000 --repeats 3
    .venv/bin/python bench/scale.py --tracking-uri postgresql://...   # sweeper's MLflow writes to that store

Each run is a fresh process in a fresh folder, timed from its start to its exit (imports, Ray start, the
trials, and for sweeper MLflow, diagnosis, analysis and report), one CPU per trial. Printed per run:

  cost/trial   (wall - the trials' own seconds / slots) / trials: what the harness adds per trial
  MLflow rows/s  rows sweeper's store holds after the run (runs, params, tags, metric values) / wall
  peak MB      the driver process's peak resident memory (VmHWM), polled while it runs
  (checked)    every trial in sweeper's store exactly once, or the script stops with an error
  report s     `sweeper report SWEEP_DIR` run afterwards: the analysis and every output rebuilt from the
               sweep folder, and attached to MLflow again

and per harness the growth: cost/trial at the largest count over cost/trial at the smallest (1.0: the
harness's cost per trial does not grow with the sweep). Runs are interleaved (sweeper, tune, sweeper, ...)
so background load hits both alike; with --repeats the table shows medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ROOT / "bench" / "workloads" / "millisecond.py"
SEEDS = 20


def spec_text(trials: int) -> str:
    points = trials // SEEDS
    return (
        f"name: scale-{trials}\nworkload: {WORKLOAD}\nseeds: {SEEDS}\ndesign: fixed\n"
        f"grid:\n  point: [{', '.join(str(p) for p in range(points))}]\n"
    )


def own_seconds(trials: int) -> float:
    """The trials' own seconds: every trial's `train` in this process, one after another."""
    module = _workload()
    started = time.perf_counter()
    for index in range(trials):
        module.train(module.Config(point=index // SEEDS, seed=index % SEEDS), lambda report: None)
    return time.perf_counter() - started


def _workload():
    spec = importlib.util.spec_from_file_location("millisecond", WORKLOAD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["millisecond"] = module
    spec.loader.exec_module(module)
    return module


def run(command: list[str], workdir: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one command run to completion in `workdir`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    env.pop("COLUMNS", None)
    started = time.perf_counter()
    peak_kb = 0
    with open(workdir / "output.log", "a") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError):
                pass
            time.sleep(0.2)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited {process.returncode}; see {workdir / 'output.log'}")
    return wall, peak_kb / 1024


def sweeper_run(trials: int, workdir: Path, tracking_uri: str | None) -> dict[str, float]:
    (workdir / "spec.yaml").write_text(spec_text(trials))
    store = tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    sweeper = str(Path(sys.executable).with_name("sweeper"))
    wall, peak = run([sweeper, "run", "spec.yaml", "--yes", "--tracking-uri", store, "--out", "sweeps"], workdir)
    (sweep_dir,) = [path for path in (workdir / "sweeps").iterdir() if path.is_dir()]
    report, _ = run([sweeper, "report", str(sweep_dir), "--tracking-uri", store], workdir)
    check_once(store, sweep_dir.name, trials)
    rows = None
    if tracking_uri is None:
        with sqlite3.connect(workdir / "mlflow.db") as db:
            rows = sum(
                db.execute(f"select count(*) from {table}").fetchone()[0]
                for table in ("runs", "params", "tags", "metrics")
            )
    return {"wall": wall, "peak": peak, "report": report, "rows": rows}


def check_once(store: str, sweep_id: str, trials: int) -> None:
    """Every trial of the sweep in MLflow exactly once (any store: SQLite, or a server over PostgreSQL), or stop."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(f"scale-{trials}")
    query = f"tags.`sweeper.kind` = 'trial' and tags.`sweeper.sweep` = '{sweep_id}'"
    runs = client.search_runs([experiment.experiment_id], query, max_results=50000)
    keys = [run.data.tags.get("sweeper.trial_key") for run in runs]
    if len(keys) != trials or len(set(keys)) != trials:
        sys.exit(f"error: {trials} trials, but MLflow holds {len(keys)} trial runs with {len(set(keys))} keys")


def tune_run(trials: int, workdir: Path) -> dict[str, float]:
    wall, peak = run([sys.executable, str(Path(__file__)), "--bare-tune", str(trials)], workdir)
    return {"wall": wall, "peak": peak, "report": None, "rows": None}


def bare_tune(trials: int) -> None:
    """Every trial through one Tuner, as a user writes it by hand: the workload's `train` with `tune.report`,
    reused workers, one CPU each, no MLflow, no diagnosis, no report."""
    import ray
    from ray import tune

    def trainable(config: dict) -> None:
        module = _workload()
        trial = config["trial"]
        module.train(module.Config(point=trial["point"], seed=trial["seed"]), tune.report)

    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    configs = [{"point": index // SEEDS, "seed": index % SEEDS} for index in range(trials)]
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(Path.cwd() / "tune"), verbose=0),
    ).fit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--harness", choices=("sweeper", "tune"), action="append")
    parser.add_argument("--tracking-uri", help="sweeper's MLflow store (default: a fresh SQLite file per run)")
    parser.add_argument("--bare-tune", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_tune:
        bare_tune(args.bare_tune)
        return
    harnesses = args.harness or ["sweeper", "tune"]
    slots = os.cpu_count() or 1
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for repeat in range(args.repeats):
        for trials in args.trials:
            own = own_seconds(trials)
            for harness in harnesses:
                with tempfile.TemporaryDirectory(prefix=f"scale-{harness}-{trials}-") as scratch:
                    workdir = Path(scratch)
                    measured = (
                        sweeper_run(trials, workdir, args.tracking_uri)
                        if harness == "sweeper"
                        else tune_run(trials, workdir)
                    )
                measured["cost"] = (measured["wall"] - own / slots) / trials
                results.setdefault((harness, trials), []).append(measured)
                print(
                    f"repeat {repeat + 1} {harness} {trials} trials: wall {measured['wall']:.1f} s, "
                    f"own {own:.2f} s, cost/trial {1000 * measured['cost']:.1f} ms, peak {measured['peak']:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )

    def median(harness: str, trials: int, key: str) -> float | None:
        values = [m[key] for m in results[(harness, trials)] if m[key] is not None]
        return statistics.median(values) if values else None

    columns = ("wall s", "cost/trial ms", "MLflow rows/s", "peak MB", "report s")
    print(f"{'harness':8} {'trials':>6} " + " ".join(f"{column:>13}" for column in columns))
    for harness in harnesses:
        for trials in args.trials:
            rows, wall, report = (
                median(harness, trials, "rows"),
                median(harness, trials, "wall"),
                median(harness, trials, "report"),
            )
            print(
                f"{harness:8} {trials:>6} {wall:>13.1f} {1000 * median(harness, trials, 'cost'):>13.1f} "
                f"{'–' if rows is None else f'{rows / wall:.0f}':>13} {median(harness, trials, 'peak'):>13.0f} "
                f"{'–' if report is None else f'{report:.1f}':>13}"
            )
    low, high = min(args.trials), max(args.trials)
    if low != high:
        for harness in harnesses:
            growth = median(harness, high, "cost") / median(harness, low, "cost")
            print(f"{harness}: cost per trial at {high} / at {low} trials = {growth:.2f}")


if __name__ == "__main__":
    main()
