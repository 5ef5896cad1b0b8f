"""`sweeper doctor`: from the symptoms of a program run as written to a sweep of the remedies that address them.

Pure functions first: `symptoms` reads the diagnosed trials, `proposals` maps each
symptom to the remedy families that address it (`FAMILIES`, the table the research tools repair from:
AUTOTRAINER, ICSE 2021, and DeepDiagnosis, ICSE 2022, swap activations and initializers, add batch norm,
clip gradients, change the optimizer or the learning rate), and `doctor_spec` writes them as a spec the
user can edit: `vary: one_at_a_time`, so each remedy is judged alone against the program as written.
Then the driver, which the command line and the Python API share and which prints nothing: `examine` runs the
program as written in this process (`sweeper.trial`) and diagnoses each trial, `propose` writes the spec.

The trials the doctor looks at run on calibration seeds (`DOCTOR_SEEDS`, 1000 and up): the grid is chosen by
looking at them, so the sweep that judges it runs on other seeds (0 and up), and the spec says so.

Some faults need two changes at once (a linear network with weights 700x too large and a step 100x too big
goes NaN unless both the start and the step change). When no single remedy is shown to fix it, `combine`
writes a second, bounded round from the first one's ranking: each two of the best-ranked remedies together
(`vary: pairs`, at most `COMBINED_KNOBS` knobs), the knobs the findings point to first. That grid is chosen by
looking at the first round, so it runs on seeds the first round never used (`first_seed`), and it is a
family of its own at the spec's alpha (`COMBINATION_FAMILY` says where that leaves the doctor's whole run).

Why this module is long: it is the one owner of the doctor's path, from the symptom table to both rounds'
specs and doctor.json, which tools read; splitting it would spread one format over several files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper import health
from sweeper.errors import SweeperError
from sweeper.findings import Finding
from sweeper.results import PointSummary, Ranking
from sweeper.trial import run_trial
from sweeper.workload import Knob, Workload, is_workload_file, load

DOCTOR_SEEDS = (1000, 1001, 1002)
READINGS = ("grad_norm", "grad_norm_ratio", "dead_share", "saturated_share", "update_ratio")
"""The instruments' readings the doctor prints (late medians, as `sweeper.health` reads them)."""


@dataclass(frozen=True)
class Family:
    """One remedy family: the knob it turns and why it addresses a symptom."""

    knob: str
    why: str


FAMILIES: dict[str, tuple[Family, ...]] = {
    "non_finite": (
        Family("global_clipnorm", "clipping bounds each step"),
        Family("learning_rate", "a smaller step"),
        Family("normalization", "normalised activations keep their scale"),
    ),
    "exploding": (
        Family("global_clipnorm", "clipping bounds each step"),
        Family("learning_rate", "a smaller step"),
        Family("normalization", "normalised activations keep their scale"),
    ),
    "stuck_zero": (
        Family("output_activation", "an output that can reach the target"),
        Family("loss", "a loss that fits the output"),
        Family("hidden_activation", "a non-saturating activation"),
        Family("kernel_initializer", "a start that breaks symmetry"),
    ),
    "no_signal": (
        Family("output_activation", "an output that can move (a softmax over one unit cannot)"),
        Family("loss", "a loss that fits the output"),
        Family("hidden_activation", "a non-saturating activation"),
        Family("kernel_initializer", "a start that breaks symmetry"),
    ),
    "vanishing_gradient": (
        Family("hidden_activation", "ReLU-family activations pass gradients unshrunk"),
        Family("normalization", "normalised inputs keep each layer in its steep range"),
        Family("kernel_initializer", "He or LeCun scaling keeps the gradient's variance per layer"),
    ),
    "dead_units": (
        Family("learning_rate", "a smaller step does not knock units below zero for good"),
        Family("hidden_activation", "leaky ReLU and ELU keep a gradient below zero"),
        Family("kernel_initializer", "He scaling for ReLU nets"),
    ),
    "saturated": (
        Family("input_scaling", "inputs on a unit scale keep units off their flat tails"),
        Family("hidden_activation", "ReLU-family activations do not saturate above zero"),
        Family("normalization", "normalised pre-activations stay in the steep range"),
    ),
    "oscillating": (
        Family("learning_rate", "a smaller step stops the swing"),
        Family("optimizer", "an adaptive optimizer damps it"),
        Family("batch_size", "larger batches average the noise"),
    ),
    "collapsed": (
        Family("input_scaling", "features on very different scales"),
        Family("output_activation", "an output that can reach the target"),
        Family("optimizer", "an adaptive optimizer"),
        Family("learning_rate", "a step of another size"),
    ),
    "memorising": (),
}
"""Symptom (an unhealthy verdict) -> the remedy families that address it, in the order worth trying."""
NO_KNOB = {
    "memorising": (
        "the training split is learned while validation stays where a model that learned nothing would: the "
        "labels may carry no signal the inputs can show, which no knob fixes; check how the labels are made, "
        "then regularise or add data"
    ),
}
"""Symptoms no knob of the generic remedies reaches, and what to do instead: the doctor says so rather than
proposing at random."""

