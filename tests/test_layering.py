"""No module of tpulearn imports from a layer above its own.

The layers, lowest first (a module may import from its own layer and any below it):

0. base: ``tpulearn.data``, ``tpulearn.metrics``, ``tpulearn.losses``, ``tpulearn.graph``,
   ``tpulearn._checks`` (argument checks), ``tpulearn._pipes`` (commands' closed stdout),
   ``tpulearn.configs`` (YAML files only),
   ``tpulearn.combine`` (ensemble score arithmetic, numpy only) and the package root
   ``tpulearn``;
1. ``tpulearn.models``;
2. ``tpulearn.segments``;
3. ``tpulearn.training``;
4. scoring and its products: ``tpulearn.predict``, ``tpulearn.evaluation``,
   ``tpulearn.submission``, ``tpulearn.featurize``, ``tpulearn.plots``;
5. reports and entry points: ``tpulearn.leaderboard``, ``tpulearn.cli``.

``tpulearn.plots`` sits with scoring, not with the reports: ``evaluate(cfg)`` writes its
figures (``plots=true``), and plots import nothing above training (scores as
``training.GraphScores``, metrics). Every import counts: module level, inside functions
(lazy) and under ``TYPE_CHECKING``. A module of no listed layer fails the test, so a new
top-level module gets a place here first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tpulearn"

LAYERS = (
    (
        "tpulearn.data",
        "tpulearn.metrics",
        "tpulearn.losses",
        "tpulearn.graph",
        "tpulearn._checks",
        "tpulearn._pipes",
        "tpulearn.configs",
        "tpulearn.combine",
    ),
    ("tpulearn.models",),
    ("tpulearn.segments",),
    ("tpulearn.training",),
    (
        "tpulearn.predict",
        "tpulearn.evaluation",
        "tpulearn.submission",
        "tpulearn.featurize",
        "tpulearn.plots",
    ),
    ("tpulearn.leaderboard", "tpulearn.cli"),
)
# The package root holds only the version; it belongs to the base layer.
ROOT_LAYER = 0


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name inside tpulearn, None outside tpulearn."""
    if module == "tpulearn":
        return ROOT_LAYER
    for level, roots in enumerate(LAYERS):
        if any(module == root or module.startswith(root + ".") for root in roots):
            return level
    if module.startswith("tpulearn."):
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in this test")
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every tpulearn module the file imports, anywhere in it.

    ``from X import name`` counts as importing ``X.name`` when that is a layered module
    (``from tpulearn import plots``), else as importing ``X``.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if _is_module(full) else base))
    return [(line, m) for line, m in found if m == "tpulearn" or m.startswith("tpulearn.")]


def _is_module(dotted: str) -> bool:
    path = SRC.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def upward_imports(path: Path) -> list[str]:
    """Each import of ``path`` from a layer above its own, as ``file:line: a -> b``."""
    own = layer_of(module_name(path))
    return [
        f"{path.relative_to(SRC)}:{line}: {module_name(path)} (layer {own}) imports "
        f"{target} (layer {layer_of(target)})"
        for line, target in imported_modules(path)
        if layer_of(target) > own
    ]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above(path):
    assert not upward_imports(path), "\n".join(upward_imports(path))


def test_every_layer_root_that_exists_is_found():
    """A renamed package must not silently drop out of the check."""
    tops = {module_name(p).split(".")[1] for p in MODULES if module_name(p) != "tpulearn"}
    listed = {root.split(".")[1] for roots in LAYERS for root in roots}
    assert tops <= listed, f"modules of no layer: {sorted(tops - listed)}"
    assert {"data", "models", "segments", "training", "predict", "evaluation"} <= tops


def test_a_planted_upward_import_is_caught(tmp_path, monkeypatch):
    """A lazy import of plots inside training fails the check."""
    src = tmp_path / "src"
    planted = src / "tpulearn" / "training" / "scoring.py"
    planted.parent.mkdir(parents=True)
    lazy = "\n\ndef _planted():\n    from ..plots import save_figure\n"
    planted.write_text((PACKAGE / "training" / "scoring.py").read_text() + lazy)
    (src / "tpulearn" / "plots").mkdir()
    (src / "tpulearn" / "plots" / "__init__.py").write_text("")
    monkeypatch.setitem(globals(), "SRC", src)
    (found,) = upward_imports(planted)
    assert "tpulearn.training.scoring (layer 3) imports tpulearn.plots (layer 4)" in found
