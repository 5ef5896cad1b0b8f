"""A sweep's outputs, from its trial records: trials.csv, ranking.json, report.md, report.html, plots/.

`analyze` turns records into the ranking document (pure); `write_outputs` writes every file, each whole or
not at all. The markdown and the HTML report are rendered from the same sections, so they say the same.

Whatever the trials reported (NaN, infinities, values near +-1e308, missing keys), every number in
ranking.json is finite or null and every number in trials.csv finite or an empty cell; the plots clip what
they draw to +-PLOT_LIMIT and leave out what is not a finite number. Only the trial files (trials/*.json)
keep a NaN or an infinity, as reported.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweeper import evidence, ranking
from sweeper.health import COLOURS, DIVERGED, is_number
from sweeper.records import (
    PLOTS_DIR,
    RANKING_FILE,
    REPORT_HTML,
    REPORT_MD,
    TRIALS_CSV,
    UNFINISHED,
    TrialRecord,
    write_atomically,
)
from sweeper.spec import BASELINE_LABEL, PROJECT_SOURCE, Claim, GridPoint, Source, SweepSpec, claim_points
from sweeper.workload import Workload

CURVE_POINTS = 3  # remedies drawn beside the baseline in the learning curves
RANKING_PLOT_POINTS = 40
PLOT_LIMIT = 1e100
"""Drawn values are clipped to +-PLOT_LIMIT: matplotlib's transforms and tick arithmetic overflow near 1e308
(a symlog axis from about 1e300), and a point at 1e100 is as far off a chart of ordinary values as one at
1e300 would be."""


# --- analysis (pure) ---
def outcomes_of(records: list[TrialRecord], metric: str) -> list[ranking.TrialOutcome]:
    """The finished trials' outcomes (a trial that never finished is no outcome: the design waits for it)."""
    return ranking.fill_missing_chance(
        [
            ranking.TrialOutcome(
                label=r.point.label,
                is_baseline=r.point.is_baseline,
                seed=r.seed,
                verdict=r.verdict,
                final_metric=r.finite_final(metric),
                final_loss=r.finite_final("loss"),
                chance=r.finite_final("chance"),
                knobs=r.point.knobs,
            )
            for r in records
            if r.reason != UNFINISHED
        ]
    )


def planned_trials(spec: SweepSpec, workload: Workload, found: dict[str, TrialRecord]) -> list[tuple[GridPoint, int]]:
    """Every trial the sweep's design wants so far, given the finished ones (`evidence.seeds_wanted`): each
    point's seeds 0..n-1 and the baseline's, in grid order. A sweep is done when all of them are found."""
    groups = ranking.by_seed(outcomes_of(list(found.values()), workload.metric), [p.label for p in spec.points])
    scores = ranking.scores_by_label(groups, workload.mode)
    states, baseline_seeds, _ = evidence.seeds_wanted(spec.design, scores, BASELINE_LABEL)
    wanted = {label: state.seeds_wanted for label, state in states.items()}
    wanted[BASELINE_LABEL] = baseline_seeds
    return [(point, seed) for point in spec.points for seed in range(wanted[point.label])]


def _train_seconds(record: TrialRecord) -> float | None:
    """The trial's training seconds; None where the record holds no finite number (a store that lost it)."""
    return record.train_seconds if math.isfinite(record.train_seconds) else None


def compute_summary(records: list[TrialRecord]) -> dict[str, Any]:
    """Training seconds spent, and those saved by stopping diverged trials: each stopped trial would have
    run as many steps as the median trial that ran to its end, at its own seconds per step. A trial without
    a finite number of seconds counts as 0 s."""
    finished_steps = [len(r.history) for r in records if r.history and r.verdict not in (*DIVERGED, "error")]
    full = statistics.median(finished_steps) if finished_steps else None
    stopped = [r for r in records if r.verdict in DIVERGED and r.history]
    saved = 0.0
    if full is not None:
        saved = sum(max(0.0, full - len(r.history)) * (_train_seconds(r) or 0.0) / len(r.history) for r in stopped)
    spent = sum(_train_seconds(r) or 0.0 for r in records)
    return {
        "train_seconds": round(spent, 3),
        "stopped_early": len(stopped),
        "estimated_seconds_saved": round(saved, 3),
        "saved_share": round(saved / (spent + saved), 4) if spent + saved > 0 else 0.0,
    }


