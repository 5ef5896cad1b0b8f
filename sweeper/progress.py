"""The sweep's console display: one progress line (rich) in place of Ray Tune's trial table."""

from __future__ import annotations

import math
from collections import Counter

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

BAR_WIDTH = (5, 20)
"""The bar's narrowest and widest: it gives way to the status on a narrow line."""
STATUS_ROOM = 30
"""The status's room that the bar gives way to."""


class SweepProgress:
    """Trials done of those planned so far (an adaptive design plans each round from the last), time spent
    and left, running, verdict counts and, while every finished trial has the same metric (one sweep, or
    sweeps of one workload), the best final metric so far."""

    def __init__(self, title: str, total: int, console: Console | None = None, done: int = 0):
        self.total, self.done = total, done
        self.running: set[str] = set()
        self.verdicts: Counter[str] = Counter()
        self.metrics: set[str] = set()
        self.best: tuple[float, str] | None = None
        self.console = console or Console(stderr=True)
        self.title = title
        # The title is one word and never cut; the status is fitted to what the line leaves (`status_line`).
        # In a log or a pipe there is no live line, only a line per finished trial.
        self._bar = BarColumn(bar_width=BAR_WIDTH[1])
        self._progress = Progress(
            TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, min_width=len(title))),
            self._bar,
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),  # from the pace so far, over the trials planned so far
            TextColumn("{task.fields[status]}", table_column=Column(no_wrap=False, overflow="fold")),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal,
        )
        self._task = self._progress.add_task(title, total=total, completed=done, status="")
        self._refresh()

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def plan_more(self, trials: int) -> None:
        """A sweep's next round was planned: its trials join the count."""
        self.total += trials
        self._progress.update(self._task, total=self.total)

    def say(self, text: str) -> None:
        """A line above the progress bar (in a log or a pipe, a line of its own)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def trial_started(self, key: str) -> None:
        self.running.add(key)
        self._refresh()

    def trial_finished(
        self, key: str, label: str, verdict: str, final_metric: float | None, metric: str, mode: str, error: str = ""
    ) -> None:
        """A trial ended; `error`: for a trial that raised, the exception's last line (always printed)."""
        self.running.discard(key)
        self.done += 1
        self.verdicts[verdict] += 1
        self.metrics.add(metric)
        if verdict == "healthy" and final_metric is not None and math.isfinite(final_metric):
            better = self.best is None or (
                final_metric > self.best[0] if mode == "max" else final_metric < self.best[0]
            )
            if better:
                self.best = (final_metric, label)
        self._progress.advance(self._task)
        self._refresh()
        if not self.console.is_terminal or error:  # no live bar in a log or a pipe: one line per finished trial
            shown = "–" if final_metric is None else f"{final_metric:.4g}"
            raised = f" ({error})" if error else ""
            line = f"[{self.done}/{self.total}] {key}: {verdict}, {metric} {shown}{raised}"
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def status_line(self, width: int | None = None) -> str:
        """Running, the verdict counts and the best metric so far, in at most `width` characters where
        given: the best point's label goes first, then the best metric, then the counts from the last, so
        that what is shown is whole words (on a line too narrow for any, nothing)."""
        parts = [f"{len(self.running)} running"]
        parts += [f"{count} {verdict}" for verdict, count in sorted(self.verdicts.items())]
        tails: list[list[str]] = [[]]
        if self.best is not None and len(self.metrics) == 1:
            best = f"best {next(iter(self.metrics))} {self.best[0]:.4g}"
            tails = [[f"{best} ({self.best[1]})"], [best], []]
        for tail in tails:
            line = " · ".join(parts + tail)
            if width is None or len(line) <= width:
                return line
        while parts and len(" · ".join(parts)) > (width or 0):
            parts.pop()
        return " · ".join(parts)  # nothing where not even the running count fits

    def _refresh(self) -> None:
        # The other columns: done of planned, elapsed, "eta", remaining, and a space between each two of seven.
        others = 2 * len(str(self.total)) + 1 + 7 + 3 + 7 + 6
        left = self.console.width - len(self.title) - others
        bar = min(BAR_WIDTH[1], max(BAR_WIDTH[0], left - STATUS_ROOM))
        self._bar.bar_width = bar
        self._progress.update(self._task, status=self.status_line(max(left - bar, 0)))
