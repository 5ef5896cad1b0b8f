"""The workload contract and workload discovery.

A workload is one module (see DESIGN.md) exporting:

- `Config`: a frozen dataclass whose defaults are the failing setup. Every field is a knob documented by
  the string literal on the line after it; closed sets are typed `Literal[...]`, open knobs `int`,
  `float`, `bool` or `str`. A field `seed: int` is required: the sweep sets it.
- `METRIC`, `MODE`: the final metric's report key and "max" or "min".
- `SMOKE`: Config overrides that make one trial finish in seconds on one CPU.
- `train(config, report)`: trains and calls `report(dict)` after each epoch or evaluation; every report
  carries `step`, `loss`, `grad_norm` and METRIC, and may carry `chance` and `oracle` (the metric of a
  random and of an ideal model on the same evaluation data) and `output_scale` (mean magnitude of the
  model's outputs: scores, Q-values), which the diagnosis uses. All values are plain numbers.
- optionally `THRESHOLDS`: overrides of `sweeper.health.Thresholds` where the defaults do not fit.

Workloads are found in the `experiments` package and in the `sweeper.workloads` entry point group. This
module imports workload modules but never runs `train`, so it stays free of heavy imports as long as the
workloads keep TensorFlow inside their functions.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.metadata
import inspect
import pkgutil
import textwrap
import typing
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

from sweeper.errors import SweeperError, did_you_mean, one_of
from sweeper.health import Thresholds

ENTRY_POINT_GROUP = "sweeper.workloads"
REQUIRED_REPORT_KEYS = ("step", "loss", "grad_norm")
_OPEN_KINDS = (bool, int, float, str)


@dataclass(frozen=True)
class Knob:
    """One Config field: its default, its type and, for a closed set, the allowed values."""

    name: str
    default: Any
    kind: type
    choices: tuple | None
    doc: str

    def describe_values(self) -> str:
        return " | ".join(map(str, self.choices)) if self.choices else self.kind.__name__

    def check(self, value: Any) -> Any | None:
        """The value as the Config expects it, or None if it is not allowed (None is never a knob value)."""
        if self.choices is not None:
            return value if value in self.choices and type(value) is type(self.default) else None
        if self.kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return value if type(value) is self.kind else None


@dataclass(frozen=True)
class Workload:
    """A loaded workload module and its knobs."""

    name: str
    module: ModuleType
    knobs: dict[str, Knob]

    @property
    def metric(self) -> str:
        return self.module.METRIC

    @property
    def mode(self) -> str:
        return self.module.MODE

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.with_overrides(getattr(self.module, "THRESHOLDS", None))

    @property
    def smoke(self) -> dict[str, Any]:
        return dict(self.module.SMOKE)

    def make_config(self, overrides: dict[str, Any]) -> Any:
        return self.module.Config(**overrides)

    def train(self, config: Any, report: typing.Callable[[dict], None]) -> None:
        self.module.train(config, report)


def available() -> dict[str, str]:
    """Workload name -> module path, from the `experiments` package and the entry point group."""
    found: dict[str, str] = {}
    try:
        import experiments
    except ImportError:  # an installation without the bundled workloads
        pass
    else:
        for info in pkgutil.iter_modules(experiments.__path__):
            if not info.name.startswith("_"):
                found[info.name] = f"experiments.{info.name}"
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return dict(sorted(found.items()))


@cache
def load(name: str) -> Workload:
    """Import and check a workload by name; an unknown name gets a did-you-mean and the valid names."""
    modules = available()
    if name not in modules:
        raise SweeperError(f"unknown workload {name!r}{did_you_mean(name, modules)}; {one_of(modules)}")
    module = importlib.import_module(modules[name])
    knobs = _check_contract(name, module)
    return Workload(name=name, module=module, knobs=knobs)


def _check_contract(name: str, module: ModuleType) -> dict[str, Knob]:
    def broken(what: str) -> SweeperError:
        return SweeperError(f"workload {name!r} ({module.__file__}) breaks the contract: {what}")

    for attribute in ("Config", "METRIC", "MODE", "SMOKE", "train"):
        if not hasattr(module, attribute):
            raise broken(f"it does not define {attribute}")
    config = module.Config
    if not (dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen):
        raise broken("Config is not a frozen dataclass")
    if module.MODE not in ("max", "min"):
        raise broken(f"MODE is {module.MODE!r}; valid: max, min")
    knobs = knobs_of(config)
    if "seed" not in knobs or knobs["seed"].kind is not int:
        raise broken("Config has no `seed: int` field")
    for key in module.SMOKE:
        if key not in knobs:
            raise broken(f"SMOKE sets {key!r}, which is not a Config field")
    try:
        Thresholds.with_overrides(getattr(module, "THRESHOLDS", None))
    except (TypeError, ValueError) as exc:
        raise broken(f"THRESHOLDS: {exc}") from None
    return knobs


def knobs_of(config_cls: type) -> dict[str, Knob]:
    """Every field of a Config dataclass as a Knob, with its attribute docstring."""
    hints = typing.get_type_hints(config_cls)
    docs = _attribute_docstrings(config_cls)
    knobs = {}
    for field in dataclasses.fields(config_cls):
        hint = hints[field.name]
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            kind = type(choices[0])
        elif hint in _OPEN_KINDS:
            choices, kind = None, hint
        else:
            raise SweeperError(
                f"{config_cls.__module__}.Config.{field.name}: type {hint!r} is not a knob type; "
                f"valid: Literal[...], {', '.join(k.__name__ for k in _OPEN_KINDS)}"
            )
        knobs[field.name] = Knob(field.name, field.default, kind, choices, docs.get(field.name, ""))
    return knobs


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """Field name -> the string literal that follows its declaration in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for declaration, following in zip(body, body[1:]):
        if (
            isinstance(declaration, ast.AnnAssign)
            and isinstance(declaration.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[declaration.target.id] = " ".join(following.value.value.split())
    return docs
