"""The shape of the house: the flow readable from the folder tree, and kept that way.

Imports of the package's own modules flow one way, ground floor first::

    errors grid times reflectivity  <-  sources  <-  archive  <-  model  <-  train tune index
    <-  pipelines evaluation  <-  analysis figures  <-  cli demo

A module may import from its own floor or any floor below, never above; no import cycle; every
exception type lives in errors.py; modules stay short enough to read.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "wxembed"

FLOORS = [
    {"wxembed", "errors", "grid", "times", "reflectivity", "locations"},
    {"sources"},
    {"archive"},
    {"model"},
    {"train", "tune", "index"},
    {"pipelines", "evaluation"},
    {"analysis", "figures"},
    {"cli", "demo", "__main__", "serve"},
]
MAX_MODULE_LINES = 460


def _floor(module: str) -> int:
    """The floor of ``wxembed.x.y``: that of its first part below ``wxembed``."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "wxembed"
    for i, names in enumerate(FLOORS):
        if head in names:
            return i
    raise AssertionError(f"{module} is on no floor; add its folder to FLOORS in this test")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """wxembed modules imported by ``path`` (absolute and relative imports)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("wxembed")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[: -node.level or None]
                if path.name == "__init__.py":
                    pkg = module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            if base.startswith("wxembed"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _known(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_imports_flow_down_the_floors_never_up():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for imported in _imports(path, module, top_level_only=False):
            target = _known(imported, modules)
            if target and _floor(target) > _floor(module):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports that reach up a floor:\n" + "\n".join(sorted(set(wrong)))


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {
        m: {
            t
            for i in _imports(p, m, top_level_only=True)
            if (t := _known(i, modules)) and t != m and not m.startswith(t + ".")
        }
        for m, p in modules.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_exception_types_live_only_in_errors_py():
    defined = []
    for module, path in _modules().items():
        if module == "wxembed.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    defined.append(f"{module}.{node.name}")
    assert not defined, f"exception types outside errors.py: {defined}"


def test_every_module_is_short_enough_to_read():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_formatter_opt_outs_hide_long_lines():
    marked = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "fmt: skip" in line or "fmt: off" in line
    ]
    assert not marked, f"formatter opt-outs: {marked}"


def test_every_folder_says_which_step_of_the_flow_it_holds():
    for package in (p for p in SRC.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{package.name}/__init__.py has no docstring naming its step"


MAX_FUNCTION_LINES = 60
"""Statements of one function, its docstring not counted; a longer one says why in a comment
that starts ``# long:``."""


def test_functions_are_short_or_say_why_they_are_not():
    long = []
    for path in SRC.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:] or body
            start, end = body[0].lineno, node.end_lineno
            text = lines[node.lineno - 1 : end]
            if end - start + 1 > MAX_FUNCTION_LINES and not any("# long:" in t for t in text):
                long.append(f"{path.relative_to(SRC)}:{node.name} ({end - start + 1} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines without a reason: {long}"
