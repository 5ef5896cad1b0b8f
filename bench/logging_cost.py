"""What sweeper's bookkeeping costs a trial: MLflow logging per reported step, and the progress display.

    python bench/logging_cost.py [--trials 48] [--steps 25]

MLflow: a real tracker on a fresh SQLite store records --trials trials of --steps reports each (a run,
its parameters, every report's metrics in batches, verdict and summary), as a sweep does. Two costs:
  - on the trial's path: what Tune's callback does per report before the trial may go on (queue the
    report for the MLflow thread), in microseconds;
  - in all: the MLflow thread's seconds per report (it shares the machine's CPUs with the trials).
Both are set against one bench/grid48.yaml trial's seconds per report, measured here with TensorFlow warm.
Progress: the rich display's seconds per finished trial, and its live refresh's CPU share while idle.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seconds_per_report() -> float:
    """One grid48 baseline trial, TensorFlow already imported: its seconds per report (setup included)."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow  # noqa: F401

    from sweeper.spec import load_specs
    from sweeper.workload import load

    (spec,) = load_specs(ROOT / "bench/grid48.yaml")
    workload = load(spec.workload)
    reports: list[dict] = []
    started = time.perf_counter()
    workload.train(workload.make_config({**spec.base_overrides(workload), "seed": 0}), reports.append)
    return (time.perf_counter() - started) / len(reports)


def fake_trials(count: int, steps: int):
    """Trial records shaped like a ListMLE sweep's: 7 metrics per report, a verdict."""
    from sweeper.health import diagnose
    from sweeper.records import TrialRecord
    from sweeper.spec import GridPoint

    records = []
    for index in range(count):
        point = GridPoint(
            knobs={"hidden_activation": "tanh", "list_shape": "grouped"}, label=f"point{index}", is_baseline=False
        )
        history = [
            {
                "step": s,
                "loss": 15.0 - s * 0.1,
                "val_loss": 15.1 - s * 0.1,
                "grad_norm": 1.0 / s,
                "ndcg5": 0.5 + s * 0.01,
                "chance": 0.41,
                "oracle": 0.91,
            }
            for s in range(1, steps + 1)
        ]
        record = TrialRecord(key=f"point{index}|seed=0", point=point, seed=0, history=history, train_seconds=5.0)
        record.diagnosis = diagnose(history, "ndcg5", "max", None)
        records.append(record)
    return records


def mlflow_cost(trials: int, steps: int) -> tuple[float, float]:
    """(callback seconds per report, MLflow thread seconds per report) for a sweep of this size."""
    from sweeper.records import save_trial
    from sweeper.tracking import SweepTracker, TrialMirror

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        tracker = SweepTracker(f"sqlite:///{folder / 'mlflow.db'}", "bench-logging", "bench-logging-1", {"epochs": 25})
        tracker.ensure_parent({"workload": "listmle"}, {})  # the store's one-time setup is not a per-step cost
        records = fake_trials(trials, steps)
        callback = 0.0
        started = time.perf_counter()
        mirror = TrialMirror(tracker, folder, ({}, {}))
        for record in records:
            history, record.history = record.history, []
            tick = time.perf_counter()
            mirror.trial_started(record, "listmle")
            for report in history:
                record.history.append(report)
                mirror.trial_reported(record, report["step"], report)
            save_trial(folder, record)
            mirror.trial_ended(record, "ndcg5")
            callback += time.perf_counter() - tick
        mirror.close()
        total = time.perf_counter() - started
        assert len(tracker._trial_runs()) == trials, "every trial must have its run"
    reports = trials * steps
    return callback / reports, total / reports


def progress_cost(trials: int) -> tuple[float, float]:
    """(seconds per finished trial on a live terminal display, idle CPU share of its refresh thread)."""
    from rich.console import Console

    from sweeper.progress import SweepProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with SweepProgress("bench", trials, console=console) as display:
        started = time.perf_counter()
        for index in range(trials):
            display.trial_started(f"point{index}|seed=0")
            display.trial_finished(
                f"point{index}|seed=0", f"point{index}", "healthy", 0.5 + index / 1000, "ndcg5", "max"
            )
        per_trial = (time.perf_counter() - started) / trials
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(2.0)  # the display refreshes on its own thread meanwhile
        idle_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return per_trial, idle_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()

    interval = seconds_per_report()
    on_path, in_all = mlflow_cost(args.trials, args.steps)
    per_trial, idle_share = progress_cost(args.trials)
    trial_seconds = interval * args.steps
    print(f"a grid48 trial: {interval * 1000:.0f} ms per report ({args.steps} reports, {trial_seconds:.1f} s)")
    print(f"MLflow, on the trial's path: {on_path * 1e6:7.1f} us per report = {on_path / interval:.3%} of trial time")
    print(
        f"MLflow, all writes:          {in_all * 1e3:7.2f} ms per report = {in_all / interval:.2%} of trial time "
        "(on the writer thread, beside the trials)"
    )
    print(
        f"progress display: {per_trial * 1e3:.2f} ms per finished trial = {per_trial / trial_seconds:.3%} of trial "
        f"time; live refresh {idle_share:.2%} of one CPU"
    )


if __name__ == "__main__":
    main()
