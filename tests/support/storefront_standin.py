"""A stand-in for the shop's storefront domain, for browser tests of the theme app extension.

One threaded HTTP server on 127.0.0.1 plays what Shopify serves on ``https://{shop}``:

- ``/products/{handle}``: a product page built like an Online Store 2.0 theme (Dawn-like,
  tests/support/storefront_theme/), with the app embed's real output: the extension's
  ``blocks/*.liquid`` rendered by python-liquid (``t``, ``asset_url`` and ``json`` filters
  registered here, the schema's settings at their defaults) and the schema's ``javascript``
  asset loaded the way Shopify adds it;
- the AJAX cart: ``/cart.js``, ``/cart/add(.js)`` (FormData, urlencoded or JSON),
  ``/cart/change(.js)`` and ``/cart/update(.js)``, with or without a locale prefix; lines are
  split by their properties, as Shopify does; the cart lives behind a ``cart`` cookie;
- after each cart change, the signed ``carts/create`` / ``carts/update`` webhook (the whole cart,
  shaped like tests/fixtures/shopify/carts_update.json), sent to the service a little later from
  one background thread, in order;
- the App Proxy: ``/apps/bazico/*`` is forwarded to the service's ``/proxy/*`` with the query
  Shopify adds and signs (``shop``, ``logged_in_customer_id``, ``path_prefix``, ``timestamp``,
  ``signature``) and ``X-Forwarded-For``; cookies are not forwarded.

Every request is recorded (``requests``), and every webhook delivery (``deliveries``).

Long because it serves a whole storefront: product and cart pages, Shopify's AJAX cart API, the
App Proxy forwarding with its signature, and the cart webhooks Shopify would send, which share
the one cart state.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import http.client
import json
import queue
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from liquid import Environment

from shopify_app.shopify.signatures import proxy_signature
from tests.support.shopify_sender import signed_headers

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION = REPO_ROOT / "extensions" / "bazico-reserve"
THEME = Path(__file__).resolve().parent / "storefront_theme"
PROXY_PREFIX = "/apps/bazico"
ASSET_PREFIX = "/cdn/shop/extensions/bazico-reserve/assets/"
LOCALE_PREFIX = r"(?:/[a-z]{2}(?:-[a-z0-9]{2,4})?)?"
CART_ENDPOINT = re.compile(rf"^{LOCALE_PREFIX}/cart/(add|change|update)(\.js)?/?$", re.IGNORECASE)
SCHEMA = re.compile(r"{%-?\s*schema\s*-?%}(.*?){%-?\s*endschema\s*-?%}", re.DOTALL)


# --- the catalog -------------------------------------------------------------------------------


def product(
    handle: str, title: str, variants: list[tuple[int, str, str]], price: str
) -> dict[str, Any]:
    """A product as Liquid's ``product`` (and ``product | json``) sees it.

    ``variants`` are (id, option value, SKU)."""
    return {
        "id": zlib.crc32(handle.encode()),
        "handle": handle,
        "title": title,
        "price": price,
        "variants": [
            {
                "id": variant_id,
                "title": option,
                "option1": option,
                "sku": sku,
                "price": price,
                "available": True,
            }
            for variant_id, option, sku in variants
        ],
    }


# --- the app embed, rendered as Shopify renders it -------------------------------------------


def block_schema(path: Path) -> dict[str, Any]:
    match = SCHEMA.search(path.read_text())
    assert match, f"{path} has no {{% schema %}}"
    return dict(json.loads(match.group(1)))


def lookup(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node[part]
    return node


class EmbedRenderer:
    """Renders the extension's app embed blocks with its own locale files (``t``)."""

    def __init__(self, extension: Path = EXTENSION, locale: str = "pt-BR") -> None:
        self.extension = extension
        self.strings = json.loads((extension / "locales" / f"{locale}.json").read_text())
        self.fallback = json.loads((extension / "locales" / "en.default.json").read_text())
        self.env = Environment()
        self.env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
        self.env.filters["t"] = self.translate
        self.env.filters["asset_url"] = lambda name: ASSET_PREFIX + str(name)

    def translate(self, key: str, **values: Any) -> str:
        try:
            text = str(lookup(self.strings, key))
        except KeyError:
            text = str(lookup(self.fallback, key))  # Shopify falls back to the default locale
        for name, value in values.items():
            text = re.sub(r"{{\s*" + re.escape(name) + r"\s*}}", str(value), text)
        return text

    def render(self, context: dict[str, Any]) -> str:
        out = []
        for path in sorted((self.extension / "blocks").glob("*.liquid")):
            schema = block_schema(path)
            if schema.get("target") not in ("body", "head"):
                continue  # app blocks (target section) go where merchants put them, not here
            settings = {s["id"]: s.get("default") for s in schema.get("settings", []) if "id" in s}
            source = SCHEMA.sub("", path.read_text())
            html = self.env.from_string(source).render(**context, block={"settings": settings})
            out.append(html)
            if schema.get("javascript"):
                out.append(f'<script src="{ASSET_PREFIX}{schema["javascript"]}" defer></script>')
        return "\n".join(out)


