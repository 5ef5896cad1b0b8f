"""The package's shape, checked: every import goes down the layer order docs/layout.md writes down, no
file uses another module's private names, and a module past about 500 lines says why in its docstring."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sweeper"

LAYERS = (
    # pure foundations
    ("errors", "stores", "progress", "no_skill", "health", "knobs", "instruments", "results", "evidence", "findings"),
    ("keras_levels", "keras_model", "workload", "trial"),  # the workload contract and one trial in process
    ("spec", "records"),  # what a sweep is and what it keeps
    ("ranking", "analysis"),  # the analysis, pure
    ("report", "plots", "outputs"),  # rendering it
    ("tracking", "mirror", "runner", "doctor"),  # the edges: MLflow, Ray, a program as written
    ("sweep",),  # the driver
    ("api", "cli", "__main__"),  # the front
)
"""Bottom first; within a layer, in order too: a module imports only modules listed before it."""
ORDER = [module for layer in LAYERS for module in layer]
LONG_MODULE_LINES = 520
LONG_MODULE_REASON = "Why this module is long:"


def sweeper_imports(path: Path) -> set[str]:
    """The sweeper modules a file imports, at its top level or inside functions alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sweeper":
            if node.module == "sweeper":
                found |= {alias.name for alias in node.names}
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("sweeper.")}
    return found


def test_every_module_of_the_package_has_a_place_in_the_layers():
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(ORDER), f"unplaced: {sorted(modules - set(ORDER))}; gone: {sorted(set(ORDER) - modules)}"


@pytest.mark.parametrize("module", ORDER)
def test_imports_go_down_the_layers(module):
    allowed = set(ORDER[: ORDER.index(module)])
    upward = sweeper_imports(PACKAGE / f"{module}.py") - allowed - {module}
    assert not upward, f"sweeper/{module}.py imports {sorted(upward)}, which the layer order puts above it"


def test_workloads_import_only_the_workload_contract():
    contract = set(ORDER[: ORDER.index("trial")])
    for path in sorted((ROOT / "experiments").glob("*.py")) + sorted((ROOT / "examples").rglob("*.py")):
        assert sweeper_imports(path) <= contract, f"{path.relative_to(ROOT)} imports {sweeper_imports(path)}"


def private_uses(path: Path) -> list[str]:
    """`module._name` and `from sweeper.module import _name` where module is another sweeper module."""
    tree = ast.parse(path.read_text())
    modules: dict[str, str] = {}  # local name -> sweeper module
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sweeper"):
            for alias in node.names:
                if node.module == "sweeper":
                    modules[alias.asname or alias.name] = alias.name
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    uses.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sweeper.") and alias.asname:
                    modules[alias.asname] = alias.name.split(".")[1]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and modules[node.value.id] != path.stem
        ):
            uses.append(f"{modules[node.value.id]}.{node.attr}")
    return uses


def test_no_file_uses_another_modules_private_names():
    files = [*PACKAGE.glob("*.py"), *(ROOT / "bench").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    used = {str(path.relative_to(ROOT)): private_uses(path) for path in files}
    assert not {path: names for path, names in used.items() if names}


def test_a_long_module_says_why_in_its_docstring():
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > LONG_MODULE_LINES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert LONG_MODULE_REASON in docstring, f"{path.name}: {len(text.splitlines())} lines, no reason given"


def test_the_docs_write_the_layers_down():
    layout = (ROOT / "docs" / "layout.md").read_text()
    for layer in LAYERS:
        assert " < ".join(layer) in layout, f"docs/layout.md lacks the layer {' < '.join(layer)}"
