"""Sweep specs: YAML to validated SweepSpec objects, refused with a one-line error before anything runs.

A spec file holds one sweep, or several as YAML documents separated by `---` (configs/smoke.yaml runs one
small sweep per workload). Each document:

    name: listmle-remedies     # MLflow experiment and output folder prefix (default: the file's stem)
    workload: listmle          # a name (`sweeper list`), or a .py file: ./my_model.py (next to the spec)
    seeds: 3                   # seeds 0..seeds-1 for every grid point at the first look
    first_seed: 0              # the seeds count from here: a sweep chosen by looking at another sweep's
                               # results (the doctor's combination round) runs on seeds that one never used
    max_seeds: 10              # adaptive design: a point that may matter goes on up to this many seeds
    design: adaptive           # adaptive | fixed (every point and the baseline run `seeds`; --seeds N too)
    alpha: 0.05                # the error rate the verdicts keep: family-wise (holm) or false-discovery (bh)
    correction: holm           # holm | bh, over the sweep's grid points; the claims are a second family
    confirm: false             # adaptive design: true re-tests every `fixes` point on fresh seeds after the looks
    smoke: false               # true: start from the workload's SMOKE overrides (tiny, fast trials)
    baseline: {loss: td}       # this sweep's failing setup where it is not the workload's defaults: the
                               # baseline point's value of a swept knob, every trial's value of another
    fixed: {epochs: 20}        # overrides for every trial
    grid:                      # knob -> values
      list_shape: [flattened, grouped]
    vary: cartesian            # cartesian: every combination of the grid's values; one_at_a_time: the
                               # baseline, and each knob's other values with the rest at the baseline's;
                               # pairs: the baseline, and each two knobs' other values together
    resources: {cpu: 1, gpu: 0}
    description: free text shown in the report
    claims:                    # the source question's claims, each judged from the measurements
      - claim: Grouping the lists fixes the zero loss
        set: {list_shape: grouped}       # the change the claim is about (each knob swept with its default)
        where: {labels: graded}          # optional: judge it only on the points that match
        expect: fixes                    # fixes | no_effect | harmful | zero_loss
        margin: 0.2                      # no_effect only: the largest shift in P(with beats without) from
                                         # 1/2 that still counts as no effect (an equivalence margin)
        source: {file: 000_d839642e40c27b5a.txt, quote: "the sentence the claim tests, word for word"}
                                         # or `source: project`: a claim no document makes

The baseline (every grid knob at its Config default, or the spec's `baseline` value) is always swept, added
if the product lacks it. A claim must have twins in the grid: a point that matches `where` and `set`, and
the same point with `set`'s knobs at the baseline's values (so under one_at_a_time a claim changes one knob
and filters on baseline values only).
How many seeds each point and the baseline run, and how the verdicts are tested, is `sweeper.evidence`.
Knob values must have the knob's type and lie in the range its workload declares (`sweeper list`). A
workload file is stored by its resolved absolute path (`SweepSpec.workload` and the spec's `document`), so
the copy of the spec in the sweep folder and the Ray workers find it from anywhere.

Why this module is long: it is the one owner of the spec format, and every key's check (with the one-line
error that names the file, the key and the valid choices) sits beside the others it depends on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from sweeper.errors import SweeperError, did_you_mean, one_of
from sweeper.workload import Workload, is_workload_file, load

if TYPE_CHECKING:
    from sweeper.evidence import Design

TOP_LEVEL_KEYS = (
    "name",
    "workload",
    "description",
    "seeds",
    "first_seed",
    "max_seeds",
    "design",
    "alpha",
    "correction",
    "confirm",
    "smoke",
    "baseline",
    "fixed",
    "grid",
    "vary",
    "resources",
    "claims",
)
RESOURCE_KEYS = ("cpu", "gpu")
CLAIM_KEYS = ("claim", "set", "where", "expect", "margin", "source")
SOURCE_KEYS = ("file", "quote")
PROJECT_SOURCE = "project"
"""`source: project`: a claim the project makes on its own, which no source document states."""
EXPECTATIONS = ("fixes", "no_effect", "harmful", "zero_loss")
BASELINE_LABEL = "baseline"
DESIGNS = ("adaptive", "fixed")
VARIATIONS = ("cartesian", "one_at_a_time", "pairs")
CORRECTIONS = ("holm", "bh")
DEFAULT_MAX_SEEDS = 10
MAX_SPEC_BYTES = 1_000_000
MAX_GRID_POINTS = 100_000
"""Hard limits on what a spec may ask for; `sweeper run --max-trials` is the softer, per-run one."""
MAX_SEEDS = 300
"""Per point: the baseline may run up to BASELINE_SHARE_CAP (3, `sweeper.evidence`) times as many, and seeds
1000 and up are kept for calibrating workloads (no seed both tunes and judges)."""
CALIBRATION_SEEDS_FROM = 1000
"""The first calibration seed: a sweep's seeds (from `first_seed`) must all lie below it."""


