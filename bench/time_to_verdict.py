"""Trial-seconds to every verdict: the design at b2f8376, the design now and a fixed 10-seed design.

    python bench/time_to_verdict.py SWEEP_DIR [SWEEP_DIR ...] [--work DIR] [--report-only]
    python bench/time_to_verdict.py --live SPEC [--only SWEEP ...] [--work DIR]

Replay. Each SWEEP_DIR is a finished sweep (any design). Its trials are copied to `<work>/<sweep>` and
completed to the superset every design draws from (a sweep run with a fixed design is replayed with the
default adaptive one, 3 to 10 seeds a point): each point at 10 seeds and the baseline at the largest
baseline look of the three designs (the missing trials run on Ray, resumably: rerun the command after a kill
and it runs only what is still missing). Then each design is replayed on that superset through its own
decision code (b2f8376's `sweeper/evidence.py` read from git, today's, and a fixed design of 10 seeds a
point): it is shown the seeds it asks for, round by round, until it is done, and it spends the trials' own
training seconds. Prints per sweep and in all the trials and trial-seconds of each design, and every grid
point whose verdict differs from the fixed design's. `--report-only` replays what the work folders hold.

Live. `--live SPEC` runs the spec's sweeps (those named by `--only`, else all) with `sweeper run` (the
design now, adaptive where the spec says fixed; every trial on Ray with its diagnosis, MLflow and report)
and then the same sweeps as a fixed 10-seed grid through bare Ray Tune (`bench/bare_tune.py`: no
diagnosis, no MLflow), one after the other in this one run on this machine, and prints both wall times and
their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from design_sim import OLD_DESIGN, old_evidence, verdict  # noqa: E402  (bench/ is on sys.path)

FIXED_SEEDS = 10
DESIGNS = (OLD_DESIGN, "now", f"fixed-{FIXED_SEEDS}")

Plan = Callable[[Mapping[str, Any]], tuple[dict[str, int], int, bool]]
"""Scores so far -> the seeds each point and the baseline need now, and whether the design is done."""
Judge = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, str]]
"""Scores and health as shown -> each point's verdict."""


def designs(spec: Any) -> dict[str, tuple[Any, Plan, Judge]]:
    """Each design: its Design value, its planner and its judge, through its own decision code."""
    from sweeper import evidence
    from sweeper.spec import BASELINE_LABEL

    points = len(spec.points) - 1
    # A sweep run with a fixed design is replayed with the default adaptive one (3 to 10 seeds).
    seeds, most = (spec.seeds, spec.max_seeds) if spec.design_kind == "adaptive" else (3, 10)
    old = old_evidence()
    old_design = old.make_design("adaptive", points, seeds, most, spec.alpha, spec.correction)
    now = evidence.make_design("adaptive", points, seeds, most, spec.alpha, spec.correction)
    fixed = evidence.make_design("fixed", points, FIXED_SEEDS, FIXED_SEEDS, spec.alpha, spec.correction)

    def old_plan(scores: Mapping[str, Any]) -> tuple[dict[str, int], int, bool]:
        states, baseline, done = old.seeds_wanted(old_design, scores, BASELINE_LABEL)
        return {label: s.seeds_wanted for label, s in states.items() if s.status != "dropped"}, baseline, done

    def planner(design: Any) -> Plan:
        return lambda scores: evidence.seeds_to_run(design, scores, BASELINE_LABEL)

    def judge(module: Any, design: Any) -> Judge:
        return lambda scores, healthy: {
            label: verdict(d) for label, d in module.decide(design, scores, healthy, BASELINE_LABEL).items()
        }

    return {
        OLD_DESIGN: (old_design, old_plan, judge(old, old_design)),
        "now": (now, planner(now), judge(evidence, now)),
        f"fixed-{FIXED_SEEDS}": (fixed, planner(fixed), judge(evidence, fixed)),
    }


