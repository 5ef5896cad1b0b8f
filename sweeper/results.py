"""What a sweep's analysis says, as typed values, and ranking.json, their one serialised form.

`sweeper.analysis` computes a `Ranking` from a sweep's trials; the report, the console, `compare` and the
MLflow mirror read its fields. `Ranking.to_json` / `Ranking.from_json` are the only place the file's keys
are written or read: each value's `to_json` gives its keys in the file's order, and `from_json` reads back
exactly what `to_json` wrote (`Ranking.from_json(r.to_json()) == r`). Every number is finite or None.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]


def _fields(value: object) -> JsonDict:
    """A flat dataclass's fields, in declaration order, tuples as lists (JSON arrays)."""
    return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}  # type: ignore[arg-type]


def _plain(value: object) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


_ADDED = frozenset({"prob_superiority_ci", "stopped_at"})
"""PointTest fields that ranking.json files of earlier versions lack."""


def _pair(value: Any) -> tuple[Any, Any] | None:
    return None if value is None else (value[0], value[1])


@dataclass(frozen=True)
class DesignSummary:
    """Where the design put the seeds, as ranking.json states it."""

    kind: str
    """adaptive | fixed"""
    looks: tuple[int, ...]
    baseline_looks: tuple[int, ...]
    alpha: float
    correction: str
    futility_p: float | None
    """The interim looks' futility bound for a point leaning to fix; None for a fixed design."""
    confirm: tuple[int, int]
    """The confirmation round's fresh seeds for a point called `fixes` and for the baseline; (0, 0): none."""
    spend: tuple[float, ...] = (1.0,)
    """Each look's share of alpha (`evidence.spending`); files written before efficacy stopping: (1.0,)."""
    futility_p_harmful: float | None = None
    """The futility bound for a point leaning to harm; None for a fixed design and in earlier files."""

    def to_json(self) -> JsonDict:
        return _fields(self)

    @classmethod
    def from_json(cls, data: JsonDict) -> DesignSummary:
        return cls(
            data["kind"],
            tuple(data["looks"]),
            tuple(data["baseline_looks"]),
            data["alpha"],
            data["correction"],
            data["futility_p"],
            tuple(data["confirm"]),
            tuple(data.get("spend", (1.0,))),
            data.get("futility_p_harmful"),
        )


@dataclass(frozen=True)
class PointTest:
    """A grid point's test against the baseline (`evidence.decide`) with its readouts; the baseline has none."""

    status: str
    """running | dropped | final"""
    dropped_at: int | None
    stopped_at: int | None
    """The interim look (the point's seeds) at which it was called and stopped early: its estimates are biased
    away from no effect. None if it ran to the last look or was not called."""
    seeds_used: int
    baseline_seeds_used: int
    p_fixes: float | None
    p_harmful: float | None
    p_value: float | None
    p_adjusted: float | None
    prob_superiority: float | None
    prob_superiority_ci: tuple[float, float] | None
    """95%, matching the test (`evidence.beats_interval`)."""
    exact: bool | None
    healthy_rate_difference: float | None
    healthy_rate_difference_ci: tuple[float | None, float | None] | None
    healthy_rate_p_fixes: float | None
    healthy_rate_p_harmful: float | None
    metric_shift: float | None
    metric_shift_ci: tuple[float | None, float | None] | None
    confirmation_p: float | None
    confirmation_p_adjusted: float | None
    confirmed: bool | None
    """`fixes` points of an adaptive design: the confirmation round on fresh seeds held (Holm over the points
    called `fixes`); None before it has run, and for the rest."""

    @classmethod
    def from_json(cls, data: JsonDict) -> PointTest:
        # Files written before the interval of P(beats) existed have none: read as not given.
        values: JsonDict = {
            f.name: data.get(f.name) if f.name in _ADDED else data[f.name] for f in dataclasses.fields(cls)
        }
        for name in ("prob_superiority_ci", "healthy_rate_difference_ci", "metric_shift_ci"):
            values[name] = _pair(values[name])
        return cls(**values)


