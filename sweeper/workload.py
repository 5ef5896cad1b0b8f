"""The workload contract and workload discovery.

A workload is one module (see DESIGN.md) exporting:

- `Config`: a frozen dataclass whose defaults are the failing setup. Every field is a knob documented by
  the string literal on the line after it; closed sets are typed `Literal[...]`, open knobs `int`,
  `float`, `bool` or `str`. A numeric knob declares the values it can really run with as
  `Annotated[int, Range(1, 10_000)]` (see `sweeper.knobs.Range`, importable from here too); specs are
  refused outside it, and its default and SMOKE value must lie inside it. A field `seed: int` is
  required: the sweep sets it.
- `METRIC`, `MODE`: the final metric's report key and "max" or "min".
- `CHANCE`: the METRIC of a model that learned nothing, which the diagnosis needs to call a trial
  `collapsed`: a finite number where it does not depend on the data (0.0 for R^2 or Cohen's kappa), or
  "reported" where it does (NDCG of a random ranking, a random policy's return) and every report carries
  its own `chance` key.
- `SMOKE`: Config overrides that make one trial finish in seconds on one CPU.
- `train(config, report)`: trains and calls `report(dict)` after each epoch or evaluation; every report
  carries `step`, `loss`, `grad_norm` and METRIC, and may carry `chance` and `oracle` (the metric of a
  random and of an ideal model on the same evaluation data), `no_skill` (the metric a model that learned
  nothing passes with probability at most 1% on this trial's own evaluation, from `sweeper.no_skill`: the
  predictions shuffled against the targets, a random policy on the same episodes; a trial must pass it to
  be healthy, and one that does is healthy whatever a detector other than a divergence finds, if it also
  beats `untrained`, the metric of its own model before the first training step, on the same evaluation)
  and `output_scale` (mean magnitude of the model's outputs: scores, Q-values), which the diagnosis uses.
  All values are plain numbers.
  `Workload.train`, which every caller uses, adds a numeric CHANCE as `chance` to a report without one.
- optionally `THRESHOLDS`: overrides of `sweeper.health.Thresholds` where the defaults do not fit.
- optionally `LIMITS`: `[("cutoff <= min_docs", lambda config: config.cutoff <= config.min_docs), ...]`,
  limits across knobs that no single knob's range can say; every grid point of a spec is checked against
  them before any trial runs, and one that breaks a limit is refused naming the knobs and their values.
- optionally `FIXED_OUTCOMES`: `[({knob: value, ...}, "why"), ...]`, the settings whose outcome is fixed by
  construction whatever the other knobs (one-item lists make ListMLE exactly 0; a rank-1 input raises). A
  claim compared only on twins that both lie in such a setting cannot differ there: it is `not testable
  here`, decided from the spec and this declaration, never from the outcomes.

Workloads are found in the `experiments` package and in the `sweeper.workloads` entry point group, or
given as the path of a `.py` file (`load("/abs/my_model.py")`; a spec's `workload: ./my_model.py` is
relative to the spec's folder). This module imports workload modules but never runs `train`, so it stays
free of heavy imports as long as the workloads keep TensorFlow inside their functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import pkgutil
import re
import sys
import tempfile
import traceback
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from sweeper import keras_model
from sweeper.errors import SweeperError, did_you_mean, one_of
from sweeper.health import Thresholds, is_number
from sweeper.knobs import Range, attribute_docstrings

ENTRY_POINT_GROUP = "sweeper.workloads"
REQUIRED_REPORT_KEYS = ("step", "loss", "grad_norm")
_OPEN_KINDS = (bool, int, float, str)
CHANCE_REPORTED = "reported"
"""The CHANCE of a workload whose every report carries its own `chance` key."""
_ADD_CHANCE = (
    "add CHANCE = <the metric of a model that learned nothing, e.g. 0.0 for R^2 or kappa>, "
    f'or CHANCE = "{CHANCE_REPORTED}" if every report carries a `chance` key'
)


def _is_finite_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


@dataclass(frozen=True)
class Knob:
    """One Config field: its default, its type and, for a closed set, the allowed values; for a numeric
    knob, the range it declares (None: any value of its type)."""

    name: str
    default: Any
    kind: type
    choices: tuple | None
    doc: str
    range: Range | None = None

    def describe_values(self) -> str:
        if self.choices:
            return " | ".join(map(str, self.choices))
        return self.kind.__name__ + (f" in {self.range}" if self.range is not None else "")

    def in_range(self, value: Any) -> bool:
        """Whether a value that passed `check` lies in the knob's range (always true without one)."""
        return self.range is None or value in self.range

    def check(self, value: Any) -> Any | None:
        """The value as the Config expects it, or None if its type or set does not allow it (None is never a
        knob value). The range is `in_range`'s business."""
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
    def fixed_outcomes(self) -> list[tuple[dict[str, Any], str]]:
        return [(dict(when), why) for when, why in getattr(self.module, "FIXED_OUTCOMES", [])]

    @property
    def smoke(self) -> dict[str, Any]:
        return dict(self.module.SMOKE)

    @property
    def chance(self) -> float | str:
        """The declared CHANCE: the metric of a model that learned nothing, or "reported"."""
        chance = self.module.CHANCE
        return chance if isinstance(chance, str) else float(chance)

    def make_config(self, overrides: dict[str, Any]) -> Any:
        return self.module.Config(**overrides)

    def read_program(self) -> Any:
        """What the program's data and structure show before it trains, as written (`sweeper.findings.Reading`):
        a Keras program's; None for a workload with its own `train`."""
        read = getattr(self.module, "read_program", None)
        return None if read is None else read(self.make_config({}))

    def broken_limit(self, config: Any) -> str | None:
        """The first of the workload's LIMITS that `config` breaks, with the values of the knobs it names
        ("cutoff <= min_docs (cutoff=10, min_docs=5)"); None where it keeps them all."""
        for text, holds in getattr(self.module, "LIMITS", []):
            if not holds(config):
                named = [name for name in self.knobs if re.search(rf"\b{re.escape(name)}\b", text)]
                values = ", ".join(f"{name}={getattr(config, name)!r}" for name in named)
                return f"{text} ({values})" if values else text
        return None

    def check_remedies(self, knob_sets: typing.Iterable[dict[str, Any]]) -> None:
        """Refuse, before any trial runs, knob settings the workload cannot apply (a Keras program's model
        rebuilt with each distinct set of model knobs); nothing to check for a workload with its own `train`."""
        check = getattr(self.module, "check_remedies", None)
        if check is not None:
            check(knob_sets, self.make_config)

    def train(self, config: Any, report: typing.Callable[[dict], None]) -> None:
        """Run the module's `train`; a report without `chance` gets a numeric CHANCE (with "reported" it is
        passed on as it is)."""
        chance = self.chance
        if isinstance(chance, str):
            self.module.train(config, report)
            return

        def report_with_chance(metrics: dict) -> None:
            report(metrics if "chance" in metrics else {**metrics, "chance": chance})

        self.module.train(config, report_with_chance)


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