_ALTERNATIVES: dict[str, tuple[Any, ...]] = {
    "output_activation": ("linear", "sigmoid"),
    "hidden_activation": ("relu", "leaky_relu", "elu", "tanh"),
    "kernel_initializer": ("he_normal", "glorot_uniform", "lecun_normal"),
    "normalization": ("batch", "layer"),
    "optimizer": ("adam", "momentum"),
    "input_scaling": ("standardize", "minmax"),
}
"""Values proposed for a closed-set knob (those the knob allows); other knobs: `_numeric_alternatives`."""
_REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error", "huber")


@dataclass(frozen=True)
class Symptom:
    verdict: str
    seeds: int
    """How many of the doctor's seeds show it."""
    reasons: tuple[str, ...]


def symptoms(verdicts: Sequence[tuple[str, str]]) -> list[Symptom]:
    """The unhealthy verdicts among (verdict, reason) pairs, the commonest first."""
    counts = Counter(verdict for verdict, _ in verdicts if verdict != "healthy")
    return [
        Symptom(verdict, count, tuple(reason for v, reason in verdicts if v == verdict))
        for verdict, count in counts.most_common()
    ]


def late_readings(history: Sequence[dict[str, Any]], share: float) -> dict[str, float]:
    """Each instrument reading as the detectors judge it (`health.late_median`: the median over the last
    `share` of the reports that carry it; `share` is the workload's `stuck_tail`)."""
    medians = {key: health.late_median(history, key, share) for key in READINGS}
    return {key: median for key, median in medians.items() if median is not None}


def proposals(
    found: Sequence[Symptom],
    workload: Workload,
    written_loss: str | None,
    findings: Sequence[Finding] = (),
    as_written: dict[str, Any] | None = None,
) -> dict[str, tuple[Any, ...]]:
    """knob -> its values to sweep (its as-written value first) for every finding's knob, then every family
    that addresses a symptom, that the workload has: the evidence read before training first, then the
    commonest symptom's families; a value a finding points to (a softmax) comes before the family's usual
    ones. A value equal to the program as written (`as_written`: an output that is already a sigmoid) is never
    proposed."""
    grid: dict[str, tuple[Any, ...]] = {}
    wanted = [finding.knob for finding in findings if finding.knob is not None]
    wanted += [family.knob for symptom in found for family in FAMILIES.get(symptom.verdict, ())]
    pointed = {f.knob: f.value for f in reversed(findings) if f.value is not None}  # the first finding's wins
    for name in wanted:
        knob = workload.knobs.get(name)
        if knob is None or knob.name in grid:
            continue
        same = (as_written or {}).get(knob.name)
        usual = _values(knob, written_loss)
        if name in pointed and knob.check(pointed[name]) is not None:  # the value a finding points to, first
            usual = (usual[0], pointed[name], *(v for v in usual[1:] if v != pointed[name]))
        values = tuple(v for i, v in enumerate(usual) if i == 0 or v != same)
        if len(values) > 1:
            grid[knob.name] = values
    return grid


def _values(knob: Knob, written_loss: str | None) -> tuple[Any, ...]:
    if knob.name == "loss" and knob.choices is not None:
        # Regression losses are interchangeable; a classification loss is tied to how targets are encoded.
        if written_loss not in _REGRESSION_LOSSES:
            return (knob.default,)
        return (knob.default, *(loss for loss in _REGRESSION_LOSSES if loss != written_loss))
    if knob.choices is not None:
        wanted = _ALTERNATIVES.get(knob.name, knob.choices)
        return (knob.default, *(v for v in wanted if v in knob.choices and v != knob.default))
    return (knob.default, *_numeric_alternatives(knob))


