"""The project's import graph, read from the source (every import, function-local ones included).

- No cycle among the project's modules.
- The domain packages never import ``experiments``.
- The product (everything outside ``experiments.research``) never imports ``experiments.research``,
  except the task and schema registries that name its tasks.
- In the pipeline and the anomaly package a function-local import says why (``# lazy: ...``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("anomaly", "data", "segmentation", "inpainting", "experiments")
DOMAIN = ("anomaly", "data", "segmentation", "inpainting")
#: The only product modules that may name experiments.research (they register its tasks).
REGISTRIES = frozenset({"experiments.tasks", "experiments.schemas"})
#: Where every function-local import carries a ``# lazy`` comment.
LAZY_MARKED = ("experiments/pipeline", "anomaly", "experiments/config.py", "experiments/schemas.py",
               "experiments/tasks.py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (REPO / pkg).rglob("*.py"):
            out[_module_name(p)] = p
    return out


MODULES = _modules()


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` is, or the nearest project package above it (None = not ours)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """``(imported project module, line)`` for every import statement of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the submodule when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            r = _resolve(t, MODULES)
            if r is not None and r != module:
                out.append((r, node.lineno))
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted({t for t, _ in graph[root]})))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted({t for t, _ in graph.get(w, [])}))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_graph_is_read():
    # a sanity check of the reader itself: known edges are found
    assert ("experiments.pipeline.result", 0) not in GRAPH["experiments.pipeline.checkpoint"]
    assert "experiments.pipeline.result" in {t for t, _ in GRAPH["experiments.pipeline.checkpoint"]}
    assert "anomaly.scorers" in {t for t, _ in GRAPH["anomaly.scoring"]}


def test_cycle_finder_finds_a_cycle():
    g = {"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)], "d": [("a", 1)]}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _cycles({"a": [("b", 1)], "b": []}) == []


def test_no_import_cycle():
    assert _cycles(GRAPH) == [], "import cycle(s) among the project's modules"


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_never_import_experiments(package):
    bad = [(m, t, line) for m, edges in GRAPH.items() if m.split(".")[0] == package
           for t, line in edges if t.split(".")[0] == "experiments"]
    assert bad == []


def test_the_product_never_imports_research():
    bad = [(m, t, line) for m, edges in GRAPH.items()
           if not m.startswith("experiments.research") and m not in REGISTRIES
           for t, line in edges if t.startswith("experiments.research")]
    assert bad == []


def _unmarked_local_imports(path: Path) -> list[int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    out = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    text = " ".join(lines[node.lineno - 1: node.end_lineno])
                    if "# lazy" not in text:
                        out.append(node.lineno)
    return sorted(set(out))


@pytest.mark.parametrize("where", LAZY_MARKED)
def test_function_local_imports_say_why(where):
    target = REPO / where
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    bad = {str(p.relative_to(REPO)): lines for p in files if (lines := _unmarked_local_imports(p))}
    assert bad == {}, "a function-local import without '# lazy: <why>' (or move it to the module top)"