def is_workload_file(reference: str) -> bool:
    """Whether a workload reference is a file path (it ends in .py or holds a `/`), not a workload name."""
    return reference.endswith(".py") or "/" in reference or os.sep in reference


def load(name: str) -> Workload:
    """Import and check a workload by name, or by the path of a `.py` file (relative to the working
    folder; its `Workload.name` is the file's stem). An unknown name gets a did-you-mean and the valid
    names; a module that fails to import or breaks the contract, one line that says why. Each workload is
    imported and checked once per process (a file once per resolved path)."""
    if is_workload_file(name):
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise SweeperError(f"{name}: no such workload file")
        if path.suffix != ".py":
            raise SweeperError(f"{name}: a workload file is a Python file ending in .py")
        return _load_file(path)
    return _load_named(name)


def shipped_source(reference: str) -> str | None:
    """The text of a workload file, for the driver to send with each trial; None for a workload name."""
    return Path(reference).read_text() if is_workload_file(reference) else None


def load_shipped(reference: str, source: str | None) -> Workload:
    """The workload a trial names, on whichever node it runs. A workload file this node lacks, or holds in
    another version (the driver's file is the truth), is written from the `source` the driver shipped to a
    folder named by its content hash under the temporary folder, and loaded from there."""
    if source is None:
        return load(reference)
    path = Path(reference)
    if path.is_file() and path.read_text() == source:
        return load(reference)
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    shipped = Path(tempfile.gettempdir()) / "sweeper-workloads" / digest / path.name
    if not shipped.is_file():
        shipped.parent.mkdir(parents=True, exist_ok=True)
        partial = shipped.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(source)
        partial.replace(shipped)  # atomic: trials starting together on one node never read half a file
    return load(str(shipped))


@cache
def _load_named(name: str) -> Workload:
    modules = available()
    if name not in modules:
        raise SweeperError(f"unknown workload {name!r}{did_you_mean(name, modules)}; {one_of(modules)}")
    try:
        module = importlib.import_module(modules[name])
    except Exception as exc:  # noqa: BLE001 - whatever the workload's own code raises, told on one line
        raise _import_error(name, _module_file(modules[name]), exc) from None
    return _workload(name, module)


@cache
def _load_file(path: Path) -> Workload:
    """A workload file, imported under a module name that only its resolved path decides (the same in
    every process, so Ray workers agree on it)."""
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"_sweeper_workload_file_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise SweeperError(f"{path}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs, as `import` does: dataclasses and inspect.getsource look the module up.
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - whatever the workload's own code raises, told on one line
            del sys.modules[module_name]
            raise _import_error(path.stem, str(path), exc) from None
    return _workload(path.stem, module)


def _workload(name: str, module: ModuleType) -> Workload:
    """A checked workload; a plain Keras program (`sweeper.keras_model`) is adapted to the contract first."""
    if keras_model.is_keras_file(module):
        module = keras_model.adapt(module)
    return Workload(name=name, module=module, knobs=_check_contract(name, module))


