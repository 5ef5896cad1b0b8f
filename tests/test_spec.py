"""Spec validation: bad input is refused before anything starts, with one line naming file, key and choices."""

import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.errors import SweeperError
from sweeper.spec import BASELINE_LABEL, load_specs
from sweeper.workload import Range, load

from conftest import SWEEPER, TEST_WORKLOADS, clean_env

GOOD = """
name: t
workload: listmle
seeds: 2
design: fixed
fixed: {epochs: 2}
grid:
  list_shape: [grouped]
  hidden_activation: [relu, tanh]
"""

BAD = {
    "off, which YAML 1.2 reads as text": (
        "workload: plrank\ngrid: {clip: [off, norm]}\n",
        ["grid.clip[0]", "'off' is not a value of clip; did you mean 'none'?"],
    ),
    "an alias": ("workload: &w listmle\nname: *w\n", ["malformed YAML at line 2", "anchors and aliases"]),
    "a key twice": ("workload: listmle\nworkload: plrank\n", ["malformed YAML", "duplicate key"]),
    "a limit across knobs (plrank)": (
        "workload: plrank\ngrid: {cutoff: [5, 20]}\n",
        ["grid:", "the grid point cutoff=20 breaks the workload's limit cutoff <= min_docs (cutoff=20, min_docs=10)"],
    ),
    "a limit across knobs (bilstm)": (
        "workload: bilstm\ngrid: {max_len: [50, 4]}\n",
        ["grid:", "max_len=4 breaks the workload's limit min_len <= max_len (min_len=5, max_len=4)"],
    ),
    "a limit across knobs (dqn)": (
        "workload: dqn\ngrid: {train_every: [256, 5000]}\n",
        ["grid:", "learning_starts + train_every <= report_every", "train_every=5000", "report_every=2500"],
    ),
    "a limit the baseline breaks": (
        "workload: bilstm\nfixed: {min_len: 80}\ngrid: {max_len: [50, 100]}\n",
        ["fixed:", "the grid point baseline breaks the workload's limit min_len <= max_len (min_len=80, max_len=50)"],
    ),
    "an empty grid": ("workload: listmle\ngrid: {}\n", ["grid:", "has no knob: there is nothing to compare"]),
    "a grid key with nothing after it": ("workload: listmle\ngrid:\n", ["grid:", "nothing to compare"]),
    "no grid": ("workload: listmle\n", ["grid:", "nothing to compare", "sweeper list listmle"]),
    "a grid of the defaults alone": (
        "workload: listmle\ngrid: {list_shape: [flattened]}\n",
        ["grid:", "holds only the baseline's values", "list_shape"],
    ),
    "unknown knob": (
        "workload: listmle\ngrid: {hidden_activaton: [relu]}\n",
        ["grid.hidden_activaton", "unknown knob", "did you mean 'hidden_activation'", "valid: "],
    ),
    "value outside the set": (
        "workload: listmle\ngrid: {list_shape: [grouped, groupd]}\n",
        ["grid.list_shape[1]", "'groupd'", "did you mean 'grouped'", "valid: flattened, grouped, vector, one_list"],
    ),
    "unknown workload": ("workload: listmel\n", ["workload:", "did you mean 'listmle'", "valid: "]),
    "malformed YAML": ("workload: listmle\ngrid: {list_shape: [grouped\n", ["malformed YAML", "line "]),
    "unknown top-level key": (
        "workload: listmle\nseed: 3\n",
        ["seed:", "did you mean 'seeds'", "valid: name, workload"],
    ),
    "wrong type": ("workload: listmle\nfixed: {epochs: ten}\n", ["fixed.epochs", "expects int", "'ten'"]),
    "bool is not an int": ("workload: listmle\nfixed: {epochs: true}\n", ["fixed.epochs", "expects int"]),
    "seed as a knob": ("workload: listmle\ngrid: {seed: [0, 1]}\n", ["grid.seed", "seeds: N"]),
    "knob both fixed and swept": (
        "workload: listmle\nfixed: {labels: graded}\ngrid: {labels: [graded]}\n",
        ["grid.labels", "also set in `fixed`"],
    ),
    "empty grid list": ("workload: listmle\ngrid: {labels: []}\n", ["grid.labels", "non-empty list"]),
    "negative gpu": ("workload: listmle\nresources: {gpu: -1}\n", ["resources.gpu", "0 or more"]),
    "unknown resource": ("workload: listmle\nresources: {gpus: 1}\n", ["resources.gpus", "did you mean 'gpu'"]),
    "zero seeds": ("workload: listmle\nseeds: 0\ndesign: fixed\n", ["seeds", "from 1 to 300"]),
    "missing workload": ("name: x\n", ["workload: missing"]),
    "not a mapping": ("- workload: listmle\n", ["mapping of keys"]),
    "claim on an unswept knob": (
        "workload: listmle\ngrid: {labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {list_shape: grouped}, expect: fixes}]\n",
        ["claims[0].set.list_shape", "not swept", "valid: labels"],
    ),
    "claim with an unknown expectation": (
        "workload: listmle\ngrid: {labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {labels: constant}, expect: fixe}]\n",
        ["claims[0].expect", "did you mean 'fixes'", "valid: fixes, no_effect"],
    ),
    "claim set is not a mapping": (
        "workload: listmle\ngrid: {labels: [graded, constant]}\nclaims: [{claim: x, set: [labels], expect: fixes}]\n",
        ["claims[0].set", "expected a mapping"],
    ),
    "claim without the default to compare with": (
        "workload: listmle\ngrid: {labels: [constant]}\nclaims: [{claim: x, set: {labels: constant}, expect: fixes}]\n",
        ["claims[0].set.labels", "lacks the baseline's 'graded'"],
    ),
    "grid value below its range": (
        "workload: listmle\ngrid: {epochs: [-1]}\n",
        ["grid.epochs[0]: epochs = -1 is outside its range [1, 10000]"],
    ),
    "fixed value above its range": (
        "workload: listmle\nfixed: {hidden_units: 100000000}\n",
        ["fixed.hidden_units: hidden_units = 100000000 is outside its range [1, 4096]"],
    ),
    "float at an open bound": (
        "workload: listmle\nfixed: {learning_rate: 0.0}\n",
        ["fixed.learning_rate: learning_rate = 0.0 is outside its range (0, 10]"],
    ),
    "claim value outside its range": (
        (
            "workload: listmle\ngrid: {epochs: [20, 30]}\n"
            "claims: [{claim: x, set: {epochs: 30}, where: {epochs: 0}, expect: fixes}]\n"
        ),
        ["claims[0].where.epochs: epochs = 0 is outside its range [1, 10000]"],
    ),
    "missing workload file": ("workload: ./nope.py\n", ["workload: ./nope.py: no such workload file"]),
    "adaptive from one seed": (
        "workload: listmle\nseeds: 1\ngrid: {labels: [graded, constant]}\n",
        ["seeds: 1 is too few for the adaptive design's first look", "design: fixed"],
    ),
    "baseline knob also fixed": (
        "workload: listmle\nfixed: {labels: graded}\nbaseline: {labels: constant}\n",
        ["baseline.labels", "is also set in `fixed`"],
    ),
    "baseline value outside the set": (
        "workload: listmle\nbaseline: {list_shape: groupd}\n",
        ["baseline.list_shape", "did you mean 'grouped'"],
    ),
    "unknown design": ("workload: listmle\ndesign: adaptiv\n", ["design:", "did you mean 'adaptive'", "valid: "]),
    "max_seeds below seeds": ("workload: listmle\nseeds: 5\nmax_seeds: 4\n", ["max_seeds:", "below seeds (5)"]),
    "max_seeds in a fixed design": (
        "workload: listmle\ndesign: fixed\nmax_seeds: 10\n",
        ["max_seeds:", "a fixed design runs `seeds` seeds everywhere"],
    ),
    "seeds kept for calibration": ("workload: listmle\nmax_seeds: 1000\n", ["max_seeds:", "from 1 to 300"]),
    "alpha out of range": ("workload: listmle\nalpha: 0.9\n", ["alpha:", "at most 0.5", "0.9"]),
    "unknown correction": ("workload: listmle\ncorrection: bonferoni\n", ["correction:", "valid: holm, bh"]),
    "no_effect without a margin": (
        "workload: listmle\ngrid: {labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {labels: constant}, expect: no_effect}]\n",
        ["claims[0].margin", "needs an equivalence margin"],
    ),
    "a margin on a fixes claim": (
        "workload: listmle\ngrid: {labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {labels: constant}, expect: fixes, margin: 0.1}]\n",
        ["claims[0].margin", "only `expect: no_effect` takes a margin"],
    ),
    "unknown way to vary": (
        "workload: listmle\nvary: one_at_a_tim\n",
        ["vary:", "did you mean 'one_at_a_time'", "valid: cartesian, one_at_a_time, pairs"],
    ),
    "a first seed among the calibration seeds": (
        "workload: listmle\nfirst_seed: 1000\ngrid: {labels: [graded, constant]}\n",
        ["first_seed:", "expected a whole number from 0 to 999 (seeds 1000 and up calibrate), got 1000"],
    ),
    "a first seed whose design reaches the calibration seeds": (
        "workload: listmle\nfirst_seed: 995\ngrid: {labels: [graded, constant]}\n",
        ["first_seed:", "the design may run seeds 995-1004", "past 999"],
    ),
    "claim without twins one knob at a time": (
        "workload: listmle\nvary: one_at_a_time\ngrid: {list_shape: [flattened, grouped], labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {list_shape: grouped}, where: {labels: constant}, expect: fixes}]\n",
        ["claims[0].set", "no grid point pairs this change with its twin", "one knob"],
    ),
    "claim changing two knobs one knob at a time": (
        "workload: listmle\nvary: one_at_a_time\ngrid: {list_shape: [flattened, grouped], labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {list_shape: grouped, labels: constant}, expect: fixes}]\n",
        ["claims[0].set", "no grid point pairs"],
    ),
    "claim source with an unknown key": (
        "workload: listmle\ngrid: {labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {labels: constant}, expect: fixes, source: {file: a.txt, quot: b}}]\n",
        ["claims[0].source.quot", "did you mean 'quote'", "valid: file, quote"],
    ),
    "claim source without its quote": (
        "workload: listmle\ngrid: {labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {labels: constant}, expect: fixes, source: {file: a.txt}}]\n",
        ["claims[0].source.quote", "missing", "word for word"],
    ),
    "claim source neither a document nor the project": (
        "workload: listmle\ngrid: {labels: [graded, constant]}\n"
        "claims: [{claim: x, set: {labels: constant}, expect: fixes, source: me}]\n",
        ["claims[0].source", "{file: ..., quote: ...} or 'project'", "'me'"],
    ),
}


