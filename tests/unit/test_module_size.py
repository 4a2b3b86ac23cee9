"""No module over ~400 lines without a reason: a long module says why in its docstring (or, for
the theme's script, its header comment), with the words "Long because"."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 420  # "about 400": a few lines of slack before a reason is owed
SOURCES = [
    *ROOT.glob("shopify_app/**/*.py"),
    *ROOT.glob("bling/**/*.py"),
    *ROOT.glob("tests/**/*.py"),
    *ROOT.glob("bench/**/*.py"),
    *ROOT.glob("scripts/**/*.py"),
    *ROOT.glob("extensions/**/*.js"),
    *ROOT.glob("extensions/**/*.rs"),
]


def test_every_long_module_says_why_it_is_long() -> None:
    unexplained = []
    for path in SOURCES:
        if "node_modules" in path.parts or "target" in path.parts:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > LIMIT and "Long because" not in "\n".join(lines[:80]):
            unexplained.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert unexplained == [], "split these, or say in the docstring why they are long"
