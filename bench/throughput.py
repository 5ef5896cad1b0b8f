"""Training throughput of each workload's own loop, side by side with a plain Keras/TF loop of the same model.

The question it answers: does the harness (a workload's `train(config, report)` with its evaluation,
reference metrics and reports) train measurably slower than the loop a user would write anyway?

For each workload and the one Config in BENCH (the defaults, with fewer epochs or steps where a default
run would take long), everything runs in ONE process, TensorFlow imported once and pinned to one thread
(TF_NUM_INTRAOP_THREADS = TF_NUM_INTEROP_THREADS = 1, set below before the import). Variants:

  plain     the idiom a user would write for the same model, on the same data, for the same number of
            gradient steps: `model.compile` + `model.fit` for listmle and bilstm (the workload's own
            `make_data` and `make_model`); for plrank and dqn, whose update is custom (PL-Rank-2
            gradients; DQN with replay and environments), a bare loop around the workload's own
            compiled training step (and for dqn its environments and replay buffer): no evaluation, no
            reference metrics, no per-step statistics, no reports;
  workload  the workload's `train(config, report)`, with a report that only takes a timestamp;
  @REF      with `--ref REF`: the same `train` as it was at git revision REF, to show a change to a
            workload side by side under the same background load.

One warm-up round runs every variant once and is thrown away (first-call costs of TensorFlow,
autograph and XLA land there). Then the variants run interleaved, plain workload plain workload ...,
`--repeats` times each, so background load hits all of them alike; the table shows medians.

Throughput counts training examples per second (queries for listmle and plrank, sequences for bilstm)
or environment steps per second (dqn), two ways:
  steady  between the first and the last report of a run (for `model.fit`, between the first and the
          last on_epoch_end): training plus whatever the loop does at every step and report (host
          syncs, evaluation), without per-trial setup;
  whole   the whole call: data generation, model build, graph tracing, reference (chance/oracle)
          metrics and training.
ratio = workload / plain: 1.00 means the workload's loop costs nothing extra; 0.80 means 20% slower.

"Where the difference goes" then splits each median into setup seconds (time to the first report
minus that report's examples at the steady rate) and the time between two reports, and times the
workload's per-trial and per-report extras on their own (reference metrics, one evaluation).

Run it (about 3-4 minutes for all four workloads on one free core; every run is printed to stderr as it
ends, the table to stdout; on a loaded machine use more repeats):

    .venv/bin/python bench/throughput.py
    .venv/bin/python bench/throughput.py --workloads listmle plrank --repeats 5
    .venv/bin/python bench/throughput.py --workloads listmle --ref HEAD   # a workload change, before/after
"""

import os

# Must be set before TensorFlow is imported (it reads them once). One thread each, as a sweep trial gets
# one CPU, and so that timings depend less on what else the machine is doing.
os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
os.environ["TF_NUM_INTEROP_THREADS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import atexit  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import importlib.util  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the working tree's experiments/, installed or not

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_ranking as tfr  # noqa: E402

from experiments import bilstm, dqn, listmle, plrank  # noqa: E402


# --- timing ---
class Clock:
    """Timestamps of one run: (seconds since the start, training units done) at every report or epoch end."""

    def __init__(self):
        self.start = time.perf_counter()
        self.stamps: list[tuple[float, int]] = []

    def stamp(self, units: int) -> None:
        self.stamps.append((time.perf_counter() - self.start, units))

    def stop(self, total_units: int) -> "Run":
        return Run(time.perf_counter() - self.start, total_units, self.stamps)


@dataclass(frozen=True)
class Run:
    whole_s: float
    total_units: int
    stamps: list[tuple[float, int]]

    @property
    def whole_rate(self) -> float:
        return self.total_units / self.whole_s

    @property
    def steady_rate(self) -> float:
        (t0, u0), (t1, u1) = self.stamps[0], self.stamps[-1]
        return (u1 - u0) / (t1 - t0)

    @property
    def interval_s(self) -> float:
        """Seconds between two reports (epochs), the steady state's unit of work."""
        return (self.stamps[-1][0] - self.stamps[0][0]) / (len(self.stamps) - 1)

    @property
    def setup_s(self) -> float:
        """Time to the first report minus what its training units take at the steady rate."""
        t0, u0 = self.stamps[0]
        return t0 - u0 / self.steady_rate


def timed(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Median seconds of `fn()` (after one untimed call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fresh_trial(seed: int) -> None:
    """What every workload's train() does first, so both variants start from the same state."""
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)


class EpochClock(tf.keras.callbacks.Callback):
    """Stamps `model.fit`'s epoch ends, the plain loop's counterpart of a workload's per-epoch report."""

    def __init__(self, clock: Clock, units_per_epoch: int):
        super().__init__()
        self.clock, self.units_per_epoch = clock, units_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        self.clock.stamp((epoch + 1) * self.units_per_epoch)


# --- listmle: plain Keras compile + fit ---
def plain_listmle(config: listmle.Config, clock: Clock) -> None:
    """`model.compile(loss=ListMLELoss())` + `model.fit` on the grouped (batch, list_size) lists."""
    fresh_trial(config.seed)
    (train_x, train_y), _ = listmle.make_data(config)
    model = listmle.make_model(config)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate), loss=tfr.keras.losses.ListMLELoss())
    model.fit(
        train_x,
        train_y,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[EpochClock(clock, config.n_train_queries)],
    )


