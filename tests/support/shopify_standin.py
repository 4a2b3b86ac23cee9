"""A Shopify stand-in: a real HTTP server on 127.0.0.1 speaking the formats the service uses.

Long because it is one server for every shop's token endpoint and Admin API, with the helpers
tests use to set the shop's state (catalog, orders, subscriptions, throttling, outages).

- ``POST /admin/oauth/access_token`` (form or JSON body): an authorization ``code`` (made with
  :meth:`ShopifyStandIn.authorize`, as if the merchant had approved) gives an expiring offline
  token; ``grant_type=refresh_token`` rotates both tokens. A rotated refresh token may be replayed
  within ``retry_window_seconds`` (same answer), after that it gets 400 ``invalid_grant``.
  Wrong client credentials get 401.
- ``POST /admin/api/<version>/graphql.json``: ``X-Shopify-Access-Token`` must be a token it
  issued (else 401); the document is validated against the 2026-07 schema and executed by
  ``tests/support/shopify_admin.py`` (webhook subscriptions, the catalog's product variants,
  metafields and their definitions, Shopify Functions and validations), with Shopify's query
  cost, throttling and error shapes.
  ``outage()`` makes it answer 503 (a Shopify incident) until ``restore()``;
  ``lose_answers()`` makes it apply the next calls but close the connection without answering.
- Inventory: ``add_location``, ``stock``/``unstock``, ``sell`` (Shopify's own sale) and
  ``available`` arrange and read the shop's inventory; ``inventory_changes`` lists every
  ``available`` change applied (by the inventory mutations or a sale).

One port serves every shop (``SHOPIFY_ADMIN_URL=http://127.0.0.1:<port>``): the shop is known from
the code or token presented. Every request is recorded in ``calls`` for assertions.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from tests.support.shopify_admin import (
    APP_ID,
    VALIDATION_API,
    AdminApi,
    InventoryChangeRecord,
    StoredItem,
    StoredLevel,
    StoredLocation,
    StoredMetafield,
)

ACCESS_LIFETIME = 3600
REFRESH_LIFETIME = 90 * 24 * 3600
_GRAPHQL_PATH = re.compile(r"^/admin/api/(?P<version>[0-9]{4}-[0-9]{2}|unstable)/graphql\.json$")
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


@dataclass
class Call:
    path: str
    kind: str  # "code", "refresh", "graphql", "other"
    version: str | None = None
    shop: str | None = None
    operation: str | None = None  # a GraphQL document's first root field
    status: int = 0
    variables: dict[str, Any] | None = None
    throttled: bool = False
    lost: bool = False  # executed and applied, but the connection closed without an answer
    client_port: int = 0  # the caller's TCP port: one per connection it opened


@dataclass
class _Rotation:
    replacement: tuple[str, str]  # the (access, refresh) pair its use produced
    at: float  # time.monotonic() of the rotation


class ShopifyStandIn:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        clock: Callable[[], datetime] | None = None,
        retry_window_seconds: float = 1.0,
        refresh_delay_seconds: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock  # when given, access tokens past their lifetime get 401
        self.retry_window_seconds = retry_window_seconds
        self.refresh_delay_seconds = refresh_delay_seconds  # widens races on purpose
        self.calls: list[Call] = []
        self.issued: list[dict[str, Any]] = []  # every token grant answered, in order
        self._lock = threading.RLock()  # one lock for all state, re-entered by helpers
        self.admin = AdminApi(client_id, self._lock, clock)
        #: [remaining, root field or None] of each ``lose_answers`` still in force.
        self._losing: list[list[Any]] = []
        self._outage_status: int | None = None
        self._codes: dict[str, tuple[str, str]] = {}  # code -> (shop, scope)
        self._access: dict[str, tuple[str, str, datetime | None]] = {}  # -> (shop, scope, expiry)
        self._refresh: dict[str, tuple[str, str]] = {}  # live refresh token -> (shop, scope)
        self._rotated: dict[str, _Rotation] = {}
        self._server: ThreadingHTTPServer | None = None

    # --- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> ShopifyStandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, once per test.
        poll = {"poll_interval": 0.05}
        threading.Thread(target=self._server.serve_forever, kwargs=poll, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use the stand-in as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- what a test arranges or inspects --------------------------------------------------

    def authorize(self, shop: str, scope: str) -> str:
        """The code Shopify would put in the callback after the merchant approved ``scope``."""
        code = secrets.token_hex(16)
        with self._lock:
            self._codes[code] = (shop, scope)
        return code

    def add_access_token(self, shop: str, token: str, scope: str = "") -> None:
        """A non-expiring token, as a custom app gets in the Shopify admin."""
        with self._lock:
            self._access[token] = (shop, scope, None)

    def calls_of(self, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind]

    def add_variant(
        self,
        shop: str,
        sku: str | None,
        title: str = "Default Title",
        product: str = "Produto",
        *,
        tracked: bool = True,
    ) -> int:
        """Put a product variant in the shop's catalog (``productVariants``) with its inventory
        item (``gid://shopify/InventoryItem/<same number>``, stocked nowhere); its numeric id."""
        with self._lock:
            number = self.admin.next_id()
            state = self.admin.shop(shop)
            item = StoredItem(number, sku, tracked, self.admin.now())
            state.items[item.gid] = item

            def quantity(info: Any) -> int:
                return sum(v.available for v in state.levels.values() if v.item is item)

            state.variants.append(
                {
                    "id": f"gid://shopify/ProductVariant/{number}",
                    "legacyResourceId": str(number),
                    "sku": sku,
                    "title": title,
                    "product": {"title": product},
                    "inventoryItem": self.admin.variant_inventory(state, item.gid),
                    "inventoryQuantity": quantity,
                }
            )
            return number

    def inventory_item_of(self, shop: str, variant_id: int) -> str:
        """The inventory item gid of the variant ``add_variant`` numbered ``variant_id``."""
        with self._lock:
            state = self.admin.shop(shop)
            found = [v for v in state.variants if v["legacyResourceId"] == str(variant_id)]
            assert found, f"no variant {variant_id} in {shop}"
            gid = f"gid://shopify/InventoryItem/{variant_id}"
            assert gid in state.items
            return gid

    def add_location(
        self,
        shop: str,
        name: str = "Loja",
        *,
        fulfills_online_orders: bool = True,
        active: bool = True,
    ) -> str:
        """A location of the shop (the first one added is its primary); its gid."""
        with self._lock:
            location = StoredLocation(
                self.admin.next_id(), name, fulfills_online_orders, active, self.admin.now()
            )
            self.admin.shop(shop).locations[location.gid] = location
            return location.gid

    def stock(self, shop: str, inventory_item_id: str, location_id: str, available: int) -> None:
        """Stock the item at the location with ``available`` (the level is made if absent; an
        existing one gets the quantity, without a recorded change: the merchant's setup)."""
        with self._lock:
            state = self.admin.shop(shop)
            item, location = state.items[inventory_item_id], state.locations[location_id]
            now = self.admin.now()
            level = state.levels.get((item.gid, location.gid))
            if level is None:
                level = StoredLevel(self.admin.next_id(), item, location, available, now)
                state.levels[(item.gid, location.gid)] = level
            level.available = available
            level.changed_at["available"] = now

    def unstock(self, shop: str, inventory_item_id: str, location_id: str) -> None:
        """The merchant stopped stocking the item there: its level is gone."""
        with self._lock:
            self.admin.shop(shop).levels.pop((inventory_item_id, location_id), None)

    def available(self, shop: str, inventory_item_id: str, location_id: str) -> int | None:
        """The item's ``available`` at the location; None when it is not stocked there."""
        with self._lock:
            level = self.admin.shop(shop).levels.get((inventory_item_id, location_id))
            return None if level is None else level.available

    def sell(self, shop: str, inventory_item_id: str, location_id: str, quantity: int = 1) -> None:
        """Shopify's own sale (an order placed on it): ``available`` down, ``committed`` up,
        recorded as kind "sale"."""
        with self._lock:
            state = self.admin.shop(shop)
            level = state.levels[(inventory_item_id, location_id)]
            self.admin.set_available(
                state, level, level.available - quantity, kind="sale", reason="order"
            )
            level.committed += quantity
            level.changed_at["committed"] = self.admin.now()

    def inventory_changes(self, shop: str) -> list[InventoryChangeRecord]:
        """Every ``available`` change applied for ``shop``, in order."""
        with self._lock:
            return list(self.admin.shop(shop).inventory_changes)

    def lose_answers(self, count: int = 1, *, root: str | None = None) -> None:
        """The next ``count`` GraphQL calls (whose first root field is ``root``, when given) are
        executed and applied, but the connection is closed without an answer (``Call.lost``)."""
        with self._lock:
            self._losing.append([count, root])

    def add_order(
        self,
        shop: str,
        order_id: int,
        lines: list[tuple[str, int]],
        *,
        updated_at: datetime,
        cart_token: str | None = None,
        cancelled_at: datetime | None = None,
        financial_status: str = "PAID",
        test: bool = False,
        name: str | None = None,
    ) -> None:
        """Put an order in the shop (``orders`` lists it, by ``updatedAt``); an order already
        there with this id is replaced (an update: cancelled, paid…)."""
        stamp = updated_at.isoformat()
        items = [
            {
                "id": f"gid://shopify/LineItem/{order_id * 100 + n}",
                "sku": sku,
                "quantity": quantity,
                "name": sku,
                "variant": None,
            }
            for n, (sku, quantity) in enumerate(lines, start=1)
        ]
        node = {
            "id": f"gid://shopify/Order/{order_id}",
            "legacyResourceId": str(order_id),
            "name": name or f"#{order_id}",
            "cartToken": cart_token,
            "checkoutToken": None,
            "cancelledAt": cancelled_at.isoformat() if cancelled_at else None,
            "test": test,
            "displayFinancialStatus": financial_status,
            "processedAt": stamp,
            "createdAt": stamp,
            "updatedAt": stamp,
            "email": None,
            "lineItems": {
                "edges": [{"cursor": str(n), "node": item} for n, item in enumerate(items, 1)],
                "nodes": items,
                "pageInfo": {"hasNextPage": False},
            },
        }
        with self._lock:
            orders = self.admin.shop(shop).orders
            orders[:] = [o for o in orders if o["id"] != node["id"]] + [node]

    def refuse_protected_topics(self, shop: str, refused: bool = True) -> None:
        """Answer as Shopify does before the app is approved for protected customer data."""
        with self._lock:
            self.admin.shop(shop).protected_data_refused = refused

    def subscriptions(self, shop: str) -> list[dict[str, str]]:
        with self._lock:
            return list(self.admin.shop(shop).subscriptions)

    def drop_subscription(self, shop: str, topic: str) -> None:
        """What Shopify does to an API subscription after repeated failed deliveries."""
        with self._lock:
            state = self.admin.shop(shop)
            state.subscriptions = [s for s in state.subscriptions if s["topic"] != topic]

    def metafield(
        self, shop: str, owner_id: str, namespace: str = "$app:bazico", key: str = "stock"
    ) -> StoredMetafield | None:
        """The metafield ``owner_id`` (a gid) holds, as Shopify stores it; None if absent."""
        with self._lock:
            stored = self.admin.shop(shop).metafields.get(
                (owner_id, self.admin.namespace(namespace), key)
            )
            return None if stored is None else dataclasses.replace(stored)

    def metafield_writes(self, shop: str) -> list[tuple[float, str, str]]:
        """Every metafield written for ``shop``: (time.time() when stored, owner id, value)."""
        with self._lock:
            return [(at, owner, value) for at, s, owner, value in self.admin.writes if s == shop]

    def metafields(self, shop: str) -> list[StoredMetafield]:
        with self._lock:
            return [dataclasses.replace(m) for m in self.admin.shop(shop).metafields.values()]

    def definitions(self, shop: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self.admin.shop(shop).definitions.values()]

    def validations(self, shop: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for v in self.admin.shop(shop).validations]

    def deploy_function(
        self,
        shop: str,
        handle: str = "bazico-checkout-validation",
        *,
        api_type: str = VALIDATION_API,
        title: str = "Bázico: reservas no checkout",
    ) -> dict[str, Any]:
        """What ``shopify app deploy`` makes visible to ``shopifyFunctions`` on the shop."""
        function = {
            "apiType": api_type,
            "apiVersion": "2026-04",
            "app": {
                "id": f"gid://shopify/App/{APP_ID}",
                "installUrl": None,
                "installation": None,
                "isPostPurchaseAppInUse": False,
                "previouslyInstalled": False,
                "pricingDetails": None,
                "pricingDetailsSummary": "",
                "privacyPolicyUrl": None,
                "published": False,
                "shopifyDeveloped": False,
                "title": "Bázico Stock",
                "uninstallMessage": "",
                "webhookApiVersion": "2026-07",
            },
            "appKey": self.client_id,
            "description": None,
            "handle": handle,
            "id": secrets.token_hex(13),
            "inputQuery": None,
            "title": title,
            "useCreationUi": False,
        }
        with self._lock:
            self.admin.shop(shop).functions.append(function)
        return dict(function)

    def remove_owner(self, shop: str, owner_id: str) -> None:
        """The merchant deleted the variant: metafields on it are refused (userErrors)."""
        with self._lock:
            self.admin.shop(shop).missing_owners.add(owner_id)

    def throttle(self, shop: str, calls: int = 1) -> None:
        """Answer the next ``calls`` GraphQL calls of ``shop`` THROTTLED."""
        with self._lock:
            self.admin.shop(shop).throttled_calls += calls

    def set_bucket(
        self,
        shop: str,
        *,
        available: float | None = None,
        restore_rate: float | None = None,
        maximum: float | None = None,
    ) -> None:
        """Change ``shop``'s cost bucket (a Plus shop restores 1,000 a second; 0 drains it)."""
        with self._lock:
            bucket = self.admin.shop(shop).bucket
            bucket.status()  # refill up to now first
            if maximum is not None:
                bucket.maximum = maximum
            if restore_rate is not None:
                bucket.restore_rate = restore_rate
            if available is not None:
                bucket.available = available

    def outage(self, status: int = 503) -> None:
        """Every GraphQL call gets ``status`` (no body Shopify's clients can use) until restore."""
        with self._lock:
            self._outage_status = status

    def restore(self) -> None:
        with self._lock:
            self._outage_status = None

    def rotate(self, refresh_token: str) -> dict[str, Any]:
        """Refresh as another process would, without the service knowing (for race tests)."""
        status, body = self._refresh_grant(refresh_token, Call(path="", kind="refresh"))
        assert status == 200, body
        return body

    # --- the token endpoint ----------------------------------------------------------------

    def token_endpoint(self, form: dict[str, str], call: Call) -> tuple[int, dict[str, Any]]:
        credentials = (form.get("client_id"), form.get("client_secret"))
        if credentials != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client", "error_description": "client credentials"}
        if form.get("grant_type") == "refresh_token":
            call.kind = "refresh"
            if self.refresh_delay_seconds:
                time.sleep(self.refresh_delay_seconds)
            return self._refresh_grant(form.get("refresh_token", ""), call)
        call.kind = "code"
        with self._lock:
            found = self._codes.pop(form.get("code", ""), None)
        if found is None:
            return 400, {
                "error": "invalid_request",
                "error_description": "The authorization code was not found or was already used",
            }
        shop, scope = found
        call.shop = shop
        expiring = form.get("expiring") in ("1", "true")
        return 200, self._issue(shop, scope, expiring=expiring)

    def _refresh_grant(self, token: str, call: Call) -> tuple[int, dict[str, Any]]:
        invalid = {"error": "invalid_grant", "error_description": "refresh token is not valid"}
        with self._lock:
            live = self._refresh.pop(token, None)
            if live is None:
                rotation = self._rotated.get(token)
                if rotation is None or time.monotonic() - rotation.at > self.retry_window_seconds:
                    return 400, invalid
                access, refresh = rotation.replacement  # a retry within the window: same answer
                shop, scope, _ = self._access[access]
                call.shop = shop
                return 200, self._grant_body(access, scope, refresh)
            shop, scope = live
            call.shop = shop
            body = self._issue(shop, scope, expiring=True)
            pair = (body["access_token"], body["refresh_token"])
            self._rotated[token] = _Rotation(pair, time.monotonic())
            return 200, body

    def _issue(self, shop: str, scope: str, *, expiring: bool) -> dict[str, Any]:
        access = "shpat_" + secrets.token_hex(16)
        with self._lock:
            expiry = None
            if expiring and self.clock is not None:
                expiry = self.clock() + timedelta(seconds=ACCESS_LIFETIME)
            self._access[access] = (shop, scope, expiry)
            if not expiring:
                self.issued.append({"access_token": access, "scope": scope})
                return dict(self.issued[-1])
            refresh = "shprt_" + secrets.token_hex(16)
            self._refresh[refresh] = (shop, scope)
            self.issued.append(self._grant_body(access, scope, refresh))
            return dict(self.issued[-1])

    @staticmethod
    def _grant_body(access: str, scope: str, refresh: str) -> dict[str, Any]:
        return {
            "access_token": access,
            "scope": scope,
            "expires_in": ACCESS_LIFETIME,
            "refresh_token": refresh,
            "refresh_token_expires_in": REFRESH_LIFETIME,
        }

    # --- GraphQL ---------------------------------------------------------------------------

    def graphql(self, token: str, body: Any, call: Call) -> tuple[int, dict[str, Any]]:
        with self._lock:
            known = self._access.get(token)
            outage = self._outage_status
        if known is None or (
            known[2] is not None and self.clock is not None and self.clock() >= known[2]
        ):
            return 401, {"errors": INVALID_TOKEN}
        shop = call.shop = known[0]
        if outage is not None:
            return outage, {"errors": "Service Unavailable"}
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}
        variables = body.get("variables")
        call.variables = variables if isinstance(variables, dict) else None
        answer, call.operation = self.admin.answer(shop, body)
        with self._lock:
            for rule in self._losing:
                if rule[0] > 0 and rule[1] in (None, call.operation):
                    rule[0] -= 1
                    call.lost = True
                    break
            self._losing = [r for r in self._losing if r[0] > 0]
        call.throttled = any(
            (e.get("extensions") or {}).get("code") == "THROTTLED"
            for e in answer.get("errors") or []
            if isinstance(e, dict)
        )
        return 200, answer


class _Handler(BaseHTTPRequestHandler):
    standin: ShopifyStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output quiet; ``calls`` records what happened

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        call = Call(path=path, kind="other", client_port=self.client_address[1])
        if path == "/admin/oauth/access_token":
            status, body = self.standin.token_endpoint(self._form(raw), call)
        elif match := _GRAPHQL_PATH.match(path):
            call.kind, call.version = "graphql", match["version"]
            status, body = self.standin.graphql(
                self.headers.get("X-Shopify-Access-Token", ""), _json(raw), call
            )
        else:
            status, body = 404, {"errors": "Not Found"}
        call.status = status
        with self.standin._lock:
            self.standin.calls.append(call)
        if call.lost:  # applied, but the client gets no answer: the connection just closes
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._answer(status, body)

    def do_GET(self) -> None:
        self._answer(404, {"errors": "Not Found"})

    def _form(self, raw: bytes) -> dict[str, str]:
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            body = _json(raw)
            return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None
