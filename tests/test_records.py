"""The sweep folder's own storage: trial files that are cut short, completeness, plan files."""

import pytest

from sweeper.errors import SweeperError
from sweeper.health import Diagnosis
from sweeper.records import (
    RANKING_FILE,
    TrialRecord,
    finished_keys,
    is_complete,
    load_trials,
    planned_sweep_dirs,
    save_trial,
    trial_key,
    write_plan,
)
from sweeper.spec import load_specs

SPEC = (
    "name: records\nworkload: listmle\nseeds: 2\ndesign: fixed\nsmoke: true\ngrid: {list_shape: [flattened, grouped]}\n"
)


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    (spec,) = load_specs(tmp_path / "spec.yaml")
    return spec


def save_all(sweep_dir, spec) -> list[TrialRecord]:
    records = []
    for point in spec.points:
        for seed in range(spec.seeds):
            record = TrialRecord(trial_key(point.label, seed), point, seed, [{"step": 1, "loss": float("nan")}])
            record.diagnosis = Diagnosis("non_finite", "loss is nan at step 1")
            save_trial(sweep_dir, record)
            records.append(record)
    return records


def test_a_trial_file_cut_short_is_named_and_its_trial_counts_as_not_finished(tmp_path, spec, capsys):
    records = save_all(tmp_path, spec)
    cut = sorted((tmp_path / "trials").glob("*.json"))[0]
    cut.write_bytes(cut.read_bytes()[:25])  # a crash mid-write where renames are not atomic
    found = load_trials(tmp_path, spec)
    assert len(found) == len(records) - 1
    warning = capsys.readouterr().err
    assert str(cut) in warning and "runs again" in warning and warning.count("\n") == 1
    assert finished_keys(tmp_path) == set(found)
    assert all(record.history[0]["loss"] != record.history[0]["loss"] for record in found.values())  # NaN kept


def test_a_sweep_is_complete_once_its_outputs_say_no_trial_its_design_wants_is_unfinished(tmp_path, spec):
    assert not is_complete(tmp_path)
    save_all(tmp_path, spec)
    assert not is_complete(tmp_path)  # no outputs yet
    (tmp_path / RANKING_FILE).write_text('{"unfinished": 1}')  # analysed while a trial was missing
    assert not is_complete(tmp_path)
    (tmp_path / RANKING_FILE).write_text('{"unfinished": 0}')
    assert is_complete(tmp_path)
    (tmp_path / RANKING_FILE).write_text('{"unfin')  # cut short: analyse again
    assert not is_complete(tmp_path)


def test_plan_files_name_their_sweeps_in_order_and_never_overwrite(tmp_path):
    first = write_plan(tmp_path, "spec-20261129-120000", [tmp_path / "a-1", tmp_path / "b-1"])
    second = write_plan(tmp_path, "spec-20261129-120000", [tmp_path / "b-1", tmp_path / "c-1"])
    assert first != second and first.exists() and second.exists()
    assert planned_sweep_dirs(tmp_path) == [tmp_path / "a-1", tmp_path / "b-1", tmp_path / "c-1"]


def test_an_unreadable_plan_file_is_named(tmp_path):
    (tmp_path / "x.plan.json").write_text("{not json")
    with pytest.raises(SweeperError, match="x.plan.json: unreadable plan file"):
        planned_sweep_dirs(tmp_path)
