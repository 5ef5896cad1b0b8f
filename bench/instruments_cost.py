"""What sweeper.instruments costs a trial: its readings' time per report against the time between reports.

    python bench/instruments_cost.py [--quick] [--seed 1000]

Each built-in workload runs one trial at its default Config (its SMOKE size with --quick), and a plain Keras
MLP trains with `model.fit`, reading the instruments in a callback at each epoch's end. Within the same run
every `measure()` call is timed, and so is every report: the time between two reports without the
instruments is the interval less the reading taken in it. The cost per report is the median of the readings
after the first, against the median of those intervals (the first report's comes after the trial's setup).
The first reading traces the instruments' `tf.function`: it is shown apart, with the construction, as a cost
once per trial, also as a share of the whole trial (setup included). The issue's target is a ratio under
10%. One thread per op, as a trial has on a one-CPU Ray worker. The probe sizes the workloads declare were
chosen with this script on seed 1000 (a calibration seed), its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKLOADS = ("listmle", "plrank", "dqn", "bilstm")
# The plain MLP: 20 features -> 64 -> 64 -> 1 on 4000 synthetic regression examples, batches of 32.
MLP_EXAMPLES, MLP_FEATURES, MLP_UNITS, MLP_BATCH, MLP_PROBE = 4000, 20, 64, 32, 256


@dataclasses.dataclass
class Timing:
    """One run's start, report times, instruments' construction and reading durations (seconds, perf_counter)."""

    started: float = dataclasses.field(default_factory=time.perf_counter)
    reports: list[float] = dataclasses.field(default_factory=list)
    readings: list[float] = dataclasses.field(default_factory=list)
    construction: float = 0.0

    def row(self, name: str) -> str:
        intervals = [b - a for a, b in zip(self.reports, self.reports[1:], strict=False)]
        # The reading taken before report i+1 falls inside interval i.
        without = [interval - reading for interval, reading in zip(intervals, self.readings[1:], strict=True)]
        between, per_report = statistics.median(without), statistics.median(self.readings[1:])
        once = self.construction + self.readings[0]
        trial = self.reports[-1] - self.started
        return (
            f"| {name} | {len(self.reports)} | {between * 1e3:.1f} | {per_report * 1e3:.2f} | "
            f"{per_report / between:.2%} | {once * 1e3:.0f} | {trial:.1f} | {once / trial:.1%} |"
        )


def timed_instruments(timing: Timing):
    """An Instruments class whose every measure() is timed into `timing`."""
    from sweeper.instruments import Instruments

    class TimedInstruments(Instruments):
        def __init__(self, *args, **kwargs):
            start = time.perf_counter()
            super().__init__(*args, **kwargs)
            timing.construction += time.perf_counter() - start

        def measure(self) -> dict[str, float]:
            start = time.perf_counter()
            readings = super().measure()
            timing.readings.append(time.perf_counter() - start)
            return readings

    return TimedInstruments


def workload_timing(name: str, quick: bool, seed: int) -> Timing:
    module = importlib.import_module(f"experiments.{name}")
    module.Instruments = timed_instruments(timing := Timing())  # the name the workload builds them with
    config = dataclasses.replace(module.Config(), **(module.SMOKE if quick else {}), seed=seed)
    timing.started = time.perf_counter()
    module.train(config, lambda report: timing.reports.append(time.perf_counter()))
    return timing


def mlp_timing(epochs: int, seed: int) -> Timing:
    import numpy as np
    import tensorflow as tf

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((MLP_EXAMPLES, MLP_FEATURES)).astype(np.float32)
    y = np.tanh(x @ rng.standard_normal((MLP_FEATURES, 1))).astype(np.float32)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(MLP_FEATURES,)),
            tf.keras.layers.Dense(MLP_UNITS, activation="relu"),
            tf.keras.layers.Dense(MLP_UNITS, activation="relu"),
            tf.keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="adam", loss="mean_squared_error")
    timing = Timing()
    loss = tf.keras.losses.MeanSquaredError()
    probe_y = tf.constant(y[:MLP_PROBE])
    instruments = timed_instruments(timing)(model, x[:MLP_PROBE], lambda outputs: loss(probe_y, outputs))

    class Measure(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            instruments.measure()
            timing.reports.append(time.perf_counter())

    model.fit(x, y, epochs=epochs, batch_size=MLP_BATCH, verbose=0, callbacks=[Measure()])
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="SMOKE configs and 4 MLP epochs: checks the script runs")
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    print(
        "| run | reports | ms between reports, without | instruments ms per report | ratio "
        "| ms once (construction + first call, tracing) | trial s | once / trial |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in WORKLOADS:
        print(workload_timing(name, args.quick, args.seed).row(name), flush=True)
    epochs = 4 if args.quick else 20
    print(mlp_timing(epochs, args.seed).row(f"Keras MLP, fit ({epochs} epochs)"), flush=True)


if __name__ == "__main__":
    main()
