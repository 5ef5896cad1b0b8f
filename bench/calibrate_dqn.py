"""Calibrate the dqn workload's `collapse_margin` on seeds kept for calibration (1000 and up), never on the
seeds a sweep reports (0..299).

    python bench/calibrate_dqn.py [--seeds 1000-1004] [--processes 2]

Runs, without Ray, the failing baseline (loss=regress_to_zero: a Q-network regressed to 0, whose greedy
policy is a fixed function of the state that learned nothing) and the fix (loss=td) on CartPole-v1 and
MountainCar-v0 at the workload's full budget, and prints each trial's final return as a share of the
chance->oracle gap: (return - chance) / (oracle - chance). The margin must sit above every share a policy
that learned nothing reaches (else luck counts as learning), and below what a learner reaches.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os


def trial(args: tuple[str, str, int]) -> tuple[str, str, int, float, float, float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    from sweeper.workload import load

    env, loss, seed = args
    workload = load("dqn")
    reports: list[dict] = []
    workload.train(workload.make_config({"env": env, "loss": loss, "seed": seed}), reports.append)
    final = reports[-1]
    return env, loss, seed, final["eval_return"], final["chance"], final["oracle"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1000-1004", help="first-last, both 1000 or more")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    first, last = (int(part) for part in args.seeds.split("-"))
    if first < 1000:
        parser.error("--seeds: calibration seeds are 1000 and up; sweeps report seeds below")
    jobs = [
        (env, loss, seed)
        for env in ("CartPole-v1", "MountainCar-v0")
        for loss in ("regress_to_zero", "td")
        for seed in range(first, last + 1)
    ]
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        results = pool.map(trial, jobs)
    print(f"{'env':16} {'loss':16} {'seed':>5} {'return':>8} {'chance':>8} {'oracle':>8} {'gap share':>9}")
    for env, loss, seed, value, chance, oracle in results:
        share = (value - chance) / (oracle - chance)
        print(f"{env:16} {loss:16} {seed:5d} {value:8.1f} {chance:8.1f} {oracle:8.1f} {share:9.3f}")


if __name__ == "__main__":
    main()
