"""The package's shape, checked: no import cycles, a docstring on every module, sizes a newcomer can read.

The import contracts (`lint-imports`, pyproject.toml) say which package may import which; this
file checks what they cannot: that no chain of imports comes back to where it started (a cycle
makes import order matter and hides which module is the lower layer), that every module says
what it owns, and that modules and classes stay small enough to read in one sitting
(ARCHITECTURE.md). Exceptions are listed here with the reason, so they are decided, not drifted into.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGE = Path(__file__).parent.parent / "daemon" / "driftwarden"
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300
# module path (relative to the package) -> why it may be longer than MAX_MODULE_LINES
LONGER_MODULES: dict[str, str] = {}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle among driftwarden's modules, lazy imports inside functions included."""
    graph = grimp.build_graph("driftwarden")
    cycles = sorted(
        {tuple(sorted((module, imported)))
         for module in graph.modules
         for imported in graph.find_modules_directly_imported_by(module)
         if graph.chain_exists(importer=imported, imported=module)}
    )
    assert cycles == []


def test_every_module_says_what_it_owns() -> None:
    """Each module (packages' __init__ included) starts with a docstring."""
    missing = [str(p.relative_to(PACKAGE)) for p in modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


def test_modules_and_classes_stay_readable() -> None:
    """No module over 500 lines and no class over 300, except the modules listed with a reason."""
    too_long = []
    for path in modules():
        name = str(path.relative_to(PACKAGE))
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES and name not in LONGER_MODULES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long.append(f"{name}: class {node.name} {lines} lines")
    assert too_long == []
