"""Hostile and malformed input, through the real `sweeper run` console script: every case is refused on one
line naming what is wrong, with exit status 2, and nothing is written (no output folder, no MLflow store)."""

import subprocess
from pathlib import Path

import pytest

from conftest import SWEEPER, clean_env

GOOD = "workload: listmle\nsmoke: true\ngrid: {list_shape: [flattened, grouped]}\n"

# name -> (spec file content as bytes, extra command-line arguments, a fragment the error must contain)
CASES = {
    "empty file": (b"", [], "empty"),
    "only a comment": (b"# nothing\n", [], "empty"),
    "not UTF-8": (b"workload: listmle\nname: \xff\xfe\n", [], "cannot read"),
    "binary junk": (bytes(range(256)) * 4, [], "spec.yaml"),
    "malformed YAML": (b"workload: [listmle\n", [], "malformed YAML"),
    "tab indentation": (b"grid:\n\tlist_shape: [grouped]\n", [], "malformed YAML"),
    "alias bomb": (
        b"a: &a [1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b]\n",
        [],
        "aliases",
    ),
    "python object tag": (b"workload: !!python/object/apply:os.system [touch /tmp/pwned]\n", [], "constructor"),
    "a list, not a mapping": (b"- workload: listmle\n", [], "mapping of keys"),
    "a scalar, not a mapping": (b"listmle\n", [], "mapping of keys"),
    "unknown key": (b"workload: listmle\ngirds: {}\n", [], "did you mean 'grid'"),
    "unknown workload": (b"workload: dqm\n", [], "did you mean 'dqn'"),
    "workload is a number": (b"workload: 3\n", [], "expected a workload name"),
    "unknown knob": (b"workload: listmle\ngrid: {list_shap: [grouped]}\n", [], "did you mean 'list_shape'"),
    "value outside the set": (
        b"workload: listmle\ngrid: {list_shape: [grouped, 3d]}\n",
        [],
        "valid: flattened, grouped, vector, one_list",
    ),
    "grid value is a mapping": (b"workload: listmle\ngrid: {list_shape: [{a: 1}]}\n", [], "grid.list_shape[0]"),
    "grid is a list": (b"workload: listmle\ngrid: [list_shape]\n", [], "grid: expected a mapping"),
    "grid knob is a scalar": (b"workload: listmle\ngrid: {list_shape: grouped}\n", [], "non-empty list"),
    "string where an int belongs": (b"workload: listmle\nfixed: {epochs: '20'}\n", [], "expects int"),
    "float where an int belongs": (b"workload: listmle\nfixed: {epochs: 2.5}\n", [], "expects int"),
    "infinite float": (b"workload: listmle\nfixed: {learning_rate: .inf}\n", [], "finite"),
    "negative epochs": (
        b"workload: listmle\ngrid: {epochs: [-1]}\n",
        [],
        "epochs = -1 is outside its range [1, 10000]",
    ),
    "zero epochs": (b"workload: listmle\ngrid: {epochs: [0]}\n", [], "epochs = 0 is outside its range [1, 10000]"),
    "negative learning rate": (
        b"workload: listmle\nfixed: {learning_rate: -1.0}\n",
        [],
        "learning_rate = -1.0 is outside its range (0, 10]",
    ),
    "two-billion-weight layer": (
        b"workload: listmle\ngrid: {hidden_units: [100000000]}\n",
        [],
        "hidden_units = 100000000 is outside its range [1, 4096]",
    ),
    "missing workload file": (b"workload: ./nope.py\n", [], "workload: ./nope.py: no such workload file"),
    "null value": (b"workload: listmle\nfixed: {epochs: null}\n", [], "fixed.epochs"),
    "negative seeds": (b"workload: listmle\nseeds: -3\n", [], "from 1 to 300"),
    "too many seeds": (b"workload: listmle\nseeds: 100000\ndesign: fixed\n", [], "from 1 to 300"),
    "seeds as text": (b"workload: listmle\nseeds: three\n", [], "seeds"),
    "name with a path": (b"workload: listmle\nname: ../../etc/passwd\n", [], "not a valid sweep name"),
    "absolute name": (b"workload: listmle\nname: /tmp/x\n", [], "not a valid sweep name"),
    "zero cpus": (b"workload: listmle\nresources: {cpu: 0}\n", [], "above 0"),
    "gpu as text": (b"workload: listmle\nresources: {gpu: all}\n", [], "resources.gpu"),
    "huge grid": (
        b"workload: listmle\ngrid: {epochs: ["
        + b",".join(str(i).encode() for i in range(1, 400))
        + b"], batch_size: ["
        + b",".join(str(i).encode() for i in range(1, 400))
        + b"]}\n",
        [],
        "at most 100000",
    ),
    "two sweeps with one name": (GOOD.encode() + b"---\n" + GOOD.encode(), [], "more than one sweep"),
    "grid over the trial limit": (GOOD.encode(), ["--seeds", "300", "--max-trials", "100"], "pass --yes"),
    "seeds 0 on the command line": (GOOD.encode(), ["--seeds", "0"], "--seeds"),
    "seeds not a number": (GOOD.encode(), ["--seeds", "many"], "Invalid value for '--seeds'"),
    "zero concurrency": (GOOD.encode(), ["--max-concurrent", "0"], "--max-concurrent"),
    "negative retries": (GOOD.encode(), ["--max-retries", "-1"], "--max-retries"),
    "unknown option": (GOOD.encode(), ["--turbo"], "No such option"),
    "out is a file": (GOOD.encode(), ["--out", "spec.yaml"], "--out"),
    "unknown sweep name": (GOOD.encode(), ["--only", "spek"], "did you mean 'spec'"),
    "store in a missing folder": (
        GOOD.encode(),
        ["--tracking-uri", "sqlite:///no/such/folder/mlflow.db"],
        "--tracking-uri",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_on_one_line_with_nothing_written(tmp_path, case):
    content, arguments, fragment = CASES[case]
    (tmp_path / "spec.yaml").write_bytes(content)
    before = {p.name for p in tmp_path.iterdir()}
    env = clean_env()
    result = subprocess.run(
        [SWEEPER, "run", "spec.yaml", *arguments], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr
    assert {p.name for p in tmp_path.iterdir()} == before  # no sweeps/, no mlflow.db
    assert not Path("/tmp/pwned").exists()


def test_at_least_thirty_hostile_inputs():
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "command",
    [
        ["resume", "no-such-folder"],
        ["sync", "no-such-folder"],
        ["report"],
        ["compare", "a"],
        ["server", "--database", "mysql://root@127.0.0.1/mlflow"],
    ],
)
def test_other_commands_refuse_bad_arguments_on_one_line(tmp_path, command):
    result = subprocess.run([SWEEPER, *command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (
        result.stderr
    )
