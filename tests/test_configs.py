"""The bundled configs and the examples' specs: every sweep loads, and every claim names where it comes from,
quoting its document word for word (sources/ holds the four documents the workloads were built from)."""

from pathlib import Path

import pytest

from sweeper.spec import PROJECT_SOURCE, Source, load_specs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "examples").rglob("*.yaml"))
"""The bundled sweeps and the example programs' sweeps."""
SOURCES = ROOT / "sources"


def folded(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_every_claim_quotes_its_document_or_says_it_is_the_projects_own(config):
    for spec in load_specs(config):
        for claim in spec.claims:
            where = f"{config.name}: {spec.name}: {claim.text!r}"
            assert claim.source is not None, f"{where} has no source"
            if claim.source == PROJECT_SOURCE:
                continue
            assert isinstance(claim.source, Source)
            document = SOURCES / claim.source.file
            assert document.is_file(), f"{where}: no document {claim.source.file} in sources/"
            assert claim.source.quote in folded(document.read_text(encoding="utf-8")), f"{where}: quote not found"


def test_the_quote_check_can_fail():
    text = folded((SOURCES / "000_d839642e40c27b5a.txt").read_text(encoding="utf-8"))
    assert "ListMLE" in text and "ListMLE returns one" not in text


BUNDLED = ("listmle", "plrank", "dqn", "bilstm")


@pytest.mark.parametrize("name", BUNDLED)
def test_every_choice_of_every_bundled_workload_is_swept_in_some_config(name):
    """Each value of a knob with a set of choices (the causes, the remedies, the task) runs in some configs/
    sweep."""
    from sweeper.workload import load

    workload = load(name)
    defaults = {knob: declared.default for knob, declared in workload.knobs.items()}
    swept: dict[str, set] = {}
    for config in CONFIGS:
        for spec in load_specs(config):
            if spec.workload == name:
                for point in spec.points:  # what the trials run with: defaults, fixed and baseline, the point
                    for knob, value in {**defaults, **spec.base_overrides(workload), **point.knobs}.items():
                        swept.setdefault(knob, set()).add(repr(value))
    missing = [
        f"{knob}={value!r}"
        for knob, declared in workload.knobs.items()
        if declared.choices is not None or declared.kind is bool
        for value in (declared.choices if declared.choices is not None else (False, True))
        if repr(value) not in swept.get(knob, set())
    ]
    assert not missing, f"{name}: never swept: {', '.join(missing)}"
