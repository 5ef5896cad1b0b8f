"""A sweep's outputs: trials.csv, ranking.json and report.md, each written whole or not at all."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sweeper.ranking import VERDICT_RULE
from sweeper.spec import SweepSpec


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
        out.write(text)
    os.chmod(temporary, 0o644)  # mkstemp makes the file private; outputs are meant to be shared
    os.replace(temporary, path)


def trials_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def ranking_document(spec: SweepSpec, sweep_id: str, metric: str, mode: str, points: list[dict]) -> dict:
    return {
        "sweep": sweep_id,
        "name": spec.name,
        "workload": spec.workload,
        "metric": metric,
        "mode": mode,
        "seeds": spec.seeds,
        "grid": spec.grid,
        "fixed": spec.fixed,
        "smoke": spec.smoke,
        "verdict_rule": VERDICT_RULE,
        "points": points,
    }


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def report_markdown(ranking: dict, rows: list[dict[str, Any]], context: dict[str, str]) -> str:
    metric = ranking["metric"]
    lines = [f"# {ranking['sweep']}: workload `{ranking['workload']}`", ""]
    if context.get("description"):
        lines += [context["description"], ""]
    lines += [f"- {key}: {value}" for key, value in context.items() if key != "description"]
    lines += [f"- metric: `{metric}` ({ranking['mode']}), seeds: {ranking['seeds']}, trials: {len(rows)}", ""]

    baseline_rows = [row for row in rows if row["is_baseline"]]
    lines += ["## The failure, reproduced", ""]
    lines += [
        "The baseline is every swept knob at its default, the setup the workload declares failing.",
        "",
        "| seed | verdict | why | steps | final loss | final " + metric + " | chance | oracle |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in baseline_rows:
        lines.append(
            f"| {row['seed']} | **{row['verdict']}** | {row['reason']} | {row['steps']} | {_number(row['final_loss'])} "
            f"| {_number(row['final_metric'])} | {_number(row['chance'])} | {_number(row['oracle'])} |"
        )
    lines += ["", "## Ranking", "", f"Verdict rule: {VERDICT_RULE}", ""]
    lines += [
        f"| rank | grid point | verdict | healthy seeds | healthy rate 95% CI | median {metric} | median final loss "
        "| P(beats baseline) | verdicts by seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, point in enumerate(ranking["points"], 1):
        low, high = point["healthy_rate_ci"]
        beats = "–" if point["prob_beats_baseline"] is None else f"{point['prob_beats_baseline']:.2f}"
        lines.append(
            f"| {rank} | `{point['label']}` | **{point['verdict']}** | {point['healthy']}/{len(point['seeds'])} "
            f"| [{low:.2f}, {high:.2f}] | {_number(point['median_metric'])} | {_number(point['median_loss'])} "
            f"| {beats} | {', '.join(point['verdicts'])} |"
        )
    lines += ["", "Every trial, with its MLflow run id: `trials.csv`. Every point's numbers: `ranking.json`.", ""]
    return "\n".join(lines)


def write_outputs(sweep_dir: Path, ranking: dict, rows: list[dict[str, Any]], context: dict[str, str]) -> list[Path]:
    outputs = {
        "trials.csv": trials_csv(rows),
        "ranking.json": json.dumps(ranking, indent=2, allow_nan=False) + "\n",
        "report.md": report_markdown(ranking, rows, context),
    }
    for name, text in outputs.items():
        write_atomically(sweep_dir / name, text)
    return [sweep_dir / name for name in outputs]