def _yaml_documents(text: str) -> list[Any]:
    """The spec file's documents, read as YAML 1.2 (ruamel.yaml, safe and pure-Python): `1e-3` is a float and
    `off`, `no` are strings, as a reader of the file expects, where YAML 1.1 (PyYAML) reads `1e-3` as text
    and `off` as False. Anchors and aliases are refused: a spec never needs them, and nested aliases can
    expand a few lines into billions of values (the 'billion laughs'). Duplicate keys are refused too."""
    reader = YAML(typ="safe", pure=True)
    for event in reader.parse(text):
        if isinstance(event, AliasEvent):
            mark = event.start_mark
            raise MarkedYAMLError(
                problem="anchors and aliases (*name) are not supported in a sweep spec", problem_mark=mark
            )
    return [doc for doc in reader.load_all(text) if doc is not None]


_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class GridPoint:
    """One combination of remedy knobs; `label` names it by the knobs that differ from the baseline."""

    knobs: dict[str, Any]
    label: str
    is_baseline: bool


@dataclass(frozen=True)
class Source:
    """Where a claim comes from: a document's file name and the sentence the claim tests, word for word."""

    file: str
    quote: str


@dataclass(frozen=True)
class Claim:
    """A claim of the source question: setting `change` (vs the knobs' defaults), on the grid points that
    match `where`, is expected to `expect`."""

    text: str
    change: dict[str, Any]
    where: dict[str, Any]
    expect: str
    margin: float | None = None
    """`no_effect` only: P(with beats without) within 1/2 +- margin counts as no effect."""
    source: Source | str | None = None
    """The document sentence it tests, PROJECT_SOURCE for the project's own claim, or None (not said)."""


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    name: str
    workload: str
    seeds: int
    smoke: bool
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    cpu: float
    gpu: float
    description: str = ""
    baseline: dict[str, Any] = field(default_factory=dict)
    """Knob values of this sweep's failing setup, overriding the workload's defaults (`defaults`)."""
    vary: str = "cartesian"
    """How the grid becomes points: `cartesian`, `one_at_a_time` or `pairs` (see `grid_points`)."""
    first_seed: int = 0
    """The seeds are first_seed, first_seed + 1, ...: 0 but for a sweep that must not reuse another's seeds."""
    max_seeds: int = 10
    design_kind: str = "adaptive"
    alpha: float = 0.05
    correction: str = "holm"
    confirm: bool = False
    """Adaptive design: a confirmation round on fresh seeds for every point called `fixes` (`Design.confirm`)."""
    points: list[GridPoint] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)
    """The spec's own YAML document, as written (seeds as run), so a sweep can be rebuilt from it."""

    @property
    def design(self) -> Design:
        from sweeper.evidence import make_design  # numpy and scipy: not needed to validate a spec

        return make_design(
            self.design_kind,
            len(self.points) - 1,
            self.seeds,
            self.max_seeds,
            self.alpha,
            self.correction,
            self.confirm,
            self.claim_labels(),
        )

    def claim_labels(self) -> frozenset[str]:
        """The grid points a claim pairs on (each point with a claim's change, and its twin): the design lets a
        call stop none of them, so each claim keeps the seeds it is judged on."""
        if not self.claims or not self.points:
            return frozenset()
        baseline = next(p for p in self.points if p.is_baseline).knobs
        labels = {repr(sorted(p.knobs.items())): p.label for p in self.points}  # knob values need not hash
        found: set[str] = set()
        for claim in self.claims:
            for point, twin in claim_points(self.points, claim.change, claim.where, baseline):
                twin_label = labels.get(repr(sorted(twin.items())))
                if twin_label is not None:
                    found |= {point.label, twin_label}
        return frozenset(found)

    @property
    def trial_count(self) -> int:
        """The most trials the design may run (an adaptive design usually stops points earlier)."""
        design = self.design
        baseline_through = design.confirmation_seeds(design.baseline_looks[-1])[1]
        return (len(self.points) - 1) * (design.looks[-1] + design.confirm[0]) + baseline_through

    def describe_seeds(self) -> str:
        design = self.design
        if design.kind == "fixed":
            floor = design.smallest_adjusted_p(len(self.points) - 1)
            warning = f" (too few seeds: no verdict can reach alpha {self.alpha})" if floor > self.alpha else ""
            return f"{len(self.points)} grid points x {self.seeds} seeds = {self.trial_count} trials{warning}"
        return (
            f"{len(self.points)} grid points, adaptive: {self.seeds} to {self.max_seeds} seeds a point and "
            f"{design.baseline_looks[0]} to {design.baseline_looks[-1]} for the baseline, "
            f"at most {self.trial_count} trials"
        )

    def check_remedies(self) -> None:
        """Refuse, before anything runs, a point whose knobs its workload cannot apply (a Keras program's data
        and model as written, then its model rebuilt with each point's model knobs: `Workload.check_remedies`),
        on one line naming the spec and the sweep."""
        workload = load(self.workload)
        base = self.base_overrides(workload)
        try:
            workload.check_remedies({**base, **point.knobs} for point in self.points)
        except SweeperError as exc:
            raise SweeperError(f"{self.path}: {self.name}: {exc}") from None

    def base_overrides(self, workload: Workload) -> dict[str, Any]:
        """What every trial's Config starts from: SMOKE (if asked for), the baseline's values of knobs that
        are not swept, then `fixed`."""
        unswept = {knob: value for knob, value in self.baseline.items() if knob not in self.grid}
        return {**(workload.smoke if self.smoke else {}), **unswept, **self.fixed}

    @property
    def last_seed(self) -> int:
        """The largest seed the design may run (the baseline's last, past its confirmation round)."""
        design = self.design
        return self.first_seed + design.confirmation_seeds(design.baseline_looks[-1])[1] - 1

    def with_seeds(self, seeds: int) -> SweepSpec:
        """A fixed design: every point and the baseline run `seeds` seeds (0..seeds-1 from `first_seed`)."""
        _check_seeds(self.path, "--seeds", seeds)
        document = {**self.document, "seeds": seeds, "design": "fixed"}
        document.pop("max_seeds", None)
        fixed = dataclasses.replace(self, seeds=seeds, max_seeds=seeds, design_kind="fixed", document=document)
        _check_last_seed(self.path, "--seeds", fixed)
        return fixed

    def defaults(self, workload: Workload) -> dict[str, Any]:
        """The baseline point's value of every swept knob: the spec's `baseline`, else the workload's default."""
        return baseline_values(workload, self.grid, self.baseline)


