"""The package imports cleanly: no import cycles among stlm modules, and the modules that used to
sit on cycles import on their own in a fresh interpreter.

The static check reads every module's imports with `ast`, those inside functions included (a
deferred import hides a cycle, it does not remove it). `import a.b.c` runs the packages `a` and
`a.b` first, so those are edges too, except the importing module's own ancestors, which are
already initialised by the time it runs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.joinpath("stlm").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(tree: ast.AST):
    return (node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))


def import_graph() -> dict[str, set[str]]:
    """{module: the stlm modules its imports make Python execute}."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        targets = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:  # `from p import sub` runs p.sub; `from p import name` runs p
                targets.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        edges = set()
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in modules and prefix != name and (prefix == target or prefix not in own):
                    edges.add(prefix)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_sees_the_known_edges():
    graph = import_graph()
    assert "stlm.config.schema" in graph["stlm.config.loader"]
    assert "stlm.runs" in graph["stlm.train.trainer"]
    assert "stlm.train.checkpoint" in graph["stlm.train.trainer"]  # `from stlm.train import checkpoint`


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _run_fresh(code: str) -> None:
    code = f"import sys; sys.path.insert(0, {str(SRC)!r}); " + code
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("module", ["stlm.models.components", "stlm.config.loader",
                                    "stlm.train.trainer", "stlm.cli"])
def test_module_imports_alone(module):
    """Each in a fresh interpreter, so an earlier import cannot hide a cycle."""
    _run_fresh(f"import {module}")


def test_run_directory_code_does_not_import_the_trainer(tmp_path):
    """`stlm.runs` finds checkpoints through `stlm.train.checkpoint` without loading the trainer
    (which imports `stlm.runs`): the runs <-> train cycle stays broken at run time too."""
    (tmp_path / "checkpoints" / "step-3").mkdir(parents=True)
    _run_fresh(f"import stlm.runs as r; found = r.find_checkpoint({str(tmp_path)!r}, 'last'); "
               "assert found.name == 'step-3', found; "
               "assert 'stlm.train.trainer' not in sys.modules, 'stlm.runs loaded the trainer'")
