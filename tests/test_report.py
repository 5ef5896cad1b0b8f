"""The report's first section answers the question: pure functions over hand-made rankings."""

import dataclasses

from sweeper.report import ANSWER_NAMES, Section, answer_section, render_html
from sweeper.results import ClaimResult, PairedEffect, PointSummary, PointTest, Ranking

from conftest import made_ranking

NO_FIX = "No fix found: no grid point was shown to fix the failure (Holm over the grid at alpha 0.05)"
UNTESTED = PointTest(**{f.name: None for f in dataclasses.fields(PointTest)})


def _point(label: str, verdict: str, healthy: int, seeds: int = 5, **tests) -> PointSummary:
    verdicts = ("healthy",) * healthy + ("stuck_zero",) * (seeds - healthy)
    return PointSummary(
        label=label,
        knobs={},
        is_baseline=verdict == "baseline",
        seeds=tuple(range(seeds)),
        verdicts=verdicts,
        final_metrics=(0.8,) * healthy + (0.4,) * (seeds - healthy),
        scores=(0.8,) * healthy + (0.4,) * (seeds - healthy),
        healthy=healthy,
        unhealthy=seeds - healthy,
        healthy_rate=healthy / seeds,
        healthy_rate_ci=(0.0, 1.0),
        median_healthy_metric=0.8 if healthy else None,
        median_score=None,
        score_centre=None,
        score_centre_kind="mean",
        score_centre_ci=None,
        median_loss=None,
        error=None,
        verdict=verdict,
        test=dataclasses.replace(UNTESTED, status="final", **tests) if tests else None,
    )


def _claim(text: str, status: str) -> ClaimResult:
    return ClaimResult(text, {}, {}, "fixes", None, None, True, (), None, PairedEffect(0), None, None, status)


def _document(points: list[PointSummary], claims: list[ClaimResult] = (), unfinished: int = 0) -> Ranking:
    return made_ranking(points, metric="ndcg", claims=claims, unfinished=unfinished)


FIX = {"seeds_used": 5, "baseline_seeds_used": 5, "p_value": 0.0079, "p_adjusted": 0.024}


def test_the_answer_names_the_fix_with_its_evidence_then_what_does_nothing_and_what_hurts():
    document = _document(
        [
            _point(
                "list_shape=grouped", "fixes", 5, **FIX, metric_shift=0.3, metric_shift_ci=(0.1, 0.5), confirmed=True
            ),
            _point("baseline", "baseline", 0),
            _point(
                "activation=tanh", "no_evidence", 1, seeds_used=5, baseline_seeds_used=5, p_value=0.5, p_adjusted=1.0
            ),
            _point("clip=0.1", "harmful", 0, seeds_used=5, baseline_seeds_used=5, p_value=0.01, p_adjusted=0.03),
        ],
        claims=[_claim("Grouping fixes it", "holds"), _claim("Tanh fixes it", "not shown")],
    )
    section = answer_section(document)
    assert section.title == "The answer"
    failure, fix, nothing, worse, claims = section.paragraphs
    assert failure == "The failure: the baseline was unhealthy in 5 of 5 seeds (stuck_zero 5)."
    assert fix == (
        "Fixes it: list_shape=grouped (healthy 5/5 vs the baseline's 0/5; median healthy ndcg 0.8; "
        "shift over healthy seeds 0.3 [0.1, 0.5]; p 0.0079, adjusted 0.024; 5 seeds against 5; "
        "confirmed on fresh seeds)."
    )
    assert nothing == "Not shown to change it: activation=tanh (1/5 healthy)."
    assert worse.startswith("Makes it worse: clip=0.1 (healthy 0/5 vs the baseline's 0/5;")
    assert claims == "Claims: holds: “Grouping fixes it”; not shown: “Tanh fixes it”."


def test_without_a_fix_the_answer_says_so_and_names_the_closest_point():
    document = _document(
        [
            _point("baseline", "baseline", 1),
            _point("a=1", "no_evidence", 2, seeds_used=5, baseline_seeds_used=5, p_value=0.3, p_adjusted=0.6),
            _point("a=2", "no_evidence", 3, seeds_used=5, baseline_seeds_used=5, p_value=0.1, p_adjusted=0.2),
        ],
        unfinished=2,
    )
    paragraphs = answer_section(document).paragraphs
    assert paragraphs[1].startswith(NO_FIX + "; the closest, a=2 (healthy 3/5 vs the baseline's 1/5;")
    assert paragraphs[3] == "Nothing in the grid was shown to make it worse."
    assert paragraphs[4] == "Claims: this sweep judges none."  # an empty section is one line
    assert paragraphs[5] == "2 planned trials did not finish; every verdict is on the finished ones."


