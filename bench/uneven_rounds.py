"""Slots kept busy across rounds: two adaptive sweeps whose trials differ 10x in length, run by this tree and
by an earlier commit, side by side in one run.

    python bench/uneven_rounds.py                   # bench/uneven.yaml, this tree against b2f8376 (~4 min)
    python bench/uneven_rounds.py --ref HEAD~1 --repeats 2

Each side runs `sweeper run SPEC --tracking-uri none` in a fresh folder, with PYTHONPATH at its own source
(the earlier commit's is exported with `git archive`), and is timed from its start to its exit. The trials
sleep (bench/workloads/sleepy_coin.py), so what is measured is how the harness fills its slots:

    busy share = (sum of the trials' recorded seconds) / (slots x (last trial's end - first trial's start))

1.0 means no slot ever idled between the first trial and the last. Where a sweep's round had to wait for
the other sweep's slowest trial, the short sweep's slots idle and the share drops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def source_of(ref: str, into: Path) -> Path:
    """The package sources at `ref`, exported (no checkout of this tree is touched)."""
    archive = into / "source.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), ref], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "source", filter="data")
    return into / "source"


def run_side(source: Path, spec: Path, workdir: Path) -> dict[str, float]:
    """Wall seconds, trials and busy share of one `sweeper run` of `spec` with the package at `source`."""
    from sweep_overhead import recorded_trials

    shutil.copy2(spec, workdir / spec.name)
    shutil.copytree(spec.parent / "workloads", workdir / "workloads", dirs_exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(source), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "sweeper", "run", spec.name, "--out", "sweeps", "--tracking-uri", "none"]
    started = time.perf_counter()
    with open(workdir / "sweeper.log", "w") as log:
        done = subprocess.run(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited {done.returncode}; see {workdir / 'sweeper.log'}")
    recorded, busy = recorded_trials(workdir / spec.name, workdir / "sweeps")
    trials = sum(1 for _ in (workdir / "sweeps").glob("*/trials/*.json"))
    return {"wall": wall, "trials": trials, "recorded": recorded, "busy": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "bench/uneven.yaml")
    parser.add_argument("--ref", default="b2f8376", help="the earlier commit to compare with")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, interleaved")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="uneven-") as folder:
        root = Path(folder)
        sides = {"this tree": ROOT, args.ref: source_of(args.ref, root)}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name, source in sides.items():
                workdir = root / f"{name.replace(' ', '-')}-{repeat}"
                workdir.mkdir()
                results[name].append(run_side(source, args.spec.resolve(), workdir))
                run = results[name][-1]
                print(
                    f"{name}: wall {run['wall']:.1f} s, {run['trials']:.0f} trials, "
                    f"{run['recorded']:.0f} trial-seconds, busy share {run['busy']:.3f}",
                    flush=True,
                )
    print(f"slots: {os.cpu_count()}; medians of {args.repeats} run(s) a side")
    for name, runs in results.items():
        print(
            f"{name}: busy share {statistics.median(r['busy'] for r in runs):.3f}, "
            f"wall {statistics.median(r['wall'] for r in runs):.1f} s"
        )
    this, earlier = (statistics.median(r["wall"] for r in results[name]) for name in sides)
    print(f"wall, this tree / {args.ref}: {this / earlier:.2f}")


if __name__ == "__main__":
    main()
