"""Reading Admin GraphQL within Shopify's cost limits: a connection page by page, or one object.

Each page is one call; a THROTTLED answer (the cost bucket cannot pay for the call) is waited
out as Shopify's throttle status says, and the same page asked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from . import client

#: Throttled answers waited out in a row before giving up (the bucket refills 100 points/s on
#: Shopify's standard plans: a few seconds each).
MAX_THROTTLE_WAITS = 30


def read(
    admin_base: str,
    access_token: str,
    query: str,
    variables: dict[str, Any],
    field: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """The object of root field ``field`` (None when Shopify has none), throttling waited out
    as for the pages."""
    found = answer(admin_base, access_token, query, variables, sleep).get(field)
    return found if isinstance(found, dict) else None


def answer(
    admin_base: str,
    access_token: str,
    query: str,
    variables: dict[str, Any],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One call's ``data``, THROTTLED answers waited out."""
    waits = 0
    while True:
        try:
            return client.graphql_answer(admin_base, access_token, query, variables).data
        except client.ShopifyThrottled as exc:
            waits += 1
            if waits > MAX_THROTTLE_WAITS:
                raise
            sleep(exc.retry_after)


def pages(
    admin_base: str,
    access_token: str,
    query: str,
    variables: dict[str, Any],
    field: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[dict[str, Any]]]:
    """The nodes of connection ``field`` (a root field of ``query``), one list per page; the
    query takes ``$after: String``."""
    after: str | None = None
    while True:
        data = answer(admin_base, access_token, query, {**variables, "after": after}, sleep)
        connection = data.get(field) or {}
        yield [edge.get("node") or {} for edge in connection.get("edges") or []]
        page = connection.get("pageInfo") or {}
        if not page.get("hasNextPage"):
            return
        after = page.get("endCursor")
        if not after:
            raise client.ShopifyUnavailable(f"{field}: next page without a cursor")
