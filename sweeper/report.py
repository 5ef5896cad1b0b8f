"""A sweep's report as sections, rendered to Markdown and to one self-contained HTML page: it reads a
`Ranking` (sweeper.results) and the trial records, and computes nothing of its own. The Markdown and the HTML
are rendered from the same sections, so they say the same; the console prints some of them too.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeper.evidence import MONTE_CARLO_FLOOR, MONTE_CARLO_RESAMPLES
from sweeper.health import COLOURS
from sweeper.records import TrialRecord
from sweeper.results import ClaimResult, PointSummary, PointTest, Ranking
from sweeper.spec import PROJECT_SOURCE


# --- sections shared by the markdown and the HTML report ---
@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    image: str | None = None  # a file name under plots/


def number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def sections(ranking: Ranking, records: Sequence[TrialRecord], context: dict[str, str]) -> list[Section]:
    """Every section of the report, in order."""
    return [
        intro_section(ranking, len(records), context),
        answer_section(ranking),
        baseline_section(ranking, records),
        claims_section(ranking),
        ranking_section(ranking),
        *([effects_section(ranking)] if ranking.main_effects else []),
        Section(
            "Failure modes per grid point",
            ["Verdict counts over the seeds, in ranking order."],
            image="failure_modes.png",
        ),
        Section(
            "Learning curves",
            ["The baseline beside the best remedies; one line per seed."],
            image="learning_curves.png",
        ),
        Section(
            "Gradient norms",
            [
                (
                    "Distribution of the reported gradient norms over all trials; the line marks the clipping "
                    "threshold that would clip 10% of the reports."
                )
            ],
            image="grad_norms.png",
        ),
        Section("Files", ["trials.csv: every trial with its MLflow run id. ranking.json: every number above."]),
    ]


def intro_section(ranking: Ranking, trials: int, context: dict[str, str]) -> Section:
    intro = Section(ranking.sweep)
    if context.get("description"):
        intro.paragraphs.append(context["description"])
    intro.paragraphs += [f"{key}: {value}" for key, value in context.items() if key != "description"]
    compute, design = ranking.compute, ranking.design
    seeds = (
        f"{ranking.seeds} seeds each"
        if design.kind == "fixed"
        else f"{design.looks[0]}-{design.looks[-1]} seeds a point, adaptive"
    )
    intro.paragraphs.append(
        f"metric: {ranking.metric} ({ranking.mode}); {len(ranking.points)} grid points ({seeds}): "
        f"{trials} trials; {compute.train_seconds:.0f} training seconds; "
        f"{compute.stopped_early} diverged trials stopped early, saving about "
        f"{compute.estimated_seconds_saved:.0f} s ({compute.saved_share:.0%})."
    )
    return intro


ANSWER_NAMES = 8
"""Grid points named in one line of the answer; the rest are counted (the ranking lists them all)."""


def answer_section(ranking: Ranking) -> Section:
    """The answer, before the details: whether the baseline failed, what fixes it (with its evidence), what
    was not shown to change it, what makes it worse, and which of the claims hold."""
    points, metric = ranking.points, ranking.metric
    baseline = ranking.baseline_point
    by_verdict: dict[str, list[PointSummary]] = {}
    for point in points:
        by_verdict.setdefault(point.verdict, []).append(point)
    design = ranking.design
    correction = "Holm" if design.correction == "holm" else "Benjamini-Hochberg"
    rule = f"{correction} over the grid at alpha {design.alpha:g}"
    lines = [_failure_line(baseline)]
    fixes = by_verdict.get("fixes", [])
    if fixes:
        lines += [f"Fixes it: {_evidence(point, metric, baseline)}." for point in fixes[:ANSWER_NAMES]]
        if len(fixes) > ANSWER_NAMES:
            lines.append(f"{len(fixes) - ANSWER_NAMES} more points fix it (see the ranking).")
    else:
        tested = [(p.p_adjusted, p) for p in points if p.p_adjusted is not None]
        closest = min(tested, key=lambda pair: pair[0], default=None)
        lines.append(
            f"No fix found: no grid point was shown to fix the failure ({rule})"
            + (f"; the closest, {_evidence(closest[1], metric, baseline)}." if closest is not None else ".")
        )
    unclear = by_verdict.get("no_evidence", []) + by_verdict.get("pending", [])
    crashed = [p for p in unclear if p.could_not_run]
    unclear = [p for p in unclear if not p.could_not_run]
    if crashed:
        lines.append(
            "Could not run: "
            + "; ".join(f"{p.label} (every trial raised {p.error})" for p in crashed[:ANSWER_NAMES])
            + (f"; and {len(crashed) - ANSWER_NAMES} more" if len(crashed) > ANSWER_NAMES else "")
            + "."
        )
    if unclear:
        lines.append(f"Not shown to change it: {_named(unclear)}.")
    harmful = by_verdict.get("harmful", [])
    lines.append(
        f"Makes it worse: {'; '.join(_evidence(p, metric, baseline) for p in harmful)}."
        if harmful
        else "Nothing in the grid was shown to make it worse."
    )
    lines.append(_claims_line(ranking.claims))
    if ranking.unfinished:
        lines.append(f"{ranking.unfinished} planned trials did not finish; every verdict is on the finished ones.")
    return Section("The answer", lines)


def _failure_line(baseline: PointSummary | None) -> str:
    if baseline is None:
        return "The baseline has no finished trial: there is nothing to compare with."
    counts: dict[str, int] = {}
    for verdict in baseline.verdicts:
        counts[verdict] = counts.get(verdict, 0) + 1
    seeds = len(baseline.seeds)
    if not baseline.unhealthy:
        return f"The baseline did not fail: healthy in all {seeds} seeds, so there is no failure here to fix."
    modes = ", ".join(f"{verdict} {count}" for verdict, count in sorted(counts.items()) if verdict != "healthy")
    return f"The failure: the baseline was unhealthy in {baseline.unhealthy} of {seeds} seeds ({modes})."


def _evidence(point: PointSummary, metric: str, baseline: PointSummary | None) -> str:
    """A point and its evidence against the baseline: healthy seeds, the metric, the test."""
    test = point.test
    used = test.seeds_used if test is not None else len(point.seeds)
    base_used = test.baseline_seeds_used if test is not None else None
    healthy = f"healthy {point.healthy}/{len(point.seeds)}"
    if baseline is not None:
        healthy += f" vs the baseline's {baseline.healthy}/{len(baseline.seeds)}"
    parts = [healthy, f"median healthy {metric} {number(point.median_healthy_metric)}"]
    if test is not None and test.metric_shift is not None:
        parts.append(f"shift over healthy seeds {_interval(test.metric_shift, test.metric_shift_ci)}")
    if test is not None and test.p_value is not None:
        at_most = "≤ " if _at_floor(test) else ""
        sampled = " (Monte Carlo)" if test.exact is False else ""
        parts.append(f"p {at_most}{number(test.p_value, 2)}, adjusted {at_most}{number(test.p_adjusted, 2)}{sampled}")
    parts.append(f"{used} seeds against {base_used if base_used is not None else '–'}")
    if test is not None and test.stopped_at is not None:
        parts.append("called and stopped at that look: its estimates are biased away from no effect")
    if test is not None and test.confirmed is not None:
        fresh = _fresh_seeds(point, used, baseline, base_used)
        parts.append(f"{'' if test.confirmed else 'not '}confirmed on fresh seeds{fresh}")
    return f"{point.label} ({'; '.join(parts)})"


def _fresh_seeds(point: PointSummary, used: int, baseline: PointSummary | None, base_used: int | None) -> str:
    """' 10-14 against the baseline's 30-39': the seeds past those that decided, which confirmed."""
    if baseline is None or base_used is None or len(point.seeds) <= used or len(baseline.seeds) <= base_used:
        return ""
    return (
        f" {point.seeds[used]}-{point.seeds[-1]} against the baseline's "
        f"{baseline.seeds[base_used]}-{baseline.seeds[-1]}"
    )