def extras_listmle(config: listmle.Config) -> dict[str, float]:
    """The workload's own reference metrics and one epoch's evaluation, each timed on its own."""
    (_, _), (test_x, test_y, test_relevance) = listmle.make_data(config)
    model = listmle.make_model(config)
    loss_fn = tfr.keras.losses.ListMLELoss()
    test_x_t, test_y_t = tf.constant(test_x), tf.constant(test_y)

    def evaluation():
        scores = model(test_x_t, training=False)
        float(loss_fn(test_y_t, scores))
        listmle.ndcg5(test_y_t, scores)

    return {
        f"per trial: chance ({listmle.CHANCE_DRAWS} random rankings) and oracle NDCG@5": timed(
            lambda: listmle.reference_ndcg5(test_y, test_relevance, config.seed)
        ),
        "per epoch: test scores, val_loss and NDCG@5": timed(evaluation),
    }


# --- plrank: a bare loop over the workload's own PL-Rank-2 training step ---
def plain_plrank(config: plrank.Config, clock: Clock) -> None:
    """The workload's data, model and compiled step; the same batches; no evaluation, no float() per step."""
    fresh_trial(config.seed)
    (train_x, train_grades, _, train_mask), _ = plrank.make_data(config)
    train_gains = plrank.gains_of(train_grades)
    model = plrank.make_model(config)
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    generator = tf.random.Generator.from_seed(config.seed)
    train_step = plrank.make_train_step(model, optimizer, generator, config)

    order_rng = np.random.default_rng(config.seed + 2)
    n_queries = len(train_x)
    order, position = order_rng.permutation(n_queries), 0
    for step in range(1, config.steps + 1):
        if position + config.batch_size > n_queries:
            order, position = order_rng.permutation(n_queries), 0
        idx = order[position : position + config.batch_size]
        position += config.batch_size
        loss, _, _ = train_step(train_x[idx], train_gains[idx], train_mask[idx])
        # TF runs a tf.function call on CPU synchronously, so the stamp comes after the step's work.
        if step % config.eval_every == 0 or step == config.steps:
            clock.stamp(step * config.batch_size)
    float(loss)


def extras_plrank(config: plrank.Config) -> dict[str, float]:
    _, test = plrank.make_data(config)
    test_gains = plrank.gains_of(test[1])
    evaluate = plrank.make_evaluate(plrank.make_model(config), config, test)
    return {
        "per trial: chance and oracle NDCG (NumPy)": timed(
            lambda: plrank.reference_ndcg(test_gains, test[2], test[3], config.cutoff)
        ),
        f"per report: evaluate() (NDCG, expected NDCG over {plrank.EVAL_SAMPLES} sampled rankings, "
        "score statistics)": timed(evaluate),
    }


