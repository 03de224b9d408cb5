"""The import graph of the engine (static, function-level imports included): no cycle, the engine
never imports ``training`` (training depends on the engine, not the reverse), and only the engine's
CLI imports the CLI (issue 16)."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "engine"
PACKAGE = "pirender.engine"


def _modules() -> dict[str, Path]:
    modules = {}
    for file in sorted(ENGINE.rglob("*.py")):
        parts = list(file.relative_to(ENGINE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([PACKAGE, *parts])] = file
    return modules


def _imported(module: str, file: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Absolute names ``node`` imports (``from X import y`` gives ``X.y`` and ``X``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if file.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, file in modules.items():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(name, file, node):
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph on engine modules only (a name that is not a module resolves to its package)."""
    out: dict[str, set[str]] = {}
    for name, targets in graph.items():
        resolved = set()
        for target in targets:
            while target and target not in graph and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in graph and target != name:
                resolved.add(target)
        out[name] = resolved
    return out


def test_the_engine_import_graph_has_no_cycle() -> None:
    graph = _internal(_graph())
    assert len(graph) > 50  # the walk found the engine
    assert _cycles(graph) == []


def test_a_cycle_is_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_engine_never_imports_training_nor_its_cli_outside_the_cli() -> None:
    graph = _graph()
    training = {
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if target.startswith(("pirender.training", "training"))
    }
    assert training == set()
    cli = {
        (name, target)
        for name, targets in graph.items()
        if not name.startswith(f"{PACKAGE}.cli")
        for target in targets
        if target.startswith(f"{PACKAGE}.cli")
    }
    assert cli == set()


def test_only_the_command_line_layers_see_argparse_namespaces() -> None:
    """Argument parsing ends in the CLI (``engine/cli/``, ``engine/bench/cli.py``): everything below
    takes typed options (dataclasses, keywords), never an ``argparse.Namespace``."""
    cli_layers = {ENGINE / "bench" / "cli.py"}
    offenders = [
        str(path.relative_to(ENGINE))
        for path in sorted(ENGINE.rglob("*.py"))
        if "Namespace" in path.read_text() and path.parent != ENGINE / "cli" and path not in cli_layers
    ]
    assert not offenders, offenders