def test_the_default_design_is_adaptive_and_seeds_on_the_command_line_fix_it(tmp_path):
    (spec,) = load_specs(write(tmp_path, "workload: listmle\ngrid: {labels: [graded, constant]}\n"))
    assert spec.design.kind == "adaptive" and spec.design.looks == (3, 5, 8, 10) and spec.alpha == 0.05
    assert spec.trial_count == 10 + 10  # one point at 10 seeds, the baseline at max(1, sqrt(1)) x 10
    fixed = spec.with_seeds(4)
    assert fixed.design.kind == "fixed" and fixed.trial_count == 8 and fixed.document["design"] == "fixed"


def test_a_spec_baseline_is_this_sweeps_failing_setup(tmp_path):
    (spec,) = load_specs(
        write(
            tmp_path,
            "workload: listmle\nbaseline: {list_shape: grouped, labels: constant}\n"
            "grid: {labels: [constant, graded]}\n"
            "claims: [{claim: graded labels fix it, set: {labels: graded}, expect: fixes}]\n",
        )
    )
    from sweeper.workload import load

    workload = load("listmle")
    assert [p.label for p in spec.points] == ["baseline", "labels=graded"]
    assert spec.points[0].knobs == {"labels": "constant"} == spec.defaults(workload)
    assert spec.base_overrides(workload) == {"list_shape": "grouped"}  # an unswept baseline knob: every trial


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