# --- dqn: a bare collect-and-train loop over the workload's own network, buffer and compiled update ---
def plain_dqn(config: dqn.Config, clock: Clock) -> None:
    """Epsilon-greedy collection into the workload's replay buffer and its compiled `train_call`, on the
    same schedule; no chance or greedy evaluation episodes, no statistics, no reports."""
    fresh_trial(config.seed)
    envs = [gym.make(config.env) for _ in range(config.n_envs)]
    obs = np.stack([env.reset(seed=config.seed * 1000 + i)[0] for i, env in enumerate(envs)])
    obs_dim, n_actions = envs[0].observation_space.shape[0], int(envs[0].action_space.n)
    q_net = dqn.make_q_network(config, obs_dim, n_actions)
    target_net = dqn.make_q_network(config, obs_dim, n_actions)
    target_net.set_weights(q_net.get_weights())
    optimizer = tf.keras.optimizers.Adam(config.learning_rate, global_clipnorm=dqn.MAX_GRAD_NORM)
    optimizer.build(q_net.trainable_variables)
    train_call = dqn.make_train_call(q_net, target_net, optimizer, config)
    buffer = dqn.ReplayBuffer(config.buffer_size, obs_dim)
    rng = np.random.default_rng(config.seed)
    weights = q_net.get_weights()

    step, since_train, updates = 0, 0, 0
    while step < config.total_steps:
        actions = np.argmax(dqn.numpy_q_values(weights, obs), axis=1)
        explore = rng.random(config.n_envs) < dqn.epsilon_at(config, step)
        actions = np.where(explore, rng.integers(0, n_actions, config.n_envs), actions)
        next_obs, rewards = np.empty_like(obs), np.empty(config.n_envs, np.float32)
        terminated, reset_obs = np.empty(config.n_envs, bool), obs.copy()
        for i, env in enumerate(envs):
            next_obs[i], rewards[i], terminated[i], truncated, _ = env.step(int(actions[i]))
            reset_obs[i] = env.reset()[0] if terminated[i] or truncated else next_obs[i]
        # The environment's own reward, as the defaults train on (reward_shape=env, no transform).
        buffer.add(obs, actions, rewards, next_obs, terminated.astype(np.float32))
        obs = reset_obs
        step += config.n_envs
        since_train += config.n_envs
        if step >= config.learning_starts and since_train >= config.train_every:
            since_train = 0
            batch = buffer.sample(rng, config.gradient_steps, config.batch_size)
            # The agent's cosine learning-rate schedule is part of the update, not of the harness.
            optimizer.learning_rate.assign(
                config.learning_rate * 0.5 * (1.0 + np.cos(np.pi * step / config.total_steps))
            )
            train_call(*(tf.constant(x) for x in batch), tf.constant(updates))
            updates += config.gradient_steps
            weights = q_net.get_weights()
        if step % config.report_every < config.n_envs:
            clock.stamp(step)
    for env in envs:
        env.close()


def extras_dqn(config: dqn.Config) -> dict[str, float]:
    env = gym.make(config.env)
    obs_dim, n_actions = env.observation_space.shape[0], int(env.action_space.n)
    env.close()
    weights = dqn.make_q_network(config, obs_dim, n_actions).get_weights()
    return {
        f"per trial: chance return ({config.eval_episodes} random-policy episodes)": timed(
            lambda: dqn.chance_return(config, n_actions)
        ),
        f"per report: eval_return ({config.eval_episodes} greedy episodes; "
        "of an untrained net, as short as the defaults')": timed(lambda: dqn.greedy_return(config, weights)),
    }


# --- bilstm: plain Keras compile + fit ---
def plain_bilstm(config: bilstm.Config, clock: Clock) -> None:
    """`model.compile` + `model.fit` with the workload's own loss on its own padded sequences."""
    fresh_trial(config.seed)
    (train_x, train_y), _ = bilstm.make_data(config)
    model = bilstm.make_model(config)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate), loss=bilstm.make_loss(config))
    model.fit(
        train_x,
        train_y,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[EpochClock(clock, config.dataset_size)],
    )


