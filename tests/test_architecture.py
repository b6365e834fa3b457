"""The layout is the architecture: the import graph of ``opus/`` has no cycles and no upward imports,
and no module or function grows past the size a reader can hold in mind.

The layers, top to bottom (README, "Architecture"): a module may import from its own layer and
from the layers below it, never from a layer above.  The graph is read from the source with
``ast`` (every import, including those inside functions), so the test needs no import side effects.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

OPUS = Path(__file__).resolve().parent.parent / "opus"

#: Top to bottom.  A module belongs to the longest prefix that names it.
LAYERS: list[tuple[str, ...]] = [
    ("opus.wsgi", "opus.cli"),
    ("opus.server",),
    ("opus.service", "opus.migration"),
    ("opus.auth", "opus.managers", "opus.events"),
    ("opus.provenance",),
    ("opus.storage", "opus.observability"),
    ("opus.jobdef", "opus.auth.identity", "opus.auth.users"),
    ("opus.uws", "opus.errors", "opus.settings", "opus.settings_checks", "opus.timeutil", "opus.safejson", "opus.listen",
     "opus.web", "opus.examples", "opus"),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in OPUS.rglob("*.py"):
        parts = list(path.relative_to(OPUS.parent).with_suffix("").parts)
        if "migrations" in parts:  # alembic scripts, loaded by alembic
            continue
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package_of(path: Path) -> list[str]:
    return list(path.relative_to(OPUS.parent).parent.parts)


def _type_only_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks (read by type checkers only)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return found


def _imports(path: Path, type_only: bool = True) -> set[str]:
    """The opus modules ``path`` imports (``from pkg import submodule`` counts as the submodule);
    without ``type_only``, leaving out imports made for type checkers only."""
    out = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set() if type_only else _type_only_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # only the standalone wrapper (see test below); resolved all the same
                base = _package_of(path)[:len(_package_of(path)) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            if not module.startswith("opus"):
                continue
            for alias in node.names:
                full = f"{module}.{alias.name}"
                out.add(full if full in MODULES else module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "opus")
    return out


#: Every import, for the layer rule; runtime imports only, for cycles (a type-only import back into a
#: module of the same layer, e.g. opus.settings_checks annotating with Settings, is no import cycle).
GRAPH = {name: _imports(path) for name, path in MODULES.items()}
RUNTIME_GRAPH = {name: _imports(path, type_only=False) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, module
    return best[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_graph_has_no_cycles():
    assert cycles(RUNTIME_GRAPH) == []


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{m} -> {t}" for m, targets in sorted(GRAPH.items()) for t in sorted(targets)
              if t in MODULES and layer_of(t) < layer_of(m)]
    assert upward == []


def test_every_module_is_in_a_layer():
    for name in MODULES:
        layer_of(name)


def test_the_cycle_finder_finds_a_cycle():
    # The check above is only as good as this function: it must see a three-module loop.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", ["opus.storage.jobstore", "opus.service.jobs"])
def test_layers_are_ordered_as_documented(module):
    assert layer_of("opus.server.app") < layer_of(module) < layer_of("opus.uws")


def test_imports_are_absolute_except_in_the_standalone_wrapper():
    # wrapper.py runs as a script on compute nodes, beside jobsandbox.py, and as opus.managers.wrapper.
    relative = sorted(str(path.relative_to(OPUS.parent)) for path in MODULES.values()
                      if any(isinstance(n, ast.ImportFrom) and n.level
                             for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))))
    assert relative == ["opus/managers/wrapper.py"]


#: Limits from the architecture issue: a module one can read in a sitting, a function on one screen.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def too_long(path: Path, root: Path = OPUS.parent) -> list[str]:
    """The module itself and each function in it that is over its limit, as readable strings."""
    source = path.read_text(encoding="utf-8")
    out = []
    lines = source.count("\n") + (0 if source.endswith("\n") else 1)
    if lines > MAX_MODULE_LINES:
        out.append(f"{path.relative_to(root)}: {lines} lines")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}(): {length} lines")
    return out


def test_no_module_over_400_lines_and_no_function_over_60():
    assert [finding for path in sorted(MODULES.values()) for finding in too_long(path)] == []


def test_the_size_check_sees_a_long_function_and_a_long_module(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    probe = tmp_path / "probe.py"
    probe.write_text("def long():\n" + body + "\n" + "\n" * MAX_MODULE_LINES, encoding="utf-8")
    found = too_long(probe, root=tmp_path)
    assert any("long(): 61 lines" in f for f in found), found
    assert f"probe.py: {MAX_FUNCTION_LINES + 1 + MAX_MODULE_LINES} lines" in found, found


#: Test files get more room than modules (a test reads top to bottom), but past this they are split
#: by responsibility too (the project guide: "a file that grows past that is asking to be split").
MAX_TEST_FILE_LINES = 500
TESTS = Path(__file__).resolve().parent


def long_test_files(directory: Path = TESTS) -> list[str]:
    """The test files (``test_*.py``) of ``directory`` over MAX_TEST_FILE_LINES, as readable strings."""
    out = []
    for path in sorted(directory.glob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n") + (0 if source.endswith("\n") else 1)
        if lines > MAX_TEST_FILE_LINES:
            out.append(f"tests/{path.name}: {lines} lines")
    return out


def test_no_test_file_over_500_lines():
    assert long_test_files() == []


def test_the_size_check_sees_a_long_test_file(tmp_path):
    (tmp_path / "test_long.py").write_text("x = 1\n" * (MAX_TEST_FILE_LINES + 1), encoding="utf-8")
    (tmp_path / "test_short.py").write_text("x = 1\n" * MAX_TEST_FILE_LINES, encoding="utf-8")
    (tmp_path / "helper.py").write_text("x = 1\n" * (MAX_TEST_FILE_LINES + 1), encoding="utf-8")  # not a test file
    assert long_test_files(tmp_path) == [f"tests/test_long.py: {MAX_TEST_FILE_LINES + 1} lines"]


def plain_wait_expressions(directory: Path = TESTS) -> list[str]:
    """Browser waits given a plain JavaScript expression: Playwright evaluates those with ``eval`` at
    each poll, which the pages' CSP (no 'unsafe-eval') refuses as soon as the first check is false; a
    function ("() => ...") is compiled once, through the DevTools protocol, and polls fine."""
    found = []
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "wait_for_function" and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                    and not re.match(r"\s*(\(|[A-Za-z_$][\w$]*\s*=>|async\b|function\b)", node.args[0].value):
                found.append(f"tests/{path.name}:{node.lineno}")
    return found


def test_browser_waits_are_functions_never_expressions(tmp_path):
    assert plain_wait_expressions() == []
    (tmp_path / "probe.py").write_text('page.wait_for_function("window.x === 1")\n'
                                       'page.wait_for_function("() => window.x === 1")\n'
                                       'page.wait_for_function("(z) => z > 1", arg=1)\n', encoding="utf-8")
    assert plain_wait_expressions(tmp_path) == ["tests/probe.py:1"]
