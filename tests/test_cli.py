"""The command line's ways out: one line on stderr, a documented exit status, no traceback."""

import json
import signal
import subprocess
import textwrap

from conftest import ROOT, SWEEPER, clean_env, run_python, run_sweeper, start_sweeper, wait_for


def no_traceback(result: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in result.stdout + result.stderr


def test_a_closed_pipe_ends_quietly(tmp_path):
    for command in (f"{SWEEPER} run --help | head -1", f"{SWEEPER} list | head -1", f"{SWEEPER} --help | head -2"):
        result = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command}"],
            capture_output=True,
            text=True,
            env=clean_env(),
            cwd=tmp_path,
            timeout=120,
        )
        assert result.stderr == "", f"{command}: {result.stderr}"
        assert result.returncode in (0, 1), command


def test_usage_errors_are_one_line_with_status_2(tmp_path):
    for args in (["run", "--bogus"], ["run"], ["resume"], ["nosuchcommand"], ["run", "x.yaml", "--seeds", "many"]):
        result = run_sweeper(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)


def test_sweeper_alone_shows_the_help_with_status_2(tmp_path):
    result = run_sweeper(cwd=tmp_path)
    assert result.returncode == 2 and "Usage" in result.stdout and no_traceback(result)


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "not-a-sweep").mkdir()
    (tmp_path / "not-a-sweep" / "sweep.json").write_text("{broken")  # a sweep folder whose metadata is cut short
    plain = run_sweeper("resume", "not-a-sweep", cwd=tmp_path)
    assert plain.returncode == 1 and no_traceback(plain)
    (line,) = plain.stderr.strip().splitlines()
    assert line.startswith("error: unexpected JSONDecodeError") and "--debug" in line
    debug = run_sweeper("--debug", "resume", "not-a-sweep", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert run_sweeper("resume", "not-a-sweep", cwd=tmp_path, SWEEPER_DEBUG="1").stderr.count("Traceback") == 1


SPEC = """
name: {name}
workload: {workload}
seeds: 4
design: fixed
grid:
  feature_scaling: [raw, standardized]
"""


def test_a_failed_analysis_keeps_the_trials_and_the_later_sweeps_run(tmp_path, sgd_workload):
    """The analysis of the first sweep raises (a fault injected into the real CLI process): one line names its
    folder and `sweeper report DIR`; the second sweep still runs; exit status 1; `sweeper report DIR` then
    writes the first sweep's outputs from the trials it kept."""
    (tmp_path / "spec.yaml").write_text("---".join(SPEC.format(name=n, workload=sgd_workload) for n in ("a", "b")))
    inject = textwrap.dedent("""
        import sys
        import sweeper.analysis as analysis
        analyze = analysis.analyze
        def failing(spec, *args):
            if spec.name == "a":
                raise OverflowError("(34, 'Numerical result out of range')")
            return analyze(spec, *args)
        analysis.analyze = failing
        from sweeper.cli import main
        sys.argv = ["sweeper", *sys.argv[1:]]
        main()
    """)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_python(inject, "run", "spec.yaml", "--out", "out", "--tracking-uri", store, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert no_traceback(result)
    (failed,) = (tmp_path / "out").glob("a-*")
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "OverflowError" in line and f"sweeper report {failed.relative_to(tmp_path)}" in line
    assert len(list((failed / "trials").glob("*.json"))) == 8 and not (failed / "ranking.json").exists()
    (later,) = (tmp_path / "out").glob("b-*")
    assert json.loads((later / "ranking.json").read_text())["points"]

    retried = run_sweeper("report", str(failed), cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr[-2000:]
    verdicts = {p["label"]: p["verdict"] for p in json.loads((failed / "ranking.json").read_text())["points"]}
    # 4 healthy seeds against 4 diverged ones: p = 2 / C(8, 4) = 0.029
    assert verdicts == {"baseline": "baseline", "feature_scaling=standardized": "fixes"}


LISTMLE_SPEC = """
name: interrupted
workload: listmle
seeds: 3
design: fixed
smoke: true
grid:
  list_shape: [flattened, grouped]
"""


def test_ctrl_c_during_a_sweep_is_one_line_and_status_130(tmp_path):
    (tmp_path / "spec.yaml").write_text(LISTMLE_SPEC)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = start_sweeper(
        "run", "spec.yaml", "--out", "out", "--max-concurrent", "1", "--tracking-uri", store, cwd=tmp_path
    )
    wait_for(lambda: len(list(tmp_path.glob("out/*/trials/*.json"))) >= 1, 300, "a finished trial")
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sweeper resume out" in errors[0]


def test_a_relative_sqlite_store_is_made_absolute_for_mlflow(tmp_path, monkeypatch):
    """MLflow cannot express a relative store's artifact location as a file URI: every write would fail."""
    from sweeper.stores import absolute, default_tracking_uri

    monkeypatch.chdir(tmp_path)
    assert absolute("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert absolute("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute("http://127.0.0.1:5000") == "http://127.0.0.1:5000" and absolute(None) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'env.db'}"


LONG_NAMES = '''
from dataclasses import dataclass
from typing import Annotated, Literal

from sweeper.workload import Range


@dataclass(frozen=True)
class Config:
    feature_scaling_of_every_input: Literal["raw_as_loaded_from_disk", "standardized_with_training_statistics"] = (
        "raw_as_loaded_from_disk"
    )
    """Long names, as real knobs have."""
    masking_of_the_padded_steps: Literal["no_masking_at_all", "masking_layer_before_the_lstm"] = "no_masking_at_all"
    """Long names, as real knobs have."""
    steps: Annotated[int, Range(1, 10)] = 2
    """Reports."""
    seed: int = 0
    """Seed."""


METRIC, MODE, CHANCE, SMOKE = "score", "max", 0.0, {}


def train(config, report):
    good = (config.feature_scaling_of_every_input != "raw_as_loaded_from_disk") + (config.seed % 2)
    for step in range(1, config.steps + 1):
        report({"step": step, "loss": 1.0, "grad_norm": 1.0, "score": float(good * step)})
'''


def test_the_console_fits_columns_without_breaking_a_grid_point_name(tmp_path):
    (tmp_path / "long_names.py").write_text(LONG_NAMES)
    (tmp_path / "spec.yaml").write_text(
        "name: long\nworkload: ./long_names.py\nseeds: 2\ndesign: fixed\ngrid:\n"
        "  feature_scaling_of_every_input: [raw_as_loaded_from_disk, standardized_with_training_statistics]\n"
        "  masking_of_the_padded_steps: [no_masking_at_all, masking_layer_before_the_lstm]\n"
    )
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_sweeper("run", "spec.yaml", "--out", "out", "--tracking-uri", store, cwd=tmp_path, COLUMNS="100")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    for value in ("standardized_with_training_statistics", "masking_layer_before_the_lstm"):
        assert any(f"={value}" in line for line in lines), value  # knob=value never split across lines
    assert "`sweeper --wide` shows them" in result.stdout
    (sweep,) = (tmp_path / "out").glob("long-*")
    wide = run_sweeper("--wide", "report", str(sweep), cwd=tmp_path, COLUMNS="100")
    assert (
        "P(beats baseline)" in wide.stdout and "score" in wide.stdout and max(map(len, wide.stdout.splitlines())) > 100
    )


def test_version_and_help_off_a_terminal(tmp_path):
    version = run_sweeper("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("sweeper ")
    helped = run_sweeper("run", "--help", cwd=tmp_path)
    # off a terminal, typer's 80 columns cut words short ("MLFLOW_TRACKING_U…"); each must read whole
    assert "…" not in helped.stdout and "MLFLOW_TRACKING_URI" in helped.stdout
    for option in ("--max-concurrent", "--no-early-stop", "--tracking-uri"):
        assert option in helped.stdout, option


def test_the_conventions_of_common_tools(tmp_path):
    """-h as --help; flags shown without a value placeholder; the commands in the order of the work;
    `validate` takes several files, a Keras workload file among them."""
    short = run_sweeper("-h", cwd=tmp_path)
    assert short.returncode == 0 and "Usage" in short.stdout
    assert "<bool>" not in short.stdout and "<bool>" not in run_sweeper("run", "-h", cwd=tmp_path).stdout
    listed = [line.split()[1] for line in short.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
    commands = [name for name in listed if name in ("doctor", "validate", "run", "report", "list", "server")]
    assert commands == ["doctor", "validate", "run", "report", "list", "server"], listed
    specs = [str(ROOT / "configs" / name) for name in ("smoke.yaml", "listmle.yaml")]
    program = str(ROOT / "examples" / "keras" / "sigmoid_regression.py")
    checked = run_sweeper("validate", *specs, program, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "ok: smoke-listmle" in checked.stdout and "ok: listmle-remedies" in checked.stdout
    assert f"ok: {program}: workload sigmoid_regression" in checked.stdout
    # `list`: one line per workload, its failure and metric; `list NAME` keeps the knobs
    summary = run_sweeper("list", cwd=tmp_path).stdout
    rows = [line for line in summary.splitlines() if line.startswith("│ ")]
    assert [row.split()[1] for row in rows] == ["bilstm", "dqn", "listmle", "plrank"], summary
    assert 'ListMLE "returns zero" workload.' in summary and "ndcg5 (max)" in summary
    assert "list_shape" in run_sweeper("list", "listmle", cwd=tmp_path).stdout


def test_the_status_line_fits_its_room_in_whole_words():
    from rich.console import Console

    from sweeper.progress import SweepProgress

    display = SweepProgress("t", 9, console=Console(width=100))
    display.running = {"a", "b"}
    display.verdicts.update({"healthy": 3, "collapsed": 1})
    display.metrics, display.best = {"val_accuracy"}, (0.8, "kernel_initializer=he_normal,learning_rate=0.03")
    full = (
        "2 running · 1 collapsed · 3 healthy · best val_accuracy 0.8 (kernel_initializer=he_normal,learning_rate=0.03)"
    )
    assert display.status_line() == full
    assert display.status_line(60) == "2 running · 1 collapsed · 3 healthy · best val_accuracy 0.8"
    assert display.status_line(30) == "2 running · 1 collapsed"
    assert display.status_line(5) == ""