def extras_bilstm(config: bilstm.Config) -> dict[str, float]:
    _, (val_x, val_y) = bilstm.make_data(config)
    model = bilstm.make_model(config)
    loss_fn = bilstm.make_loss(config)
    validation_pass = bilstm.make_validation_pass(model, val_x)

    def evaluation():
        out = validation_pass()
        float(loss_fn(tf.constant(val_y), out))
        bilstm.val_score(val_y.astype(np.float64), out.numpy().astype(np.float64), config)

    return {
        # A new function each time, so every call pays the tracing.
        "per trial: compiling the validation pass (first call)": timed(
            lambda: bilstm.make_validation_pass(model, val_x)(), repeats=1
        ),
        "per epoch: validation outputs, val_loss and kappa": timed(evaluation),
    }


# --- the benchmark ---
@dataclass(frozen=True)
class Bench:
    module: types.ModuleType
    unit: str
    overrides: dict
    """Config fields changed from the defaults: fewer epochs or steps, so one run takes a few seconds."""
    length: str
    """The Config field that is the `step` of the last report (epochs, steps, total_steps)."""
    units_at: Callable[[Any, int], int]
    """Training units (examples or environment steps) done when the report with this `step` is made."""
    plain: Callable[[Any, Clock], None]
    extras: Callable[[Any], dict[str, float]]
    notes: str
    """What else the workload's train() does beyond the plain loop, too small to time on its own."""


BENCH = {
    "listmle": Bench(
        listmle,
        "queries/s",
        # The default 20 epochs (a run of a few seconds already). `grouped` because the plain idiom is
        # ListMLELoss on (batch, list_size) lists: with the default `flattened` shape (about as costly per
        # step, ~2 ms either way) the two variants would not compute the same loss.
        {"list_shape": "grouped"},
        "epochs",
        lambda config, step: step * config.n_train_queries,
        plain_listmle,
        extras_listmle,
        "per step: float(loss) and float(grad_norm) (microseconds: TF runs the step synchronously on CPU, "
        "so nothing waits) and the batch copied into two tensors (~0.05 ms each)",
    ),
    "plrank": Bench(
        plrank,
        "queries/s",
        {"steps": 1000},
        "steps",  # of 1500; a report every 50 steps as by default
        lambda config, step: step * config.batch_size,
        plain_plrank,
        extras_plrank,
        "per step: three float() of the step's outputs (microseconds)",
    ),
    "dqn": Bench(
        dqn,
        "env steps/s",
        # 10,000 of 50,000 steps, a report every 2,500 as by default. Training starts at step 1,000, so the
        # first report's steps are cheaper than steady ones and "setup" reads low, alike in both variants.
        {"total_steps": 10_000},
        "total_steps",
        lambda config, step: step,
        plain_dqn,
        extras_dqn,
        "per training call: its statistics fetched with .numpy(); per step: reward shaping and counting (microseconds)",
    ),
    "bilstm": Bench(
        bilstm,
        "sequences/s",
        {"epochs": 3},
        "epochs",  # of 25; an epoch takes ~1 s, tracing the BiLSTM a few seconds
        lambda config, step: step * config.dataset_size,
        plain_bilstm,
        extras_bilstm,
        "per step: float(loss) and float(grad_norm) (microseconds) and the batch copied into two tensors",
    ),
}


