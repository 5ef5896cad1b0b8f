"""The benchmark scripts stay runnable: each one parses its arguments and describes itself. (Their numbers
come from running them, never from a test: see README, Performance.)"""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_shows_its_usage(script):
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")


def test_trials_runs_one_trial_of_a_spec_with_no_harness(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: one\nworkload: plrank\nseeds: 1\ndesign: fixed\nsmoke: true\ngrid:\n  estimator_numerics: [logsumexp]\n"
    )
    result = subprocess.run(
        [sys.executable, str(BENCH / "trials.py"), str(spec), "1", "--warm", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"key": "estimator_numerics=logsumexp|seed=0"' in result.stdout and '"error": null' in result.stdout