def only_named(specs: list[SweepSpec], names: list[str], key: str = "--only") -> list[SweepSpec]:
    """The sweeps of a spec file with these names, in the file's order; SweeperError for a name that is none
    of them (`key`: the option that gave the names)."""
    known = [spec.name for spec in specs]
    for name in names:
        if name not in known:
            where = specs[0].path if specs else "spec"
            raise SweeperError(f"{where}: {key}: no sweep named {name!r}{did_you_mean(name, known)}; {one_of(known)}")
    return [spec for spec in specs if spec.name in names]


def load_specs(path: str | Path) -> list[SweepSpec]:
    """Every sweep in a spec file, all validated; the first mistake raises SweeperError."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SweeperError(f"{path}: {path.stat().st_size} bytes; a spec file is at most {MAX_SPEC_BYTES}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweeperError(f"{path}: no such spec file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SweeperError(f"{path}: cannot read the spec file: {str(exc).splitlines()[0]}") from None
    try:
        documents = _yaml_documents(text)
    except YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweeperError(f"{path}: malformed YAML{where}: {problem}") from None
    if not documents:
        raise SweeperError(f"{path}: the spec file is empty; it needs at least `workload:`")
    specs = [_parse(path, doc, index if len(documents) > 1 else None) for index, doc in enumerate(documents)]
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise SweeperError(f"{path}: name: {name!r} is used by more than one sweep in the file")
    return specs


def _parse(path: Path, doc: Any, index: int | None) -> SweepSpec:
    where = f"{path}" if index is None else f"{path} (document {index + 1})"

    def fail(key: str, message: str) -> SweeperError:
        return SweeperError(f"{where}: {key}: {message}")

    if not isinstance(doc, dict):
        raise SweeperError(f"{where}: a sweep spec is a mapping of keys, not {type(doc).__name__}")
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            raise fail(str(key), f"unknown key{did_you_mean(key, TOP_LEVEL_KEYS)}; {one_of(TOP_LEVEL_KEYS)}")

    if "workload" not in doc:
        raise fail("workload", "missing; every sweep names its workload (see `sweeper list`)")
    workload_ref = doc["workload"]
    if not isinstance(workload_ref, str):
        raise fail("workload", f"expected a workload name, got {workload_ref!r}")
    if is_workload_file(workload_ref):
        # Relative to the spec's folder, stored resolved: the sweep folder's copy and Ray's workers use it.
        file = Path(workload_ref).expanduser()
        file = (file if file.is_absolute() else path.parent / file).resolve()
        if not file.is_file():
            raise fail("workload", f"{workload_ref}: no such workload file")
        workload_ref = str(file)
    try:
        workload = load(workload_ref)
    except SweeperError as exc:
        raise fail("workload", str(exc)) from None

    name = doc.get("name", path.stem if index is None else f"{path.stem}-{workload.name}")
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise fail("name", f"{name!r} is not a valid sweep name; use letters, digits, '.', '_', '-' (1-100)")

    seeds = doc.get("seeds", 3)
    _check_seeds(where, "seeds", seeds)
    first_seed = doc.get("first_seed", 0)
    if not isinstance(first_seed, int) or isinstance(first_seed, bool) or not 0 <= first_seed < CALIBRATION_SEEDS_FROM:
        raise fail(
            "first_seed",
            f"expected a whole number from 0 to {CALIBRATION_SEEDS_FROM - 1} (seeds {CALIBRATION_SEEDS_FROM} and up "
            f"calibrate), got {first_seed!r}",
        )
    design_kind = doc.get("design", "adaptive")
    if design_kind not in DESIGNS:
        raise fail("design", f"{design_kind!r} is not a design{did_you_mean(design_kind, DESIGNS)}; {one_of(DESIGNS)}")
    max_seeds: Any = doc.get("max_seeds", seeds if design_kind == "fixed" else max(seeds, DEFAULT_MAX_SEEDS))
    _check_seeds(where, "max_seeds", max_seeds)
    if max_seeds < seeds:
        raise fail("max_seeds", f"{max_seeds} is below seeds ({seeds}); the design starts at `seeds` and stops at it")
    if design_kind == "fixed" and "max_seeds" in doc and max_seeds != seeds:
        raise fail("max_seeds", "a fixed design runs `seeds` seeds everywhere; drop max_seeds or use design: adaptive")
    alpha = doc.get("alpha", 0.05)
    if not isinstance(alpha, float | int) or isinstance(alpha, bool) or not 0 < alpha <= 0.5:
        raise fail("alpha", f"expected an error rate above 0 and at most 0.5, got {alpha!r}")
    correction = doc.get("correction", "holm")
    if correction not in CORRECTIONS:
        raise fail(
            "correction",
            f"{correction!r} is not a correction{did_you_mean(correction, CORRECTIONS)}; {one_of(CORRECTIONS)}",
        )

    confirm = doc.get("confirm", False)
    if not isinstance(confirm, bool):
        raise fail("confirm", f"expected true or false, got {confirm!r}")

    smoke = doc.get("smoke", False)
    if not isinstance(smoke, bool):
        raise fail("smoke", f"expected true or false, got {smoke!r}")

    description = doc.get("description", "")
    if not isinstance(description, str):
        raise fail("description", f"expected text, got {type(description).__name__}")

    fixed = _mapping(doc, "fixed", fail)
    fixed = {key: _knob_value(workload, f"fixed.{key}", key, value, fail) for key, value in fixed.items()}
    baseline = _mapping(doc, "baseline", fail)
    baseline = {key: _knob_value(workload, f"baseline.{key}", key, value, fail) for key, value in baseline.items()}
    for key in baseline:
        if key in fixed:
            raise fail(f"baseline.{key}", "is also set in `fixed`; a knob is either fixed or part of the baseline")

    grid_doc = _mapping(doc, "grid", fail)
    grid: dict[str, list[Any]] = {}
    for key, values in grid_doc.items():
        if key in fixed:
            raise fail(f"grid.{key}", "is also set in `fixed`; a knob is either fixed or swept")
        if not isinstance(values, list) or not values:
            raise fail(f"grid.{key}", f"expected a non-empty list of values, got {values!r}")
        checked = [_knob_value(workload, f"grid.{key}[{i}]", key, v, fail) for i, v in enumerate(values)]
        if len(set(map(repr, checked))) != len(checked):
            raise fail(f"grid.{key}", f"lists a value twice: {values!r}")
        grid[str(key)] = checked

    vary = doc.get("vary", "cartesian")
    if vary not in VARIATIONS:
        raise fail(
            "vary", f"{vary!r} is not a way to vary the grid{did_you_mean(vary, VARIATIONS)}; {one_of(VARIATIONS)}"
        )
    if vary == "cartesian":
        size = math.prod(len(values) for values in grid.values())
    elif vary == "pairs":
        size = 1 + sum(len(a) * len(b) for a, b in itertools.combinations(grid.values(), 2))
    else:
        size = 1 + sum(len(values) for values in grid.values())
    if size > MAX_GRID_POINTS:
        raise fail("grid", f"{size} grid points; a spec may sweep at most {MAX_GRID_POINTS}")

    resources = _mapping(doc, "resources", fail)
    for key in resources:
        if key not in RESOURCE_KEYS:
            raise fail(
                f"resources.{key}", f"unknown resource{did_you_mean(key, RESOURCE_KEYS)}; {one_of(RESOURCE_KEYS)}"
            )
    cpu = _amount(resources.get("cpu", 1), "resources.cpu", fail, minimum_exclusive=True)
    gpu = _amount(resources.get("gpu", 0), "resources.gpu", fail, minimum_exclusive=False)

    claims_doc = doc.get("claims", [])
    if not isinstance(claims_doc, list):
        raise fail("claims", f"expected a list of claims, got {claims_doc!r}")
    defaults = baseline_values(workload, grid, baseline)
    points = grid_points(workload, grid, baseline, vary)
    if len(points) < 2:
        swept = "has no knob" if not grid else "holds only the baseline's values"
        raise fail(
            "grid",
            f"{swept}: there is nothing to compare with the baseline; list at least one other value, e.g. "
            f"`grid: {{{next(iter(grid), 'KNOB')}: [...]}}` (`sweeper list {workload_ref}` shows the knobs)",
        )
    claims = [_claim(workload, grid, defaults, points, f"claims[{i}]", item, fail) for i, item in enumerate(claims_doc)]

    spec = SweepSpec(
        path=path,
        name=name,
        workload=workload_ref,
        seeds=seeds,
        smoke=smoke,
        fixed=fixed,
        grid=grid,
        cpu=cpu,
        gpu=gpu,
        description=description,
        baseline=baseline,
        vary=vary,
        first_seed=first_seed,
        max_seeds=max_seeds,
        design_kind=design_kind,
        alpha=float(alpha),
        correction=correction,
        confirm=confirm,
        points=points,
        claims=claims,
        document={**doc, "workload": workload_ref},
    )
    if not spec.design.first_look_can_go_on():
        raise fail(
            "seeds",
            f"{seeds} is too few for the adaptive design's first look: no point could ever go on; start at more "
            "seeds, or use design: fixed",
        )
    _check_last_seed(where, "first_seed", spec)
    base = spec.base_overrides(workload)
    for point in points:  # limits across knobs (the workload's LIMITS), which no knob's own range can say
        broken = workload.broken_limit(workload.make_config({**base, **point.knobs}))
        if broken is not None:
            key = "fixed" if point.is_baseline else "grid"
            raise fail(key, f"the grid point {point.label} breaks the workload's limit {broken}")
    return spec


def _claim(
    workload: Workload,
    grid: dict[str, list[Any]],
    defaults: dict[str, Any],
    points: list[GridPoint],
    key: str,
    item: Any,
    fail,
) -> Claim:
    if not isinstance(item, dict):
        raise fail(key, f"expected a mapping with {', '.join(CLAIM_KEYS)}, got {item!r}")
    for name in item:
        if name not in CLAIM_KEYS:
            raise fail(f"{key}.{name}", f"unknown key{did_you_mean(name, CLAIM_KEYS)}; {one_of(CLAIM_KEYS)}")
    text = item.get("claim")
    if not isinstance(text, str) or not text.strip():
        raise fail(f"{key}.claim", "missing; say the claim in words")
    expect = item.get("expect")
    if expect not in EXPECTATIONS:
        raise fail(
            f"{key}.expect",
            f"{expect!r} is not an expectation{did_you_mean(expect, EXPECTATIONS)}; {one_of(EXPECTATIONS)}",
        )
    change, where = _mapping(item, "set", fail, f"{key}."), _mapping(item, "where", fail, f"{key}.")
    if not change:
        raise fail(f"{key}.set", "missing; name the knob values the claim is about")
    for part, knobs in (("set", change), ("where", where)):
        for knob, value in knobs.items():
            where_key = f"{key}.{part}.{knob}"
            if knob not in grid:
                raise fail(where_key, f"{knob!r} is not swept; claims can only be judged on grid knobs; {one_of(grid)}")
            if _knob_value(workload, where_key, knob, value, fail) not in grid[knob]:
                raise fail(where_key, f"{value!r} is not in the grid; {one_of(grid[knob])}")
    for knob in change:
        if knob in where:
            raise fail(f"{key}.where.{knob}", "is also in `set`; a claim changes a knob or filters on it, not both")
        if defaults[knob] not in grid[knob]:
            raise fail(f"{key}.set.{knob}", f"the grid lacks the baseline's {defaults[knob]!r} to compare with")
    if not twins_exist(points, change, where, defaults):
        raise fail(
            f"{key}.set",
            "no grid point pairs this change with its twin (the same point with the changed knobs at the "
            "baseline's values) where the claim looks; one_at_a_time grids vary one knob at a time from the "
            "baseline, so there a claim changes one knob and its `where` names baseline values only",
        )
    margin = item.get("margin")
    if expect == "no_effect":
        if margin is None:
            raise fail(
                f"{key}.margin",
                "missing; `expect: no_effect` needs an equivalence margin: how far P(with beats without) may stray "
                "from 1/2 and still count as no effect (e.g. margin: 0.2)",
            )
        if not isinstance(margin, float | int) or isinstance(margin, bool) or not 0 < margin < 0.5:
            raise fail(f"{key}.margin", f"expected a number above 0 and below 0.5, got {margin!r}")
    elif margin is not None:
        raise fail(f"{key}.margin", f"only `expect: no_effect` takes a margin, not {expect!r}")
    return Claim(
        text=" ".join(text.split()),
        change=change,
        where=where,
        expect=expect,
        margin=None if margin is None else float(margin),
        source=_source(item.get("source"), f"{key}.source", fail),
    )


def _source(value: Any, key: str, fail) -> Source | str | None:
    if value is None or value == PROJECT_SOURCE:
        return value
    if not isinstance(value, dict):
        raise fail(key, f"expected {{file: ..., quote: ...}} or {PROJECT_SOURCE!r}, got {value!r}")
    for name in value:
        if name not in SOURCE_KEYS:
            raise fail(f"{key}.{name}", f"unknown key{did_you_mean(name, SOURCE_KEYS)}; {one_of(SOURCE_KEYS)}")
    for name in SOURCE_KEYS:
        if not isinstance(value.get(name), str) or not value[name].strip():
            what = "the document's file name" if name == "file" else "the sentence the claim tests, word for word"
            raise fail(f"{key}.{name}", f"missing; give {what}")
    return Source(file=value["file"].strip(), quote=" ".join(value["quote"].split()))


def claim_points(
    points: list[GridPoint], change: dict[str, Any], where: dict[str, Any], defaults: dict[str, Any]
) -> list[tuple[GridPoint, dict[str, Any]]]:
    """The points with the change (within `where`), each beside its twin's knobs: the same knobs, the changed
    ones at the baseline's values."""
    wanted = {**where, **change}
    return [
        (point, {**point.knobs, **{k: defaults[k] for k in change}})
        for point in points
        if all(point.knobs[k] == v for k, v in wanted.items())
    ]