def _module_file(module_name: str) -> str:
    """The file of a module that failed to import, or its dotted name where that cannot be found."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    return spec.origin if spec is not None and spec.origin else module_name


def _import_error(name: str, where: str, exc: Exception) -> SweeperError:
    """One line for a workload module that raised while being imported: the exception and the deepest line
    of the workload's own file that it passed through."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == where]
    at = f" at line {frames[-1].lineno}" if frames else ""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return SweeperError(f"workload {name!r} ({where}) cannot be imported{at}: {message}")


def _check_contract(name: str, module: ModuleType) -> dict[str, Knob]:
    def broken(what: str) -> SweeperError:
        return SweeperError(f"workload {name!r} ({module.__file__}) breaks the contract: {what}")

    for attribute in ("Config", "METRIC", "MODE", "SMOKE", "train"):
        if not hasattr(module, attribute):
            raise broken(f"it does not define {attribute}")
    config = module.Config
    params = getattr(config, "__dataclass_params__", None)  # the frozen flag has no public accessor
    if not (isinstance(config, type) and dataclasses.is_dataclass(config) and params is not None and params.frozen):
        raise broken("Config is not a frozen dataclass")
    if module.MODE not in ("max", "min"):
        raise broken(f"MODE is {module.MODE!r}; valid: max, min")
    if not hasattr(module, "CHANCE"):
        raise broken(f"it does not define CHANCE; {_ADD_CHANCE}")
    if not (module.CHANCE == CHANCE_REPORTED if isinstance(module.CHANCE, str) else _is_finite_number(module.CHANCE)):
        raise broken(f'CHANCE is {module.CHANCE!r}, neither a finite number nor "{CHANCE_REPORTED}"; {_ADD_CHANCE}')
    try:
        knobs = knobs_of(config, getattr(module, "KNOB_DOCS", None))
    except SweeperError as exc:
        raise broken(str(exc)) from None
    if "seed" not in knobs or knobs["seed"].kind is not int:
        raise broken("Config has no `seed: int` field")
    for knob in knobs.values():
        if knob.range is None or knob.default is dataclasses.MISSING:
            continue
        if knob.check(knob.default) is None or not knob.in_range(knob.default):
            raise broken(f"Config.{knob.name} defaults to {knob.default!r}, outside its range {knob.range}")
    for key, value in module.SMOKE.items():
        if key not in knobs:
            raise broken(f"SMOKE sets {key!r}, which is not a Config field")
        knob = knobs[key]
        if knob.range is not None:
            checked = knob.check(value)
            if checked is None:
                raise broken(f"SMOKE sets {key} = {value!r}; {key} expects {knob.kind.__name__}")
            if not knob.in_range(checked):
                raise broken(f"SMOKE sets {key} = {value!r}, outside its range {knob.range}")
    for index, entry in enumerate(getattr(module, "LIMITS", [])):
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str) and callable(entry[1])):
            raise broken(f"LIMITS[{index}] is {entry!r}, not ('what must hold', a function of the Config)")
    for index, entry in enumerate(getattr(module, "FIXED_OUTCOMES", [])):
        ok = isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], dict) and isinstance(entry[1], str)
        if not ok:
            raise broken(f"FIXED_OUTCOMES[{index}] is {entry!r}, not ({{knob: value, ...}}, 'why')")
        for key, value in entry[0].items():
            if key not in knobs or knobs[key].check(value) is None:
                raise broken(f"FIXED_OUTCOMES[{index}] sets {key} = {value!r}, not a value of a Config field")
    try:
        Thresholds.with_overrides(getattr(module, "THRESHOLDS", None))
    except (TypeError, ValueError) as exc:
        raise broken(f"THRESHOLDS: {exc}") from None
    return knobs


def knobs_of(config_cls: type, docs: dict[str, str] | None = None) -> dict[str, Knob]:
    """Every field of a Config dataclass as a Knob, with its attribute docstring (read from the class's
    source, or given as `docs` for a class made at run time)."""
    hints = typing.get_type_hints(config_cls, include_extras=True)
    docs = attribute_docstrings(config_cls) if docs is None else docs
    knobs = {}
    for field in dataclasses.fields(config_cls):
        hint = hints[field.name]
        where = f"{config_cls.__qualname__}.{field.name}"  # _check_contract names the module and its file
        ranges: list[Range] = []
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extras = typing.get_args(hint)
            ranges = [extra for extra in extras if isinstance(extra, Range)]
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            kind = type(choices[0])
        elif hint in _OPEN_KINDS:
            choices, kind = None, hint
        else:
            raise SweeperError(
                f"{where}: type {hint!r} is not a knob type; "
                f"valid: Literal[...], {', '.join(k.__name__ for k in _OPEN_KINDS)}"
            )
        if len(ranges) > 1:
            raise SweeperError(f"{where}: declares {len(ranges)} Ranges; a knob has at most one")
        if ranges and (choices is not None or kind not in (int, float)):
            what = "a Literal set" if choices is not None else kind.__name__
            raise SweeperError(f"{where}: a Range fits an int or float knob, not {what}")
        knobs[field.name] = Knob(
            field.name, field.default, kind, choices, docs.get(field.name, ""), ranges[0] if ranges else None
        )
    return knobs
