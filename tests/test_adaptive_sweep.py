"""A real sweep (Ray, MLflow) with the adaptive design, on a workload whose trials fail at random
(tests/workloads/coin_flip.py): 19 settings that change nothing, one real remedy, started at 3 seeds."""

import json

from conftest import TEST_WORKLOADS, run_sweeper, sweep_dirs

SPEC = f"""\
name: coin-flip
workload: {TEST_WORKLOADS / "coin_flip.py"}
seeds: 3
max_seeds: 10
grid:
  variant: {list(range(21))}
"""


def test_no_do_nothing_setting_is_called_and_the_real_remedy_is(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    result = run_sweeper("run", "spec.yaml", "--out", "out", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = sweep_dirs(tmp_path / "out")
    document = json.loads((sweep_dir / "ranking.json").read_text())
    points = {p["label"]: p for p in document["points"]}
    assert document["design"]["kind"] == "adaptive" and document["unfinished"] == 0
    verdicts = {label: p["verdict"] for label, p in points.items() if label not in ("baseline", "variant=20")}
    assert set(verdicts.values()) == {"no_evidence"}, verdicts
    remedy = points["variant=20"]
    assert remedy["verdict"] == "fixes" and remedy["seeds_used"] == 10 and remedy["replicated"]
    assert remedy["p_adjusted"] <= 0.05 and remedy["healthy_rate_difference"] > 0
    # Seeds went where the answer was unclear: the baseline ran the most, hopeless settings stopped early.
    assert len(points["baseline"]["seeds"]) == document["design"]["baseline_looks"][-1] == 30
    assert any(p.get("status") == "dropped" and len(p["seeds"]) == 3 for p in points.values())
    trials = len(list((sweep_dir / "trials").glob("*.json")))
    assert trials == sum(len(p["seeds"]) for p in points.values()) < 20 * 10 + 30
    report = (sweep_dir / "report.md").read_text()
    assert "adaptive design" in report and "Holm" in report
