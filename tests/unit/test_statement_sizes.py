"""The hot paths' raw statements stay within what psycopg keeps converted: a longer query (or
one with more parameters) has its ``%(name)s`` placeholders parsed again on every execution,
which cost a tenth of a storefront request's Python time when the capped batch grew past it."""

from __future__ import annotations

import re

import pytest
from psycopg import _queries

from shopify_app import ratelimit
from shopify_app.db.engine import CONVERSION_CACHED_UP_TO, compact_sql
from shopify_app.stock import fast_path


def _statements() -> dict[str, str]:
    found = {}
    for module in (fast_path, ratelimit):
        for name, value in vars(module).items():
            if isinstance(value, str) and name.lstrip("_").isupper() and "%(" in value:
                found[f"{module.__name__}.{name}"] = value
    return found


def test_our_limit_is_psycopgs() -> None:
    assert CONVERSION_CACHED_UP_TO == _queries.MAX_CACHED_STATEMENT_LENGTH


def test_every_hot_statement_keeps_its_conversion_cached() -> None:
    statements = _statements()
    assert "shopify_app.stock.fast_path._RESERVE_CAPPED" in statements
    too_long = {
        name: len(sql.encode())
        for name, sql in statements.items()
        if len(sql.encode()) > CONVERSION_CACHED_UP_TO
        or len(set(re.findall(r"%\((\w+)\)s", sql))) > _queries.MAX_CACHED_STATEMENT_PARAMS
    }
    assert too_long == {}, "compact_sql them, or split them"


def test_compact_sql_drops_comments_and_runs_of_space() -> None:
    sql = "WITH a AS (\n    -- the holder's lock\n    SELECT 1\n)\nSELECT *   FROM a\n"
    assert compact_sql(sql) == "WITH a AS ( SELECT 1 ) SELECT * FROM a"


def test_compact_sql_refuses_a_string_literal() -> None:
    with pytest.raises(ValueError, match="string literal"):
        compact_sql("SELECT 'two  spaces'")