def test_a_baseline_that_did_not_fail_is_said_first():
    paragraphs = answer_section(_document([_point("baseline", "baseline", 5)])).paragraphs
    assert paragraphs[0] == "The baseline did not fail: healthy in all 5 seeds, so there is no failure here to fix."
    assert (
        paragraphs[1] == "No fix found: no grid point was shown to fix the failure (Holm over the grid at alpha 0.05)."
    )


def test_a_long_list_of_points_is_cut_and_counted():
    many = [_point(f"k={i}", "no_evidence", 0) for i in range(ANSWER_NAMES + 3)]
    paragraphs = answer_section(_document([_point("baseline", "baseline", 0), *many])).paragraphs
    assert paragraphs[2].endswith(f"k={ANSWER_NAMES - 1} (0/5 healthy), and 3 more.")


def test_web_addresses_in_the_html_report_are_links():
    page = render_html(
        [Section("s", ["MLflow runs: http://127.0.0.1:5000/#/experiments/1/runs?a=1&b=2 (after x)"])], {}
    )
    assert "<a href='http://127.0.0.1:5000/#/experiments/1/runs?a=1&amp;b=2'>" in page


def test_the_html_page_is_titled_by_the_question_with_code_as_code_and_verdicts_in_their_colours():
    from sweeper.health import COLOURS

    question = "Why does `ListMLELoss()` read 0.0?"
    failure = Section(
        "Failure", ["a family-wise error rate, see http://h/x"], ["seed", "verdict"], [["0", "stuck_zero"]]
    )
    page = render_html([Section("sweep-1", [question, "spec: x"]), failure], {}, question)
    assert "<title>Why does `ListMLELoss()` read 0.0?</title>" in page and "<h1>Why does <code>ListMLELoss()" in page
    assert "<p>sweep sweep-1</p>" in page and page.count("Why does") == 2  # not repeated as a paragraph
    assert f"<td><span class='verdict' style='color:{COLOURS['stuck_zero']}'>stuck_zero</span></td>" in page
    assert "a family-wise error rate" in page and "<a href='http://h/x'>" in page  # prose is not coloured
    assert render_html([Section("sweep-2", ["spec: y"])], {}).count("<h1>sweep-2</h1>") == 1


def test_a_monte_carlo_p_value_says_so_and_one_at_its_floor_reads_as_at_most():
    from sweeper.evidence import MONTE_CARLO_FLOOR
    from sweeper.report import p_cell

    sampled = dataclasses.replace(UNTESTED, status="final", exact=False)
    assert p_cell(dataclasses.replace(sampled, p_value=MONTE_CARLO_FLOOR, p_adjusted=6e-5)) == "≤ 2e-05 (≤ 6e-05) MC"
    assert p_cell(dataclasses.replace(sampled, p_value=0.0123, p_adjusted=0.05)) == "0.012 (0.05) MC"
    exact = dataclasses.replace(UNTESTED, status="final", exact=True, p_value=MONTE_CARLO_FLOOR, p_adjusted=6e-5)
    assert p_cell(exact) == "2e-05 (6e-05)"  # an enumerated null has no floor of its own
    assert p_cell(None) == "–"


def test_a_dropped_point_reads_not_shown_at_its_seeds():
    from sweeper.report import ranking_section

    dropped = _point("k=1", "no_evidence", 0, seeds=3, dropped_at=3, seeds_used=3, baseline_seeds_used=9)
    dropped = dataclasses.replace(dropped, test=dataclasses.replace(dropped.test, status="dropped"))
    (row,) = ranking_section(_document([dropped])).rows
    assert row[2] == "no_evidence (not shown at 3 seeds: dropped)"


def test_the_answer_says_which_seeds_decided_and_which_confirmed():
    fix = _point("list_shape=grouped", "fixes", 8, seeds=8, **FIX, confirmed=False)
    document = _document([fix, _point("baseline", "baseline", 0, seeds=10)])
    line = answer_section(document).paragraphs[1]
    assert "5 seeds against 5; not confirmed on fresh seeds 5-7 against the baseline's 5-9)" in line


def test_trials_that_raised_show_their_error_and_a_point_that_never_ran_could_not_run():
    raised = "ValueError: Invalid reduction dimension 1 for input with 1 dimensions."
    crashed = dataclasses.replace(_point("list_shape=vector", "no_evidence", 0), verdicts=("error",) * 5, error=raised)
    partly = dataclasses.replace(
        _point("activation=tanh", "no_evidence", 2),
        verdicts=("healthy", "healthy", "error", "stuck_zero", "stuck_zero"),
        error="InvalidArgumentError: NaN in summary histogram",
    )
    lines = answer_section(_document([_point("baseline", "baseline", 0), crashed, partly])).paragraphs
    assert f"Could not run: list_shape=vector (every trial raised {raised})." in lines
    assert "Not shown to change it: activation=tanh (2/5 healthy; 1 raised InvalidArgumentError: NaN in" in "".join(
        lines
    )
    assert not any("Not shown to change it" in line and "vector" in line for line in lines)
