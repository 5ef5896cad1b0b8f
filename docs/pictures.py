"""The README's pictures, made from a real sweep so they stay true: the top of a report, and the sweep's runs
in the MLflow UI, each rendered by headless Chromium.

    .venv/bin/python docs/pictures.py          # about 2 minutes on 2 cores; needs `chromium` on the PATH

It runs the smoke spec's ListMLE sweep (`configs/smoke.yaml --only smoke-listmle`) into a temporary folder
with its own SQLite store, screenshots its report.html, serves the store with `sweeper ui` and screenshots
the link that command prints, and writes docs/images/report.png and docs/images/mlflow-runs.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
SWEEPER = str(Path(sys.executable).parent / "sweeper")


def screenshot(chromium: str, url: str, out: Path, profile: Path, size: str, wait_ms: int) -> None:
    """One page as a PNG: headless Chromium in a fresh profile, given `wait_ms` of page time to render."""
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={out}",
            url,
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder for the pictures (default: docs/images)")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: chromium is not on the PATH (Debian: apt install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory(prefix="pictures-") as folder:
        work = Path(folder)
        store = f"sqlite:///{work / 'mlflow.db'}"
        spec = ROOT / "configs" / "smoke.yaml"
        run = [SWEEPER, "run", str(spec), "--only", "smoke-listmle", "--out", "sweeps", "--tracking-uri", store]
        subprocess.run(run, cwd=work, env=env, check=True, capture_output=True)
        (sweep_dir,) = (work / "sweeps").glob("smoke-listmle-*")
        report = args.out / "report.png"
        screenshot(chromium, (sweep_dir / "report.html").as_uri(), report, work / "p1", "1280,1500", 2000)
        port = free_port()
        server = subprocess.Popen(
            [SWEEPER, "ui", "--port", str(port), "--tracking-uri", store],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            printed = []
            while not (line := server.stdout.readline() if server.stdout else "").startswith("MLflow UI:"):
                if not line:
                    sys.exit("error: sweeper ui ended before serving")
                printed.append(line.strip())
            link = next(text.split(": ", 1)[1] for text in printed if text.startswith("smoke-listmle"))
            for _ in range(90):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    time.sleep(1)
            runs = args.out / "mlflow-runs.png"
            screenshot(chromium, link, runs, work / "p2", "1600,700", 20000)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    print(f"wrote {report} and {runs}")


if __name__ == "__main__":
    main()
