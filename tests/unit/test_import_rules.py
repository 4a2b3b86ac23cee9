"""The import rules import-linter cannot say: the domain is plain Python, and every module has
a layer.

setup.cfg's contracts forbid named modules; this checks the other way round, that every import of
``stock/domain.py`` and ``orders/model.py`` is the standard library's or a stdlib-only helper, and
that the layers contract names every module (a new module outside it would go unchecked).
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
#: The domain modules: the stock ledger's rules, the order aggregate and the checkout
#: function's metafield value.
DOMAINS = {
    "shopify_app.stock": ROOT / "shopify_app" / "stock" / "domain.py",
    "shopify_app.orders": ROOT / "shopify_app" / "orders" / "model.py",
    "shopify_app.shopify": ROOT / "shopify_app" / "shopify" / "stock_metafield.py",
}
#: App modules the domain may use: they import only the standard library themselves.
ALLOWED_APP_MODULES = {"shopify_app.ids", "shopify_app.clock"}


def imports_of(path: Path, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def test_the_domain_modules_import_only_the_standard_library() -> None:
    for package, path in DOMAINS.items():
        imported = imports_of(path, package)
        outside = {
            name
            for name in imported
            if name.split(".")[0] not in sys.stdlib_module_names and name not in ALLOWED_APP_MODULES
        }
        assert outside == set(), path


def test_the_allowed_helpers_are_standard_library_only() -> None:
    for module in ALLOWED_APP_MODULES:
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        imported = imports_of(path, "shopify_app")
        assert {n for n in imported if n.split(".")[0] not in sys.stdlib_module_names} == set()


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "domain.py"
    bad.write_text("from sqlalchemy import text\nfrom ..db.engine import READ_ONLY\nimport uuid\n")
    assert imports_of(bad, "shopify_app.stock") == {
        "sqlalchemy",
        "shopify_app.db.engine",
        "uuid",
    }


#: Package ``__init__`` modules whose children sit in different layers: they only re-export
#: (outbox) or register their children's routes and commands (``init_app``), and the root one
#: is the Flask factory. Everything else must be in a layer of the contract.
CONTAINERS = {
    "shopify_app",
    "shopify_app.admin",
    "shopify_app.erp",
    "shopify_app.orders",
    "shopify_app.outbox",
    "shopify_app.shopify",
    "shopify_app.stock",
}


def layered_modules() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    layers = config["importlinter:contract:package-layers"]["layers"]
    return [f"shopify_app.{name}" for name in re.split(r"[\s|:]+", layers) if name]


def test_every_module_of_the_package_is_in_a_layer() -> None:
    graph = grimp.build_graph("shopify_app")
    layered = layered_modules()
    outside = sorted(
        module
        for module in graph.modules
        if module not in CONTAINERS
        and not any(module == layer or module.startswith(f"{layer}.") for layer in layered)
    )
    assert outside == [], "add these to [importlinter:contract:package-layers] in setup.cfg"


def test_each_layer_names_a_module_that_exists() -> None:
    graph = grimp.build_graph("shopify_app")
    assert [m for m in layered_modules() if m not in graph.modules] == []
