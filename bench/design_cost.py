"""What the adaptive design spent, beside what the fixed 10-seed design would have: from finished sweep folders.

    python bench/design_cost.py SWEEP_DIR [SWEEP_DIR ...]

For each sweep: its trials and training seconds (the adaptive design as run), and the fixed design's cost
estimated from the same sweep's measured seconds: every point and the baseline at 10 seeds, each point's
trials at that point's mean training seconds. The fixed design's own decisions are not replayed here: that
needs every point run at 10 seeds (see README, Verdicts, for what was and was not run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FIXED_SEEDS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    args = parser.parse_args()
    total_spent = total_fixed = 0.0
    print(f"{'sweep':40} {'trials':>7} {'trial-s':>9} {'fixed-10 trial-s':>17} {'saved':>6}")
    for folder in args.sweeps:
        seconds: dict[str, list[float]] = {}
        for path in (folder / "trials").glob("*.json"):
            trial = json.loads(path.read_text())
            seconds.setdefault(trial["label"], []).append(float(trial.get("train_seconds", 0.0)))
        spent = sum(sum(values) for values in seconds.values())
        fixed = sum(FIXED_SEEDS * sum(values) / len(values) for values in seconds.values())
        total_spent, total_fixed = total_spent + spent, total_fixed + fixed
        trials = sum(len(values) for values in seconds.values())
        print(f"{folder.name[:40]:40} {trials:7d} {spent:9.0f} {fixed:17.0f} {1 - spent / fixed:6.0%}")
    print(f"{'all':40} {'':7} {total_spent:9.0f} {total_fixed:17.0f} {1 - total_spent / total_fixed:6.0%}")


if __name__ == "__main__":
    main()
