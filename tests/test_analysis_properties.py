"""The analysis is total: any trial histories (NaN, infinities, values near +-1e308, missing keys, no chance
level, failed trials, no baseline trial) give a verdict, a ranking document with only finite numbers or
null, a trials.csv without NaN or inf, and plots; never an exception or an overflow warning.

The sweeps are built directly (a stub workload, a SweepSpec with a three-value knob and a one-value knob),
so these tests run no training and need no workload module.
"""

import csv
import io
import json
import math
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeper import analysis, health, outputs, plots, ranking, report
from sweeper.evidence import make_design
from sweeper.records import TrialRecord, trial_key
from sweeper.results import Ranking
from sweeper.spec import Claim, SweepSpec, grid_points
from sweeper.workload import Knob, Workload

# An overflow, a NaN out of a mean, a division by zero: each would say a number in the outputs is garbage.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

METRIC = "r2"
GRID = {"fix": ["off", "on", "half"], "width": [8]}
EXTREMES = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    1e-300,
    1e297,
    -1e297,
    1e308,
    -1e308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    math.nan,
    math.inf,
    -math.inf,
]
NUMERIC_COLUMNS = ("steps", "final_loss", "final_metric", "chance", "oracle", "train_seconds")


def stub_workload(mode: str) -> Workload:
    module = types.ModuleType("stub_workload")
    module.METRIC, module.MODE = METRIC, mode
    knobs = {
        "fix": Knob("fix", "off", str, ("off", "on", "half"), "the remedy"),
        "width": Knob("width", 8, int, None, ""),
    }
    return Workload("stub", module, knobs)


def stub_spec(workload: Workload, seeds: int) -> SweepSpec:
    claims = [
        Claim("the fix fixes it", {"fix": "on"}, {}, "fixes"),
        Claim("half does nothing", {"fix": "half"}, {}, "no_effect", margin=0.2),
        Claim("the loss reads zero", {"fix": "half"}, {"width": 8}, "zero_loss"),
    ]
    return SweepSpec(
        path=Path("stub.yaml"),
        name="stub",
        workload="stub",
        seeds=seeds,
        smoke=False,
        fixed={},
        grid=GRID,
        cpu=1.0,
        gpu=0.0,
        max_seeds=seeds,
        design_kind="fixed",
        points=grid_points(workload, GRID),
        claims=claims,
    )


# --- strategies ---
values = st.one_of(
    st.sampled_from(EXTREMES), st.floats(allow_nan=True, allow_infinity=True), st.floats(-2.0, 2.0), st.integers(-3, 3)
)
reports = st.fixed_dictionaries(
    {"step": st.one_of(st.integers(0, 50), values)},
    optional={
        "loss": values,
        "grad_norm": values,
        METRIC: values,
        "chance": values,
        "oracle": values,
        "output_scale": values,
    },
)
histories = st.lists(reports, max_size=6)
verdicts = st.one_of(st.none(), st.sampled_from(health.VERDICTS))  # None: diagnosed from the history


@st.composite
def sweeps(draw, max_seeds: int = 3):
    """(spec, workload, records): a subset of the grid's trials (possibly without the baseline's, possibly
    none), each with a drawn history and either its real diagnosis or a drawn verdict."""
    workload = stub_workload(draw(st.sampled_from(["max", "min"])))
    spec = stub_spec(workload, draw(st.integers(1, max_seeds)))
    records = []
    for point in spec.points:
        for seed in range(spec.seeds):
            if not draw(st.booleans()):
                continue
            history = draw(histories)
            error = draw(st.sampled_from([None, None, None, "ValueError: bad shape"]))
            record = TrialRecord(
                trial_key(point.label, seed),
                point,
                seed,
                history,
                error,
                train_seconds=draw(st.sampled_from([0.0, 1.5, 30.0, math.nan, math.inf])),
            )
            verdict = draw(verdicts)
            record.diagnosis = (
                health.diagnose(history, METRIC, workload.mode, error, workload.thresholds)
                if verdict is None
                else health.Diagnosis(verdict, "stored")
            )
            records.append(record)
    return spec, workload, records


@st.composite
def outcomes(draw):
    """A TrialOutcome as ranking gets it, but with any floats (analysis.outcomes_of only passes finite ones)."""
    fix = draw(st.sampled_from(GRID["fix"]))
    optional = st.one_of(st.none(), values.map(float))
    return ranking.TrialOutcome(
        label=f"fix={fix}",
        is_baseline=fix == "off",
        seed=draw(st.integers(0, 2)),
        verdict=draw(st.sampled_from(health.VERDICTS)),
        final_metric=draw(optional),
        final_loss=draw(optional),
        chance=draw(optional),
        knobs={"fix": fix, "width": 8},
    )