def superset(spec: Any) -> list[tuple[Any, int]]:
    """Every (point, seed) any of the designs may ask for."""
    looks = [design for design, _, _ in designs(spec).values()]
    point_seeds = max(max(d.looks[-1] for d in looks), FIXED_SEEDS)
    baseline_seeds = max(d.baseline_looks[-1] for d in looks)
    return [(p, s) for p in spec.points for s in range(baseline_seeds if p.is_baseline else point_seeds)]


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
    """Per design: trials, trial-seconds and verdict by grid point; and how many superset trials are missing
    (a design that asks for one of them stops there, short of its verdicts)."""
    from sweeper import analysis, ranking
    from sweeper.records import SPEC_FILE, load_trials, trial_key
    from sweeper.spec import load_specs
    from sweeper.workload import load

    (spec,) = load_specs(copy / SPEC_FILE)
    workload = load(spec.workload)
    found = load_trials(copy, spec)
    missing = sum(trial_key(p.label, s) not in found for p, s in superset(spec))
    labels = [p.label for p in spec.points]
    groups = ranking.by_seed(analysis.outcomes_of(list(found.values()), workload.metric), labels)
    scores = ranking.scores_by_label(groups, workload.mode)
    healthy = {label: [o.healthy for o in group] for label, group in groups.items()}
    seconds = {label: [found[trial_key(label, o.seed)].train_seconds for o in group] for label, group in groups.items()}
    baseline = ranking.baseline_label(groups)
    results = {}
    for name, (_, plan, judge) in designs(spec).items():
        shown = dict.fromkeys(labels, 0)
        while True:
            wanted, baseline_seeds, done = plan({label: scores[label][: shown[label]] for label in labels})
            asked = {**wanted, baseline: baseline_seeds}
            grown = {label: min(max(shown[label], n), len(scores[label])) for label, n in asked.items()}
            if done or all(grown[label] == shown[label] for label in grown):  # done, or short of trials
                break
            shown.update(grown)
        verdicts = judge(
            {label: scores[label][: shown[label]] for label in labels},
            {label: healthy[label][: shown[label]] for label in labels},
        )
        spent = sum(sum(seconds[label][: shown[label]]) for label in labels)
        results[name] = (sum(shown.values()), spent, verdicts)
    return spec.name, results, missing


def live(spec_path: Path, only: list[str], work: Path) -> None:
    """`sweeper run SPEC` against bare Ray Tune's fixed 10-seed grid of it, one after the other."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    documents = [d for d in yaml.load_all(spec_path.read_text()) if not only or d.get("name") in only]
    for document in documents:
        if str(document.get("workload", "")).endswith(".py"):
            document["workload"] = str((spec_path.parent / document["workload"]).resolve())
        if document.get("design") == "fixed":  # the design now is the default adaptive one: 3 to 10 seeds
            document.update(seeds=3, design="adaptive")
    adaptive_spec, fixed_spec = work / f"{spec_path.stem}-now.yaml", work / f"{spec_path.stem}-fixed.yaml"
    with adaptive_spec.open("w") as stream:
        yaml.dump_all(documents, stream)
    for document in documents:
        document.update(seeds=FIXED_SEEDS, design="fixed")
        document.pop("max_seeds", None)
    with fixed_spec.open("w") as stream:
        yaml.dump_all(documents, stream)
    runs = {
        "sweeper run (now)": [sys.executable, "-m", "sweeper", "run", str(adaptive_spec), "--out", str(work), "--yes"],
        f"bare Ray Tune, fixed {FIXED_SEEDS}": [sys.executable, str(ROOT / "bench" / "bare_tune.py"), str(fixed_spec)],
    }
    walls = {}
    for name, command in runs.items():
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=work, stdout=subprocess.DEVNULL)
        walls[name] = time.perf_counter() - started
        print(f"{name:32} {walls[name]:8.1f} s wall")
    now, bare = walls.values()
    print(f"ratio (sweeper now / bare fixed) {now / bare:.2f}; {1 - now / bare:.0%} less wall time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="*", type=Path)
    parser.add_argument("--work", type=Path, default=Path("bench-verdict"))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--live", type=Path, metavar="SPEC")
    parser.add_argument("--only", action="append", default=[], metavar="SWEEP", help="with --live: this sweep")
    args = parser.parse_args()
    args.work.mkdir(exist_ok=True)
    if args.live:
        live(args.live.resolve(), args.only, args.work.resolve())
        return
    totals = {name: [0, 0.0] for name in DESIGNS}
    print(f"{'sweep':24} " + " ".join(f"{name + ' trials / s':>22}" for name in DESIGNS) + "  verdicts that differ")
    for sweep_dir in args.sweeps:
        copy = args.work / sweep_dir.name if args.report_only else complete(sweep_dir, args.work)
        name, results, missing = replay(copy)
        for design, (trials, seconds, _) in results.items():
            totals[design][0] += trials
            totals[design][1] += seconds
        fixed = results[DESIGNS[-1]][2]
        differ = [
            f"{label}: {design} {verdicts[label]} vs fixed {fixed[label]}"
            for design, (_, _, verdicts) in results.items()
            if design != DESIGNS[-1]
            for label in verdicts
            if verdicts[label] != fixed[label]
        ]
        note = f" ({missing} superset trials missing)" if missing else ""
        cells = " ".join(f"{trials:10d} {seconds:11.0f}" for trials, seconds, _ in results.values())
        print(f"{name[:24]:24} {cells}  {'; '.join(differ) or 'none'}{note}")
    cells = " ".join(f"{trials:10.0f} {seconds:11.0f}" for trials, seconds in totals.values())
    fixed_seconds = totals[DESIGNS[-1]][1]
    saved = ", ".join(f"{name} {1 - totals[name][1] / max(fixed_seconds, 1e-9):.0%}" for name in DESIGNS[:-1])
    print(f"{'all':24} {cells}  trial-seconds saved against fixed-{FIXED_SEEDS}: {saved}")


if __name__ == "__main__":
    main()