# --- the cart --------------------------------------------------------------------------------


@dataclass
class Line:
    variant_id: int
    quantity: int
    properties: dict[str, str]
    sku: str
    title: str
    product_id: int
    price: str

    @property
    def key(self) -> str:
        digest = hashlib.md5(  # noqa: S324 - Shopify's key shape, not a security boundary
            json.dumps(self.properties, sort_keys=True).encode()
        ).hexdigest()
        return f"{self.variant_id}:{digest}"

    def as_ajax(self) -> dict[str, Any]:
        return {
            "id": self.variant_id,
            "key": self.key,
            "variant_id": self.variant_id,
            "product_id": self.product_id,
            "sku": self.sku,
            "title": self.title,
            "quantity": self.quantity,
            "properties": dict(self.properties),
            "price": int(float(self.price) * 100),
            "line_price": int(float(self.price) * 100) * self.quantity,
        }

    def as_webhook(self) -> dict[str, Any]:
        line_price = f"{float(self.price) * self.quantity:.2f}"
        return {
            "id": self.variant_id,
            "properties": dict(self.properties) or None,
            "quantity": self.quantity,
            "variant_id": self.variant_id,
            "key": self.key,
            "discounted_price": self.price,
            "discounts": [],
            "gift_card": False,
            "grams": 200,
            "line_price": line_price,
            "original_line_price": line_price,
            "original_price": self.price,
            "price": self.price,
            "product_id": self.product_id,
            "sku": self.sku,
            "taxable": True,
            "title": self.title,
            "total_discount": "0.00",
            "vendor": "Bázico",
        }


@dataclass
class Cart:
    token: str
    key: str = field(default_factory=lambda: secrets.token_hex(16))
    lines: list[Line] = field(default_factory=list)
    created_at: str = ""
    webhooks_sent: int = 0

    def as_ajax(self) -> dict[str, Any]:
        items = [line.as_ajax() for line in self.lines]
        return {
            "token": f"{self.token}?key={self.key}",
            "note": None,
            "attributes": {},
            "item_count": sum(line.quantity for line in self.lines),
            "items": items,
            "total_price": sum(item["line_price"] for item in items),
            "currency": "BRL",
        }


class CartError(Exception):
    def __init__(self, status: int, message: str, description: str) -> None:
        super().__init__(description)
        self.status, self.message, self.description = status, message, description


