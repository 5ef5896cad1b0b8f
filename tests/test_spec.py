"""Spec validation: bad input is refused before anything starts, with one line naming file, key and choices."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.spec import BASELINE_LABEL, load_specs

GOOD = """
name: t
workload: listmle
seeds: 2
fixed: {epochs: 2}
grid:
  list_shape: [grouped]
  hidden_activation: [relu, tanh]
"""

BAD = {
    "unknown knob": ("workload: listmle\ngrid: {hidden_activaton: [relu]}\n",
                     ["grid.hidden_activaton", "unknown knob", "did you mean 'hidden_activation'", "valid: "]),
    "value outside the set": ("workload: listmle\ngrid: {list_shape: [grouped, groupd]}\n",
                              ["grid.list_shape[1]", "'groupd'", "did you mean 'grouped'", "valid: flattened, grouped, vector"]),
    "unknown workload": ("workload: listmel\n", ["workload:", "did you mean 'listmle'", "valid: "]),
    "malformed YAML": ("workload: listmle\ngrid: {list_shape: [grouped\n", ["malformed YAML", "line "]),
    "unknown top-level key": ("workload: listmle\nseed: 3\n", ["seed:", "did you mean 'seeds'", "valid: name, workload"]),
    "wrong type": ("workload: listmle\nfixed: {epochs: ten}\n", ["fixed.epochs", "expects int", "'ten'"]),
    "bool is not an int": ("workload: listmle\nfixed: {epochs: true}\n", ["fixed.epochs", "expects int"]),
    "seed as a knob": ("workload: listmle\ngrid: {seed: [0, 1]}\n", ["grid.seed", "seeds: N"]),
    "knob both fixed and swept": ("workload: listmle\nfixed: {labels: graded}\ngrid: {labels: [graded]}\n",
                                  ["grid.labels", "also set in `fixed`"]),
    "empty grid list": ("workload: listmle\ngrid: {labels: []}\n", ["grid.labels", "non-empty list"]),
    "negative gpu": ("workload: listmle\nresources: {gpu: -1}\n", ["resources.gpu", "0 or more"]),
    "unknown resource": ("workload: listmle\nresources: {gpus: 1}\n", ["resources.gpus", "did you mean 'gpu'"]),
    "zero seeds": ("workload: listmle\nseeds: 0\n", ["seeds", "from 1 to 1000"]),
    "missing workload": ("name: x\n", ["workload: missing"]),
    "not a mapping": ("- workload: listmle\n", ["mapping of keys"]),
    "claim on an unswept knob": ("workload: listmle\ngrid: {labels: [graded, constant]}\n"
                                 "claims: [{claim: x, set: {list_shape: grouped}, expect: fixes}]\n",
                                 ["claims[0].set.list_shape", "not swept", "valid: labels"]),
    "claim with an unknown expectation": ("workload: listmle\ngrid: {labels: [graded, constant]}\n"
                                          "claims: [{claim: x, set: {labels: constant}, expect: fixe}]\n",
                                          ["claims[0].expect", "did you mean 'fixes'", "valid: fixes, no_effect"]),
    "claim set is not a mapping": ("workload: listmle\ngrid: {labels: [graded, constant]}\n"
                                   "claims: [{claim: x, set: [labels], expect: fixes}]\n",
                                   ["claims[0].set", "expected a mapping"]),
    "claim without the default to compare with": ("workload: listmle\ngrid: {labels: [constant]}\n"
                                                  "claims: [{claim: x, set: {labels: constant}, expect: fixes}]\n",
                                                  ["claims[0].set.labels", "lacks the default 'graded'"]),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_a_good_spec_puts_the_baseline_first(tmp_path):
    (spec,) = load_specs(write(tmp_path, GOOD))
    labels = [p.label for p in spec.points]
    assert labels == [BASELINE_LABEL, "list_shape=grouped", "list_shape=grouped,hidden_activation=tanh"]
    assert spec.points[0].knobs == {"list_shape": "flattened", "hidden_activation": "relu"}
    assert spec.points[0].is_baseline and not any(p.is_baseline for p in spec.points[1:])
    assert spec.trial_count == 3 * 2


def test_a_grid_that_contains_the_baseline_keeps_it_once(tmp_path):
    (spec,) = load_specs(write(tmp_path, "workload: listmle\ngrid: {labels: [constant, graded]}\n"))
    assert [p.label for p in spec.points] == [BASELINE_LABEL, "labels=constant"]


def test_several_documents_are_several_sweeps(tmp_path):
    specs = load_specs(write(tmp_path, GOOD + "---\nname: u\nworkload: listmle\nsmoke: true\n"))
    assert [s.name for s in specs] == ["t", "u"] and specs[1].smoke


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_is_one_line_exit_2(tmp_path, case):
    text, expected = BAD[case]
    path = write(tmp_path, text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "\n" not in message and message.startswith(f"error: {path}")
    for fragment in expected:
        assert fragment in message


def test_missing_file_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such spec file" in result.stderr


def test_run_with_a_bad_spec_writes_nothing(tmp_path):
    """The real console script, in an empty folder: no output folder, no MLflow store."""
    spec = write(tmp_path, BAD["value outside the set"][0])
    work = tmp_path / "work"
    work.mkdir()
    sweeper = Path(sys.executable).with_name("sweeper")
    result = subprocess.run(
        [str(sweeper), "run", str(spec), "--seeds", "2"], cwd=work, capture_output=True, text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "did you mean 'grouped'" in result.stderr
    assert list(work.iterdir()) == []


def test_run_refuses_bad_seeds_from_the_command_line(tmp_path):
    result = CliRunner().invoke(app, ["run", str(write(tmp_path, GOOD)), "--seeds", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--seeds" in result.stderr
    assert not (tmp_path / "o").exists()


def test_run_refuses_resources_the_cluster_lacks(tmp_path):
    """Checked against the real (local) Ray cluster before anything is written; Tune would wait forever."""
    spec = write(tmp_path, "workload: listmle\nsmoke: true\nresources: {cpu: 1, gpu: 1000}\n")
    work = tmp_path / "work"
    work.mkdir()
    sweeper = Path(sys.executable).with_name("sweeper")
    result = subprocess.run([str(sweeper), "run", str(spec)], cwd=work, capture_output=True, text=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": ""}, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "resources.gpu" in result.stderr and "1000 GPU" in result.stderr
    assert list(work.iterdir()) == []
