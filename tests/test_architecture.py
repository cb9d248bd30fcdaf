"""The package's shape: dependencies run one way between stage subpackages, and no module
imports another that (directly or not) imports it back. Function-local imports count too."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "mixscale"
# lowest first: a module may import from its own layer or a lower one, never a higher one
LAYERS = [
    ("errors", "fileio", "shapes", "kinds"),
    ("core",),
    ("config",),
    ("methods",),
    ("plan",),
    ("data",),
    ("train",),
    ("evaluate",),
    ("report",),
    ("cli", "__main__"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every mixscale module this file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mixscale"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # submodule imports
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mixscale"))
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in files} - {name} for name, path in files.items()
    }


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return -1  # the package's own __init__


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in graph() if m != "mixscale" and layer(m) < 0]
    assert unplaced == []


def test_dependencies_run_one_way():
    upward = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_no_module_imports_another_ones_private_helper():
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("mixscale")
        and any(a.name.startswith("_") for a in node.names)
    ]
    assert offenders == []
