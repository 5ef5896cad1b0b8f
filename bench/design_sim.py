"""Simulate the seeding design on synthetic sweeps, through the real decision code (`sweeper.evidence`).

    python bench/design_sim.py [--sweeps 300] [--seed 1000] [--futility-p 0.2] [--baseline-share 0.65]
                               [--look-growth 1.5] [--gamma -2] [--correlation 0.5] [--no-old]

Prints, for the adaptive design with the given constants, case by case: the family-wise error rate (sweeps
with any false call), the share of real remedies found and the mean trials spent, against the fixed 10-seed
design's (points + 1) x 10 and against the design at commit b2f8376 (futility-only looks 3, 6, 10 and a
baseline at min(sqrt(points), 3) times a point's seeds), run through its own decision code, read from git
(`--no-old` leaves it out). The cases:
- 20 points, none real: the family-wise error rate;
- 20 points, one remedy of the design's size (every seed healthy where the baseline fails half of them, its
  healthy metric one standard deviation better): the power;
- 20 points, one remedy that only makes every seed healthy;
- 10 points, 5 strong remedies (every seed healthy, 2 standard deviations better) and 5 that change nothing;
- 10 points, 5 remedies of the design's size and 5 that change nothing.
Seeds correlate across points (`--correlation`, the share of the variance seed s explains).

The constants in sweeper/evidence.py (FUTILITY_P 0.2, BASELINE_SHARE 0.65, LOOK_GROWTH 1.5, SPENDING_GAMMA -2)
were chosen with this script on random-number seeds 1000 and up (200-400 sweeps a case): among looks 3-6-10
and 3-5-7-10, baseline shares 1.5-3 (and 0.6-0.7 x sqrt(points)) and gamma -2 to 2, the fewest trials with
power at least 0.8 for the design's effect at 20 points and all 5 strong remedies found at 10. The tests
(tests/test_evidence.py) judge them on seeds below 1000.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from sweeper import evidence  # noqa: E402
from sweeper.evidence import SimulatedPoint  # noqa: E402

OLD_DESIGN = "b2f8376"
"""The commit whose design the issue compares against: futility-only looks, sqrt(points) baseline capped at 3."""


@functools.cache  # read from git once per run, however many sweeps ask for it
def old_evidence() -> ModuleType:
    """sweeper/evidence.py as it was at OLD_DESIGN, imported from git (it needs only numpy and scipy)."""
    source = subprocess.run(
        ["git", "show", f"{OLD_DESIGN}:sweeper/evidence.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    spec = importlib.util.spec_from_loader(f"evidence_{OLD_DESIGN}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, f"{OLD_DESIGN}:sweeper/evidence.py", "exec"), module.__dict__)  # noqa: S102
    return module


def verdict(decision: object) -> str:
    """A decision's verdict: a dataclass now, a dict at OLD_DESIGN."""
    return decision["verdict"] if isinstance(decision, dict) else decision.verdict  # type: ignore[attr-defined,index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--futility-p", type=float, default=evidence.FUTILITY_P)
    parser.add_argument("--baseline-share", type=float, default=evidence.BASELINE_SHARE)
    parser.add_argument("--look-growth", type=float, default=evidence.LOOK_GROWTH)
    parser.add_argument("--gamma", type=float, default=evidence.SPENDING_GAMMA)
    parser.add_argument("--correlation", type=float, default=0.5)
    parser.add_argument("--no-old", action="store_true")
    args = parser.parse_args()
    evidence.FUTILITY_P, evidence.BASELINE_SHARE = args.futility_p, args.baseline_share
    evidence.LOOK_GROWTH, evidence.SPENDING_GAMMA = args.look_growth, args.gamma
    modules = {"now": evidence} if args.no_old else {"now": evidence, OLD_DESIGN: old_evidence()}
    null = SimulatedPoint(0.5)
    cases = [
        ("20 points, none real", [null] * 20, 0),
        ("20 points, 1 of the design's size", [SimulatedPoint(0.0, 1.0)] + [null] * 19, 1),
        ("20 points, 1 all healthy, same metric", [SimulatedPoint(0.0, 0.0)] + [null] * 19, 1),
        ("10 points, 5 strong (+2 SD)", [SimulatedPoint(0.0, 2.0)] * 5 + [null] * 5, 5),
        ("10 points, 5 of the design's size", [SimulatedPoint(0.0, 1.0)] * 5 + [null] * 5, 5),
    ]
    started = time.perf_counter()
    for name, module in modules.items():
        design = module.make_design("adaptive", 20, 3, 10)
        print(f"design {name}: looks {design.looks}, baseline at 20 points {design.baseline_looks}")
    print(f"{'case':40} {'design':8} {'FWER':>6} {'found':>6} {'trials':>7} {'vs fixed-10':>12}")
    for index, (case, points, real) in enumerate(cases):
        fixed = (len(points) + 1) * 10
        for name, module in modules.items():
            design = module.make_design("adaptive", len(points), 3, 10)
            rng = np.random.default_rng([args.seed, index])  # the same sweeps for every design
            runs = [module.simulate_sweep(design, null, points, rng, args.correlation) for _ in range(args.sweeps)]
            nulls = range(real, len(points))
            false = np.mean([any(verdict(r[str(i)]) != "no_evidence" for i in nulls) for r, _ in runs])
            found = np.mean([sum(verdict(r[str(i)]) == "fixes" for i in range(real)) / max(real, 1) for r, _ in runs])
            trials = np.mean([spent for _, spent in runs])
            print(f"{case:40} {name:8} {false:6.3f} {found:6.3f} {trials:7.1f} {trials / fixed:11.2f}x")
    print(f"{args.sweeps} sweeps a case, random-number seed {args.seed}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
