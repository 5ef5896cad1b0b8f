"""A sweep's output files, from its trial records: trials.csv, ranking.json, report.md, report.html, plots/.

`write_report` analyses the records (`sweeper.analysis`) and writes every file, each whole or not at all
(`records.write_atomically`). Whatever the trials reported (NaN, infinities, values near +-1e308, missing
keys), every number in ranking.json is finite or null and every number in trials.csv finite or an empty
cell; only the trial files (trials/*.json) keep a NaN or an infinity, as reported.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweeper import analysis, plots, report
from sweeper.health import DIVERGED
from sweeper.records import (
    PLOTS_DIR,
    RANKING_FILE,
    REPORT_HTML,
    REPORT_MD,
    TRIALS_CSV,
    TrialRecord,
    write_atomically,
)
from sweeper.results import Ranking
from sweeper.spec import SweepSpec
from sweeper.workload import Workload


def write_report(
    spec: SweepSpec,
    workload: Workload,
    records: Sequence[TrialRecord],
    sweep_dir: Path,
    sweep_id: str,
    context: dict[str, str],
) -> Ranking:
    """Analyse the records and write every output file; the ranking. `context`: lines for the report's
    introduction (where MLflow has the sweep, ...), after the spec's description and file."""
    ranking = analysis.analyze(spec, workload, records, sweep_id)
    images = plots.figures(ranking, records)
    parts = report.sections(ranking, records, {"description": spec.description, "spec": str(spec.path), **context})
    (sweep_dir / PLOTS_DIR).mkdir(exist_ok=True)
    for name, data in images.items():
        write_atomically(sweep_dir / PLOTS_DIR / name, data)
    write_atomically(sweep_dir / TRIALS_CSV, trials_csv(trial_rows(spec, workload.metric, records)))
    write_atomically(sweep_dir / RANKING_FILE, ranking.dumps())
    write_atomically(sweep_dir / REPORT_MD, report.render_markdown(parts))
    write_atomically(sweep_dir / REPORT_HTML, report.render_html(parts, images, spec.description or None))
    return ranking


def trial_rows(spec: SweepSpec, metric: str, records: Sequence[TrialRecord]) -> list[dict[str, Any]]:
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
            "train_seconds": None if r.finite_train_seconds is None else round(r.train_seconds, 3),
            "worker": r.worker,
            "attempts": r.attempts,
            "mlflow_run_id": r.run_id,
        }
        for r in records
    ]


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, None as an empty cell; nothing at all for no rows."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