def _named(points: list[PointSummary]) -> str:
    named = ", ".join(f"{p.label} ({_healthy_and_errors(p)})" for p in points[:ANSWER_NAMES])
    return named + (f", and {len(points) - ANSWER_NAMES} more" if len(points) > ANSWER_NAMES else "")


def _healthy_and_errors(point: PointSummary) -> str:
    """ "3/5 healthy", and where trials raised, how many and the commonest message."""
    raised = f"; {point.raised} raised {point.error}" if point.raised else ""
    return f"{point.healthy}/{len(point.seeds)} healthy{raised}"


def _claims_line(claims: Sequence[ClaimResult]) -> str:
    if not claims:
        return "Claims: this sweep judges none."
    by_status: dict[str, list[str]] = {}
    for item in claims:
        by_status.setdefault(item.status, []).append(f"“{item.claim}”")
    return "Claims: " + "; ".join(f"{status}: {', '.join(texts)}" for status, texts in by_status.items()) + "."


def baseline_section(ranking: Ranking, records: Sequence[TrialRecord]) -> Section:
    metric = ranking.metric
    section = Section(
        "The failure, reproduced",
        [
            "The baseline is every swept knob at its default: the setup the workload declares failing"
            + (f"; this sweep's failing setup sets {_knobs(ranking.baseline)}." if ranking.baseline else ".")
        ],
        ["seed", "verdict", "why", "steps", "final loss", f"final {metric}", "chance", "oracle"],
    )
    for record in (r for r in records if r.point.is_baseline):
        section.rows.append(
            [
                str(record.seed),
                record.verdict,
                record.reason,
                str(len(record.history)),
                number(record.finite_final("loss")),
                number(record.finite_final(metric)),
                number(record.finite_final("chance")),
                number(record.finite_final("oracle")),
            ]
        )
    return section


