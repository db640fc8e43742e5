"""The package's layout: no import cycle anywhere in dpolib, arrows one way between the wings, small modules.

Imports are read from the source with :mod:`ast` (module-level and function-level ones alike),
so a cycle hidden inside a function body counts. The wings, lowest first: the core
(everything at the top level of ``dpolib`` but ``dpolib.paper`` consumers), ``dpolib.world`` and
``dpolib.hub``, ``dpolib.experiments``, ``dpolib.chapters``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dpolib"

#: What a chapter module must never import: the world's training and sampling code, the runner and its
#: backends, real models (dpolib.hub), and generation.
CHAPTER_FORBIDDEN = (
    "dpolib.world.pretrain",
    "dpolib.world.pairs",
    "dpolib.world.report",
    "dpolib.world.compatibility",
    "dpolib.experiments.runner",
    "dpolib.experiments.cpu",
    "dpolib.experiments.gpu",
    "dpolib.experiments.metrics",
    "dpolib.experiments.backend",
    "dpolib.hub",
    "dpolib.evaluation",
    "dpolib.models",
    "dpolib.trl_bridge",
    "transformers",
    "trl",
)

#: Wing of a module (the first package under dpolib; top-level modules are the core).
RANK = {"core": 0, "world": 1, "hub": 1, "experiments": 2, "chapters": 3}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    # "from pkg import name": name may be a submodule
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def imports_of(path: Path, module: str | None = None) -> set[str]:
    """Every module ``path`` (named ``module``) imports, at any depth of its body (non-modules are dropped later)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module, is_package = module or _module_name(path), path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.update(_resolve(module, is_package, node))
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = {t for t in imports_of(path) if t in files and t != name}
        # importing dpolib.x.y also runs dpolib.x's __init__, which imports nothing of ours: ignore packages
        graph[name] = {t for t in targets if files[t].name != "__init__.py"}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search (one representative per back edge)."""
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in RANK else "core"


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path):
    """The checker itself can fail: a cycle through a function-level import is reported."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n")
    known = {"fake.a", "fake.b"}
    graph = {m: imports_of(tmp_path / f"{m[-1]}.py", m) & known for m in known}
    assert graph == {"fake.a": {"fake.b"}, "fake.b": {"fake.a"}}
    assert find_cycles(graph) == [["fake.a", "fake.b", "fake.a"]]
    assert find_cycles({"fake.a": {"fake.b"}, "fake.b": set()}) == []


def test_no_import_cycle_in_dpolib():
    cycles = find_cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_arrows_point_one_way_between_the_wings():
    """core <- world, hub <- experiments <- chapters: no module imports a higher wing."""
    wrong = [
        f"{a} ({_wing(a)}) imports {b} ({_wing(b)})"
        for a, targets in _graph().items()
        for b in targets
        if RANK[_wing(b)] > RANK[_wing(a)]
    ]
    assert not wrong, "\n".join(wrong)


def _chapter_violations(paths) -> list[str]:
    out = []
    for path in paths:
        for target in sorted(imports_of(path, f"dpolib.chapters.{path.stem}")):
            if any(target == f or target.startswith(f + ".") for f in CHAPTER_FORBIDDEN):
                out.append(f"{path.name} imports {target}")
    return out


def test_chapter_modules_never_train_sample_or_load_models():
    assert not _chapter_violations(sorted((PACKAGE / "chapters").glob("*.py")))


def test_the_chapter_rule_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def records():\n    from dpolib.experiments.runner import run_grid\n    return run_grid('rq1', 'cpu')\n")
    assert "bad.py imports dpolib.experiments.runner" in _chapter_violations([bad])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_is_small_and_says_what_it_owns(path):
    lines = path.read_text().count("\n")
    assert lines <= 600, f"{path.relative_to(PACKAGE)} has {lines} lines (limit 600)"
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(PACKAGE)} has no module docstring"
