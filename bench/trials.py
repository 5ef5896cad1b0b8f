"""Runs trials of a sweep spec in this one process, with no harness around them.

    python bench/trials.py SPEC INDEX [INDEX ...] [--warm] [--threads N]

INDEX counts the trials of every sweep in SPEC (each sweep's points x seeds, in file order); `all` means all
of them. Prints one JSON line per trial: its key and its own training seconds (the `train` call alone).

One index per process is the sequential loop users write by hand (a fresh Python, a fresh TensorFlow per
trial). All indices in one process with `--warm` (TensorFlow imported before any clock starts) and one
thread gives each trial's own training time on one slot: the yardstick of `bench/sweep_overhead.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not


def trial_list(spec_path: str) -> list[tuple[str, dict, str]]:
    """(workload, Config overrides, trial key) of every trial in the spec file, in a fixed order."""
    from sweeper.records import trial_key
    from sweeper.spec import load_specs
    from sweeper.workload import load

    trials = []
    for spec in load_specs(spec_path):
        base = spec.base_overrides(load(spec.workload))
        for seed in range(spec.seeds):
            for point in spec.points:
                trials.append((spec.workload, {**base, **point.knobs, "seed": seed}, trial_key(point.label, seed)))
    return trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("indices", nargs="+")
    parser.add_argument("--warm", action="store_true", help="import TensorFlow before timing the first trial")
    parser.add_argument("--threads", type=int, help="TensorFlow intra- and inter-op threads (default: TF's own)")
    args = parser.parse_args()
    if args.threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(args.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.warm:
        import tensorflow  # noqa: F401

    from sweeper.workload import load

    trials = trial_list(args.spec)
    chosen = range(len(trials)) if args.indices == ["all"] else [int(i) for i in args.indices]
    for index in chosen:
        name, overrides, key = trials[index]
        workload = load(name)
        reports: list[dict] = []
        started = time.perf_counter()
        try:
            workload.train(workload.make_config(overrides), reports.append)
            error = None
        except Exception as exc:  # a trial that raises is a result, as in a sweep
            error = f"{type(exc).__name__}"
        seconds = time.perf_counter() - started
        final = reports[-1].get(workload.metric) if reports else None
        print(json.dumps({"index": index, "key": key, "seconds": seconds, "final": final, "error": error}), flush=True)


if __name__ == "__main__":
    main()
