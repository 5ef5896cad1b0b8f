"""The report's figures, one function each, from a `Ranking` and the trial records: PNG bytes by file name.

Drawn values are clipped to +-PLOT_LIMIT and what is not a finite number is left out (`plottable`), so no
report a trial made can break a figure. matplotlib is imported inside `pyplot()`, on the file-only Agg backend.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from sweeper.health import COLOURS, is_number
from sweeper.ranking import finite_median, scaled_statistic
from sweeper.records import TrialRecord
from sweeper.report import number, p_cell
from sweeper.results import PointSummary, Ranking

CURVE_POINTS = 3
"""Remedies drawn beside the baseline in the learning curves."""
RANKING_PLOT_POINTS = 40
PLOT_LIMIT = 1e100
"""Drawn values are clipped to +-PLOT_LIMIT: matplotlib's transforms and tick arithmetic overflow near 1e308
(a symlog axis from about 1e300), and a point at 1e100 is as far off a chart of ordinary values as one at
1e300 would be."""


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (a sweep may run where there is no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figures(ranking: Ranking, records: Sequence[TrialRecord]) -> dict[str, bytes]:
    """Every figure of the report, PNG bytes by file name (main_effects.png only where there are effects)."""
    drawn: dict[str, Callable[[Ranking, Sequence[TrialRecord]], bytes]] = {
        "ranking.png": ranking_figure,
        "failure_modes.png": failure_modes_figure,
        "learning_curves.png": learning_curves_figure,
        "grad_norms.png": grad_norms_figure,
    }
    if ranking.main_effects:
        drawn["main_effects.png"] = main_effects_figure
    return {name: draw(ranking, records) for name, draw in drawn.items()}


def _plain_numbers(axis: Any) -> None:
    """Tick labels as plain numbers with 4 significant digits (0.0003713, 1362, 1.5e+06), never matplotlib's
    offset or multiplier text (`3.71289×10⁻⁵` above the axis), on the axes of a linear scale."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:.4g}")
    for side, scale in ((axis.xaxis, axis.get_xscale()), (axis.yaxis, axis.get_yscale())):
        if scale == "linear":
            side.set_major_formatter(plain)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(figure)
    return buffer.getvalue()


def _shown(ranking: Ranking) -> list[PointSummary]:
    """The points a per-point figure draws: the first RANKING_PLOT_POINTS, and the baseline."""
    shown = list(ranking.points[:RANKING_PLOT_POINTS])
    if not any(p.is_baseline for p in shown):
        shown += [p for p in ranking.points if p.is_baseline]
    return shown


