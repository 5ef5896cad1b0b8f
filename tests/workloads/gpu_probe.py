"""A workload that only looks at where it runs: each trial holds its slot for a while and reports the
device Ray gave it (`CUDA_VISIBLE_DEVICES`), whether TensorFlow will allocate GPU memory as it grows, and
its start and end times, so a test can see how many trials shared the GPU at once."""

import os
import time
from dataclasses import dataclass
from typing import Annotated

from sweeper.workload import Range


@dataclass(frozen=True)
class Config:
    hold_seconds: Annotated[float, Range(0.0, 60.0)] = 2.0
    """How long a trial holds its share of the GPU."""
    seed: int = 0
    """Seed (nothing here is random)."""


METRIC = "score"
MODE = "max"
CHANCE = 0.0
SMOKE = {"hold_seconds": 0.5}


def train(config, report):
    started = time.time()
    time.sleep(config.hold_seconds)
    report(
        {
            "step": 1,
            "loss": 1.0,
            "grad_norm": 1.0,
            "score": 1.0,
            "started": started,
            "ended": time.time(),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
            "memory_growth": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "unset"),
        }
    )
