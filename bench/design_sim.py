"""Simulate the seeding design on synthetic sweeps, through the real decision code (`sweeper.evidence`).

    python bench/design_sim.py [--points 20] [--sweeps 300] [--seed 1000] [--futility-p 0.2] [--share-cap 3]

Prints, for the adaptive design with the given constants: the family-wise error rate with no real effect,
the power to find a remedy that makes every seed healthy where the baseline fails half of them with the
healthy metric one standard deviation better, the same for a remedy that only makes every seed healthy,
and the mean trials spent against the fixed 10-seed design's (points + 1) x 10.

The constants in sweeper/evidence.py (FUTILITY_P = 0.2, BASELINE_SHARE_CAP = 3) were chosen with this script
on random-number seeds 1000 and up (--seed 1000, 300 sweeps per case), trading power for trials among
futility thresholds 0.1-0.4 and caps 3-4; the tests (tests/test_evidence.py) judge them on seeds below 1000.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sweeper import evidence
from sweeper.evidence import SimulatedPoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--sweeps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--futility-p", type=float, default=evidence.FUTILITY_P)
    parser.add_argument("--share-cap", type=float, default=evidence.BASELINE_SHARE_CAP)
    parser.add_argument("--correlation", type=float, default=0.5)
    args = parser.parse_args()
    evidence.FUTILITY_P, evidence.BASELINE_SHARE_CAP = args.futility_p, args.share_cap
    design = evidence.make_design("adaptive", args.points, 3, 10)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    def run(points: list[SimulatedPoint]) -> list[tuple[dict, int]]:
        return [
            evidence.simulate_sweep(design, SimulatedPoint(0.5), points, rng, args.correlation)
            for _ in range(args.sweeps)
        ]

    nulls = [SimulatedPoint(0.5)] * (args.points - 1)
    null = run([SimulatedPoint(0.5), *nulls])
    fwer = np.mean([any(d.verdict in ("fixes", "harmful") for d in r.values()) for r, _ in null])
    strong = run([SimulatedPoint(0.0, 1.0), *nulls])
    healthy_only = run([SimulatedPoint(0.0, 0.0), *nulls])
    print(f"design: looks {design.looks}, baseline {design.baseline_looks}, futility p {args.futility_p}")
    print(f"family-wise error rate, no real effect: {fwer:.3f}")
    for name, runs in (("all healthy, +1 SD", strong), ("all healthy, same metric", healthy_only)):
        power = np.mean([r["0"].verdict == "fixes" for r, _ in runs])
        spent = np.mean([trials for _, trials in runs])
        fixed = (args.points + 1) * 10
        print(f"{name}: power {power:.3f}; trials {spent:.0f} vs fixed 10-seed {fixed} ({1 - spent / fixed:.0%} fewer)")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