@dataclass(frozen=True)
class PointSummary:
    """One grid point over its seeds: what each seed gave, the summaries, its test and its verdict."""

    label: str
    knobs: dict[str, Any]
    is_baseline: bool
    seeds: tuple[int, ...]
    verdicts: tuple[str, ...]
    """Each seed's health verdict, in seed order."""
    final_metrics: tuple[float | None, ...]
    """Each seed's final metric (None where it was not a finite number)."""
    scores: tuple[float | None, ...]
    """Each seed's score: its final metric if healthy, else its chance level (`ranking.metric_scores`)."""
    healthy: int
    unhealthy: int
    healthy_rate: float
    healthy_rate_ci: tuple[float, float]
    median_healthy_metric: float | None
    median_score: float | None
    score_centre: float | None
    score_centre_kind: str
    """mean | IQM"""
    score_centre_ci: tuple[float, float] | None
    """95%, where every seed is healthy (`ranking.centre_interval`)."""
    median_loss: float | None
    error: str | None
    """The message its errored trials raised most often (`analysis.ERROR_SHOWN` characters at most)."""
    verdict: str
    """baseline | fixes | harmful | no_evidence | pending"""
    test: PointTest | None = None

    @property
    def p_adjusted(self) -> float | None:
        return None if self.test is None else self.test.p_adjusted

    @property
    def raised(self) -> int:
        """How many of its seeds' trials raised (verdict `error`)."""
        return sum(verdict == "error" for verdict in self.verdicts)

    @property
    def could_not_run(self) -> bool:
        """Every trial it ran raised: it was never tried, so it is no evidence of anything."""
        return bool(self.seeds) and self.raised == len(self.seeds)

    @property
    def dropped(self) -> bool:
        return self.test is not None and self.test.status == "dropped"

    def to_json(self) -> JsonDict:
        summary = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "test"}
        if self.test is not None:
            summary.update(_fields(self.test))
        return summary

    @classmethod
    def from_json(cls, data: JsonDict) -> PointSummary:
        return cls(
            label=data["label"],
            knobs=data["knobs"],
            is_baseline=data["is_baseline"],
            seeds=tuple(data["seeds"]),
            verdicts=tuple(data["verdicts"]),
            final_metrics=tuple(data["final_metrics"]),
            scores=tuple(data["scores"]),
            healthy=data["healthy"],
            unhealthy=data["unhealthy"],
            healthy_rate=data["healthy_rate"],
            healthy_rate_ci=(data["healthy_rate_ci"][0], data["healthy_rate_ci"][1]),
            median_healthy_metric=data["median_healthy_metric"],
            median_score=data["median_score"],
            score_centre=data["score_centre"],
            score_centre_kind=data["score_centre_kind"],
            score_centre_ci=_pair(data.get("score_centre_ci")),  # absent from files written before it existed
            median_loss=data["median_loss"],
            error=data.get("error"),  # absent from files written before it existed
            verdict=data["verdict"],
            test=PointTest.from_json(data) if "status" in data else None,
        )


@dataclass(frozen=True)
class ValueEffect:
    """One value of a knob over every trial that has it."""

    value: Any
    trials: int
    healthy_rate: float | None
    mean_score: float | None


@dataclass(frozen=True)
class KnobEffect:
    """A knob's main effect: each value's trials, and the share of the variance its values explain."""

    knob: str
    values: tuple[ValueEffect, ...]
    eta_squared_score: float | None
    eta_squared_healthy: float | None

    def to_json(self) -> JsonDict:
        return {
            "knob": self.knob,
            "values": [_fields(value) for value in self.values],
            "eta_squared_score": self.eta_squared_score,
            "eta_squared_healthy": self.eta_squared_healthy,
        }

    @classmethod
    def from_json(cls, data: JsonDict) -> KnobEffect:
        values = tuple(ValueEffect(**value) for value in data["values"])
        return cls(data["knob"], values, data["eta_squared_score"], data["eta_squared_healthy"])