def test_one_at_a_time_varies_each_knob_alone_from_the_baseline(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "workload: listmle\nvary: one_at_a_time\nbaseline: {labels: constant}\n"
        "grid: {list_shape: [flattened, grouped, vector], labels: [graded, constant], hidden_units: [8]}\n"
        "claims: [{claim: x, set: {list_shape: grouped}, expect: fixes, source: project}]\n"
    )
    (spec,) = load_specs(spec_file)
    knobs = [point.knobs for point in spec.points]
    base = {"list_shape": "flattened", "labels": "constant", "hidden_units": 64}
    assert knobs == [  # hidden_units' baseline value (64, the default) is added as the baseline point's
        base,
        {**base, "list_shape": "grouped"},
        {**base, "list_shape": "vector"},
        {**base, "labels": "graded"},
        {**base, "hidden_units": 8},
    ]
    assert [point.label for point in spec.points] == [
        BASELINE_LABEL,
        "list_shape=grouped",
        "list_shape=vector",
        "labels=graded",
        "hidden_units=8",
    ]
    assert spec.claims[0].source == "project"


def test_pairs_vary_each_two_knobs_together_from_the_baseline(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "workload: listmle\nvary: pairs\nfirst_seed: 7\n"
        "grid: {list_shape: [flattened, grouped, vector], labels: [graded, constant], hidden_units: [64, 8]}\n"
    )
    (spec,) = load_specs(spec_file)
    assert [point.label for point in spec.points] == [
        BASELINE_LABEL,
        "list_shape=grouped,labels=constant",
        "list_shape=vector,labels=constant",
        "list_shape=grouped,hidden_units=8",
        "list_shape=vector,hidden_units=8",
        "labels=constant,hidden_units=8",
    ]
    assert spec.first_seed == 7 and spec.last_seed == 7 + spec.design.baseline_looks[-1] - 1


