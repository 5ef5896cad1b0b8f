"""A trial is `healthy` only when told apart from a model that learned nothing: real sweeps over two settings
that change nothing, on seeds 0-19 (slow), of a Keras program whose labels carry no signal
(tests/workloads/random_labels.py) and of a built-in-style workload whose predictions are random, scored by
Cohen's kappa on 200 validation examples (tests/workloads/random_kappa.py)."""

import json

import pytest

from conftest import TEST_WORKLOADS, run_sweeper

SPEC = """
name: nothing-to-learn
workload: {workload}
seeds: 20
design: fixed
grid:
  note: [a, b]
"""


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["random_labels.py", "random_kappa.py"])
def test_a_model_that_learned_nothing_is_healthy_in_at_most_2_of_40_trials(tmp_path, workload):
    (tmp_path / "spec.yaml").write_text(SPEC.format(workload=TEST_WORKLOADS / workload))
    result = run_sweeper("run", "spec.yaml", "--out", "out", "--tracking-uri", "none", cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    (sweep_dir,) = (tmp_path / "out").glob("nothing-to-learn-*")
    points = json.loads((sweep_dir / "ranking.json").read_text())["points"]
    verdicts = [verdict for point in points for verdict in point["verdicts"]]
    assert len(verdicts) == 40 and verdicts.count("healthy") <= 2, verdicts
    assert all(point["verdict"] in ("baseline", "no_evidence") for point in points)
