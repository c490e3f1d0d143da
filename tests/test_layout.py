"""The tree shows the data path: packages in layers, none importing one above it, small modules,
thin commands. These read the source (ast); nothing is imported or run."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "xclip_cli"
# Bottom to top: each may import those before it, never one after it. Files -> frames -> model ->
# jobs -> output, with state on disk (store) low so that every layer can keep it; cli on top.
LAYERS = ("errors", "results", "store", "labels", "media", "options", "model", "jobs", "run", "output", "cli")
MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 450
MAX_COMMAND_BODY_LINES = 40  # a command parses, calls one library function, picks a writer


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(module, line) of every ``xclip_cli`` import in ``path`` (with ``top_level_only``: those run
    at import time, not inside functions or ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xclip_cli"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(name if name in modules() else node.module, node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("xclip_cli")]
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_package_imports_one_above_it() -> None:
    upward = []
    for name, path in modules().items():
        for target, line in imports(path):
            if layer(name) is not None and layer(target) is not None and layer(target) > layer(name):  # type: ignore[operator]
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} imports {target}")
    assert upward == []


def test_every_module_sits_in_a_layer() -> None:
    loose = [name for name in modules() if name.count(".") and layer(name) is None and name != "xclip_cli.__main__"]
    assert loose == []


def test_no_import_circle() -> None:
    graph = {name: {target for target, _ in imports(path, top_level_only=True)} for name, path in modules().items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                pytest.fail("import circle: " + " -> ".join([*trail[trail.index(target) :], target]))
            if target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_few_modules_at_the_top_and_none_too_long() -> None:
    top = [path.name for path in PACKAGE.glob("*.py")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_only_the_cli_imports_typer() -> None:
    outside = [
        str(path.relative_to(PACKAGE))
        for name, path in modules().items()
        if not name.startswith("xclip_cli.cli")
        and "typer"
        in {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
    ]
    assert outside == []


def test_every_command_body_is_short() -> None:
    """Each function the app registers as a command: its body, docstring excluded."""
    import typer

    from xclip_cli.cli import app  # typer only: no model code

    group = typer.main.get_command(app)
    long = {}
    for callback in _callbacks(group):
        source = ast.parse(Path(callback.__code__.co_filename).read_text())
        first = callback.__code__.co_firstlineno  # the first decorator's line, if decorated
        (function,) = [
            node
            for node in ast.walk(source)
            if isinstance(node, ast.FunctionDef)
            and min([node.lineno, *(d.lineno for d in node.decorator_list)]) == first
        ]
        body = function.body[1:] if isinstance(function.body[0], ast.Expr) else function.body
        lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0  # type: ignore[operator]
        if lines > MAX_COMMAND_BODY_LINES:
            long[callback.__name__] = lines
    assert long == {}


def _callbacks(command: object) -> list:
    found = []
    callback = inspect.unwrap(getattr(command, "callback", None) or (lambda: None))
    callback = None if callback.__name__ == "<lambda>" else callback
    if callback is not None and getattr(callback, "__code__", None) is not None:
        found.append(callback)
    for sub in getattr(command, "commands", {}).values():
        found += _callbacks(sub)
    return found