def ranking_figure(ranking: Ranking, records: Sequence[TrialRecord]) -> bytes:
    """Every seed of each point: a healthy one at its final metric, an unhealthy one (hollow) at its score."""
    shown = _shown(ranking)
    figure, axis = pyplot().subplots(figsize=(9, 0.3 * len(shown) + 1.2))
    for y, p in enumerate(shown):
        healthy = [v == "healthy" for v in p.verdicts]
        values = plottable(p.scores)
        for ok, colour, face in (
            (True, COLOURS["healthy"], None),
            (False, COLOURS["collapsed"], "none"),
        ):
            chosen = values[np.array(healthy, dtype=bool) == ok] if values.size else values
            axis.scatter(chosen, np.full(chosen.size, y), s=14, edgecolors=colour, facecolors=face or colour)
        p_text = "" if p.p_adjusted is None else f" · p (adj.) {p_cell(p.test)}"
        axis.annotate(
            f"{p.healthy}/{len(p.seeds)} healthy · {p.verdict}{p_text}",
            (1.01, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
        )
    _reference_lines(axis, records, vertical=True)
    axis.set_yticks(range(len(shown)), [p.label for p in shown], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(f"final {ranking.metric} per seed (filled: healthy; hollow: unhealthy, drawn at chance)")
    _plain_numbers(axis)
    return _png(figure)


def failure_modes_figure(ranking: Ranking, records: Sequence[TrialRecord]) -> bytes:
    """Each point's verdict counts over its seeds, in ranking order."""
    shown = _shown(ranking)
    figure, axis = pyplot().subplots(figsize=(9, 0.3 * len(shown) + 1.2))
    left = np.zeros(len(shown))
    for verdict, colour in COLOURS.items():
        counts = np.array([p.verdicts.count(verdict) for p in shown], dtype=float)
        if counts.any():
            axis.barh(range(len(shown)), counts, left=left, color=colour, label=verdict)
            left += counts
    axis.set_yticks(range(len(shown)), [p.label for p in shown], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("seeds")
    if shown:  # beside the bars, never over them
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(figure)


def main_effects_figure(ranking: Ranking, records: Sequence[TrialRecord]) -> bytes:
    """Each knob's values by healthy rate, a panel a knob."""
    effects = ranking.main_effects
    figure, axes = pyplot().subplots(1, len(effects), figsize=(3.2 * len(effects), 3), squeeze=False)
    for axis, effect in zip(axes[0], effects, strict=True):
        values = effect.values
        axis.bar(range(len(values)), [v.healthy_rate or 0.0 for v in values], color="#90caf9")
        axis.set_xticks(range(len(values)), [str(v.value) for v in values], rotation=30, fontsize=8)
        axis.set_ylim(0, 1)
        axis.set_title(f"{effect.knob} (eta² {number(effect.eta_squared_score, 2)})", fontsize=9)
    axes[0][0].set_ylabel("healthy rate")
    return _png(figure)


def learning_curves_figure(ranking: Ranking, records: Sequence[TrialRecord]) -> bytes:
    """The baseline beside the best remedies, the metric above the loss; one line per seed, coloured by its
    verdict (one legend for the figure, below the panels). A panel with nothing to draw (every trial of the
    point raised before its first report) says so instead of showing empty axes."""
    metric, points = ranking.metric, ranking.points
    by_label: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_label.setdefault(record.point.label, []).append(record)
    summaries = {p.label: p for p in points}
    curve_labels = [p.label for p in points if p.is_baseline]
    curve_labels += [p.label for p in points if not p.is_baseline][:CURVE_POINTS]
    columns = max(1, len(curve_labels))  # a sweep without a single trial gets one empty panel
    from matplotlib.ticker import MaxNLocator

    figure, axes = pyplot().subplots(2, columns, figsize=(3.6 * columns, 5.5), squeeze=False)
    verdicts_drawn: dict[str, str] = {}
    with_data: set[tuple[int, int]] = set()  # (row, column) of the panels a value was drawn on
    for column, label in enumerate(curve_labels):
        group = sorted(by_label.get(label, []), key=lambda r: r.seed)
        for record in group:
            steps = plottable([r.get("step", i + 1) for i, r in enumerate(record.history)])
            colour = COLOURS.get(record.verdict, "#000")
            for row, key in enumerate((metric, "loss")):
                values = plottable([r.get(key) for r in record.history])
                if np.isfinite(values).any():
                    axes[row][column].plot(steps, values, color=colour, alpha=0.8)
                    verdicts_drawn[record.verdict] = colour
                    with_data.add((row, column))
        axes[0][column].set_title(label, fontsize=9)
        _reference_lines(axes[0][column], group, vertical=False)
        losses = np.abs(plottable([r.get("loss") for rec in group for r in rec.history]))
        losses = losses[np.isfinite(losses)]
        if losses.size and (losses.min() == 0.0 or losses.max() > 100 * losses.min()):
            axes[1][column].set_yscale("symlog", linthresh=1e-3)  # zero, or orders of magnitude apart
        axes[1][column].set_xlabel("step")
        for row in (0, 1):
            if (row, column) in with_data:
                _plain_numbers(axes[row][column])
                axes[row][column].xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
            else:
                _nothing_drawn(axes[row][column], summaries[label])
    axes[0][0].set_ylabel(metric)
    axes[1][0].set_ylabel("loss")
    _figure_legend(figure, verdicts_drawn, axes)
    return _png(figure)


def _nothing_drawn(axis: Any, point: PointSummary) -> None:
    """An empty panel says why: no trial, or every trial raised (with the point's commonest message, wrapped)."""
    why = "no finished trial" if not point.seeds else "no value reported"
    if point.could_not_run:
        why = "\n".join(["every trial raised:", *textwrap.wrap(point.error or "", 34, max_lines=3, placeholder=" …")])
    axis.text(0.5, 0.5, why, ha="center", va="center", fontsize=8, transform=axis.transAxes)
    axis.set_xticks([])
    axis.set_yticks([])


def _figure_legend(figure: Any, verdicts: dict[str, str], axes: Any) -> None:
    """One legend below the panels: the verdicts' colours and the reference lines drawn."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour, label=verdict) for verdict, colour in verdicts.items()]
    styles = {line.get_label(): line.get_linestyle() for axis in axes.flat for line in axis.lines}
    handles += [
        Line2D([], [], color="#555", linestyle=styles[key], linewidth=1, label=key)
        for key in ("chance", "oracle")
        if key in styles
    ]
    if handles:
        figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 6))


def grad_norms_figure(ranking: Ranking, records: Sequence[TrialRecord]) -> bytes:
    """The reported gradient norms over all trials, with the clipping threshold that would clip 10% of them."""
    norms = np.array(
        [r["grad_norm"] for rec in records for r in rec.history if is_number(r.get("grad_norm"))], dtype=float
    )
    figure, axis = pyplot().subplots(figsize=(7, 3))
    finite = norms[np.isfinite(norms)]
    positive = finite[finite > 0]
    zeros = int(np.sum(norms == 0))
    if positive.size:
        axis.hist(np.log10(positive), bins=40, color="#b0bec5")
        threshold = float(scaled_statistic(np.percentile, finite, q=90))
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
    return _png(figure)


def _reference_lines(axis: Any, records: Sequence[TrialRecord], vertical: bool) -> None:
    for key, style in (("chance", ":"), ("oracle", "--")):
        (level,) = plottable([finite_median([r.finite_final(key) for r in records])])
        if not math.isnan(level):
            line = axis.axvline if vertical else axis.axhline
            line(level, color="#555", linestyle=style, linewidth=1, label=key)


def plottable(values: Iterable[Any]) -> np.ndarray:
    """Values to draw: numbers clipped to +-PLOT_LIMIT; NaN, which matplotlib leaves out, for NaN, infinities
    and whatever is not a number (a key missing from a report, an interval end that is None)."""
    return np.array(
        [
            min(max(float(v), -PLOT_LIMIT), PLOT_LIMIT) if is_number(v) and math.isfinite(v) else math.nan
            for v in values
        ],
        dtype=float,
    )
