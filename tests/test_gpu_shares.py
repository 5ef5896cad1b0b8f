"""GPU shares, scheduled by a real Ray node that is told it has one GPU (`ray start --num-gpus 1`; there is
none): a sweep whose trials ask for a quarter GPU each runs four at a time on it, each trial sees the device
Ray assigned it, and TensorFlow is set to allocate GPU memory as it grows rather than take the whole GPU."""

import json
import os
import signal
import subprocess

import pytest

from conftest import SWEEPER, TEST_WORKLOADS, clean_env, free_port, ray_answer, start_ray_node, sweep_dirs, wait_for

SPEC = f"""
name: gpu-shares
workload: {TEST_WORKLOADS / "gpu_probe.py"}
seeds: 4
design: fixed
baseline: {{hold_seconds: 6.0}}
grid: {{hold_seconds: [6.0, 6.5]}}  # long enough that four workers, however slow to start, overlap
resources: {{cpu: 0.5, gpu: 0.25}}
"""


@pytest.mark.slow
def test_trials_asking_a_quarter_gpu_run_four_at_a_time_each_on_the_device_ray_assigned(tmp_path):
    port = free_port()
    cluster_env = clean_env(RAY_AUTH_MODE="token")
    head = start_ray_node(
        "--head", f"--port={port}", "--num-cpus=4", "--num-gpus=1", "--include-dashboard=false", env=cluster_env
    )

    def node_has_a_gpu() -> bool:
        return ray_answer(f"127.0.0.1:{port}", "ray.cluster_resources().get('GPU', 0)", cluster_env) == "1.0"

    try:
        wait_for(node_has_a_gpu, 300, "the Ray node with one GPU")
        (tmp_path / "spec.yaml").write_text(SPEC)
        result = subprocess.run(
            [
                SWEEPER,
                "run",
                "spec.yaml",
                "--address",
                f"127.0.0.1:{port}",
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
            ],
            cwd=tmp_path,
            env=cluster_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=120)

    (sweep_dir,) = sweep_dirs(tmp_path / "sweeps")
    reports = [json.loads(path.read_text())["history"][0] for path in (sweep_dir / "trials").glob("*.json")]
    assert len(reports) == 8
    assert {report["visible_devices"] for report in reports} == {"0"}  # the one GPU Ray assigned
    assert {report["memory_growth"] for report in reports} == {"true"}
    # How many trials held the GPU at each trial's start: never more than four, and four at some point.
    overlaps = [sum(other["started"] <= report["started"] < other["ended"] for other in reports) for report in reports]
    assert max(overlaps) == 4, overlaps
