"""The code reads one way down: no import runs back up a layer, and no page package
imports another (what two pages need lives in ``webapp/services``).

Layers, bottom to top; a module may import its own layer and those below:

    foundation  clock, settings, formatting, extensions, models, database, assets, checks
    giga        the typed client of the billing API
    gateway     cache, budget, single flight, breaker over one store
    web         security, errors, downloads (what every page renders with)
    services    account, checkouts, history, alerting, trail, access, sessions, ...;
                the sandbox (a billing API of its own, for trying and testing)
    pages       billing, audit, users, alerts, auth, exports, metrics, account, tokens, api:
                one blueprint
                each, and none imports another
    entry       the factory (webapp/__init__), processes, commands

Inside ``services`` the modules import one another without a cycle, and none
imports what only pages use: a page package, the error pages (``errors``),
``security`` or Flask's ``render_template`` / ``redirect``. Services take plain
values and answer results or raise; pages (HTML or JSON) make the responses.
"""
from __future__ import annotations

import ast
from pathlib import Path

WEBAPP = Path(__file__).resolve().parents[1] / "webapp"
LAYERS = [
    {"clock", "settings", "formatting", "extensions", "models", "database", "assets",
     "checks"},
    {"giga"},
    {"gateway"},
    {"security", "errors", "downloads"},
    {"services", "sandbox"},
    {"billing", "audit", "users", "alerts", "auth", "exports", "metrics", "account", "tokens",
     "api"},
    {"__init__", "processes", "commands"},
]
PAGES = LAYERS[5]


def _unit(parts: tuple[str, ...]) -> str:
    """The top-level unit of a module under ``webapp``: its package or module name."""
    return parts[0] if parts else "__init__"


def _layer(unit: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if unit in names)


def _imports():
    """``(importing file, importing unit, imported unit)`` for every import of webapp code."""
    for path in sorted(WEBAPP.rglob("*.py")):
        rel = path.relative_to(WEBAPP)
        if rel.parts[0] == "migrations":
            continue
        package = rel.parts[:-1] if rel.name != "__init__.py" else rel.parts[:-1]
        unit = _unit(rel.with_suffix("").parts if rel.name != "__init__.py" else rel.parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(package)[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # `from . import x` at the top: x is the unit
                    target = [node.names[0].name]
                yield str(rel), unit, _unit(tuple(target))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("webapp"):
                parts = node.module.split(".")[1:]
                yield str(rel), unit, _unit(tuple(parts) or (node.names[0].name,))


def test_every_unit_has_a_layer():
    units = {_unit(p.relative_to(WEBAPP).with_suffix("").parts) for p in WEBAPP.glob("*.py")}
    units |= {p.name for p in WEBAPP.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert sorted(u for u in units - {"migrations"} if not any(u in L for L in LAYERS)) == []


def test_no_import_runs_back_up_a_layer():
    upward = [(where, unit, target) for where, unit, target in _imports()
              if target != unit and _layer(target) > _layer(unit)]
    assert upward == []


def test_no_page_package_imports_another():
    across = [(where, unit, target) for where, unit, target in _imports()
              if unit in PAGES and target in PAGES and target != unit]
    assert across == []


def test_no_function_is_longer_than_sixty_lines():
    """A longer function is several functions waiting to be named."""
    long = []
    for path in sorted(WEBAPP.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append((str(path.relative_to(WEBAPP)), node.name, lines))
    assert long == []


SERVICES = WEBAPP / "services"
#: what only pages may use: the page packages, the error pages, the view guard, and
#: Flask's ways to answer a request
WEB_ONLY = PAGES | {"errors", "security"}
FLASK_ANSWERS = {"render_template", "redirect"}


def _module(parts: tuple[str, ...]) -> tuple[str, ...]:
    return parts[:-1] if parts[-1] == "__init__" else parts


def _is_module(parts) -> bool:
    path = WEBAPP.joinpath(*parts)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _service_imports():
    """``(module, imported module, the import node)`` for every import of webapp code in
    a ``services`` module, those inside functions too; modules are tuples of names
    below ``webapp``. Importing ``a.b.c`` from outside ``a.b`` runs ``a.b`` first, so
    it counts as importing that package too."""
    for path in sorted(SERVICES.rglob("*.py")):
        me = _module(path.relative_to(WEBAPP).with_suffix("").parts)
        package = me if path.name == "__init__.py" else me[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = list(package)[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif (node.module or "").startswith("webapp."):
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                named = tuple(target + [alias.name])
                module = named if _is_module(named) else tuple(target)
                for end in range(1, len(module) + 1):
                    ancestor = module[:end]
                    if ancestor != me and me[:end] != ancestor:
                        yield me, ancestor, node


def test_no_service_imports_what_only_pages_use():
    reaching_up = sorted({(".".join(me), ".".join(target)) for me, target, _ in
                          _service_imports() if target[0] in WEB_ONLY})
    answering = []
    for path in sorted(SERVICES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "flask":
                answering += [(str(path.relative_to(WEBAPP)), alias.name) for alias in node.names
                              if alias.name in FLASK_ANSWERS]
    assert (reaching_up, answering) == ([], [])


def _cycles(graph: dict) -> list[list[str]]:
    """The strongly connected parts of ``graph`` with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while not part or part[-1] != node:
                part.append(stack.pop())
                on_stack.discard(part[-1])
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_services():
    graph: dict[str, set[str]] = {}
    for me, target, _ in _service_imports():
        if target[0] == "services":
            graph.setdefault(".".join(me), set()).add(".".join(target))
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a two-module loop and a longer one are both found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "f"}}) == [
        ["a", "b"], ["c", "d", "e"]]