def _numeric_alternatives(knob: Knob) -> tuple[Any, ...]:
    if knob.name == "learning_rate":
        candidates: tuple[Any, ...] = (knob.default / 10, knob.default / 100)
    elif knob.name in ("global_clipnorm", "clipnorm"):
        candidates = (1.0,)
    elif knob.name == "batch_size":
        candidates = (knob.default * 4,)
    else:
        return ()
    values = [float(f"{v:.3g}") if knob.kind is float else int(v) for v in candidates]
    return tuple(v for v in values if knob.in_range(v) and v != knob.default)


COMBINED_KNOBS = 5
"""The combination round pairs the best-ranked values of at most this many knobs (10 pairs): bounded, since
it runs only where every single remedy failed, and each pair costs a point's seeds."""
COMBINATION_FAMILY = (
    "a second family at alpha {alpha}, on seeds from {first} that the first round never used, so its verdicts "
    "keep alpha whatever the first round showed; over the doctor's two rounds a false fix has probability at "
    "most {both:g} (Bonferroni over the rounds), set `alpha` in both specs to lower it"
)
"""What the combination round's verdicts mean, as the spec, the console and doctor.json say it."""


def combination_grid(
    points: Sequence[PointSummary], grid: dict[str, tuple[Any, ...]], findings: Sequence[Finding] = ()
) -> dict[str, tuple[Any, Any]]:
    """knob -> (its as-written value, its best-ranked other value) for the knobs to pair, in the order to try
    them: those the findings point to, then the rest by their best point's place in the ranking (`points`,
    best first, of a one-at-a-time sweep over `grid`, each knob's as-written value first). Where the ranking
    cannot tell a knob's values apart (the same verdict, healthy seeds and scores: every one failed alike), the
    boldest is taken: the number farthest from the program's (in ratio), else the first proposed. A point
    whose trials all raised was never tried and is left out; fewer than two knobs left: {} (nothing to
    pair)."""
    tried: dict[str, list[PointSummary]] = {}
    for point in points:
        if point.is_baseline or point.could_not_run:
            continue
        changed = [knob for knob, values in grid.items() if point.knobs.get(knob, values[0]) != values[0]]
        if len(changed) == 1:
            tried.setdefault(changed[0], []).append(point)
    best = {knob: _boldest_of_the_best(knob, grid[knob], ranked) for knob, ranked in tried.items()}
    first = [f.knob for f in findings if f.knob in best]
    order = list(dict.fromkeys([*first, *best]))[:COMBINED_KNOBS]
    return {knob: (grid[knob][0], best[knob]) for knob in order} if len(order) > 1 else {}


def _boldest_of_the_best(knob: str, values: tuple[Any, ...], ranked: Sequence[PointSummary]) -> Any:
    """The value of the best-ranked of a knob's points, the boldest where the first few tie (see
    `combination_grid`)."""

    def evidence(point: PointSummary) -> tuple[Any, ...]:
        return (point.verdict, point.healthy, len(point.seeds), point.median_score, point.median_healthy_metric)

    tied = [point.knobs[knob] for point in ranked if evidence(point) == evidence(ranked[0])]
    written = values[0]

    def boldness(value: Any) -> float:
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (value, written)):
            return -values.index(value)  # no order of boldness: the first proposed
        return abs(math.log(value / written)) if value > 0 and written > 0 else abs(value - written)

    return max(tied, key=boldness)


def doctor_spec(
    name: str, workload_ref: str, found: Sequence[Symptom], grid: dict[str, tuple[Any, ...]]
) -> dict[str, Any]:
    """The spec document of the proposed sweep (claims left to the user)."""
    seen = ", ".join(f"{s.verdict} {s.seeds}/{len(DOCTOR_SEEDS)}" for s in found) or "none"
    return {
        "name": name,
        "workload": workload_ref,
        "description": f"sweeper doctor: symptoms on calibration seeds {DOCTOR_SEEDS[0]}-{DOCTOR_SEEDS[-1]}: {seen}",
        "vary": "one_at_a_time",
        "grid": {knob: list(values) for knob, values in grid.items()},
    }