def claims_section(ranking: Ranking) -> Section:
    metric = ranking.metric
    if not ranking.claims:
        return Section(
            "The question's claims, measured", ["This sweep judges no claims (a spec lists them under `claims`)."]
        )
    section = Section(
        "The question's claims, measured",
        [ranking.claims_rule],
        ["claim", "source", "change", "expected", "verdict", "p (adjusted)", "what was measured"],
    )
    for item in ranking.claims:
        m = item.measured
        where = f" where {_knobs(item.where)}" if item.where else ""
        if not item.testable:
            measured = "every twin pair lies where the outcome is fixed: " + "; ".join(item.left_out)
        elif m.pairs:
            seeds = m.seeds - m.seeds_improved - m.seeds_worsened
            measured = (
                f"{m.pairs} twin pairs: {m.improved} improved, {m.worsened} worsened, {m.tied} tied"
                + (f" ({m.both_unhealthy} with both twins failed, deciding nothing)" if m.both_unhealthy else "")
                + f"; by seed, {m.seeds_improved} improved, {m.seeds_worsened} worsened, {seeds} tied; "
                f"healthy {_share(m.healthy_rate_with)} with vs {_share(m.healthy_rate_without)} without; "
                f"median {metric} {number(m.median_metric_with)} vs {number(m.median_metric_without)}; "
                f"median final loss {number(m.median_loss_with)} vs {number(m.median_loss_without)}"
            )
            if item.left_out:
                measured += "; left out: " + "; ".join(item.left_out)
        else:
            measured = "no twin trials in this grid"
        expected = item.expect + (f" (margin {item.margin:g})" if item.margin is not None else "")
        p_values = "–" if item.p_value is None else f"{number(item.p_value, 2)} ({number(item.p_adjusted, 2)})"
        section.rows.append(
            [item.claim, _source_cell(item.source), _knobs(item.change) + where]
            + [expected, item.status, p_values, measured]
        )
    return section


def _source_cell(source: dict[str, str] | str | None) -> str:
    if isinstance(source, dict):
        return f"{source['file']}: “{source['quote']}”"
    return "the project's own (no document says it)" if source == PROJECT_SOURCE else "–"


