"""Helpers the test files share: the console scripts, a clean environment, free ports, waiting."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SWEEPER = str(Path(sys.executable).with_name("sweeper"))
RAY = str(Path(sys.executable).with_name("ray"))
TEST_WORKLOADS = Path(__file__).resolve().parent / "workloads"
"""One-file workloads made for tests (specs name them by path)."""


def workload_variant(path: Path, template: str, *changes: tuple[str, str]) -> Path:
    """`path`, written with the text of a TEST_WORKLOADS file after (old, new) replacements, each of which must
    find its old text."""
    text = (TEST_WORKLOADS / template).read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)
    return path


def workload_refusal(path: Path) -> str:
    """The one-line SweeperError that loading the workload file raises."""
    from sweeper.errors import SweeperError
    from sweeper.workload import load

    with pytest.raises(SweeperError) as raised:
        load(str(path))
    message = str(raised.value)
    assert "\n" not in message
    return message


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without a tracking URI or a console width (COLUMNS) of the caller's,
    TensorFlow quiet, plus `extra`."""
    base = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "COLUMNS")}
    return {**base, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def run_sweeper(*args: str, cwd: Path, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    """The real `sweeper` console script, its output captured as text."""
    return run_command([SWEEPER, *args], cwd=cwd, timeout=timeout, **extra_env)


def run_python(code: str, *args: str, cwd: Path, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    """`python -c code args...` in this environment, its output captured as text."""
    return run_command([sys.executable, "-c", code, *args], cwd=cwd, timeout=timeout, **extra_env)


def run_command(argv: list[str], *, cwd: Path, timeout: float, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def sgd_workload() -> str:
    """The path of the plain-SGD regression workload whose baseline runs to infinity."""
    return str(TEST_WORKLOADS / "sgd_regression.py")


def sweep_dirs(out: Path) -> list[Path]:
    """The folders under a `--out` folder: sweeps, or reports rebuilt from MLflow (beside them lie the runs'
    plan files)."""
    return sorted(path for path in out.iterdir() if path.is_dir())


def start_sweeper(*args: str, cwd: Path, quiet: bool = False, **extra_env: str) -> subprocess.Popen:
    """The real `sweeper` console script in the background, in a session of its own (so `os.killpg` ends it
    and the Ray it started); its output piped as text, or dropped when `quiet`."""
    output = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [SWEEPER, *args],
        cwd=cwd,
        env=clean_env(**extra_env),
        stdout=output,
        stderr=output,
        text=True,
        start_new_session=True,
    )


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs: on PATH, or where Debian's package puts them."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return installed[-1].parent if installed else None


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of the test's own on 127.0.0.1 with an empty database `mlflow`, stopped and removed
    after the test: its SQLAlchemy URI. Debian's package (.ci/run installs it); `initdb` refuses to run as
    root, so a root test runs the server as the `postgres` user, in a folder it owns."""
    programs = postgres_bin()
    if programs is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's package)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="sweeper-postgres-"))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()

    def run(program: str, *args: str) -> None:
        subprocess.run([*as_postgres, str(programs / program), *args], check=True, capture_output=True, timeout=120)

    try:
        run("initdb", "-D", str(data), "--auth=trust", "--username=postgres", "--no-sync", "--encoding=UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        if (data / "postmaster.pid").exists():
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def server_is_up(uri: str) -> bool:
    """Whether the MLflow server (or UI) at `uri` answers its health check."""
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
            return response.status == 200
    except OSError:  # refused, reset or timed out while the server starts
        return False


def start_ray_node(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """`ray start ... --block` on 127.0.0.1, in a session of its own (`os.killpg` takes its processes down)."""
    return subprocess.Popen(
        [RAY, "start", "--node-ip-address=127.0.0.1", *args, "--block"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def ray_answer(address: str, expression: str, env: dict[str, str]) -> str | None:
    """The printed value of a Python expression over `ray` connected to the cluster at `address` (from a
    process of its own), or None while the cluster does not answer."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import ray; ray.init(address='{address}', logging_level='ERROR'); print({expression})",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = probe.stdout.strip().splitlines()
    return lines[-1] if probe.returncode == 0 and lines else None


def made_ranking(points, metric: str = "m", mode: str = "max", claims=(), unfinished: int = 0):
    """A `Ranking` of hand-made points (and claims) for the code that reads one; every other field a
    placeholder."""
    from sweeper.results import ComputeSummary, DesignSummary, Ranking

    return Ranking(
        sweep="s",
        name="s",
        workload="w",
        metric=metric,
        mode=mode,
        seeds=5,
        max_seeds=5,
        design=DesignSummary("fixed", (5,), (5,), 0.05, "holm", None, (0, 0)),
        grid={},
        fixed={},
        baseline={},
        smoke=False,
        verdict_rule="",
        points=tuple(points),
        vary="cartesian",
        main_effects=(),
        claims=tuple(claims),
        claims_rule="",
        compute=ComputeSummary(0.0, 0, 0.0, 0.0),
        unfinished=unfinished,
    )
