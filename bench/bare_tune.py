"""The trials of a sweep spec through bare Ray Tune: what a user writes by hand without sweeper.

    python bench/bare_tune.py SPEC [--reuse-actors] [--one-thread]

One Tune trial per grid point x seed, each calling the workload's `train` with `tune.report` as its report,
one CPU each; no diagnosis, no early stopping, no MLflow, no report. Ray's defaults start a fresh worker
process (and a fresh TensorFlow) per trial; `--reuse-actors` keeps workers, `--one-thread` gives TensorFlow
one thread per one-CPU trial, as sweeper does. Prints the seconds of `Tuner.fit`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trials import trial_list  # noqa: E402  (bench/ is on sys.path when this file runs)


def trainable(param: dict) -> None:
    from ray import tune

    began = time.time()
    config = param["trial"]
    if config["one_thread"]:
        os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    module = importlib.import_module(f"experiments.{config['workload']}")

    def report(metrics: dict) -> None:  # when the trial started and how long it has run: its busy slot
        tune.report({**metrics, "started": began, "elapsed": time.time() - began})

    module.train(module.Config(**config["overrides"]), report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--reuse-actors", action="store_true")
    parser.add_argument("--one-thread", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import ray
    from ray import tune

    configs = [
        {"workload": name, "overrides": overrides, "one_thread": args.one_thread}
        for name, overrides, _ in trial_list(args.spec)
    ]
    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    started = time.perf_counter()
    results = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(reuse_actors=args.reuse_actors),
        run_config=tune.RunConfig(storage_path=str(Path.cwd() / "tune"), verbose=0),
    ).fit()
    print(f"fit_seconds {time.perf_counter() - started:.2f}")
    reported = [r.metrics for r in results if r.metrics and "started" in r.metrics]  # not a trial that raised first
    spans = [(metrics["started"], metrics["started"] + metrics["elapsed"]) for metrics in reported]
    print(f"busy_share {busy_share(spans, int(ray.cluster_resources()['CPU'])):.4f}")


def busy_share(spans: list[tuple[float, float]], slots: int) -> float:
    """The share of the slots' time that trials held, between the first trial's start and the last one's end."""
    first, last = min(start for start, _ in spans), max(end for _, end in spans)
    return sum(end - start for start, end in spans) / (slots * (last - first))


if __name__ == "__main__":
    main()