def ranking_section(ranking: Ranking) -> Section:
    metric = ranking.metric
    confirming = any(ranking.design.confirm)  # the confirmed column, where the design has that round
    section = Section(
        "Ranking",
        [
            f"Verdict rule: {ranking.verdict_rule}",
            (
                f"seeds: the point's / the baseline's seeds in its test. median healthy {metric}: over the healthy "
                "seeds only, with the unhealthy count. score: the mean (IQM from 4 seeds) with an unhealthy seed at "
                "the chance level. Healthy-rate difference: Newcombe 95% interval. Metric shift: Hodges-Lehmann, "
                "Moses 95% interval, healthy seeds only (a shift among the seeds that trained, not the remedy's "
                "effect on every seed). P(beats baseline): ties count one half, with the 95% interval that matches "
                "the test (it leaves out 1/2 where the test rejects). Score interval: 95%, given only where every "
                "seed is healthy (with unhealthy seeds mixed in, no interval of the centre holds its level at "
                f"3-10 seeds). p: MC marks a Monte Carlo p-value ({MONTE_CARLO_RESAMPLES:,} seeded random "
                f"splits of the seeds), which resolves down to {MONTE_CARLO_FLOOR:.0e}; one there is printed as at "
                "most. Called at N seeds, stopped: a look before the last settled it; its estimates are biased away "
                "from no effect."
                + (
                    " Confirmed: a `fixes` point beat the baseline again (one-sided, Holm over the `fixes` points) on "
                    "fresh seeds that no look used, against fresh baseline seeds."
                    if confirming
                    else ""
                )
            ),
        ],
        [
            "rank",
            "grid point",
            "verdict",
            "seeds",
            "healthy",
            f"median healthy {metric} (unhealthy)",
            "score",
            "P(beats baseline)",
            "p (adjusted)",
            "healthy-rate difference",
            "metric shift",
        ]
        + (["confirmed"] if confirming else []),
        image="ranking.png",
    )
    for rank, p in enumerate(ranking.points, 1):
        test = p.test
        section.rows.append(
            [
                str(rank),
                p.label,
                verdict_cell(p),
                _seeds_cell(p),
                f"{p.healthy}/{len(p.seeds)}",
                f"{number(p.median_healthy_metric)} ({p.unhealthy})",
                f"{_interval(p.score_centre, p.score_centre_ci) if p.score_centre_ci else number(p.score_centre)} "
                f"{p.score_centre_kind}",
                _interval(test.prob_superiority, test.prob_superiority_ci) if test else "–",
                p_cell(test),
                _interval(test.healthy_rate_difference, test.healthy_rate_difference_ci) if test else "–",
                _interval(test.metric_shift, test.metric_shift_ci) if test else "–",
            ]
            + ([{True: "yes", False: "no", None: "–"}[test.confirmed if test else None]] if confirming else [])
        )
    return section


def verdict_cell(point: PointSummary) -> str:
    """The point's verdict, with the look it was dropped at or called and stopped at."""
    if point.could_not_run:
        return f"{point.verdict} (could not run: every trial raised)"
    if point.test is not None and point.test.status == "dropped":
        return f"{point.verdict} (not shown at {point.test.dropped_at} seeds: dropped)"
    if point.test is not None and point.test.stopped_at is not None:
        return f"{point.verdict} (called at {point.test.stopped_at} seeds, stopped: estimates biased away from 0)"
    return point.verdict


def p_cell(test: PointTest | None) -> str:
    """`p (adjusted)`; a p-value from a sampled null is marked MC, and one at its floor is printed as at most."""
    if test is None or test.p_value is None:
        return "–"
    at_most = "≤ " if _at_floor(test) else ""
    sampled = " MC" if test.exact is False else ""
    return f"{at_most}{number(test.p_value, 2)} ({at_most}{number(test.p_adjusted, 2)}){sampled}"


def _at_floor(test: PointTest) -> bool:
    """Whether a sampled null put the p-value at the smallest one it can give: the true one may be smaller."""
    return test.exact is False and test.p_value is not None and test.p_value <= MONTE_CARLO_FLOOR


