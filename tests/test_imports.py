"""The library's layering: no import cycles (lazy imports inside functions count too), no
module ``__getattr__`` tricks, and ``nuwa_lib.utils`` imports nothing above it."""
import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "nuwa_lib"


def _module(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(LIB.rglob("*.py"))}


def _imports(name: str) -> set:
    """The nuwa_lib modules ``name`` imports anywhere in its file (the package root aside:
    importing ``__version__`` from it is no layer's business)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != "nuwa_lib" and t != name:
                out.add(t)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _cycle_through(start):
    """One import path from ``start`` back to itself, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(GRAPH[node]):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "nuwa_lib"))
def test_no_import_cycle(name):
    cycle = _cycle_through(name)
    assert cycle is None, " -> ".join(cycle)


def test_utils_import_nothing_above_them():
    for name, deps in GRAPH.items():
        if name.startswith("nuwa_lib.utils"):
            assert all(d.startswith("nuwa_lib.utils") for d in deps), (name, deps)


def test_no_module_getattr():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        assert not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__"
                       for n in tree.body), name


# The layers, in the order of the notebooks: a module may import its own layer and the ones
# below it, never one above (DESIGN §2). Top-level modules (figures, the pipeline) sit on top.
LAYERS = ("utils", "data", "evaluation", "tokenizers", "attention", "model", "training",
          "generation", "experiments")


def _layer(name: str) -> int:
    part = name.split(".")[1] if name.count(".") else ""
    return LAYERS.index(part) if part in LAYERS else len(LAYERS)


def test_lower_layers_never_import_higher_ones():
    up = [(name, dep) for name, deps in GRAPH.items() for dep in deps
          if name != "nuwa_lib" and _layer(dep) > _layer(name)]
    assert not up, up


def test_every_module_is_in_a_layer_or_on_top():
    top = {n for n in MODULES if n.count(".") == 1 and n.split(".")[1] not in LAYERS}
    assert top <= {"nuwa_lib.viz", "nuwa_lib.pipeline", "nuwa_lib.repro", "nuwa_lib.tablecheck"}, top


def test_no_file_over_600_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()
            if len(p.read_text().splitlines()) > 600}
    assert not long, long