# --- checks ---
def strict_loads(text: str):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


def strict_json(document):
    """The document through JSON and back, refusing NaN and Infinity both ways."""
    return strict_loads(json.dumps(document, allow_nan=False))


def assert_finite_cells(csv_text: str) -> None:
    for row in csv.DictReader(io.StringIO(csv_text)):
        for column in NUMERIC_COLUMNS:
            assert row[column] == "" or math.isfinite(float(row[column])), (column, row[column])
        assert not {"nan", "inf", "-inf"} & {cell.lower() for cell in row.values()}, row


# --- properties ---
@settings(max_examples=300, deadline=None)
@given(history=histories, mode=st.sampled_from(["max", "min"]), error=st.sampled_from([None, "RuntimeError: x"]))
def test_every_history_gets_a_verdict(history, mode, error):
    diagnosis = health.diagnose(history, METRIC, mode, error)
    assert diagnosis.verdict in health.VERDICTS and isinstance(diagnosis.reason, str)
    diverged = health.check_divergence(history, METRIC)
    assert diverged is None or diverged.verdict in health.DIVERGED


@settings(max_examples=150, deadline=None)
@given(trials=st.lists(outcomes(), max_size=12), mode=st.sampled_from(["max", "min"]))
def test_ranking_statistics_are_finite_or_none_for_any_outcomes(trials, mode):
    trials = ranking.fill_missing_chance(trials)
    points = analysis.rank_points(trials, mode, make_design("fixed", 2, 3, 3))
    effects = ranking.main_effects(trials, GRID, mode)
    paired = ranking.paired_effect(ranking.twin_pairs(trials, {"fix": "on"}, {"fix": "off"}, {}), mode, None)
    strict_json(
        {
            "points": [p.to_json() for p in points],
            "effects": [e.to_json() for e in effects],
            "paired": paired.to_json(),
        }
    )
    assert {p.verdict for p in points} <= {"baseline", "fixes", "harmful", "no_evidence", "pending"}


@settings(max_examples=60, deadline=None)
@given(sweep=sweeps())
def test_the_ranking_document_and_trials_csv_hold_only_finite_numbers(sweep):
    spec, workload, records = sweep
    result = analysis.analyze(spec, workload, records, "stub-sweep")
    assert result.metric == METRIC
    assert strict_loads(result.dumps()) == strict_json(result.to_json())
    rows = outputs.trial_rows(spec, METRIC, records)
    for row in rows:
        assert all(not isinstance(v, float) or math.isfinite(v) for v in row.values()), row
    assert_finite_cells(outputs.trials_csv(rows))
    report.render_markdown(report.sections(result, records, {}))  # every section renders


@settings(max_examples=15, deadline=None)
@given(sweep=sweeps(max_seeds=2))
def test_write_report_writes_files_that_parse(sweep):
    spec, workload, records = sweep
    with tempfile.TemporaryDirectory() as folder:
        sweep_dir = Path(folder)
        result = outputs.write_report(spec, workload, records, sweep_dir, "stub-sweep", {})
        assert result == analysis.analyze(spec, workload, records, "stub-sweep")
        assert (sweep_dir / "ranking.json").read_text() == result.dumps()
        assert strict_loads((sweep_dir / "ranking.json").read_text()) == strict_json(result.to_json())
        assert_finite_cells((sweep_dir / "trials.csv").read_text())
        assert len(list(csv.DictReader((sweep_dir / "trials.csv").open()))) == len(records)
        assert all(path.read_bytes().startswith(b"\x89PNG") for path in (sweep_dir / "plots").iterdir())
        assert "## Ranking" in (sweep_dir / "report.md").read_text()


# --- ranking.json, the Ranking's one serialised form ---
def assert_round_trips(result: Ranking) -> None:
    assert Ranking.from_json(result.to_json()) == result
    text = result.dumps()
    assert Ranking.loads(text).dumps() == text
    assert Ranking.loads(text) == result  # through the JSON text too: tuples come back as tuples


@settings(max_examples=60, deadline=None)
@given(sweep=sweeps())
def test_a_ranking_reads_back_from_its_json_as_it_was(sweep):
    spec, workload, records = sweep
    assert_round_trips(analysis.analyze(spec, workload, records, "stub-sweep"))


