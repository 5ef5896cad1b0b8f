"""A real sweep (Ray, MLflow) with the adaptive design and its confirmation round, on a workload whose trials
fail at random (tests/workloads/coin_flip.py): 19 settings that change nothing, one real remedy, started at
3 seeds."""

import json
import shutil

import pytest

from conftest import TEST_WORKLOADS, run_sweeper, sweep_dirs

SPEC = f"""\
name: coin-flip
workload: {TEST_WORKLOADS / "coin_flip.py"}
seeds: 3
max_seeds: 10
confirm: true
grid:
  variant: {list(range(21))}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    work = tmp_path_factory.mktemp("coin")
    (work / "spec.yaml").write_text(SPEC)
    result = run_sweeper("run", "spec.yaml", "--out", "out", cwd=work, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = sweep_dirs(work / "out")
    (work / "driver-stderr.txt").write_text(result.stderr)
    return sweep_dir


def test_each_look_says_what_it_shows_so_far_marked_provisional(sweep):
    """Between rounds the console gives the answer's shape: after the first look the remedy leads those
    leaning to fix, once a look calls it it is named as called, and before the confirmation round it is
    named again."""
    said = (sweep.parent.parent / "driver-stderr.txt").read_text()
    first = next(line for line in said.splitlines() if line.startswith("coin-flip, after 3 seeds a point"))
    assert "going on, leaning to fix: variant=20 (3/3 healthy" in first
    assert "dropped, not shown: " in first
    assert first.endswith("A lean is no verdict: the points going on are provisional.")
    assert "called: variant=20 fixes at " in said
    assert "coin-flip: called fixes: variant=20; confirming on fresh seeds" in said


def test_no_do_nothing_setting_is_called_and_the_real_remedy_is(sweep):
    sweep_dir = sweep
    document = json.loads((sweep_dir / "ranking.json").read_text())
    points = {p["label"]: p for p in document["points"]}
    assert document["design"]["kind"] == "adaptive" and document["unfinished"] == 0
    verdicts = {label: p["verdict"] for label, p in points.items() if label not in ("baseline", "variant=20")}
    assert set(verdicts.values()) == {"no_evidence"}, verdicts
    remedy = points["variant=20"]
    design = document["design"]
    assert remedy["verdict"] == "fixes" and remedy["seeds_used"] in design["looks"] and remedy["confirmed"]
    assert remedy["p_adjusted"] <= 0.05 and remedy["healthy_rate_difference"] > 0
    # Seeds went where the answer was unclear: the baseline ran the most, hopeless settings stopped early,
    # and the remedy's confirmation round ran fresh seeds of it and of the baseline, past their last looks.
    assert design["confirm"] == [5, 10]
    assert remedy["seeds"] == list(range(remedy["seeds_used"] + 5))
    assert len(points["baseline"]["seeds"]) - 10 in design["baseline_looks"]
    assert any(p.get("status") == "dropped" and len(p["seeds"]) == 3 for p in points.values())
    trials = len(list((sweep_dir / "trials").glob("*.json")))
    assert trials == sum(len(p["seeds"]) for p in points.values()) < 21 * 10  # the fixed 10-seed design's
    report = (sweep_dir / "report.md").read_text()
    assert "Adaptive design" in report and "Holm" in report


def test_a_sweep_stopped_between_looks_resumes_at_the_same_look(sweep, tmp_path):
    """The next look is planned from the trial files alone: without its last look's trials and its outputs,
    `resume` runs exactly those trials again and reaches the same decisions."""
    copy = tmp_path / sweep.name
    shutil.copytree(sweep, copy)
    (copy / "ranking.json").unlink()
    removed = {path.name for path in (copy / "trials").glob("*.json") if json.loads(path.read_text())["seed"] >= 6}
    assert removed
    for name in removed:
        (copy / "trials" / name).unlink()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_sweeper("resume", str(copy), "--tracking-uri", store, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path.name for path in (copy / "trials").glob("*.json")} == {
        path.name for path in (sweep / "trials").glob("*.json")
    }

    def decisions(folder):
        points = json.loads((folder / "ranking.json").read_text())["points"]
        return {p["label"]: (p["verdict"], p["seeds"], p.get("p_adjusted")) for p in points}

    assert decisions(copy) == decisions(sweep)