def module_at(ref: str, name: str) -> types.ModuleType:
    """experiments/<name>.py as it was at git revision `ref`, imported as a module of its own.

    It is written to a file first: autograph converts a tf.function's Python code (DQN's loop over
    `tf.range`) only when it can read the function's source.
    """
    source = subprocess.run(
        ["git", "show", f"{ref}:experiments/{name}.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    folder = tempfile.mkdtemp(prefix="throughput-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # autograph reads it while the runs trace
    path = Path(folder) / f"{name}_at_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"{name}_at_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_workload(module: types.ModuleType, config, bench: Bench, total: int) -> Run:
    clock = Clock()
    # The report does nothing but take a timestamp.
    module.train(config, lambda report: clock.stamp(bench.units_at(config, report["step"])))
    return clock.stop(total)


def run_plain(config, bench: Bench, total: int) -> Run:
    clock = Clock()
    bench.plain(config, clock)
    return clock.stop(total)


def bench_one(name: str, repeats: int, ref: str | None) -> tuple[dict[str, list[Run]], dict[str, float], Any]:
    bench = BENCH[name]
    config = dataclasses.replace(bench.module.Config(), **bench.overrides)
    total = bench.units_at(config, getattr(config, bench.length))
    variants: dict[str, Callable[[], Run]] = {
        "plain": lambda: run_plain(config, bench, total),
        "workload": lambda: run_workload(bench.module, config, bench, total),
    }
    if ref is not None:
        old = module_at(ref, name)
        old_config = old.Config(**dataclasses.asdict(config))
        variants[f"@{ref}"] = lambda: run_workload(old, old_config, bench, total)

    runs: dict[str, list[Run]] = {label: [] for label in variants}
    for round_ in range(repeats + 1):
        for label, variant in variants.items():
            gc.collect()
            run = variant()
            kept = round_ > 0
            if kept:
                runs[label].append(run)
            print(
                f"  {name:8s} {label:10s} {'repeat ' + str(round_) if kept else 'warm-up ':9s} "
                f"whole {run.whole_s:5.2f} s ({run.whole_rate:8.0f} {bench.unit})  "
                f"steady {run.steady_rate:8.0f} {bench.unit}  setup {run.setup_s:5.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return runs, bench.extras(config), config


def median(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def print_results(results: dict) -> None:
    header = (
        f"{'workload':8s}  {'variant':10s}  {'unit':11s}  {'plain steady':>12s}  {'steady':>7s}  {'ratio':>5s}  "
        f"{'plain whole':>11s}  {'whole':>6s}  {'ratio':>5s}  where the difference goes (vs plain)"
    )
    print("\n" + header)
    print("-" * (len(header) + 10))
    for name, (runs, _, _) in results.items():
        plain = runs["plain"]
        plain_steady, plain_whole = median(plain, "steady_rate"), median(plain, "whole_rate")
        for label, label_runs in runs.items():
            if label == "plain":
                continue
            steady, whole = median(label_runs, "steady_rate"), median(label_runs, "whole_rate")
            setup = median(label_runs, "setup_s") - median(plain, "setup_s")
            per_report = 1000 * (median(label_runs, "interval_s") - median(plain, "interval_s"))
            print(
                f"{name:8s}  {label:10s}  {BENCH[name].unit:11s}  {plain_steady:12.0f}  {steady:7.0f}  "
                f"{steady / plain_steady:5.2f}  {plain_whole:11.0f}  {whole:6.0f}  {whole / plain_whole:5.2f}  "
                f"setup {setup:+.2f} s, {per_report:+.0f} ms per report"
            )

    print(
        "\nWhere the difference goes, in detail (medians; setup = time to the first report minus its training "
        "examples at the steady rate; the workload's extras timed on their own, once warm):"
    )
    for name, (runs, extras, _) in results.items():
        bench = BENCH[name]
        sizes = ", ".join(f"{key}={value}" for key, value in bench.overrides.items())
        print(f"\n{name} (Config defaults with {sizes}; {len(runs['plain'])} repeats)")
        for label, label_runs in runs.items():
            print(
                f"  {label:10s} setup {median(label_runs, 'setup_s'):5.2f} s   between reports "
                f"{1000 * median(label_runs, 'interval_s'):7.1f} ms   whole {median(label_runs, 'whole_s'):5.2f} s"
            )
        for what, seconds in extras.items():
            print(f"  {1000 * seconds:9.1f} ms  {what}")
        print(f"  not timed on its own: {bench.notes}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workloads", nargs="+", choices=list(BENCH), default=list(BENCH), help="which workloads (default: all)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs per variant after the warm-up (default 3, at least 3 recommended)",
    )
    parser.add_argument(
        "--ref", help="also time train() as it was at this git revision (e.g. HEAD), interleaved with the others"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    print(
        f"TensorFlow {tf.__version__}, TF_NUM_INTRAOP_THREADS={os.environ['TF_NUM_INTRAOP_THREADS']}, "
        f"TF_NUM_INTEROP_THREADS={os.environ['TF_NUM_INTEROP_THREADS']}",
        file=sys.stderr,
    )
    results = {name: bench_one(name, args.repeats, args.ref) for name in args.workloads}
    print_results(results)


if __name__ == "__main__":
    main()