def analyze(spec: SweepSpec, workload: Workload, records: list[TrialRecord], sweep_id: str) -> dict[str, Any]:
    """The ranking document (ranking.json): everything the report says, as numbers."""
    outcomes = outcomes_of(records, workload.metric)
    design = spec.design
    return {
        "sweep": sweep_id,
        "name": spec.name,
        "workload": spec.workload,
        "metric": workload.metric,
        "mode": workload.mode,
        "seeds": spec.seeds,
        "max_seeds": spec.max_seeds,
        "design": {
            "kind": design.kind,
            "looks": list(design.looks),
            "baseline_looks": list(design.baseline_looks),
            "alpha": design.alpha,
            "correction": design.correction,
            "futility_p": evidence.FUTILITY_P if design.kind == "adaptive" else None,
        },
        "grid": spec.grid,
        "fixed": spec.fixed,
        "baseline": spec.baseline,
        "smoke": spec.smoke,
        "verdict_rule": design.describe(len(spec.points) - 1),
        "points": ranking.rank_points(outcomes, workload.mode, design, [p.label for p in spec.points]),
        "vary": spec.vary,
        # One knob at a time from the baseline, each point is already its knob's effect; averaging a knob's
        # value over the other knobs' points would mix their effects in.
        "main_effects": ranking.main_effects(outcomes, spec.grid, workload.mode) if spec.vary == "cartesian" else [],
        "claims": judge_claims(spec, workload, outcomes),
        "claims_rule": CLAIMS_RULE.format(
            correction="Holm" if design.correction == "holm" else "Benjamini-Hochberg", alpha=design.alpha
        ),
        "compute": compute_summary(records),
        "unfinished": sum(r.reason == UNFINISHED for r in records),
    }


CLAIMS_RULE = (
    "Each claim is judged on twin trials (same seed and other knobs, the claimed change on vs off) by an exact "
    "sign test on the pairs the change improves or worsens (no_effect: two one-sided tests against the claim's "
    "margin); the claims are one family, {correction} at alpha = {alpha}. `not shown` means the test did not "
    "reject: no evidence either way, not evidence against. Twins that both lie in a setting whose outcome is "
    "fixed by construction (the workload's FIXED_OUTCOMES) are left out; a claim with no other twins is `not "
    "testable here`."
)


def fixed_outcome(spec: SweepSpec, workload: Workload, knobs: dict[str, Any]) -> str | None:
    """Why a trial with these grid knobs has an outcome fixed by construction (the workload's FIXED_OUTCOMES,
    on the whole Config the trial runs with), or None."""
    config = {name: knob.default for name, knob in workload.knobs.items()}
    config.update(spec.base_overrides(workload), **knobs)
    for when, why in workload.fixed_outcomes:
        if all(config.get(key) == value for key, value in when.items()):
            return f"{_knobs(when)}: {why}"
    return None


