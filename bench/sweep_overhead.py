"""Sweep overhead: the same trials through sweeper, bare Ray Tune and a sequential loop, side by side.

    python bench/sweep_overhead.py                      # bench/grid48.yaml, every harness (~20 min on 2 cores)
    python bench/sweep_overhead.py --spec configs/smoke.yaml --harness sweeper

First each trial's own training time is measured with no harness at all: every trial in one warm process
(TensorFlow already imported), one TensorFlow thread, one trial at a time: what a trial costs on one slot.
Then each harness runs the same trials as a fresh process, timed from its start to its exit: imports, Ray
start, scheduling, the trials, logging, the report: what the user waits for.

    efficiency = (sum of the trials' own seconds / parallel slots) / wall seconds

1.0 means the slots never idled and nothing but training ran. Harnesses:
  sweeper        `sweeper run SPEC` (MLflow on a fresh SQLite store, diagnosis, report and plots)
  tune           bench/bare_tune.py with the settings sweeper uses (reused workers, one TF thread per CPU)
  tune-defaults  bench/bare_tune.py with Ray Tune's defaults (a new worker process per trial)
  loop           one `python bench/trials.py SPEC i` after another, TensorFlow's default threads
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HARNESSES = ("sweeper", "tune", "tune-defaults", "loop")


def timed(command: list[str], workdir: Path, log: str) -> float:
    """Wall seconds of one command run to completion in `workdir`; its output goes to a log file there."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    with open(workdir / log, "a") as out:
        done = subprocess.run(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited {done.returncode}; see {workdir / log}")
    return seconds


def own_seconds(spec: Path, workdir: Path) -> list[float]:
    """Each trial's training seconds with no harness: one warm process, one thread, one trial at a time."""
    timed(
        [
            sys.executable,
            str(ROOT / "bench/trials.py"),
            str(spec),
            "all",
            "--warm",
            "--threads",
            "1",
        ],
        workdir,
        "reference.log",
    )
    return [
        json.loads(line)["seconds"]
        for line in (workdir / "reference.log").read_text().splitlines()
        if line.startswith("{")
    ]


def run_harness(name: str, spec: Path, trials: int, workdir: Path) -> dict[str, float]:
    python = sys.executable
    if name == "sweeper":
        wall = timed(
            [
                python,
                "-m",
                "sweeper",
                "run",
                str(spec),
                "--out",
                "sweeps",
                "--yes",
                "--tracking-uri",
                f"sqlite:///{workdir / 'mlflow.db'}",
            ],
            workdir,
            "sweeper.log",
        )
        recorded, busy = recorded_trials(spec, workdir / "sweeps")
        return {"wall": wall, "recorded": recorded, "busy": busy}
    if name == "tune":
        wall = timed(
            [python, str(ROOT / "bench/bare_tune.py"), str(spec), "--reuse-actors", "--one-thread"],
            workdir,
            "tune.log",
        )
        lines = (workdir / "tune.log").read_text().splitlines()
        return {"wall": wall, "busy": float(next(line for line in lines if line.startswith("busy_share")).split()[1])}
    if name == "tune-defaults":
        return {"wall": timed([python, str(ROOT / "bench/bare_tune.py"), str(spec)], workdir, "tune-defaults.log")}
    # the loop: a fresh python (and TensorFlow) per trial, one after another
    return {
        "wall": sum(
            timed([python, str(ROOT / "bench/trials.py"), str(spec), str(index)], workdir, "loop.log")
            for index in range(trials)
        )
    }


def recorded_trials(spec_path: Path, sweeps: Path) -> tuple[float, float]:
    """The trials' training seconds as sweeper's own trials recorded them (two at a time, on a busy machine),
    and the share of the slots' time they held between the first trial's start and the last one's end."""
    from bare_tune import busy_share

    from sweeper.records import is_sweep_folder, load_sweep_meta, load_trials
    from sweeper.spec import load_specs

    specs = {spec.name: spec for spec in load_specs(spec_path)}
    records = []
    for sweep_dir in filter(is_sweep_folder, sweeps.iterdir()):
        records += load_trials(sweep_dir, specs[load_sweep_meta(sweep_dir)["name"]]).values()
    spans = [(r.started, r.started + r.train_seconds) for r in records if r.started is not None]
    return sum(r.train_seconds for r in records), busy_share(spans, os.cpu_count() or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "bench/grid48.yaml")
    parser.add_argument("--harness", action="append", choices=HARNESSES, help="run only these (repeatable)")
    parser.add_argument("--slots", type=int, default=os.cpu_count(), help="parallel trial slots (default: CPUs)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder with logs and sweeps")
    parser.add_argument(
        "--repeats", type=int, default=1, help="run the harnesses this many times, interleaved; medians shown"
    )
    args = parser.parse_args()
    spec = args.spec.resolve()
    harnesses = args.harness or list(HARNESSES)

    from sweeper.errors import SweeperError
    from sweeper.spec import load_specs

    try:
        load_specs(spec)  # a broken spec fails here, in one line, before the long runs
    except SweeperError as exc:
        sys.exit(f"error: {exc}")

    workdir = Path(tempfile.mkdtemp(prefix="sweeper-bench-"))
    try:
        own = own_seconds(spec, workdir)
        slots = min(args.slots, len(own))
        ideal = sum(own) / slots
        print(
            f"{spec.name}: {len(own)} trials, own training time {sum(own):.1f} s "
            f"(median {sorted(own)[len(own) // 2]:.2f} s), {slots} slots: ideal wall {ideal:.1f} s",
            flush=True,
        )
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in harnesses}
        for repeat in range(args.repeats):  # interleaved: background load hits every harness alike
            for name in harnesses:
                scratch = workdir / f"{name}-{repeat + 1}"
                scratch.mkdir()
                runs[name].append(run_harness(name, spec, len(own), scratch))
                wall, busy = runs[name][-1]["wall"], runs[name][-1].get("busy")
                shown = "" if busy is None else f"   slots busy {busy:.1%} (first start to last end)"
                print(f"  {name:<14} wall {wall:7.1f} s   efficiency {ideal / wall:.2f}{shown}", flush=True)
        results = {
            name: {key: statistics.median(run[key] for run in measured) for key in measured[0]}
            for name, measured in runs.items()
        }
    finally:
        if args.keep:
            print(f"logs and sweeps kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    if args.repeats > 1:
        print(f"medians of {args.repeats} interleaved runs")
    print(f"{'harness':<14} {'wall s':>8} {'efficiency':>11} {'wall / sweeper':>15} {'slots busy':>11}")
    for name, result in results.items():
        relative = f"{result['wall'] / results['sweeper']['wall']:.2f}" if "sweeper" in results else "-"
        busy = f"{result['busy']:.1%}" if "busy" in result else "-"
        print(f"{name:<14} {result['wall']:8.1f} {ideal / result['wall']:11.2f} {relative:>15} {busy:>11}")
    if "sweeper" in results:
        recorded = results["sweeper"]["recorded"]
        print(
            f"\nsweeper's trials recorded {recorded:.1f} training seconds (vs {sum(own):.1f} s alone): slot "
            f"efficiency {recorded / slots / results['sweeper']['wall']:.2f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "spec": str(args.spec),
                    "trials": len(own),
                    "slots": slots,
                    "own_seconds": sum(own),
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