def why_lines(
    found: Sequence[Symptom], grid: dict[str, tuple[Any, ...]], findings: Sequence[Finding] = ()
) -> list[str]:
    """One comment line per proposed knob: which finding or symptom brought it in, and why."""
    lines = []
    for knob in grid:
        finding = next((f for f in findings if f.knob == knob), None)
        if finding is not None:
            lines.append(f"{knob}: for the finding '{finding.what}': {finding.why}")
            continue
        for symptom in found:
            family = next((f for f in FAMILIES.get(symptom.verdict, ()) if f.knob == knob), None)
            if family is not None:
                lines.append(f"{knob}: for {symptom.verdict}: {family.why}")
                break
    return lines


# --- the driver: runs the program as written and writes the spec (no printing) ---
@dataclass(frozen=True)
class SeedResult:
    """One calibration trial of the program as written."""

    seed: int
    verdict: str
    reason: str
    final: Any
    """The metric's last reported value (None without a report)."""
    chance: Any
    """The last report's chance (None without a report)."""
    readings: dict[str, float]
    """`late_readings` of the trial (the instruments it reported)."""


@dataclass(frozen=True)
class Examination:
    """The program as written on the calibration seeds."""

    workload: Workload
    workload_ref: str
    """The workload as the user named it: a file path or a workload name."""
    seeds: tuple[int, ...]
    smoke: bool
    rows: tuple[SeedResult, ...]
    """One per seed, in seed order."""
    findings: tuple[Finding, ...] = ()
    """What the data and structure show before training (`sweeper.findings`), shown first."""
    as_written: dict[str, Any] | None = None
    """The program's own values of the generic knobs it can read (its output and hidden activation)."""

    @property
    def symptoms(self) -> list[Symptom]:
        return symptoms([(row.verdict, row.reason) for row in self.rows])


@dataclass(frozen=True)
class Proposal:
    """The remedies proposed for an examination's symptoms, as written to a spec file."""

    symptoms: tuple[Symptom, ...]
    grid: dict[str, tuple[Any, ...]]
    why: tuple[str, ...]
    """`why_lines`: one per proposed knob."""
    spec: Path | None
    """The spec file written; None where no knob addresses the symptoms (`advice` says what to do)."""
    document: dict[str, Any]
    """The spec document (the file holds it after a comment header)."""
    advice: tuple[str, ...] = ()
    """For each symptom no knob reaches (`NO_KNOB`): what to do instead."""


def calibration_seeds(count: int) -> tuple[int, ...]:
    """The first `count` calibration seeds (1000, 1001, ...)."""
    return tuple(range(DOCTOR_SEEDS[0], DOCTOR_SEEDS[0] + count))


def examine(workload_ref: str, seeds: int = len(DOCTOR_SEEDS), smoke: bool = False) -> Examination:
    """Load the workload (a file path or a name), run it as written on `seeds` calibration seeds (with its SMOKE
    sizes if `smoke`), each stopped as soon as it diverges, and diagnose each trial. SweeperError if the
    workload does not load or its program cannot train as written (`Workload.check_remedies`: a Keras file's
    data with NaN, a model that is not one); a trial that raises is diagnosed `error`."""
    if seeds < 1:
        raise SweeperError(f"seeds: {seeds}; the doctor needs at least one calibration seed")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before the workload imports TensorFlow
    loaded = load(workload_ref)
    loaded.check_remedies([{}])  # the program as written checked before any trial (a Keras file's data and model)
    reading = loaded.read_program()
    limits = loaded.thresholds
    rows = []
    for seed in calibration_seeds(seeds):
        run = run_trial(loaded, {**(loaded.smoke if smoke else {}), "seed": seed})
        diagnosis = health.diagnose(run.history, loaded.metric, loaded.mode, run.error, limits)
        final = run.history[-1] if run.history else {}
        rows.append(
            SeedResult(
                seed=seed,
                verdict=diagnosis.verdict,
                reason=diagnosis.reason,
                final=final.get(loaded.metric),
                chance=final.get("chance"),
                readings=late_readings(run.history, limits.stuck_tail),
            )
        )
    findings, written = (reading.findings, reading.as_written) if reading is not None else ((), None)
    return Examination(loaded, workload_ref, calibration_seeds(seeds), smoke, tuple(rows), findings, written)