def judge_claims(spec: SweepSpec, workload: Workload, outcomes: list[ranking.TrialOutcome]) -> list[dict[str, Any]]:
    """Every claim of the spec: where it is testable (from the spec and the workload alone), what its twin
    pairs measured, its p-value and adjusted p-value (one family), and whether it holds."""
    defaults = spec.defaults(workload)
    fallback = ranking.worst_metric(outcomes, workload.mode)
    judged: list[dict[str, Any]] = []
    for claim in spec.claims:
        informative, left_out = set(), set()
        # A zero_loss claim is about the trials with the change, whatever their twins: there a fixed outcome
        # (a loss that is exactly 0, or an exception) is the answer, not a setting to leave out.
        comparative = claim.expect != "zero_loss"
        for point, twin in claim_points(spec.points, claim.change, claim.where, defaults):
            reason = fixed_outcome(spec, workload, point.knobs)
            if reason is not None and comparative and fixed_outcome(spec, workload, twin) is not None:
                left_out.add(reason)
            else:
                informative.add(point.label)
        pairs = [
            (a, b)
            for a, b in ranking.twin_pairs(outcomes, claim.change, defaults, claim.where)
            if a.label in informative
        ]
        effect = ranking.paired_effect(pairs, workload.mode, fallback)
        judged.append(
            {
                "claim": claim.text,
                "set": claim.change,
                "where": claim.where,
                "expect": claim.expect,
                "margin": claim.margin,
                "source": claim_source(claim),
                "testable": bool(informative),
                "left_out": sorted(left_out),
                "p_value": ranking.claim_p_value(effect, claim.expect, claim.margin) if informative else None,
                "measured": effect,
            }
        )
    tested = [item for item in judged if item["p_value"] is not None]
    for item, adjusted in zip(tested, evidence.adjust([i["p_value"] for i in tested], spec.correction), strict=True):
        item["p_adjusted"] = adjusted
    for item in judged:
        item.setdefault("p_adjusted", None)
        item["holds"], item["status"] = _claim_status(item, spec.alpha, workload.thresholds.zero_loss_atol)
    return judged


def claim_source(claim: Claim) -> dict[str, str] | str | None:
    """The claim's source as ranking.json keeps it: {file, quote}, "project", or None."""
    return dataclasses.asdict(claim.source) if isinstance(claim.source, Source) else claim.source


def _claim_status(item: dict[str, Any], alpha: float, zero_loss_atol: float) -> tuple[bool | None, str]:
    if not item["testable"]:
        return None, ranking.NOT_TESTABLE
    if not item["measured"].get("pairs"):
        return None, "cannot tell"
    if item["expect"] == "zero_loss":  # a statement about every trial with the change, not a test
        largest = item["measured"]["max_abs_loss_with"]
        holds = largest is not None and largest <= zero_loss_atol
        return holds, "holds" if holds else "does not hold"
    holds = item["p_adjusted"] <= alpha
    return holds, "holds" if holds else "not shown"


def trial_rows(spec: SweepSpec, metric: str, records: list[TrialRecord]) -> list[dict[str, Any]]:
    """One row of trials.csv per trial. A final loss or metric that is NaN or infinite is None (an empty
    cell): the verdict and its reason say what it was."""
    return [
        {
            "trial_key": r.key,
            "workload": spec.workload,
            "point": r.point.label,
            "is_baseline": r.point.is_baseline,
            **{knob: r.point.knobs[knob] for knob in spec.grid},
            "seed": r.seed,
            "verdict": r.verdict,
            "reason": r.reason,
            "steps": len(r.history),
            "stopped_early": r.verdict in DIVERGED,
            "final_loss": r.finite_final("loss"),
            "final_metric": r.finite_final(metric),
            "chance": r.finite_final("chance"),
            "oracle": r.finite_final("oracle"),
            "train_seconds": None if _train_seconds(r) is None else round(r.train_seconds, 3),
            "worker": r.worker,
            "attempts": r.attempts,
            "mlflow_run_id": r.run_id,
        }
        for r in records
    ]


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