@settings(max_examples=10, deadline=None)
@given(sweep=sweeps())
def test_a_ranking_json_written_before_the_intervals_existed_still_reads(sweep):
    """ranking.json of an earlier version has no interval of P(beats) or of the score, and no error message:
    read as not given."""
    spec, workload, records = sweep
    result = analysis.analyze(spec, workload, records, "stub-sweep")
    data = result.to_json()
    for point in data["points"]:
        point.pop("prob_superiority_ci", None)
        point.pop("score_centre_ci")
        point.pop("error")
    read = Ranking.from_json(data)
    assert all(p.score_centre_ci is None for p in read.points)
    assert all(p.test is None or p.test.prob_superiority_ci is None for p in read.points)


# --- the reported case (issue 12) ---
def test_a_baseline_that_ends_at_minus_1e297_and_an_infinite_loss_is_ranked_below_the_remedy(tmp_path):
    """R^2 of -1e296..-1e297 before the loss turns inf, no chance level: the fallback score's squared
    deviation used to overflow in eta squared, and no report was written."""
    workload = stub_workload("max")
    spec = stub_spec(workload, seeds=6)  # 6 seeds a side: enough for a verdict (p = 2 / C(12, 6), Holm x2)
    records = []
    for point in spec.points:
        for seed in range(6):
            if point.is_baseline:
                history = [
                    {"step": 1, "loss": 2.0, "grad_norm": 1.0, METRIC: -1e296},
                    {"step": 2, "loss": math.inf, "grad_norm": 1.0, METRIC: (-1e297, -2e297, -3e297)[seed % 3]},
                ]
            elif point.knobs["fix"] == "on":
                history = [
                    {"step": 1, "loss": 1.0, "grad_norm": 1.0, METRIC: 0.5},
                    {"step": 2, "loss": 0.5, "grad_norm": 1.0, METRIC: 0.8 + seed / 100},
                ]
            else:  # fix=half explodes too, at a metric less far off
                history = [
                    {"step": 1, "loss": 2.0, "grad_norm": 1.0, METRIC: -1e296},
                    {"step": 2, "loss": 1e7, "grad_norm": 1.0, METRIC: -1e296},
                ]
            record = TrialRecord(trial_key(point.label, seed), point, seed, history, train_seconds=1.0)
            record.diagnosis = health.diagnose(history, METRIC, "max")
            records.append(record)
    assert [r.diagnosis.verdict for r in records if r.point.is_baseline] == ["non_finite"] * 6

    result = analysis.analyze(spec, workload, records, "issue-12")
    points = {p.label: p for p in result.points}
    assert result.points[0].label == "fix=on" and points["fix=on"].verdict == "fixes"
    assert points["fix=on"].score_centre == pytest.approx(0.825) and points["fix=on"].score_centre_kind == "IQM"
    assert points["baseline"].scores == (-3e297,) * 6  # unhealthy seeds count at the sweep's worst final metric
    assert points["baseline"].score_centre == pytest.approx(-3e297)
    assert points["fix=half"].verdict == "no_evidence"
    (effect,) = result.main_effects
    # ranks: the twelve unhealthy scores tie at 6.5, fix=on's are 13..18 (mean 15.5; overall mean 9.5):
    # total 12 * 3^2 + (3.5^2 + ... + 8.5^2) = 341.5, between 12 * 3^2 + 6 * 6^2 = 324
    assert effect.eta_squared_score == pytest.approx(324 / 341.5)
    assert effect.eta_squared_healthy == pytest.approx(1.0)
    strict_json(result.to_json())
    assert_round_trips(result)

    rows = outputs.trial_rows(spec, METRIC, records)
    assert [row["final_loss"] for row in rows if row["point"] == "baseline"] == [None] * 6  # inf: an empty cell
    assert outputs.write_report(spec, workload, records, tmp_path, "issue-12", {}) == result
    assert strict_loads((tmp_path / "ranking.json").read_text())["points"][0]["label"] == "fix=on"
    assert_finite_cells((tmp_path / "trials.csv").read_text())


# --- the plots' helper ---
def test_plottable_clips_to_the_plot_limit_and_leaves_out_what_is_not_a_finite_number():
    drawn = plots.plottable([0.5, -1e297, 1e308, math.inf, math.nan, None, "x", True, 3])
    limit = plots.PLOT_LIMIT
    assert list(drawn[:3]) == [0.5, -limit, limit] and drawn[-1] == 3.0
    assert np.isnan(drawn[3:8]).all()  # inf, NaN, None, text and a bool are not drawn