def test_a_claim_source_keeps_the_quote_with_its_whitespace_folded(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "workload: listmle\ngrid: {labels: [graded, constant]}\nclaims:\n"
        "  - {claim: x, set: {labels: constant}, expect: fixes,\n"
        '     source: {file: 000_d839642e40c27b5a.txt, quote: "  invariant\\n  labels  "}}\n'
    )
    (spec,) = load_specs(spec_file)
    assert (spec.claims[0].source.file, spec.claims[0].source.quote) == ("000_d839642e40c27b5a.txt", "invariant labels")


def test_several_documents_are_several_sweeps(tmp_path):
    specs = load_specs(
        write(
            tmp_path, GOOD + "---\nname: u\nworkload: listmle\nsmoke: true\ngrid: {list_shape: [flattened, grouped]}\n"
        )
    )
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
    result = subprocess.run(
        [SWEEPER, "run", str(spec), "--seeds", "2"],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env(),
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
    spec = write(
        tmp_path, "workload: listmle\nsmoke: true\nresources: {cpu: 1, gpu: 1000}\ngrid: {list_shape: [grouped]}\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [SWEEPER, "run", str(spec)],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "resources.gpu" in result.stderr and "1000 GPU" in result.stderr
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    "knob, value",
    [
        ("epochs", 1),
        ("epochs", 10_000),
        ("learning_rate", 10.0),
        ("learning_rate", 0.0001),
        ("learning_rate", 10),
        ("label_noise", 0.0),
    ],
)
def test_values_at_a_closed_bound_or_just_inside_an_open_one_are_accepted(tmp_path, knob, value):
    (spec,) = load_specs(write(tmp_path, f"workload: listmle\ngrid: {{{knob}: [{value!r}]}}\n"))
    assert spec.grid[knob] == [value] and type(spec.grid[knob][0]) is type(load(spec.workload).knobs[knob].default)


@pytest.mark.parametrize(
    "knob, value, bounds",
    [
        ("epochs", 0, "[1, 10000]"),
        ("epochs", 10_001, "[1, 10000]"),
        ("learning_rate", 0.0, "(0, 10]"),
        ("learning_rate", 10.000001, "(0, 10]"),
        ("learning_rate", -1, "(0, 10]"),
        ("label_noise", -0.001, "[0, 10]"),
    ],
)
def test_values_just_outside_a_range_are_refused(tmp_path, knob, value, bounds):
    path = write(tmp_path, f"workload: listmle\nfixed: {{{knob}: {value!r}}}\n")
    with pytest.raises(SweeperError) as raised:
        load_specs(path)
    assert str(raised.value) == f"{path}: fixed.{knob}: {knob} = {value!r} is outside its range {bounds}"


def test_range_bounds_and_how_it_reads():
    closed, half_open, not_a_number = Range(1, 10_000), Range(0.0, 10.0, low_open=True), float("nan")
    assert 1 in closed and 10_000 in closed and 0 not in closed and 10_001 not in closed
    assert 0.0 not in half_open and 1e-300 in half_open and 10.0 in half_open and not_a_number not in half_open
    assert (str(closed), str(half_open)) == ("[1, 10000]", "(0, 10]")
    assert str(Range(0, None)) == "[0, inf)" and -1 not in Range(0, None) and 10**9 in Range(0, None)
    assert str(Range(None, 1e-8, high_open=True)) == "(-inf, 1e-08)"
    for empty in ((2, 1), (1, 1, True), (None, None), (0, float("inf")), (True, 2)):
        with pytest.raises(ValueError):
            Range(*empty)


TINY_WORKLOAD = (TEST_WORKLOADS / "tiny.py").read_text()


def test_a_workload_given_by_file_is_stored_by_its_absolute_path(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.py").write_text(TINY_WORKLOAD)
    (tmp_path / "specs").mkdir()
    path = tmp_path / "specs" / "spec.yaml"
    path.write_text(
        "workload: ../models/tiny.py\ngrid: {lr: [0.1, 0.5]}\n---\nworkload: ../models/tiny.py\n"
        "name: other\nfixed: {steps: 100}\ngrid: {lr: [0.5]}\n"
    )
    first, second = load_specs(path)
    absolute = str((tmp_path / "models" / "tiny.py").resolve())
    assert first.workload == second.workload == absolute and first.document["workload"] == absolute
    assert first.name == "spec-tiny"  # a default name of a several-sweep file: the file's stem
    assert [p.label for p in first.points] == [BASELINE_LABEL, "lr=0.5"] and second.fixed == {"steps": 100}
    workload = load(first.workload)
    assert workload.name == "tiny" and workload.knobs["steps"].range == Range(1, 100)
    assert load(absolute) is workload
    # The copy in a sweep folder (its document, dumped elsewhere) finds the file from anywhere.
    copy = tmp_path / "elsewhere" / "spec.yaml"
    copy.parent.mkdir()
    copy.write_text(yaml.safe_dump(first.document, sort_keys=False))
    (again,) = load_specs(copy)
    assert again.workload == absolute and again.points == first.points


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("workload: ./tiny.py\nfixed: {lr: 0.0}\n", "fixed.lr: lr = 0.0 is outside its range (0, 1]"),
        ("workload: ./tiny.py\ngrid: {steps: [1, 101]}\n", "grid.steps[1]: steps = 101 is outside its range [1, 100]"),
        ("workload: ./tiny.py\ngrid: {shape: [c]}\n", "grid.shape[0]: 'c' is not a value of shape; valid: a, b"),
        ("workload: tiny.py\nfixed: {lr: 1.5}\n", "fixed.lr: lr = 1.5 is outside its range (0, 1]"),
    ],
)
def test_a_file_workload_is_validated_like_a_named_one(tmp_path, text, fragment):
    (tmp_path / "tiny.py").write_text(TINY_WORKLOAD)
    path = write(tmp_path, text)
    with pytest.raises(SweeperError) as raised:
        load_specs(path)
    assert str(raised.value) == f"{path}: {fragment}"


def test_a_missing_workload_file_is_one_line_naming_it_as_written(tmp_path):
    path = write(tmp_path, "workload: ./nope.py\n")
    with pytest.raises(SweeperError) as raised:
        load_specs(path)
    assert str(raised.value) == f"{path}: workload: ./nope.py: no such workload file"


def test_specs_read_as_yaml_1_2_where_1e_3_is_a_float_and_no_is_text(tmp_path):
    """PyYAML's YAML 1.1 read `1e-3` as text (refused: expects float) and `no` as False (an invalid name)."""
    (spec,) = load_specs(write(tmp_path, "name: no\nworkload: plrank\ngrid: {learning_rate: [1e-3, 1e-2]}\n"))
    assert spec.name == "no" and spec.grid["learning_rate"] == [0.001, 0.01]
