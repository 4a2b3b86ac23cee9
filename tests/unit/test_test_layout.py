"""The test suite's own layout rules (tests/README.md), read from the source with ``ast``:

- no module under tests/ imports a test module (``tests/<layer>/test_*.py``, a conftest.py);
  shared helpers live in tests/support/;
- every test module sits in a layer's folder, which marks it (tests/conftest.py): none sets
  ``unit``, ``integration`` or ``e2e`` by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
LAYERS = ("unit", "integration", "e2e")


def module_name(path: Path) -> str:
    parts = path.relative_to(TESTS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_test_module(name: str) -> bool:
    """``tests.conftest``, ``tests.e2e.conftest``, ``tests.unit.test_x``, ``tests.test_x`` …"""
    parts = name.split(".")
    if parts[0] != "tests" or len(parts) < 2:
        return False
    leaf = parts[-1]
    return leaf == "conftest" or leaf.startswith("test_") or (parts[1] in LAYERS and len(parts) > 2)


def imported_modules(source: str, importer: str) -> list[tuple[int, str]]:
    """(line, module) for every module ``source`` imports, relative imports resolved; for
    ``from package import name`` both the package and ``package.name`` (it may be a module)."""
    found = []
    package = importer.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def forbidden_imports(source: str, importer: str) -> list[str]:
    return [
        f"line {line}: {name}"
        for line, name in imported_modules(source, importer)
        if is_test_module(name) and name != importer
    ]


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "fixtures" not in p.parts)


def test_no_module_under_tests_imports_a_test_module_or_a_conftest() -> None:
    offenders = {}
    for path in python_files():
        bad = forbidden_imports(path.read_text(encoding="utf-8"), module_name(path))
        if bad:
            offenders[str(path.relative_to(TESTS.parent))] = bad
    assert offenders == {}, "move shared helpers to tests/support/ (tests/README.md)"


def test_the_check_sees_imports_of_test_modules() -> None:
    importer = "tests.integration.test_a"
    for source in (
        "from tests.conftest import SHOP",
        "from tests.integration.test_b import helper",
        "from tests.e2e import test_c",
        "import tests.unit.test_d",
        "from .test_b import helper",
        "from . import conftest",
        "from ..e2e.test_c import Deployment",
    ):
        assert forbidden_imports(source, importer), source
    for source in (
        "from tests.support.app import SHOP",
        "from tests.support import ledger",
        "import pytest",
        "from shopify_app.stock import services",
    ):
        assert forbidden_imports(source, importer) == [], source


def test_every_test_module_is_in_a_layer_folder() -> None:
    misplaced = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in LAYERS
    ]
    assert misplaced == [], "tests/unit, tests/integration or tests/e2e (tests/README.md)"


def layer_markers_set_by_hand(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in LAYERS
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark"
        ):
            found.append(f"line {node.lineno}: mark.{node.attr}")
    return found


def test_no_test_module_sets_its_layer_marker_by_hand() -> None:
    offenders = {
        str(path.relative_to(TESTS)): bad
        for path in TESTS.rglob("test_*.py")
        if (bad := layer_markers_set_by_hand(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "the folder marks the layer (tests/conftest.py); keep postgres/slow"


def test_the_marker_check_sees_a_layer_marker() -> None:
    assert layer_markers_set_by_hand("pytestmark = [pytest.mark.e2e, pytest.mark.slow]")
    assert layer_markers_set_by_hand("@pytest.mark.unit\ndef test_x(): pass")
    assert layer_markers_set_by_hand("pytestmark = pytest.mark.postgres") == []
