"""Compute saved by stopping diverging trials early, measured: one PL-Rank sweep run twice, side by side.

    python bench/early_stop.py [--spec configs/plrank.yaml] [--only plrank-estimator] [--seeds 3]

The same sweep runs with early stopping (sweeper's default: a trial ends at the report where it is diagnosed
non-finite or exploding) and with `--no-early-stop` (every trial runs all its steps). Prints the
trial-seconds (sum of the trials' own training seconds) and wall seconds of both, the share saved, and
whether every trial got the same verdict both ways: stopping early must save compute, not change answers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(spec: Path, only: str, seeds: int, workdir: Path, *extra: str) -> tuple[float, dict[str, dict]]:
    """Wall seconds of one `sweeper run`, and its trials (key -> verdict and training seconds)."""
    from sweeper.records import is_sweep_folder

    out = workdir / ("stopped" if not extra else "full")
    command = [
        sys.executable,
        "-m",
        "sweeper",
        "run",
        str(spec),
        "--only",
        only,
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        "--tracking-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        *extra,
    ]
    started = time.perf_counter()
    with open(workdir / "sweeper.log", "a") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited {done.returncode}; see {workdir / 'sweeper.log'}")
    (sweep_dir,) = [path for path in out.iterdir() if is_sweep_folder(path)]
    trials = {}
    for path in (sweep_dir / "trials").glob("*.json"):
        trial = json.loads(path.read_text())
        trials[trial["key"]] = {
            "verdict": trial["verdict"],
            "seconds": trial["train_seconds"],
            "reports": len(trial["history"]),
        }
    return wall, trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "configs/plrank.yaml")
    parser.add_argument("--only", default="plrank-estimator", help="the sweep of SPEC to run")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sweeper-bench-") as scratch:
        workdir = Path(scratch)
        stopped_wall, stopped = run(args.spec, args.only, args.seeds, workdir)
        full_wall, full = run(args.spec, args.only, args.seeds, workdir, "--no-early-stop")

    stopped_seconds = sum(t["seconds"] for t in stopped.values())
    full_seconds = sum(t["seconds"] for t in full.values())
    cut = [key for key, t in stopped.items() if t["reports"] < full[key]["reports"]]
    changed = [key for key in full if full[key]["verdict"] != stopped[key]["verdict"]]
    print(f"{args.only}: {len(full)} trials, {len(cut)} stopped early")
    print(f"{'':<20} {'trial-seconds':>14} {'wall s':>8}")
    print(f"{'run to the end':<20} {full_seconds:14.1f} {full_wall:8.1f}")
    print(f"{'early stopping':<20} {stopped_seconds:14.1f} {stopped_wall:8.1f}")
    print(
        f"saved: {1 - stopped_seconds / full_seconds:.0%} of trial-seconds, {1 - stopped_wall / full_wall:.0%} of wall"
    )
    if changed:
        print(f"verdicts that differ ({len(changed)}):")
        for key in sorted(changed):
            print(f"  {key}: {full[key]['verdict']} when run to the end, {stopped[key]['verdict']} when stopped")
    else:
        print(f"verdicts: identical for all {len(full)} trials")


if __name__ == "__main__":
    main()