def twins_exist(
    points: list[GridPoint], change: dict[str, Any], where: dict[str, Any], defaults: dict[str, Any]
) -> bool:
    """Whether some point with the change (within `where`) has its twin among the points."""
    all_knobs = [point.knobs for point in points]
    return any(twin in all_knobs for _, twin in claim_points(points, change, where, defaults))


def _check_seeds(where: object, key: str, seeds: Any) -> None:
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEEDS:
        raise SweeperError(f"{where}: {key}: expected a whole number of seeds from 1 to {MAX_SEEDS}, got {seeds!r}")


def _check_last_seed(where: object, key: str, spec: SweepSpec) -> None:
    if spec.last_seed >= CALIBRATION_SEEDS_FROM:
        raise SweeperError(
            f"{where}: {key}: the design may run seeds {spec.first_seed}-{spec.last_seed}, past "
            f"{CALIBRATION_SEEDS_FROM - 1}; seeds {CALIBRATION_SEEDS_FROM} and up calibrate (start lower, or run "
            "fewer seeds)"
        )


def _mapping(doc: dict, key: str, fail, prefix: str = "") -> dict:
    value = doc.get(key)
    if value is None:  # absent, or written as `key:` with nothing after it
        return {}
    if not isinstance(value, dict):
        raise fail(prefix + key, f"expected a mapping, got {value!r}")
    return value


