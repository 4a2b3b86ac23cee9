"""The Shopify client's connections: one kept-alive connection per thread, through real HTTP to
the stand-in (which speaks HTTP/1.1 as Shopify does), and no cookies carried between calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from shopify_app.shopify import client
from tests.support.shopify_install import standin
from tests.support.shopify_standin import ShopifyStandIn

SHOP = "client-shop.myshopify.com"
TOKEN = "shpat_client_test"
LOCATIONS = "query { locations(first: 5) { edges { node { id } } } }"


@pytest.fixture
def stand_in() -> Iterator[ShopifyStandIn]:
    with standin() as server:
        server.add_access_token(SHOP, TOKEN)
        yield server


def ports(stand_in: ShopifyStandIn) -> list[int]:
    return [call.client_port for call in stand_in.calls if call.kind == "graphql"]


def test_one_thread_keeps_one_connection_across_calls(stand_in: ShopifyStandIn) -> None:
    """A publisher round's calls, or a catalog's pages, reuse the connection: no TCP and TLS
    handshake per call."""
    base = client.admin_base_url(stand_in.url, SHOP)
    answers = [client.graphql_answer(base, TOKEN, LOCATIONS) for _ in range(3)]
    assert all("locations" in answer.data for answer in answers)
    assert len(ports(stand_in)) == 3
    assert len(set(ports(stand_in))) == 1


def test_each_thread_has_its_own_connection(stand_in: ShopifyStandIn) -> None:
    """The publisher and the inventory follower run on their own threads: neither waits for,
    nor shares, the other's session."""
    base = client.admin_base_url(stand_in.url, SHOP)
    errors: list[BaseException] = []

    def twice() -> None:
        try:
            for _ in range(2):
                client.graphql_answer(base, TOKEN, LOCATIONS)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=twice) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    seen = ports(stand_in)
    assert len(seen) == 4
    assert len(set(seen)) == 2


class _CookieSetter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cookies_seen: ClassVar[list[str | None]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).cookies_seen.append(self.headers.get("Cookie"))
        body = b'{"data": {}}'
        self.send_response(200)
        self.send_header("Set-Cookie", "_shopify_s=abc; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_no_cookie_an_answer_sets_is_sent_again() -> None:
    """A kept session must not carry one answer's cookies into the next call (another shop's,
    possibly): the client refuses every cookie."""
    _CookieSetter.cookies_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CookieSetter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for _ in range(2):
            client.graphql_answer(base, TOKEN, LOCATIONS)
    finally:
        server.shutdown()
        server.server_close()
    assert _CookieSetter.cookies_seen == [None, None]