@dataclass(frozen=True)
class PairedEffect:
    """What a claim's twin pairs measured (same seed and other knobs, the change on vs off), by pair and by
    seed; with no pairs, only `pairs` = 0 is written."""

    pairs: int
    improved: int = 0
    worsened: int = 0
    tied: int = 0
    healthy_rate_with: float | None = None
    healthy_rate_without: float | None = None
    median_metric_with: float | None = None
    median_metric_without: float | None = None
    median_loss_with: float | None = None
    median_loss_without: float | None = None
    max_abs_loss_with: float | None = None
    prob_with_beats_without: float | None = None
    both_unhealthy: int = 0
    """Pairs whose twins both failed: they decide nothing (`ranking.seed_signs`)."""
    seeds: int = 0
    """Seeds with a pair that decides: the claim's test counts these, one observation each."""
    seeds_improved: int = 0
    seeds_worsened: int = 0

    def to_json(self) -> JsonDict:
        return _fields(self) if self.pairs else {"pairs": 0}

    @classmethod
    def from_json(cls, data: JsonDict) -> PairedEffect:
        return cls(**data)


@dataclass(frozen=True)
class ClaimResult:
    """A claim of the spec, judged on its twin pairs (`analysis.judge_claims`)."""

    claim: str
    change: dict[str, Any]
    """The knobs the claim sets (the spec's `set`)."""
    where: dict[str, Any]
    expect: str
    margin: float | None
    source: dict[str, str] | str | None
    """{file, quote}, "project" (the project's own claim) or None."""
    testable: bool
    left_out: tuple[str, ...]
    """Why twin pairs were left out: settings whose outcome is fixed by construction."""
    p_value: float | None
    measured: PairedEffect
    p_adjusted: float | None
    holds: bool | None
    status: str
    """holds | not shown | does not hold | cannot tell | not testable here"""

    def to_json(self) -> JsonDict:
        document = _fields(self)
        document["measured"] = self.measured.to_json()
        return {("set" if key == "change" else key): value for key, value in document.items()}

    @classmethod
    def from_json(cls, data: JsonDict) -> ClaimResult:
        values = {f.name: data["set" if f.name == "change" else f.name] for f in dataclasses.fields(cls)}
        values["left_out"] = tuple(values["left_out"])
        values["measured"] = PairedEffect.from_json(values["measured"])
        return cls(**values)


@dataclass(frozen=True)
class ComputeSummary:
    """Training seconds spent, and those saved by stopping diverged trials early."""

    train_seconds: float
    stopped_early: int
    estimated_seconds_saved: float
    saved_share: float

    def to_json(self) -> JsonDict:
        return _fields(self)


@dataclass(frozen=True)
class Ranking:
    """Everything a sweep's report says, as numbers: ranking.json."""

    sweep: str
    name: str
    workload: str
    metric: str
    mode: str
    """max | min"""
    seeds: int
    max_seeds: int
    design: DesignSummary
    grid: dict[str, list[Any]]
    fixed: dict[str, Any]
    baseline: dict[str, Any]
    smoke: bool
    verdict_rule: str
    points: tuple[PointSummary, ...]
    """Best first; the baseline ranked by the same rule."""
    vary: str
    main_effects: tuple[KnobEffect, ...]
    claims: tuple[ClaimResult, ...]
    claims_rule: str
    compute: ComputeSummary
    unfinished: int
    """Planned trials that did not finish."""

    @property
    def baseline_point(self) -> PointSummary | None:
        return next((p for p in self.points if p.is_baseline), None)

    def to_json(self) -> JsonDict:
        document = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        document["design"] = self.design.to_json()
        document["points"] = [p.to_json() for p in self.points]
        document["main_effects"] = [e.to_json() for e in self.main_effects]
        document["claims"] = [c.to_json() for c in self.claims]
        document["compute"] = self.compute.to_json()
        return document

    def dumps(self) -> str:
        """ranking.json's text."""
        return json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, data: JsonDict) -> Ranking:
        values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        values["design"] = DesignSummary.from_json(data["design"])
        values["points"] = tuple(PointSummary.from_json(p) for p in data["points"])
        values["main_effects"] = tuple(KnobEffect.from_json(e) for e in data["main_effects"])
        values["claims"] = tuple(ClaimResult.from_json(c) for c in data["claims"])
        values["compute"] = ComputeSummary(**data["compute"])
        return cls(**values)

    @classmethod
    def loads(cls, text: str) -> Ranking:
        return cls.from_json(json.loads(text))