def _knob_value(workload: Workload, key: str, knob_name: Any, value: Any, fail) -> Any:
    knobs = workload.knobs
    if knob_name == "seed":
        raise fail(key, "the seed is not a knob here; set `seeds: N` to run seeds 0..N-1")
    if knob_name not in knobs:
        tunable = [k for k in knobs if k != "seed"]
        raise fail(
            key,
            f"unknown knob {knob_name!r} for workload {workload.name!r}{did_you_mean(knob_name, tunable)}; "
            f"{one_of(tunable)}",
        )
    knob = knobs[knob_name]
    checked = knob.check(value)
    if checked is None:
        if knob.choices is not None:
            raise fail(
                key,
                f"{value!r} is not a value of {knob_name}{did_you_mean(value, knob.choices)}; {one_of(knob.choices)}",
            )
        raise fail(key, f"{knob_name} expects {knob.kind.__name__}, got {value!r}")
    if isinstance(checked, float) and not math.isfinite(checked):
        raise fail(key, f"{knob_name} must be finite, got {value!r}")
    if not knob.in_range(checked):
        raise fail(key, f"{knob_name} = {value!r} is outside its range {knob.range}")
    return checked


def _amount(value: Any, key: str, fail, *, minimum_exclusive: bool) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if minimum_exclusive else value >= 0)
    if not ok:
        bound = "a number above 0" if minimum_exclusive else "a number, 0 or more"
        raise fail(key, f"expected {bound}, got {value!r}")
    return float(value)


