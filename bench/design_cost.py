"""The adaptive design against the fixed 10-seed design, on the same seeds: trial-seconds and decisions.

    python bench/design_cost.py SWEEP_DIR [SWEEP_DIR ...] [--work DIR] [--report-only]

Each SWEEP_DIR is a finished sweep run with the adaptive design (`sweeper run configs/<workload>.yaml`). Its
trials are copied to `<work>/<sweep>` and completed to the superset both designs draw from: every point at
10 seeds and the baseline at the adaptive design's last baseline look (those trials run on Ray, resumably:
rerun the command after a kill and it runs only what is still missing). Then both designs are replayed on
that superset through the real decision code: the adaptive one on the prefixes of the seeds its rule asks
for (exactly what the sweep ran), the fixed one on seeds 0..9 of every point and of the baseline. Prints,
per sweep and in all, the trial-seconds (the trials' own training seconds) each design spends, and every
grid point whose verdict differs. `--report-only` replays what the work folders hold, running nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXED_SEEDS = 10


def superset(spec) -> list:
    design = spec.design
    return [
        (point, seed)
        for point in spec.points
        for seed in range(design.baseline_looks[-1] if point.is_baseline else max(FIXED_SEEDS, design.looks[-1]))
    ]


def complete(sweep_dir: Path, work: Path) -> Path:
    """The work copy of a sweep, with every trial of the superset run (only the missing ones)."""
    from sweeper import sweep
    from sweeper.records import SPEC_FILE, SWEEP_FILE, TRIALS_DIR, load_trials, trial_key

    copy = work / sweep_dir.name
    if not copy.exists():
        (copy / TRIALS_DIR).mkdir(parents=True)
        for name in (SPEC_FILE, SWEEP_FILE):
            shutil.copy2(sweep_dir / name, copy / name)
        for trial in (sweep_dir / TRIALS_DIR).glob("*.json"):
            shutil.copy2(trial, copy / TRIALS_DIR / trial.name)
    opened = sweep.open_sweep(copy, f"sqlite:///{work.resolve() / 'mlflow.db'}")
    found = load_trials(copy, opened.spec)
    missing = [(p, s) for p, s in superset(opened.spec) if trial_key(p.label, s) not in found]
    if missing:
        sweep.start_ray(None)
        sweep.run_round([(opened, missing)], {copy: found}, options=opened.options)
    return copy


def replay(copy: Path) -> tuple[str, dict[str, tuple[int, float, dict[str, str]]], int]:
    """Per design: trials, trial-seconds and verdict by grid point; and how many superset trials are missing."""
    from sweeper import analysis, evidence
    from sweeper.records import SPEC_FILE, load_trials, trial_key
    from sweeper.spec import load_specs
    from sweeper.workload import load

    (spec,) = load_specs(copy / SPEC_FILE)
    workload = load(spec.workload)
    found = load_trials(copy, spec)
    missing = sum(trial_key(p.label, s) not in found for p, s in superset(spec))
    designs = {
        "adaptive": spec.design,
        "fixed-10": evidence.make_design("fixed", len(spec.points) - 1, FIXED_SEEDS, FIXED_SEEDS, spec.alpha),
    }
    results = {}
    for name, design in designs.items():
        used_spec = spec if name == "adaptive" else spec.with_seeds(FIXED_SEEDS)
        keys = [trial_key(p.label, s) for p, s in analysis.planned_trials(used_spec, workload, found)]
        used = [found[key] for key in keys if key in found]
        outcomes = analysis.outcomes_of(used, workload.metric)
        points = analysis.rank_points(outcomes, workload.mode, design)
        seconds = sum(r.train_seconds for r in used)
        results[name] = (len(used), seconds, {p.label: p.verdict for p in points if not p.is_baseline})
    return spec.name, results, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--work", type=Path, default=Path("bench-design"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(exist_ok=True)
    totals: dict[str, list[float]] = {"adaptive": [0, 0.0], "fixed-10": [0, 0.0]}
    print(
        f"{'sweep':22} {'trials':>13} {'trial-seconds':>15} {'saved':>6}  decisions that differ (adaptive vs fixed-10)"
    )
    print(f"{'':22} {'adapt. fixed':>13} {'adapt. fixed':>15}")
    for sweep_dir in args.sweeps:
        copy = args.work / sweep_dir.name if args.report_only else complete(sweep_dir, args.work)
        name, results, missing = replay(copy)
        (a_trials, adaptive, a_verdicts), (f_trials, fixed, f_verdicts) = results["adaptive"], results["fixed-10"]
        for design, trials, seconds in (("adaptive", a_trials, adaptive), ("fixed-10", f_trials, fixed)):
            totals[design][0] += trials
            totals[design][1] += seconds
        differ = [
            f"{label}: {a_verdicts[label]} vs {f_verdicts[label]}"
            for label in a_verdicts
            if a_verdicts[label] != f_verdicts[label]
        ]
        note = f" ({missing} superset trials missing)" if missing else ""
        print(
            f"{name[:22]:22} {a_trials:6d} {f_trials:6d} {adaptive:7.0f} {fixed:7.0f} {1 - adaptive / fixed:6.0%}  "
            f"{'; '.join(differ) or 'none'}{note}"
        )
    (trials_a, seconds_a), (trials_f, seconds_f) = totals["adaptive"], totals["fixed-10"]
    print(
        f"{'all':22} {trials_a:6.0f} {trials_f:6.0f} {seconds_a:7.0f} {seconds_f:7.0f} {1 - seconds_a / seconds_f:6.0%}"
    )


if __name__ == "__main__":
    main()