def sections(document: dict, rows: list[dict[str, Any]], context: dict[str, str]) -> list[Section]:
    return [
        intro_section(document, len(rows), context),
        answer_section(document),
        baseline_section(document, rows),
        claims_section(document),
        ranking_section(document),
        *([effects_section(document)] if document["main_effects"] else []),
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


def intro_section(document: dict, trials: int, context: dict[str, str]) -> Section:
    intro = Section(document["sweep"])
    if context.get("description"):
        intro.paragraphs.append(context["description"])
    intro.paragraphs += [f"{key}: {value}" for key, value in context.items() if key != "description"]
    compute = document["compute"]
    design = document["design"]
    seeds = (
        f"{document['seeds']} seeds each"
        if design["kind"] == "fixed"
        else f"{design['looks'][0]}-{design['looks'][-1]} seeds a point, adaptive"
    )
    intro.paragraphs.append(
        f"metric: {document['metric']} ({document['mode']}); {len(document['points'])} grid points ({seeds}): "
        f"{trials} trials; {compute['train_seconds']:.0f} training seconds; "
        f"{compute['stopped_early']} diverged trials stopped early, saving about "
        f"{compute['estimated_seconds_saved']:.0f} s ({compute['saved_share']:.0%})."
    )
    return intro


ANSWER_NAMES = 8
"""Grid points named in one line of the answer; the rest are counted (the ranking lists them all)."""


def answer_section(document: dict) -> Section:
    """The answer, before the details: whether the baseline failed, what fixes it (with its evidence), what
    was not shown to change it, what makes it worse, and which of the claims hold."""
    points = document["points"]
    baseline = next((p for p in points if p["is_baseline"]), None)
    by_verdict: dict[str, list[dict]] = {}
    for point in points:
        by_verdict.setdefault(point["verdict"], []).append(point)
    design = document["design"]
    correction = "Holm" if design["correction"] == "holm" else "Benjamini-Hochberg"
    rule = f"{correction} over the grid at alpha {design['alpha']:g}"
    lines = [_failure_line(baseline)]
    fixes = by_verdict.get("fixes", [])
    if fixes:
        lines += [f"Fixes it: {_evidence(point, document['metric'], baseline)}." for point in fixes[:ANSWER_NAMES]]
        if len(fixes) > ANSWER_NAMES:
            lines.append(f"{len(fixes) - ANSWER_NAMES} more points fix it (see the ranking).")
    else:
        tested = [p for p in points if p.get("p_adjusted") is not None]
        closest = min(tested, key=lambda p: p["p_adjusted"], default=None)
        lines.append(
            f"No fix found: no grid point was shown to fix the failure ({rule})"
            + (f"; the closest, {_evidence(closest, document['metric'], baseline)}." if closest is not None else ".")
        )
    unclear = by_verdict.get("no_evidence", []) + by_verdict.get("pending", [])
    lines.append(
        f"Not shown to change it: {_named(unclear)}." if unclear else "Every grid point was shown to fix it or to hurt."
    )
    harmful = by_verdict.get("harmful", [])
    lines.append(
        f"Makes it worse: {'; '.join(_evidence(p, document['metric'], baseline) for p in harmful)}."
        if harmful
        else "Nothing in the grid was shown to make it worse."
    )
    lines.append(_claims_line(document["claims"]))
    if document.get("unfinished"):
        lines.append(f"{document['unfinished']} planned trials did not finish; every verdict is on the finished ones.")
    return Section("The answer", lines)


def _failure_line(baseline: dict | None) -> str:
    if baseline is None:
        return "The baseline has no finished trial: there is nothing to compare with."
    counts: dict[str, int] = {}
    for verdict in baseline["verdicts"]:
        counts[verdict] = counts.get(verdict, 0) + 1
    seeds = len(baseline["seeds"])
    if not baseline["unhealthy"]:
        return f"The baseline did not fail: healthy in all {seeds} seeds, so there is no failure here to fix."
    modes = ", ".join(f"{verdict} {count}" for verdict, count in sorted(counts.items()) if verdict != "healthy")
    return f"The failure: the baseline was unhealthy in {baseline['unhealthy']} of {seeds} seeds ({modes})."


def _evidence(point: dict, metric: str, baseline: dict | None) -> str:
    """A point and its evidence against the baseline: healthy seeds, the metric, the test."""
    used, base_used = point.get("seeds_used", len(point["seeds"])), point.get("baseline_seeds_used")
    healthy = f"healthy {point['healthy']}/{len(point['seeds'])}"
    if baseline is not None:
        healthy += f" vs the baseline's {baseline['healthy']}/{len(baseline['seeds'])}"
    parts = [healthy, f"median healthy {metric} {number(point['median_healthy_metric'])}"]
    if point.get("metric_shift") is not None:
        parts.append(f"shift {_interval(point['metric_shift'], point.get('metric_shift_ci'))}")
    if point.get("p_value") is not None:
        parts.append(f"p {number(point['p_value'], 2)}, adjusted {number(point['p_adjusted'], 2)}")
    parts.append(f"{used} seeds against {base_used if base_used is not None else '–'}")
    if point.get("replicated") is not None:
        parts.append("replicated on later seeds" if point["replicated"] else "not replicated on later seeds")
    return f"{point['label']} ({'; '.join(parts)})"


def _named(points: list[dict]) -> str:
    named = ", ".join(f"{p['label']} ({p['healthy']}/{len(p['seeds'])} healthy)" for p in points[:ANSWER_NAMES])
    return named + (f", and {len(points) - ANSWER_NAMES} more" if len(points) > ANSWER_NAMES else "")


def _claims_line(claims: list[dict]) -> str:
    if not claims:
        return "Claims: this sweep judges none."
    by_status: dict[str, list[str]] = {}
    for item in claims:
        by_status.setdefault(item["status"], []).append(f"“{item['claim']}”")
    return "Claims: " + "; ".join(f"{status}: {', '.join(texts)}" for status, texts in by_status.items()) + "."


def baseline_section(document: dict, rows: list[dict[str, Any]]) -> Section:
    metric = document["metric"]
    section = Section(
        "The failure, reproduced",
        [
            "The baseline is every swept knob at its default: the setup the workload declares failing"
            + (
                f"; this sweep's failing setup sets {_knobs(document['baseline'])}."
                if document.get("baseline")
                else "."
            )
        ],
        ["seed", "verdict", "why", "steps", "final loss", f"final {metric}", "chance", "oracle"],
    )
    for row in (r for r in rows if r["is_baseline"]):
        section.rows.append(
            [
                str(row["seed"]),
                row["verdict"],
                row["reason"],
                str(row["steps"]),
                number(row["final_loss"]),
                number(row["final_metric"]),
                number(row["chance"]),
                number(row["oracle"]),
            ]
        )
    return section


def claims_section(document: dict) -> Section:
    metric = document["metric"]
    section = Section(
        "The question's claims, measured",
        [document["claims_rule"]],
        ["claim", "source", "change", "expected", "verdict", "p (adjusted)", "what was measured"],
    )
    for item in document["claims"]:
        m = item["measured"]
        where = f" where {_knobs(item['where'])}" if item["where"] else ""
        if not item["testable"]:
            measured = "every twin pair lies where the outcome is fixed: " + "; ".join(item["left_out"])
        elif m.get("pairs"):
            measured = (
                f"{m['pairs']} twin pairs: {m['improved']} improved, {m['worsened']} worsened, {m['tied']} tied; "
                f"healthy {_share(m['healthy_rate_with'])} with vs {_share(m['healthy_rate_without'])} without; "
                f"median {metric} {number(m['median_metric_with'])} vs {number(m['median_metric_without'])}; "
                f"median final loss {number(m['median_loss_with'])} vs {number(m['median_loss_without'])}"
            )
            if item["left_out"]:
                measured += "; left out: " + "; ".join(item["left_out"])
        else:
            measured = "no twin trials in this grid"
        expected = item["expect"] + (f" (margin {item['margin']:g})" if item["margin"] is not None else "")
        p_values = "–" if item["p_value"] is None else f"{number(item['p_value'], 2)} ({number(item['p_adjusted'], 2)})"
        section.rows.append(
            [item["claim"], _source_cell(item.get("source")), _knobs(item["set"]) + where]
            + [expected, item["status"], p_values, measured]
        )
    return section


def _source_cell(source: dict[str, str] | str | None) -> str:
    if isinstance(source, dict):
        return f"{source['file']}: “{source['quote']}”"
    return "the project's own (no document says it)" if source == PROJECT_SOURCE else "–"


def ranking_section(document: dict) -> Section:
    metric = document["metric"]
    section = Section(
        "Ranking",
        [
            f"Verdict rule: {document['verdict_rule']}",
            (
                f"seeds: the point's / the baseline's seeds in its test. median healthy {metric}: over the healthy "
                "seeds only, with the unhealthy count. score: the mean (IQM from 4 seeds) with an unhealthy seed at "
                "the chance level. Healthy-rate difference: Newcombe 95% interval. Metric shift: Hodges-Lehmann, "
                "Moses 95% interval, healthy seeds only. Replicated: the point beats the baseline again (one-sided, "
                "Holm over the `fixes` points) on the seeds run after the last interim look alone, none of which "
                "chose to go on with it; they are part of the final test too, so this is no independent repeat."
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
            "replicated",
        ],
        image="ranking.png",
    )
    for rank, p in enumerate(document["points"], 1):
        section.rows.append(
            [
                str(rank),
                p["label"],
                _verdict_cell(p),
                _seeds_cell(p),
                f"{p['healthy']}/{len(p['seeds'])}",
                f"{number(p['median_healthy_metric'])} ({p['unhealthy']})",
                f"{number(p['score_centre'])} {p['score_centre_kind']}",
                number(p.get("prob_superiority"), 2),
                "–" if p.get("p_value") is None else f"{number(p['p_value'], 2)} ({number(p['p_adjusted'], 2)})",
                _interval(p.get("healthy_rate_difference"), p.get("healthy_rate_difference_ci")),
                _interval(p.get("metric_shift"), p.get("metric_shift_ci")),
                {True: "yes", False: "no", None: "–"}[p.get("replicated")],
            ]
        )
    return section


def _verdict_cell(point: dict) -> str:
    if point.get("status") == "dropped":
        return f"{point['verdict']} (dropped at {point['dropped_at']} seeds)"
    return point["verdict"]


def _seeds_cell(point: dict) -> str:
    if point["is_baseline"]:
        return str(len(point["seeds"]))
    return f"{point.get('seeds_used', len(point['seeds']))}/{point.get('baseline_seeds_used', '–')}"


def _interval(estimate: float | None, interval: list[float | None] | None) -> str:
    if estimate is None:
        return "–"
    low, high = interval or (None, None)
    return f"{number(estimate, 3)} [{number(low, 3)}, {number(high, 3)}]"


def effects_section(document: dict) -> Section:
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
    for e in document["main_effects"]:
        values = "; ".join(f"{v['value']}: {_share(v['healthy_rate'])}, {number(v['mean_score'])}" for v in e["values"])
        section.rows.append([e["knob"], number(e["eta_squared_score"], 3), number(e["eta_squared_healthy"], 3), values])
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


def render_html(parts: list[Section], images: dict[str, bytes]) -> str:
    """One self-contained page: the plots are embedded as base64 PNGs."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(parts[0].title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}",
        "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}",
        "</style></head><body>",
    ]
    for index, part in enumerate(parts):
        tag = "h1" if index == 0 else "h2"
        out.append(f"<{tag}>{html.escape(part.title)}</{tag}>")
        out += [f"<p>{_linked(html.escape(p))}</p>" for p in part.paragraphs]
        if part.rows:
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in part.header) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in part.rows]
            out.append("</table>")
        if part.image and part.image in images:
            data = base64.b64encode(images[part.image]).decode("ascii")
            out.append(f"<img alt='{html.escape(part.title)}' src='data:image/png;base64,{data}'>")
    out.append("</body></html>")
    return "\n".join(out)


def _linked(escaped: str) -> str:
    """Escaped HTML text with its web addresses as links."""
    return re.sub(r"(https?://[^\s<]+)", r"<a href='\1'>\1</a>", escaped)


# --- plots ---
def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (a sweep may run where there is no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plots(document: dict, records: list[TrialRecord]) -> dict[str, bytes]:
    """PNG bytes by file name."""
    plt = pyplot()

    def png(figure) -> bytes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(figure)
        return buffer.getvalue()

    metric, points = document["metric"], document["points"]
    shown = points[:RANKING_PLOT_POINTS]
    if not any(p["is_baseline"] for p in shown):
        shown = shown + [p for p in points if p["is_baseline"]]
    images = {}

    figure, axis = plt.subplots(figsize=(9, 0.3 * len(shown) + 1.2))
    for y, p in enumerate(shown):
        # Every seed: a healthy one at its final metric, an unhealthy one (hollow) at its score, the chance level.
        healthy = [v == "healthy" for v in p["verdicts"]]
        values = _plottable(p["scores"])
        for ok, colour, face in (
            (True, COLOURS["healthy"], None),
            (False, COLOURS["collapsed"], "none"),
        ):
            chosen = values[np.array(healthy, dtype=bool) == ok] if values.size else values
            axis.scatter(chosen, np.full(chosen.size, y), s=14, edgecolors=colour, facecolors=face or colour)
        p_text = "" if p.get("p_adjusted") is None else f" · p_adj {number(p['p_adjusted'], 2)}"
        axis.annotate(
            f"{p['healthy']}/{len(p['seeds'])} healthy · {p['verdict']}{p_text}",
            (1.01, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
        )
    _reference_lines(axis, records, vertical=True)
    axis.set_yticks(range(len(shown)), [p["label"] for p in shown], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(f"final {metric} per seed (filled: healthy; hollow: unhealthy, drawn at chance)")
    images["ranking.png"] = png(figure)

    figure, axis = plt.subplots(figsize=(9, 0.3 * len(shown) + 1.2))
    left = np.zeros(len(shown))
    for verdict, colour in COLOURS.items():
        counts = np.array([p["verdicts"].count(verdict) for p in shown], dtype=float)
        if counts.any():
            axis.barh(range(len(shown)), counts, left=left, color=colour, label=verdict)
            left += counts
    axis.set_yticks(range(len(shown)), [p["label"] for p in shown], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("seeds")
    if shown:
        axis.legend(fontsize=8, loc="lower right")
    images["failure_modes.png"] = png(figure)

    effects = document["main_effects"]
    if effects:
        figure, axes = plt.subplots(1, len(effects), figsize=(3.2 * len(effects), 3), squeeze=False)
        for axis, effect in zip(axes[0], effects, strict=True):
            values = effect["values"]
            axis.bar(range(len(values)), [v["healthy_rate"] or 0.0 for v in values], color="#90caf9")
            axis.set_xticks(range(len(values)), [str(v["value"]) for v in values], rotation=30, fontsize=8)
            axis.set_ylim(0, 1)
            axis.set_title(f"{effect['knob']} (eta² {number(effect['eta_squared_score'], 2)})", fontsize=9)
        axes[0][0].set_ylabel("healthy rate")
        images["main_effects.png"] = png(figure)

    by_label: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_label.setdefault(record.point.label, []).append(record)
    curve_labels = [p["label"] for p in points if p["is_baseline"]]
    curve_labels += [p["label"] for p in points if not p["is_baseline"]][:CURVE_POINTS]
    columns = max(1, len(curve_labels))  # a sweep without a single trial gets one empty panel
    figure, axes = plt.subplots(2, columns, figsize=(3.6 * columns, 5.5), squeeze=False)
    for column, label in enumerate(curve_labels):
        group = sorted(by_label.get(label, []), key=lambda r: r.seed)
        for record in group:
            steps = _plottable([r.get("step", i + 1) for i, r in enumerate(record.history)])
            colour = COLOURS.get(record.verdict, "#000")
            for row, key in enumerate((metric, "loss")):
                values = _plottable([r.get(key) for r in record.history])
                axes[row][column].plot(
                    steps, values, color=colour, alpha=0.8, label=f"seed {record.seed}: {record.verdict}"
                )
        axes[0][column].set_title(label, fontsize=9)
        _reference_lines(axes[0][column], group, vertical=False)
        losses = np.abs(_plottable([r.get("loss") for rec in group for r in rec.history]))
        losses = losses[np.isfinite(losses)]
        if losses.size and (losses.min() == 0.0 or losses.max() > 100 * losses.min()):
            axes[1][column].set_yscale("symlog", linthresh=1e-3)  # zero, or orders of magnitude apart
        axes[1][column].set_xlabel("step")
        if group:
            axes[0][column].legend(fontsize=7)
    axes[0][0].set_ylabel(metric)
    axes[1][0].set_ylabel("loss")
    images["learning_curves.png"] = png(figure)

    norms = np.array(
        [r["grad_norm"] for rec in records for r in rec.history if is_number(r.get("grad_norm"))], dtype=float
    )
    figure, axis = plt.subplots(figsize=(7, 3))
    finite = norms[np.isfinite(norms)]
    positive = finite[finite > 0]
    zeros = int(np.sum(norms == 0))
    if positive.size:
        axis.hist(np.log10(positive), bins=40, color="#b0bec5")
        threshold = float(ranking.scaled_statistic(np.percentile, finite, q=90))
        if threshold > 0:
            axis.axvline(math.log10(threshold), color="#c62828")
            axis.annotate(
                f"clip at {threshold:.3g}: 10% of reports",
                (math.log10(threshold), 0.9),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color="#c62828",
            )
    axis.set_xlabel("log10 gradient norm")
    axis.set_title(
        f"{norms.size} reports; {zeros} with a gradient norm of exactly 0; "
        f"{int(np.sum(~np.isfinite(norms)))} non-finite",
        fontsize=9,
    )
    images["grad_norms.png"] = png(figure)
    return images


def _reference_lines(axis, records: list[TrialRecord], vertical: bool) -> None:
    for key, style in (("chance", ":"), ("oracle", "--")):
        (level,) = _plottable([ranking.finite_median([r.finite_final(key) for r in records])])
        if not math.isnan(level):
            line = axis.axvline if vertical else axis.axhline
            line(level, color="#555", linestyle=style, linewidth=1, label=key)


def _plottable(values: Iterable[Any]) -> np.ndarray:
    """Values to draw: numbers clipped to +-PLOT_LIMIT; NaN, which matplotlib leaves out, for NaN, infinities
    and whatever is not a number (a key missing from a report, an interval end that is None)."""
    return np.array(
        [
            min(max(float(v), -PLOT_LIMIT), PLOT_LIMIT) if is_number(v) and math.isfinite(v) else math.nan
            for v in values
        ],
        dtype=float,
    )


# --- files ---
def trials_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, None as an empty cell; nothing at all for no rows."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_outputs(
    sweep_dir: Path, document: dict, records: list[TrialRecord], rows: list[dict[str, Any]], context: dict[str, str]
) -> None:
    images = plots(document, records)
    parts = sections(document, rows, context)
    (sweep_dir / PLOTS_DIR).mkdir(exist_ok=True)
    for name, data in images.items():
        write_atomically(sweep_dir / PLOTS_DIR / name, data)
    write_atomically(sweep_dir / TRIALS_CSV, trials_csv(rows))
    write_atomically(sweep_dir / RANKING_FILE, json.dumps(document, indent=2, allow_nan=False) + "\n")
    write_atomically(sweep_dir / REPORT_MD, render_markdown(parts))
    write_atomically(sweep_dir / REPORT_HTML, render_html(parts, images))