def baseline_values(workload: Workload, grid: dict[str, list[Any]], baseline: dict[str, Any]) -> dict[str, Any]:
    """The baseline point's value of every swept knob: the spec's `baseline` where it sets one, else the
    workload's default (the failing setup its Config declares)."""
    return {key: baseline.get(key, workload.knobs[key].default) for key in grid}


def grid_points(
    workload: Workload, grid: dict[str, list[Any]], baseline: dict[str, Any] | None = None, vary: str = "cartesian"
) -> list[GridPoint]:
    """The grid's points, baseline first (added if the grid lacks it): every combination of the values
    (`cartesian`), each knob's other values alone with the other knobs at the baseline's (`one_at_a_time`),
    or each two knobs' other values together, the rest at the baseline's (`pairs`)."""
    defaults = baseline_values(workload, grid, baseline or {})
    if vary == "cartesian":
        points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    elif vary == "pairs":
        others = {key: [value for value in values if value != defaults[key]] for key, values in grid.items()}
        points = [
            {**defaults, first: a, second: b}
            for first, second in itertools.combinations(grid, 2)
            for a in others[first]
            for b in others[second]
        ]
    else:
        points = [
            {**defaults, key: value} for key, values in grid.items() for value in values if value != defaults[key]
        ]
    if defaults not in points:
        points.append(defaults)
    points.sort(key=lambda knobs: knobs != defaults)  # stable: the baseline moves to the front
    return [GridPoint(knobs, point_label(knobs, defaults), knobs == defaults) for knobs in points]


def point_label(knobs: dict[str, Any], defaults: dict[str, Any]) -> str:
    changed = [f"{key}={value}" for key, value in knobs.items() if value != defaults[key]]
    return ",".join(changed) or BASELINE_LABEL
