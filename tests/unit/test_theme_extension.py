"""The theme app extension's files are what Shopify CLI and the theme editor accept.

Shopify only reports a broken schema, a missing translation or a missing asset at
``shopify app deploy`` time (or shows the raw key to shoppers); these checks find them here.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = ROOT / "extensions"
SCHEMA = re.compile(r"{%-?\s*schema\s*-?%}(.*?){%-?\s*endschema\s*-?%}", re.DOTALL)
#: `'key' | t` and "key" | t, with or without arguments after it.
T_FILTER = re.compile(r"""['"]([A-Za-z0-9_.-]+)['"]\s*\|\s*t\b""")
ASSET_URL = re.compile(r"""['"]([^'"]+)['"]\s*\|\s*asset_url\b""")
SETTING_TYPES_WITHOUT_ID = {"header", "paragraph"}
#: The theme editor's limit on a block's name.
MAX_NAME = 25


def extension_dirs() -> list[Path]:
    """The theme app extensions (the function beside them has its own tests,
    tests/unit/test_validation_function.py)."""
    return sorted(
        p.parent
        for p in EXTENSIONS.glob("*/shopify.extension.toml")
        if tomllib.loads(p.read_text()).get("type") == "theme"
    )


def blocks() -> list[Path]:
    return sorted(EXTENSIONS.glob("*/blocks/*.liquid"))


def schema_of(block: Path) -> dict[str, Any]:
    matches = SCHEMA.findall(block.read_text())
    assert len(matches) == 1, f"{block}: exactly one {{% schema %}} tag"
    return dict(json.loads(matches[0]))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def locale(extension: Path, name: str) -> dict[str, Any]:
    return flatten(json.loads((extension / "locales" / name).read_text()))


def t_keys(value: Any) -> set[str]:
    """Every ``t:`` reference in a schema (names, labels, infos, option labels...)."""
    if isinstance(value, str):
        return {value[2:]} if value.startswith("t:") else set()
    if isinstance(value, dict):
        return set().union(*(t_keys(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(t_keys(v) for v in value)) if value else set()
    return set()


def test_there_is_an_extension_with_an_app_embed() -> None:
    assert [p.name for p in extension_dirs()] == ["bazico-reserve"]
    assert any(schema_of(b)["target"] == "body" for b in blocks())


def test_the_app_configuration_declares_the_proxy_the_embed_calls() -> None:
    app = tomllib.loads((ROOT / "shopify.app.toml").read_text())
    for key in ("client_id", "name", "application_url"):
        assert app.get(key), key
    assert "write_app_proxy" in app["access_scopes"]["scopes"].split(",")
    proxy = app["app_proxy"]
    assert proxy["url"].endswith("/proxy") and proxy["url"].startswith("https://")
    defaults = {
        s["id"]: s.get("default") for b in blocks() for s in schema_of(b).get("settings", [])
    }
    assert defaults["proxy_path"] == f"/{proxy['prefix']}/{proxy['subpath']}"


@pytest.mark.parametrize("extension", extension_dirs(), ids=lambda p: p.name)
def test_extension_toml(extension: Path) -> None:
    config = tomllib.loads((extension / "shopify.extension.toml").read_text())
    assert config["type"] == "theme"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,29}", config["name"]), "a handle-like name"
    unexpected = {p.name for p in extension.iterdir()} - {
        "assets",
        "blocks",
        "snippets",
        "locales",
        "shopify.extension.toml",
        "package.json",
    }
    assert not unexpected, f"Shopify rejects other top-level entries: {unexpected}"


@pytest.mark.parametrize("block", blocks(), ids=lambda p: p.name)
def test_block_schema(block: Path) -> None:
    schema = schema_of(block)
    assert schema["target"] in {"section", "head", "body", "compliance_head"}
    assert schema["name"]
    ids = []
    for setting in schema.get("settings", []):
        assert setting.get("type"), setting
        if setting["type"] in SETTING_TYPES_WITHOUT_ID:
            continue
        assert setting.get("id") and setting.get("label"), setting
        ids.append(setting["id"])
        if setting["type"] in {"select", "radio"}:
            values = [o["value"] for o in setting["options"]]
            assert all(o.get("label") for o in setting["options"])
            assert setting.get("default", values[0]) in values
    assert len(ids) == len(set(ids)), "setting ids are unique"
    used = set(re.findall(r"block\.settings\.([a-z0-9_]+)", block.read_text()))
    assert used <= set(ids), f"settings used but not declared: {used - set(ids)}"


@pytest.mark.parametrize("block", blocks(), ids=lambda p: p.name)
def test_assets_the_block_loads_exist(block: Path) -> None:
    assets = block.parent.parent / "assets"
    schema = schema_of(block)
    named = [schema[k] for k in ("javascript", "stylesheet") if k in schema]
    named += ASSET_URL.findall(block.read_text())
    assert named, "the block loads its script"
    for name in named:
        assert "/" not in name, "assets are named without a folder"
        assert (assets / name).is_file(), name


@pytest.mark.parametrize("extension", extension_dirs(), ids=lambda p: p.name)
def test_every_string_exists_in_both_locales(extension: Path) -> None:
    storefront = {n: locale(extension, f"{n}.json") for n in ("en.default", "pt-BR")}
    schema = {n: locale(extension, f"{n}.schema.json") for n in ("en.default", "pt-BR")}
    assert storefront["en.default"].keys() == storefront["pt-BR"].keys()
    assert schema["en.default"].keys() == schema["pt-BR"].keys()
    for texts in [*storefront.values(), *schema.values()]:
        assert all(isinstance(v, str) and v.strip() for v in texts.values())
    for block in sorted((extension / "blocks").glob("*.liquid")):
        source = SCHEMA.sub("", block.read_text())
        used = set(T_FILTER.findall(source))
        assert used, f"{block.name} renders its messages through the t filter"
        for name, texts in storefront.items():
            assert used <= texts.keys(), f"{name}.json lacks {used - texts.keys()}"
        keys = t_keys(schema_of(block))
        for name, texts in schema.items():
            assert keys <= texts.keys(), f"{name}.schema.json lacks {keys - texts.keys()}"
            if "name" in schema_of(block):
                label = schema_of(block)["name"]
                shown = texts[label[2:]] if label.startswith("t:") else label
                assert len(shown) <= MAX_NAME, f"{name}: block name {shown!r} too long"


@pytest.mark.parametrize("extension", extension_dirs(), ids=lambda p: p.name)
def test_placeholders_match_across_locales(extension: Path) -> None:
    """A ``{{ seconds }}`` in one language is a ``{{ seconds }}`` in the other."""
    en = locale(extension, "en.default.json")
    pt = locale(extension, "pt-BR.json")
    for key, text in en.items():
        placeholders = set(re.findall(r"{{\s*(\w+)\s*}}", text))
        assert placeholders == set(re.findall(r"{{\s*(\w+)\s*}}", pt[key])), key