def propose(examination: Examination, spec_out: Path | None = None) -> Proposal | None:
    """The remedies for the examination's symptoms, written as a spec to `spec_out` (default:
    ./doctor-<workload>.yaml) with a comment header that says why each knob is there; None, and nothing
    written, when every trial is healthy. SweeperError when the workload has none of the knobs that address
    its symptoms."""
    import yaml

    from sweeper.records import write_atomically

    loaded, workload_ref, chosen = examination.workload, examination.workload_ref, examination.seeds
    found = examination.symptoms
    if not found:
        return None
    written_loss = getattr(loaded.module, "COMPILE", {}).get("loss")
    grid = proposals(found, loaded, written_loss, examination.findings, examination.as_written)
    advice = tuple(f"{s.verdict}: {NO_KNOB[s.verdict]}" for s in found if s.verdict in NO_KNOB)
    if not grid and advice:  # nothing to sweep: said plainly rather than proposed at random
        proposal = Proposal(tuple(found), {}, (), None, {}, advice)
        _write_report(spec_out or Path(f"doctor-{loaded.name}.yaml"), examination, proposal)
        return proposal
    if not grid:
        raise SweeperError(
            f"{workload_ref}: symptoms {', '.join(s.verdict for s in found)}, but the workload has none of the "
            "knobs that address them; write the grid by hand (`sweeper list` shows its knobs)"
        )
    target = spec_out or Path(f"doctor-{loaded.name}.yaml")
    reference = workload_ref
    if is_workload_file(workload_ref):
        # relative to the spec (so the pair can move together) where the file lies under its folder
        file, folder = Path(workload_ref).resolve(), target.resolve().parent
        reference = f"./{file.relative_to(folder)}" if file.is_relative_to(folder) else str(file)
    document = doctor_spec(f"doctor-{loaded.name}", reference, found, grid)
    if examination.smoke:
        document["smoke"] = True
    why = why_lines(found, grid, examination.findings)
    header = [
        f"# Written by `sweeper doctor {workload_ref}`:",
        f"# the remedies for the symptoms seen on calibration seeds {chosen[0]}-{chosen[-1]} (the sweep",
        "# judges them on seeds 0 and up). Edit freely: add values, drop knobs, add claims. Why each knob is here:",
        *(f"#   {line}" for line in why),
    ]
    write_atomically(target, "\n".join(header) + "\n" + yaml.safe_dump(document, sort_keys=False))
    proposal = Proposal(tuple(found), grid, tuple(why), target, document, advice)
    _write_report(target, examination, proposal)
    return proposal


@dataclass(frozen=True)
class Combination:
    """The combination round, written where the first round showed no single remedy to fix it."""

    grid: dict[str, tuple[Any, Any]]
    """`combination_grid`: knob -> (as written, the value paired)."""
    why: tuple[str, ...]
    """One per knob: the value paired and what it did alone in the first round."""
    first_seed: int
    """The round's first seed: one past the last seed the first round ran."""
    family: str
    """`COMBINATION_FAMILY`: what the round's verdicts mean for the error rate."""
    spec: Path
    """The round's spec file (the first round's settings, the pairs as its grid, `first_seed`)."""


def combine(examination: Examination, proposal: Proposal, first_round: Ranking) -> Combination | None:
    """The combination round for a first round (the sweep of `proposal`'s spec) that called no remedy
    `fixes`: its spec written beside the first one (`<stem>-combined.yaml`, the first round's settings with
    the pairs as its grid, on fresh seeds) and recorded in doctor.json. None, and nothing written, where the
    first round called a fix or fewer than two knobs can be paired."""
    import yaml

    from sweeper.records import write_atomically
    from sweeper.report import verdict_cell

    if proposal.spec is None or any(point.verdict == "fixes" for point in first_round.points):
        return None
    grid = combination_grid(first_round.points, proposal.grid, examination.findings)
    if not grid:
        return None
    first_seed = 1 + max(seed for point in first_round.points for seed in point.seeds)
    alpha = first_round.design.alpha
    family = COMBINATION_FAMILY.format(alpha=alpha, first=first_seed, both=min(1.0, 2 * alpha))
    why = []
    for knob, (_, value) in grid.items():
        alone = next(p for p in first_round.points if not p.is_baseline and p.knobs.get(knob) == value)
        why.append(f"{knob}={value}: alone {alone.healthy}/{len(alone.seeds)} healthy, {verdict_cell(alone)}")
    document = {
        **proposal.document,
        "name": f"{proposal.document['name']}-combined",
        "description": f"sweeper doctor, combination round: no single remedy was shown to fix it; {family}",
        "first_seed": first_seed,
        "vary": "pairs",
        "grid": {knob: list(values) for knob, values in grid.items()},
    }
    target = combination_path(proposal.spec)
    header = [
        f"# Written by `sweeper doctor {examination.workload_ref} --run`: no single remedy of {proposal.spec.name}",
        "# was shown to fix it, so this round tries each two of the best-ranked ones together (vary: pairs):",
        *(f"#   {line}" for line in why),
        f"# Its verdicts are {family}.",
    ]
    write_atomically(target, "\n".join(header) + "\n" + yaml.safe_dump(document, sort_keys=False))
    combination = Combination(grid, tuple(why), first_seed, family, target)
    record(examination, proposal, [first_round], combination)
    return combination


