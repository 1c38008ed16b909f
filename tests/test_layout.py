"""The layout's rules, computed from the code (with `ast`, nothing imported): imports point one
way. Each rule is one test function; the helpers above them read the code once.

- no import cycle among netgap's modules, nor among its subpackages and top-level modules
  (netgap.collector, netgap.breakdown, ...): a module's imports anywhere in it count (inside a
  function, or for type checking only: a cycle there still ties the two together);
- the tiers and the tier kit (apitier/, webtier/, tierkit/) never import netgap nor bench;
- no module of the tests imports a test module (`test_*.py`): what two test files share lives
  in a helper module beside them, so each test file stands alone and is read alone;
- no module of the code (the tiers, the tier kit, netgap, bench) is over 600 lines, and no
  function over 60, but for argument-parser builders (a flag a few lines, declared in one
  place, reads better than the same split up).
"""

import ast
import functools
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIERS = ("apitier", "webtier", "tierkit")
CODE = (*TIERS, "netgap", "bench")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
Graph = Mapping[str, Set[str]]


def module_names(top: str) -> dict[str, Path]:
    """Dotted name -> file of every module of the package `top` (a package by its name)."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: Set[str]) -> Iterator[str]:
    """What `name` (at `path`) imports, as dotted names, relative imports resolved: for
    `from P import X`, P.X when that is a module in `known`, else P."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                yield child if child in known else base


@functools.cache
def module_graph() -> dict[str, frozenset[str]]:
    """netgap's modules -> the netgap modules each imports."""
    names = module_names("netgap")
    return {
        name: frozenset(t for t in imported(name, path, names.keys()) if t in names and t != name)
        for name, path in names.items()
    }


def unit(module: str) -> str:
    """The subpackage or top-level module a module belongs to: netgap.collector.store ->
    netgap.collector."""
    return ".".join(module.split(".")[:2])


@functools.cache
def package_graph() -> dict[str, frozenset[str]]:
    """netgap's subpackages and top-level modules -> those each imports."""
    edges: dict[str, set[str]] = {}
    for name, targets in module_graph().items():
        own = unit(name)
        edges.setdefault(own, set()).update(unit(t) for t in targets if unit(t) != own)
    return {name: frozenset(targets) for name, targets in edges.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (a path back to its start) through each strongly connected component of
    more than one node."""
    return [_cycle_in(graph, component) for component in _components(graph) if len(component) > 1]


def _components(graph: Graph) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    at = len(stack) - 1 - stack[::-1].index(node)
                    found.append(set(stack[at:]))
                    del stack[at:]
            elif target not in index:
                index[target] = low[target] = len(index)
                stack.append(target)
                work.append((target, iter(sorted(graph.get(target, ())))))
            elif target in stack:
                low[node] = min(low[node], index[target])
    return found


def _cycle_in(graph: Graph, component: set[str]) -> list[str]:
    """A path from the component's first node back to it, within the component (BFS)."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, ())):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if target in component and target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component has one


def shown(found: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in found)


def test_no_import_cycle_among_netgap_modules() -> None:
    found = cycles(module_graph())
    assert not found, f"import cycles among netgap's modules:\n{shown(found)}"


def test_no_import_cycle_among_netgap_packages() -> None:
    found = cycles(package_graph())
    assert not found, f"import cycles among netgap's packages and modules:\n{shown(found)}"


def test_the_tiers_and_the_tier_kit_never_import_netgap_or_bench() -> None:
    wrong = [
        f"{name} imports {target}"
        for top in TIERS
        for name, path in module_names(top).items()
        for target in imported(name, path, set())
        if target.split(".")[0] in ("netgap", "bench")
    ]
    assert not wrong, "\n".join(wrong)


def imports_of_test_modules(root: Path) -> list[str]:
    """`a imports b` for each module under `root`/tests that imports a test module."""
    names = {
        ".".join(path.relative_to(root).with_suffix("").parts): path
        for path in sorted((root / "tests").rglob("*.py"))
    }
    return sorted(
        {
            f"{name} imports {target}"
            for name, path in names.items()
            for target in imported(name, path, names.keys())
            if target in names and target.rpartition(".")[2].startswith("test_")
        }
    )


def test_no_test_module_is_imported_by_another_module() -> None:
    assert imports_of_test_modules(ROOT) == []


def test_the_test_import_rule_sees_one(tmp_path: Path) -> None:
    (tmp_path / "tests" / "a").mkdir(parents=True)
    (tmp_path / "tests" / "a" / "test_one.py").write_text("def helper() -> None: ...\n")
    (tmp_path / "tests" / "test_two.py").write_text("from tests.a.test_one import helper\n")
    (tmp_path / "tests" / "a" / "helpers.py").write_text("import os\n")
    assert imports_of_test_modules(tmp_path) == ["tests.test_two imports tests.a.test_one"]


def test_the_graph_sees_a_cycle() -> None:
    """The rules above would pass on a graph that missed every edge: this one must not."""
    assert module_graph()["netgap.cli"] >= {"netgap.commands"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def code_files() -> list[Path]:
    return [path for top in CODE for path in sorted((ROOT / top).rglob("*.py"))]


def is_parser_builder(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function that is mostly `add_argument` calls (a parser's flags, declared in one
    place)."""
    calls = [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("add_argument", "add_parser", "add_argument_group")
    ]
    return len(calls) >= 5


def long_functions(path: Path, root: Path = ROOT) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES and not is_parser_builder(node):
                yield f"{path.relative_to(root)}:{node.lineno} {node.name}: {lines} lines"


def test_no_module_is_over_600_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {count} lines"
        for path in code_files()
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []


def test_no_function_is_over_60_lines_but_parser_builders() -> None:
    assert [found for path in code_files() for found in long_functions(path)] == []


def test_the_size_rules_see_a_long_function_and_spare_a_parser_builder(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    flags = "\n".join(f"    parser.add_argument('--f{i}')" for i in range(MAX_FUNCTION_LINES))
    sample = tmp_path / "sample.py"
    sample.write_text(f"def long() -> None:\n{body}\n\ndef add_arguments(parser):\n{flags}\n")
    assert list(long_functions(sample, tmp_path)) == [
        f"sample.py:1 long: {MAX_FUNCTION_LINES + 1} lines"
    ]