@dataclass
class Recorded:
    """One request the storefront received (and, for the App Proxy, what the service said)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float
    fields: dict[str, list[str]] = field(default_factory=dict)
    json: Any = None
    status: int | None = None
    answer: Any = None


@dataclass
class WebhookDelivery:
    topic: str
    payload: dict[str, Any]
    status: int | None = None
    answer: str = ""


def parse_fields(content_type: str, body: bytes) -> tuple[dict[str, list[str]], Any]:
    """Form fields (multipart or urlencoded) or the JSON document of a request body."""
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, list[str]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            fields.setdefault(str(name), []).append(payload.decode("utf-8"))
        return fields, None
    if "json" in content_type or body.strip().startswith(b"{"):
        try:
            return {}, json.loads(body or b"null")
        except ValueError:
            return {}, None
    return parse_qs(body.decode("utf-8"), keep_blank_values=True), None


def form_properties(fields: dict[str, list[str]], prefix: str) -> dict[str, str]:
    found = {}
    pattern = re.compile(
        re.escape(prefix) + r"\[properties\]\[(.+)\]$" if prefix else r"^properties\[(.+)\]$"
    )
    for key, values in fields.items():
        match = pattern.match(key)
        if match:
            found[match.group(1)] = values[-1]
    return found


class Storefront:
    """The stand-in shop. ``service_port`` may be changed at any time (point it at a dead port
    to play an outage of the service)."""

    def __init__(
        self,
        *,
        service_port: int,
        secret: str,
        shop: str,
        product: dict[str, Any],
        recommendations: list[dict[str, Any]] | None = None,
        webhook_delay: float = 0.3,
    ) -> None:
        self.service_port = service_port
        self.secret = secret
        self.shop = shop
        self.webhook_delay = webhook_delay
        self.embed = EmbedRenderer()
        self.theme = Environment()
        self.theme.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
        self.lock = threading.Lock()
        self.carts: dict[str, Cart] = {}
        self.requests: list[Recorded] = []
        self.deliveries: list[WebhookDelivery] = []
        self._outbox: queue.Queue[tuple[float, WebhookDelivery] | None] = queue.Queue()
        self._in_flight = 0
        self._last_stamp = 0.0
        self.set_catalog(product, recommendations or [])
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._threads = [
            threading.Thread(target=self.server.serve_forever, name="storefront", daemon=True),
            threading.Thread(target=self._send_webhooks, name="storefront-webhooks", daemon=True),
        ]

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Storefront:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._outbox.put(None)
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(10)

    def set_catalog(self, main: dict[str, Any], recommendations: list[dict[str, Any]]) -> None:
        with self.lock:
            self.product = main
            self.recommendations = recommendations
            self.variants = {
                v["id"]: (p, v) for p in [main, *recommendations] for v in p["variants"]
            }

    # --- what the tests read ----------------------------------------------------------------

    def recorded(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (path is None or re.fullmatch(path, r.path))
            ]

    def cart_of(self, token: str) -> Cart:
        with self.lock:
            return self.carts[token.split("?", 1)[0]]

    def wait_webhooks(self, timeout: float = 15) -> None:
        """Until every webhook queued so far has been delivered (or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                idle = self._in_flight == 0
            if idle:
                return
            if time.monotonic() > deadline:
                raise AssertionError("webhooks still queued")
            time.sleep(0.02)

    # --- the webhook sender -------------------------------------------------------------------

    def _updated_at(self) -> str:
        """Strictly increasing, like Shopify's ``updated_at`` across a cart's states (lock held)."""
        stamp = max(time.time(), self._last_stamp + 0.001)
        self._last_stamp = stamp
        return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def _queue_webhook(self, cart: Cart) -> None:
        """Called with the lock held, right after the cart changed."""
        topic = "carts/create" if cart.webhooks_sent == 0 else "carts/update"
        cart.webhooks_sent += 1
        stamp = self._updated_at()
        payload = {
            "id": cart.token,
            "token": cart.token,
            "line_items": [line.as_webhook() for line in cart.lines],
            "note": None,
            "updated_at": stamp,
            "created_at": cart.created_at or stamp,
        }
        cart.created_at = payload["created_at"]
        self._in_flight += 1
        self._outbox.put((time.monotonic() + self.webhook_delay, WebhookDelivery(topic, payload)))

    def _send_webhooks(self) -> None:
        while (item := self._outbox.get()) is not None:
            due, delivery = item
            time.sleep(max(0.0, due - time.monotonic()))
            body = json.dumps(delivery.payload).encode()
            headers = signed_headers(body, delivery.topic, secret=self.secret, shop=self.shop)
            try:
                status, answer = self._to_service("POST", "/webhooks/shopify", body, headers)
                delivery.status, delivery.answer = status, answer.decode("utf-8", "replace")
            except OSError as exc:
                delivery.answer = f"not delivered: {exc}"
            with self.lock:
                self.deliveries.append(delivery)
                self._in_flight -= 1

    def _to_service(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.service_port, timeout=15)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    # --- the App Proxy ---------------------------------------------------------------------

    def proxy(self, record: Recorded, client_ip: str) -> tuple[int, str, bytes]:
        rest = record.path[len(PROXY_PREFIX) :]
        params = {k: list(v) for k, v in record.query.items() if k != "signature"}
        params.update(
            {
                "shop": [self.shop],
                "logged_in_customer_id": [""],
                "path_prefix": [PROXY_PREFIX],
                "timestamp": [str(int(time.time()))],
            }
        )
        params["signature"] = [proxy_signature(self.secret, params)]
        headers = {
            "Content-Type": record.headers.get("content-type", "application/json"),
            "Accept": record.headers.get("accept", "*/*"),
            "X-Forwarded-For": client_ip,
        }
        try:
            status, answer = self._to_service(
                record.method, f"/proxy{rest}?{urlencode(params, doseq=True)}", record.body, headers
            )
        except OSError:
            # What the shopper's browser gets when the app behind the proxy does not answer.
            return 502, "text/html; charset=utf-8", b"<h1>502 Bad Gateway</h1>"
        with contextlib.suppress(ValueError):
            record.answer = json.loads(answer)
        record.status = status
        return status, "application/json; charset=utf-8", answer

    # --- the cart ----------------------------------------------------------------------------

    def cart_for(self, cookie_token: str | None) -> tuple[Cart, bool]:
        """The cart behind the cookie; a new one (and a new cookie) when there is none."""
        with self.lock:
            if cookie_token and cookie_token in self.carts:
                return self.carts[cookie_token], False
            cart = Cart(token="c1-" + secrets.token_hex(16))
            self.carts[cart.token] = cart
            return cart, True

    def add(self, cart: Cart, fields: dict[str, list[str]], doc: Any) -> list[Line]:
        items: list[tuple[int, int, dict[str, str]]] = []
        if isinstance(doc, dict):
            listed = doc["items"] if isinstance(doc.get("items"), list) else [doc]
            for item in listed:
                items.append(
                    (
                        int(item["id"]),
                        int(item.get("quantity", 1)),
                        dict(item.get("properties") or {}),
                    )
                )
        elif "id" in fields:
            quantity = int(fields.get("quantity", ["1"])[-1])
            items.append((int(fields["id"][-1]), quantity, form_properties(fields, "")))
        else:
            indexes = sorted({m.group(1) for k in fields if (m := re.match(r"items\[(\d+)\]", k))})
            for i in indexes:
                prefix = f"items[{i}]"
                items.append(
                    (
                        int(fields[f"{prefix}[id]"][-1]),
                        int(fields.get(f"{prefix}[quantity]", ["1"])[-1]),
                        form_properties(fields, prefix),
                    )
                )
        if not items:
            raise CartError(
                400, "Parameter Missing or Invalid", "Required parameter missing or invalid: items"
            )
        added = []
        with self.lock:
            for variant_id, quantity, properties in items:
                if variant_id not in self.variants:
                    raise CartError(404, "Cart Error", "Cannot find variant")
                found = next(
                    (
                        line
                        for line in cart.lines
                        if line.variant_id == variant_id and line.properties == properties
                    ),
                    None,
                )
                if found is None:
                    prod, variant = self.variants[variant_id]
                    found = Line(
                        variant_id=variant_id,
                        quantity=0,
                        properties=properties,
                        sku=variant["sku"],
                        title=f"{prod['title']} - {variant['title']}",
                        product_id=prod["id"],
                        price=variant["price"],
                    )
                    cart.lines.append(found)
                found.quantity += quantity
                added.append(found)
            self._queue_webhook(cart)
        return added

    def change(self, cart: Cart, fields: dict[str, list[str]], doc: Any) -> None:
        data = doc if isinstance(doc, dict) else {k: v[-1] for k, v in fields.items()}
        with self.lock:
            quantity = int(data["quantity"])
            if data.get("line") not in (None, ""):
                index = int(data["line"]) - 1
            else:
                ref = str(data.get("id"))
                index = next(
                    (
                        i
                        for i, line in enumerate(cart.lines)
                        if ref in (line.key, str(line.variant_id))
                    ),
                    -1,
                )
            if not 0 <= index < len(cart.lines):
                raise CartError(400, "Cart Error", "no valid id or line parameter")
            self._set_quantity(cart, index, quantity)
            self._queue_webhook(cart)

    def update(self, cart: Cart, fields: dict[str, list[str]], doc: Any) -> None:
        with self.lock:
            updates: dict[str, int] = {}
            if isinstance(doc, dict):
                given = doc.get("updates") or {}
                if isinstance(given, list):
                    updates = {f"#{i}": int(q) for i, q in enumerate(given)}
                else:
                    updates = {str(k): int(v) for k, v in given.items()}
            else:
                for i, value in enumerate(fields.get("updates[]", [])):
                    updates[f"#{i}"] = int(value)
                for key, values in fields.items():
                    if key.startswith("updates[") and key != "updates[]":
                        updates[key[8:-1]] = int(values[-1])
            for ref, quantity in updates.items():
                index = next(
                    (
                        i
                        for i, line in enumerate(cart.lines)
                        if ref in (f"#{i}", line.key, str(line.variant_id))
                    ),
                    -1,
                )
                if index >= 0:
                    self._set_quantity(cart, index, quantity)
            # (updates for a variant not in the cart would add it on Shopify; not needed here)
            self._queue_webhook(cart)

    @staticmethod
    def _set_quantity(cart: Cart, index: int, quantity: int) -> None:
        if quantity <= 0:
            del cart.lines[index]
        else:
            cart.lines[index].quantity = quantity

    # --- pages -------------------------------------------------------------------------------

    def product_page(self, handle: str) -> str | None:
        with self.lock:
            main, cards = self.product, list(self.recommendations)
        if handle != main["handle"]:
            return None
        routes = {
            "root_url": "/",
            "cart_url": "/cart",
            "cart_add_url": "/cart/add",
            "cart_change_url": "/cart/change",
        }
        embeds = self.embed.render({"product": main, "routes": routes, "collection": None})
        template = self.theme.from_string((THEME / "product.liquid").read_text())
        return template.render(
            product=main, recommendations=cards, routes=routes, content_for_app_embeds=embeds
        )

    # --- HTTP --------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        shop = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "StorefrontStandIn/1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                fields, doc = parse_fields(headers.get("content-type", ""), body)
                record = Recorded(
                    method,
                    url.path,
                    parse_qs(url.query),
                    headers,
                    body,
                    time.monotonic(),
                    fields,
                    doc,
                )
                with shop.lock:
                    shop.requests.append(record)
                try:
                    self._route(record)
                except CartError as exc:
                    self._json(
                        exc.status,
                        {
                            "status": exc.status,
                            "message": exc.message,
                            "description": exc.description,
                        },
                    )

            def _route(self, record: Recorded) -> None:
                path = record.path
                if path.startswith(PROXY_PREFIX + "/"):
                    status, ctype, answer = shop.proxy(record, self.client_address[0])
                    return self._send(status, ctype, answer)
                if path.startswith(ASSET_PREFIX):
                    asset = EXTENSION / "assets" / Path(path[len(ASSET_PREFIX) :]).name
                    return self._file(asset, "application/javascript; charset=utf-8")
                if path == "/theme/assets/theme.js":
                    return self._file(THEME / "theme.js", "application/javascript; charset=utf-8")
                if match := re.fullmatch(r"/products/([\w-]+)", path):
                    page = shop.product_page(match.group(1))
                    if page is None:
                        return self._send(404, "text/html", b"<h1>404</h1>")
                    return self._send(200, "text/html; charset=utf-8", page.encode())
                cart, fresh = shop.cart_for(self._cookie("cart"))
                self._new_cookie = cart.token if fresh else None
                if re.fullmatch(rf"{LOCALE_PREFIX}/cart\.js", path):
                    return self._json(200, cart.as_ajax())
                match = CART_ENDPOINT.fullmatch(path)
                if match is None or record.method != "POST":
                    return self._send(404, "text/html", b"<h1>404</h1>")
                action = match.group(1).lower()
                if action == "add":
                    lines = shop.add(cart, record.fields, record.json)
                    answer: dict[str, Any] = (
                        {"items": [line.as_ajax() for line in lines]}
                        if len(lines) > 1 or isinstance((record.json or {}).get("items"), list)
                        else lines[0].as_ajax()
                    )
                else:
                    getattr(shop, action)(cart, record.fields, record.json)
                    answer = cart.as_ajax()
                sections = (record.json or {}).get("sections") or ",".join(
                    record.fields.get("sections", [])
                )
                if sections:
                    answer["sections"] = {
                        s: f"<div id='{s}'></div>" for s in str(sections).split(",")
                    }
                if match.group(2) or self._wants_json(record):
                    return self._json(200, answer)
                self.send_response(302)
                self.send_header("Location", "/cart")
                self._cookies()
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _wants_json(self, record: Recorded) -> bool:
                accept = record.headers.get("accept", "")
                requested = record.headers.get("x-requested-with", "")
                return requested == "XMLHttpRequest" or "javascript" in accept or "json" in accept

            def _cookie(self, name: str) -> str | None:
                for part in self.headers.get("Cookie", "").split(";"):
                    key, _, value = part.strip().partition("=")
                    if key == name:
                        return value
                return None

            def _cookies(self) -> None:
                if getattr(self, "_new_cookie", None):
                    self.send_header("Set-Cookie", f"cart={self._new_cookie}; Path=/; SameSite=Lax")

            def _json(self, status: int, payload: Any) -> None:
                self._send(status, "application/json; charset=utf-8", json.dumps(payload).encode())

            def _file(self, path: Path, ctype: str) -> None:
                self._send(200, ctype, path.read_bytes())

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self._cookies()
                self.end_headers()
                self.wfile.write(body)

        return Handler