def combination_path(spec: Path) -> Path:
    """Where `combine` writes the combination round's spec: beside the first one, `<stem>-combined.yaml`."""
    return spec.with_name(f"{spec.stem}-combined{spec.suffix}")


def report_path(spec: Path) -> Path:
    """Where `propose` writes the doctor's report for tools: beside the spec, `<spec stem>.json`."""
    return spec.with_suffix(".json")


def record(
    examination: Examination,
    proposal: Proposal,
    rounds: Sequence[Ranking] = (),
    combination: Combination | None = None,
) -> None:
    """doctor.json again, with the rounds run so far (`doctor --run`) and the combination round if any."""
    assert proposal.spec is not None
    _write_report(proposal.spec, examination, proposal, rounds, combination)


def _write_report(
    spec: Path,
    examination: Examination,
    proposal: Proposal,
    rounds: Sequence[Ranking] = (),
    combination: Combination | None = None,
) -> None:
    from sweeper.records import write_atomically

    report = doctor_json(examination, proposal, rounds, combination)
    write_atomically(report_path(spec), json.dumps(report, indent=1, allow_nan=False, default=str) + "\n")


def doctor_json(
    examination: Examination,
    proposal: Proposal | None,
    rounds: Sequence[Ranking] = (),
    combination: Combination | None = None,
) -> dict[str, Any]:
    """What the doctor printed, for tools and tests to read: the findings, each calibration seed's verdict,
    reason and readings, the symptoms, the proposals with why, and with --run each round's verdicts and the
    combination round (the same values the console shows)."""
    return {
        "workload": examination.workload_ref,
        "calibration_seeds": list(examination.seeds),
        "findings": [dataclasses.asdict(finding) for finding in examination.findings],
        "as_written": examination.as_written or {},
        "seeds": [
            {
                "seed": row.seed,
                "verdict": row.verdict,
                "reason": row.reason,
                "final": _finite(row.final),
                "chance": _finite(row.chance),
                "readings": {key: _finite(value) for key, value in row.readings.items()},
            }
            for row in examination.rows
        ],
        "symptoms": [{"verdict": s.verdict, "seeds": s.seeds} for s in examination.symptoms],
        "proposals": {knob: list(values) for knob, values in proposal.grid.items()} if proposal else {},
        "why": list(proposal.why) if proposal else [],
        "advice": list(proposal.advice) if proposal else [],
        "spec": str(proposal.spec) if proposal and proposal.spec else None,
        "combination": None
        if combination is None
        else {
            "grid": {knob: list(values) for knob, values in combination.grid.items()},
            "why": list(combination.why),
            "first_seed": combination.first_seed,
            "family": combination.family,
            "spec": str(combination.spec),
        },
        "rounds": [
            {
                "name": ranking.name,
                "sweep": ranking.sweep,
                "points": [
                    {
                        "label": point.label,
                        "verdict": point.verdict,
                        "healthy": point.healthy,
                        "seeds": len(point.seeds),
                        "median_healthy_metric": _finite(point.median_healthy_metric),
                        "p_adjusted": _finite(point.p_adjusted),
                        "error": point.error,
                    }
                    for point in ranking.points
                ],
            }
            for ranking in rounds
        ],
    }


def _finite(value: Any) -> Any:
    """A number as JSON holds it: None for NaN or an infinity (JSON has neither)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
