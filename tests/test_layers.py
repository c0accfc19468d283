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
