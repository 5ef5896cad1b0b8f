"""How a workload's `Config` declares its knobs: `Range`, the values a numeric knob can really run with
(`epochs: Annotated[int, Range(1, 10_000)] = 20`), and `attribute_docstrings`, which reads each field's doc
(the string literal on the line after it) from the class's source.

It sits below the two modules that use them, so neither imports the other for them: `sweeper.workload`
reads a Config into `Knob`s with them (and still lets workloads write `from sweeper.workload import
Range`), `sweeper.keras_model` declares its generic remedies with them. Light: no heavy imports.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from dataclasses import dataclass
from typing import Any

from sweeper.health import is_number


@dataclass(frozen=True)
class Range:
    """The values a numeric knob can really run with, declared on its Config field:
    `epochs: Annotated[int, Range(1, 10_000)] = 20`.

    Both ends are included unless `low_open` / `high_open` excludes them (a learning rate:
    `Range(0.0, 10.0, low_open=True)`, shown `(0, 10]`); None leaves an end unbounded.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __post_init__(self) -> None:
        for end in (self.low, self.high):
            if end is not None and not (is_number(end) and math.isfinite(end)):
                raise ValueError(f"{self!r}: the ends are finite numbers or None, not {end!r}")
        if self.low is None and self.high is None:
            raise ValueError(f"{self!r}: give at least one end; a knob without a range needs no Range")
        if self.low is not None and self.high is not None:
            empty = self.low > self.high or (self.low == self.high and (self.low_open or self.high_open))
            if empty:
                raise ValueError(f"{self!r} holds no value")

    def __contains__(self, value: Any) -> bool:
        """Whether a number lies in the range (NaN never does)."""
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return bool(above and below)

    def __str__(self) -> str:
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None or self.high_open else "]"
        return f"{left}{_end(self.low, '-inf')}, {_end(self.high, 'inf')}{right}"


def _end(value: float | None, unbounded: str) -> str:
    if value is None:
        return unbounded
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def attribute_docstrings(cls: type) -> dict[str, str]:
    """Field name -> the string literal that follows its declaration in the class body."""
    (definition,) = ast.parse(textwrap.dedent(inspect.getsource(cls))).body
    assert isinstance(definition, ast.ClassDef)  # the source of a class is its class statement
    body = definition.body
    docs = {}
    for declaration, following in zip(body, body[1:], strict=False):
        if (
            isinstance(declaration, ast.AnnAssign)
            and isinstance(declaration.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[declaration.target.id] = " ".join(following.value.value.split())
    return docs