def _seeds_cell(point: PointSummary) -> str:
    if point.is_baseline:
        return str(len(point.seeds))
    if point.test is None:
        return f"{len(point.seeds)}/–"
    return f"{point.test.seeds_used}/{point.test.baseline_seeds_used}"


def _interval(estimate: float | None, interval: tuple[float | None, float | None] | None) -> str:
    if estimate is None:
        return "–"
    low, high = interval or (None, None)
    if low is None and high is None:  # too few seeds for any interval: none is printed, not [–, –]
        return number(estimate, 3)
    return f"{number(estimate, 3)} [{number(low, 3)}, {number(high, 3)}]"


def effects_section(ranking: Ranking) -> Section:
    section = Section(
        "What each knob does",
        [
            (
                "Main effect of each knob value over the rest of the grid; importance = share of the variance of the "
                "ranks of the score (eta squared on ranks) that the knob's values explain: the order of the scores "
                "counts, not their size, so one far-off score cannot take all of it."
            )
        ],
        ["knob", "importance (score)", "importance (healthy)", "value: healthy rate, mean score"],
        image="main_effects.png",
    )
    for e in ranking.main_effects:
        values = "; ".join(f"{v.value}: {_share(v.healthy_rate)}, {number(v.mean_score)}" for v in e.values)
        section.rows.append([e.knob, number(e.eta_squared_score, 3), number(e.eta_squared_healthy, 3), values])
    return section


def _knobs(knobs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in knobs.items())


def render_markdown(parts: list[Section]) -> str:
    lines = [f"# {parts[0].title}", ""] + [f"{p}\n" for p in parts[0].paragraphs]
    for part in parts[1:]:
        lines += [f"## {part.title}", ""] + [f"{p}\n" for p in part.paragraphs]
        if part.rows:
            lines.append("| " + " | ".join(part.header) + " |")
            lines.append("|" + "---|" * len(part.header))
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in part.rows]
            lines.append("")
        if part.image:
            lines += [f"![{part.title}](plots/{part.image})", ""]
    return "\n".join(lines)


def render_html(parts: list[Section], images: dict[str, bytes], question: str | None = None) -> str:
    """One self-contained page: the plots are embedded as base64 PNGs. Its title is the sweep's question
    (the spec's description) where it has one, the sweep id beneath it; `code` reads as code, and each
    verdict word has the colour the plots give it."""
    title = question or parts[0].title
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}",
        "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}",
        "code{background:#f4f4f4;padding:0 3px;border-radius:3px}.verdict{font-weight:600}",
        "</style></head><body>",
    ]
    for index, part in enumerate(parts):
        if index == 0:
            out.append(f"<h1>{_marked(title)}</h1>")
            paragraphs = [p for p in part.paragraphs if p != question]
            if question:
                paragraphs.insert(0, f"sweep {part.title}")
        else:
            out.append(f"<h2>{html.escape(part.title)}</h2>")
            paragraphs = part.paragraphs
        out += [f"<p>{_marked(p)}</p>" for p in paragraphs]
        if part.rows:
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in part.header) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in part.rows]
            out.append("</table>")
        if part.image and part.image in images:
            data = base64.b64encode(images[part.image]).decode("ascii")
            out.append(f"<img alt='{html.escape(part.title)}' src='data:image/png;base64,{data}'>")
    out.append("</body></html>")
    return "\n".join(out)


def _linked(escaped: str) -> str:
    """Escaped HTML text with its web addresses as links."""
    return re.sub(r"(https?://[^\s<]+)", r"<a href='\1'>\1</a>", escaped)


def _marked(text: str) -> str:
    """Report text as HTML: escaped, `code` as code, web addresses as links."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _linked(html.escape(text)))


def _cell(text: str) -> str:
    """A table cell; one that is a trial's verdict (the failure table's) in that verdict's plot colour."""
    word = text.split(" ", 1)[0]
    if word in COLOURS:
        rest = html.escape(text[len(word) :])
        return f"<span class='verdict' style='color:{COLOURS[word]}'>{word}</span>{rest}"
    return _marked(text)
