"""A Bling API v3 stand-in: a real threaded HTTP server on 127.0.0.1 (docs/bling-api.md, spec).

Long because it is one server playing every part of Bling the service talks to (OAuth, products,
balances, deposits, contacts, sales orders, stock postings, webhooks), over one shared state.

``with BlingStandIn(products=[("SKU-1", 5)]) as bling:`` then ``BLING_API_BASE_URL=bling.base_url``
(``http://127.0.0.1:<port>/Api/v3``). It speaks Bling's formats for what the service uses:

- ``GET /oauth/authorize`` (302 to ``redirect_uri`` with ``code`` and ``state``) and
  ``POST /oauth/token``: HTTP Basic client credentials only, form body; codes live 60 s and work
  once; refresh tokens rotate (the old one then gets 400 ``invalid_grant`` in Bling's envelope).
- ``GET /produtos`` (``pagina``, ``limite`` ≤ 100, ``codigos[]``, ``idsProdutos[]``, ``criterio``,
  ``filtroSaldoEstoque[Deposito]``) and ``GET /estoques/saldos[/{idDeposito}]`` (``idsProdutos[]``
  required). On both, ``filtroSaldoEstoque`` defaults to 1, positive balances only, as the spec
  says: a product at zero or below is listed only when asked for (0 or 2).
- The account: ``GET /empresas/me/dados-basicos`` (its ``id`` is ``company_id``, the ``companyId``
  of its webhooks) and ``GET /depositos`` (active ones by default; ``padrao`` marks
  ``default_deposit``, which may be None: an account that marks none). ``lancar-estoque``
  without an id posts to the default deposit (400 when there is none).
- Contacts (``/contatos``, ``/{id}``, ``/consumidor-final``), sales orders (create with the spec's
  required fields, ``numerosLojas[]`` and ``idLoja`` search, ``numero`` assigned; ``PUT``
  replaces one, refused once its stock is posted or after ``refuse_updates``),
  ``lancar-estoque[/{idDeposito}]`` (a second posting is refused) and ``estornar-estoque``;
  sales order situations (``GET /situacoes/modulos[/{id}]``,
  ``PATCH /pedidos/vendas/{id}/situacoes/{idSituacao}``: see "sales order situations" below);
  stock entries (``POST /estoques``: see "stock entries" below).
- Webhooks: every posting and reversal emits Bling's ``stock.updated`` per item, **dated when
  Bling makes the posting** (whole seconds, on ``clock``, Bling's clock), so before the service
  hears the answer; ``take_webhooks()`` hands them to a test to deliver, as late as it likes
  (``after_posting`` lets it move its clock while the answer travels). ``stock_event()`` builds
  one for a product's current balance; ``sign_webhook()`` signs as Bling does.
- Every API call needs ``Authorization: Bearer`` with a live access token (401 ``invalid_token``).
- Bling's limits: 3 requests in any sliding 1-second window per account (429 ``period: second``,
  counted in ``rate_violations``) and an optional daily budget (429 ``period: day``).

Faults, settable at run time from any thread: ``fail_rate`` (random 500s, seeded), ``fail_next``,
``burst_429(n)``, ``slow(seconds)``, ``lose_answers_rate`` (a write is applied, then the connection
is dropped unanswered), ``expire_access_tokens()``; outages: ``answer_unavailable()`` (503 to
everything) and ``refuse_connections()`` / ``accept_connections()`` (same port afterwards).
Records for assertions: ``calls``, ``max_calls_in_any_second``, ``sales_orders``, ``contacts``,
``postings``, ``refreshes``, ``unavailable_answers``.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import itertools
import json
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

PREFIX = "/Api/v3"
DEFAULT_DEPOSIT_ID = 14_000_001
FIRST_DEPOSIT = 0  # ``default_deposit``'s default: the first of ``deposits`` is the padrão one
CONSUMIDOR_FINAL_ID = 1
PAYMENT_METHOD_ID = 7_001  # the one payment method the stand-in's account has
OPEN_SITUATION = 6  # "Em aberto" in a default Bling account
CANCELLED_SITUATION = 12  # "Cancelado" in a default Bling account
SALES_MODULE_ID = 98_310  # the "Vendas" module of GET /situacoes/modulos (made up)
CODE_LIFETIME = 60.0
CLIENT_ID = "standin-client-id"
CLIENT_SECRET = "standin-client-secret"
COMPANY_ID = "5b7e3c0f9a1d4e6b8c2f0a9d7e5c3b1a"  # the stand-in account's id, as /empresas/me shows
Reply = tuple[int, Any]


def error(kind: str, message: str, description: str = "", **extra: Any) -> dict[str, Any]:
    """Bling's error envelope."""
    return {"error": {"type": kind, "message": message, "description": description, **extra}}


def too_many(period: str, limit: int) -> dict[str, Any]:
    what = "por segundo" if period == "second" else "por dia"
    later = "mais tarde" if period == "second" else "amanhã"
    description = f"O limite de requisições {what} foi atingido, tente novamente {later}."
    return error(
        "TOO_MANY_REQUESTS",
        "Limite de requisições atingido.",
        description,
        limit=limit,
        period=period,
    )


def bling_date(moment: datetime) -> str:
    """A webhook's ``date`` as Bling writes it: UTC, in whole seconds (the fraction dropped)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Call:
    method: str
    path: str  # below /Api/v3
    query: dict[str, list[str]]
    at: float
    status: int = 0  # 0: the answer was dropped on purpose
    jwt_header: bool = False


@dataclass
class Product:
    id: int
    codigo: str
    nome: str
    situacao: str = "A"
    physical: dict[int, float] = field(default_factory=dict)  # deposit id -> saldoFisico
    reserved: dict[int, float] = field(default_factory=dict)  # saldoVirtual = physical - this

    def virtual(self, deposit: int) -> float:
        return self.physical.get(deposit, 0.0) - self.reserved.get(deposit, 0.0)


class BlingStandIn:
    def __init__(
        self,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        products: Any = (),
        deposits: tuple[int, ...] = (DEFAULT_DEPOSIT_ID,),
        default_deposit: int | None = FIRST_DEPOSIT,
        rate_limit: int | None = 3,
        rate_window: float = 1.0,
        daily_limit: int | None = None,
        access_ttl: int = 21_600,
        redirect_uri: str = "http://127.0.0.1:9/bling/callback",
        seed: int = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        #: Bling's own clock: what its webhooks are dated with (the app's FakeClock in tests that
        #: compare the two; the wall clock otherwise).
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.client_id, self.client_secret = client_id, client_secret
        self.deposits = deposits
        #: The deposit Bling marks ``padrao`` (``lancar-estoque`` without an id posts there);
        #: None: the account marks none. ``deposit_names`` are their ``descricao``.
        self.default_deposit = deposits[0] if default_deposit == FIRST_DEPOSIT else default_deposit
        self.deposit_names = {d: f"Depósito {n}" for n, d in enumerate(deposits, start=1)}
        self.inactive_deposits: set[int] = set()
        self.rate_limit, self.rate_window, self.daily_limit = rate_limit, rate_window, daily_limit
        self.access_ttl, self.redirect_uri = access_ttl, redirect_uri
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._ids = itertools.count(10_000_001)
        self._numbers = itertools.count(1)
        # faults
        self.fail_rate = 0.0
        self.lose_answers_rate = 0.0
        self._fail_next = 0
        self._burst = 0
        self._slow = 0.0
        # state
        self.products: dict[int, Product] = {}
        self.contacts: dict[int, dict[str, Any]] = {
            CONSUMIDOR_FINAL_ID: {
                "id": CONSUMIDOR_FINAL_ID,
                "nome": "Consumidor Final",
                "codigo": "",
                "situacao": "A",
                "tipo": "F",
                "numeroDocumento": "",
                "email": "",
            }
        }
        self.sales_orders: dict[int, dict[str, Any]] = {}
        self._codes: dict[str, float] = {}
        self._access: dict[str, float] = {}  # token -> monotonic expiry
        self._refresh_tokens: set[str] = set()
        # records
        self.calls: list[Call] = []
        self.postings: collections.Counter[int] = collections.Counter()
        self.reversals: collections.Counter[int] = collections.Counter()
        self.refreshes = 0
        self.refused_refreshes = 0
        self.rate_violations = 0
        self.used_today = 0
        self._admitted: collections.deque[float] = collections.deque()
        # webhooks: Bling's own stock events for postings (lancar/estornar-estoque), emitted as
        # Bling makes them and delivered when a test says (Bling delivers on its own schedule)
        self.company_id = COMPANY_ID
        self._webhooks: list[bytes] = []
        #: Called (under the stand-in's lock) right after a posting is made, before the answer
        #: leaves: a test moves its clock here to stand for the answer's way back.
        self.after_posting: Callable[[], None] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._port = 0
        self._unavailable = False
        self.unavailable_answers = 0
        for item in products:
            codigo, stock = (item, 0) if isinstance(item, str) else item
            self.add_product(codigo, stock)
        self._init_order_life()
        self._init_stock_entries()

    # --- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> BlingStandIn:
        self._listen()
        return self

    def _listen(self) -> None:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = _Server(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]  # the same port again after an outage
        poll = {"poll_interval": 0.05}
        threading.Thread(target=self._server.serve_forever, kwargs=poll, daemon=True).start()

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    @property
    def base_url(self) -> str:
        assert self._port, "use the stand-in as a context manager"
        return f"http://127.0.0.1:{self._port}{PREFIX}"

    # --- outages -------------------------------------------------------------------------------

    def answer_unavailable(self, on: bool = True) -> None:
        """Every request (OAuth included) gets a 503 from "the load balancer" and changes
        nothing, until called again with ``on=False``. Counted in ``unavailable_answers``."""
        with self._lock:
            self._unavailable = on

    def refuse_connections(self) -> None:
        """Stop listening: connections are refused, as when Bling's host is down."""
        self._close()

    def accept_connections(self) -> None:
        """Listen again, on the same port, after ``refuse_connections``."""
        if self._server is None:
            self._listen()

    # --- arranging -----------------------------------------------------------------------------

    def _home(self, deposit_id: int | None) -> int:
        """The deposit a call that names none means: the default one, else the first."""
        return deposit_id or self.default_deposit or self.deposits[0]

    def add_product(
        self, codigo: str, stock: float = 0, *, deposit_id: int | None = None, nome: str = ""
    ) -> int:
        with self._lock:
            product = Product(next(self._ids), codigo, nome or f"Produto {codigo}")
            product.physical[self._home(deposit_id)] = float(stock)
            self.products[product.id] = product
            return product.id

    def set_stock(
        self,
        product_id: int,
        physical: float,
        *,
        reserved: float = 0,
        deposit_id: int | None = None,
    ) -> None:
        with self._lock:
            product = self.products[product_id]
            product.physical[self._home(deposit_id)] = float(physical)
            product.reserved[self._home(deposit_id)] = float(reserved)

    def product_id(self, codigo: str) -> int:
        with self._lock:
            return next(p.id for p in self.products.values() if p.codigo == codigo)

    def balance(self, product_id: int, deposit_id: int | None = None) -> tuple[float, float]:
        """(saldoFisico, saldoVirtual) in one deposit."""
        with self._lock:
            product, deposit = self.products[product_id], self._home(deposit_id)
            return product.physical.get(deposit, 0.0), product.virtual(deposit)

    def issue_tokens(self) -> dict[str, Any]:
        """A grant as if the merchant had authorized the app (skips the browser step)."""
        return self._grant()

    def authorize(self) -> str:
        """The code Bling puts in the callback once the merchant approves."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = time.monotonic()
        return code

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access = dict.fromkeys(self._access, 0.0)

    def sign_webhook(self, raw_body: bytes) -> str:
        """``X-Bling-Signature-256`` as Bling computes it (independently of ``bling.webhooks``)."""
        mac = hmac.new(self.client_secret.encode(), raw_body, hashlib.sha256).hexdigest()
        return "sha256=" + mac

    def stock_event(
        self, product_id: int, deposit_id: int | None = None, *, date: datetime | None = None
    ) -> bytes:
        """A ``stock.updated`` delivery with the product's current balances, dated ``date``
        (default: now on Bling's clock)."""
        deposit = self._home(deposit_id)
        with self._lock:
            product = self.products[product_id]
            physical, virtual = product.physical.get(deposit, 0.0), product.virtual(deposit)
            totals = [sum(product.physical.values()), sum(map(product.virtual, self.deposits))]
        data = {
            "produto": {"id": product_id},
            "deposito": {"id": deposit, "saldoFisico": physical, "saldoVirtual": virtual},
            "operacao": "B",
            "quantidade": physical,
            "saldoFisicoTotal": totals[0],
            "saldoVirtualTotal": totals[1],
        }
        envelope = {
            "eventId": secrets.token_hex(16),
            "date": bling_date(date or self.clock()),
            "version": "v1",
            "event": "stock.updated",
            "companyId": self.company_id,
            "data": data,
        }
        return json.dumps(envelope).encode()

    def take_webhooks(self) -> list[bytes]:
        """The stock events Bling emitted for postings and reversals since the last call, oldest
        first (each dated when the posting was made, on Bling's clock), for a test to deliver."""
        with self._lock:
            taken, self._webhooks = self._webhooks, []
        return taken

    def _emit_posting(
        self, product: Product, deposit: int, operation: str, quantity: float
    ) -> None:
        """Bling's ``stock.updated`` for one item of a posting, with the balances it left."""
        data = {
            "produto": {"id": product.id},
            "deposito": {
                "id": deposit,
                "saldoFisico": product.physical.get(deposit, 0.0),
                "saldoVirtual": product.virtual(deposit),
            },
            "operacao": operation,
            "quantidade": quantity,
            "saldoFisicoTotal": sum(product.physical.values()),
            "saldoVirtualTotal": sum(map(product.virtual, self.deposits)),
        }
        envelope = {
            "eventId": secrets.token_hex(16),
            "date": bling_date(self.clock()),  # the posting's moment, before anyone is answered
            "version": "v1",
            "event": "stock.updated",
            "companyId": self.company_id,
            "data": data,
        }
        self._webhooks.append(json.dumps(envelope).encode())

    # --- faults --------------------------------------------------------------------------------

    def burst_429(self, n: int) -> None:
        """The next ``n`` API calls get a per-second 429 (another app on the account is busy)."""
        with self._lock:
            self._burst = n

    def fail_next(self, n: int) -> None:
        """The next ``n`` API calls (that pass the limits) get a 500 and change nothing."""
        with self._lock:
            self._fail_next = n

    def slow(self, seconds: float) -> None:
        """Every API call waits this long before being handled (0 turns it off)."""
        with self._lock:
            self._slow = seconds

    # --- records -------------------------------------------------------------------------------

    @property
    def max_calls_in_any_second(self) -> int:
        """The most API calls that arrived within any ``rate_window`` (sliding), refused or not."""
        with self._lock:
            times = sorted(c.at for c in self.calls if not c.path.startswith("/oauth"))
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= self.rate_window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def calls_to(self, method: str, path_pattern: str) -> list[Call]:
        with self._lock:
            return [
                c for c in self.calls if c.method == method and re.fullmatch(path_pattern, c.path)
            ]

    def orders_with_store_number(self, numero_loja: str) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self.sales_orders.values() if o["numeroLoja"] == numero_loja]

    # --- OAuth ---------------------------------------------------------------------------------

    def _grant(self) -> dict[str, Any]:
        access = "eyJ" + secrets.token_urlsafe(48)  # JWT-looking; the client must not care
        refresh = secrets.token_hex(20)
        with self._lock:
            self._access[access] = time.monotonic() + self.access_ttl
            self._refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "expires_in": self.access_ttl,
            "token_type": "Bearer",
            "scope": "98309 318257570 5862218180",
            "refresh_token": refresh,
        }

    def oauth_authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        if query.get("response_type") != "code" or query.get("client_id") != self.client_id:
            return 400, {}
        location = (
            self.redirect_uri
            + "?"
            + urlencode({"code": self.authorize(), "state": query.get("state", "")})
        )
        return 302, {"Location": location}

    def oauth_token(self, authorization: str, form: dict[str, str]) -> Reply:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if "client_secret" in form or "client_id" in form:
            return 400, error("invalid_request", "Credentials are only accepted in the header")
        if authorization != f"Basic {expected}":
            return 401, error(
                "invalid_client", "invalid_client", "The client credentials are invalid"
            )
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                issued = self._codes.pop(form.get("code", ""), None)
                if issued is None or time.monotonic() - issued > CODE_LIFETIME:
                    return 400, error(
                        "invalid_grant", "invalid_grant", "The authorization code has expired"
                    )
                return 200, self._grant()
            if grant_type == "refresh_token":
                token = form.get("refresh_token", "")
                if token not in self._refresh_tokens:
                    self.refused_refreshes += 1
                    return 400, error("invalid_grant", "invalid_grant", "Invalid refresh token")
                self._refresh_tokens.discard(token)  # rotation: the old one dies now
                self.refreshes += 1
                return 200, self._grant()
        return 400, error("unsupported_grant_type", "unsupported_grant_type")

    # --- the API's gatekeeping -----------------------------------------------------------------

    def admit(self, call: Call, authorization: str) -> Reply | None:
        """Limits, injected faults and authentication, in Bling's order; None lets it through."""
        with self._lock:
            self.calls.append(call)
            if self.rate_limit is not None:
                while self._admitted and call.at - self._admitted[0] >= self.rate_window:
                    self._admitted.popleft()
                if len(self._admitted) >= self.rate_limit:
                    self.rate_violations += 1
                    return 429, too_many("second", self.rate_limit)
                self._admitted.append(call.at)
            if self.daily_limit is not None:
                if self.used_today >= self.daily_limit:
                    return 429, too_many("day", self.daily_limit)
                self.used_today += 1
            if self._burst > 0:
                self._burst -= 1
                return 429, too_many("second", self.rate_limit or 3)
            delay = self._slow
        if delay:
            time.sleep(delay)
        with self._lock:
            if self._fail_next > 0 or (self.fail_rate and self._rng.random() < self.fail_rate):
                self._fail_next = max(0, self._fail_next - 1)
                return 500, error("SERVER_ERROR", "Erro interno", "Ocorreu um erro inesperado.")
            token = authorization.removeprefix("Bearer ").strip()
            if not authorization.startswith("Bearer ") or not token:
                return 401, error("invalid_request", "Malformed auth header")
            if self._access.get(token, 0.0) <= time.monotonic():
                known = token in self._access
                what = "has expired" if known else "is invalid"
                return 401, error(
                    "invalid_token", "invalid_token", f"The access token provided {what}"
                )
        return None

    def unavailable(self) -> bool:
        """Whether this request is answered 503 by the outage (and counted)."""
        with self._lock:
            if self._unavailable:
                self.unavailable_answers += 1
            return self._unavailable

    def lose_this_answer(self) -> bool:
        with self._lock:
            return bool(self.lose_answers_rate) and self._rng.random() < self.lose_answers_rate

    # --- the API -------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Reply:
        for verb, pattern, name in _ROUTES:
            match = re.fullmatch(pattern, path)
            if match and verb == method:
                args = [int(g) if g and g.isdigit() else g for g in match.groups()]
                with self._lock:
                    return getattr(self, name)(query, raw, *args)
        if any(re.fullmatch(pattern, path) for _, pattern, _ in _ROUTES):
            return 405, error("METHOD_NOT_ALLOWED", "Método não permitido")
        return 404, error("RESOURCE_NOT_FOUND", "Recurso não encontrado", f"{method} {path}")

    def list_products(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        rows = sorted(self.products.values(), key=lambda p: p.id)
        if ids := _ints(query.get("idsProdutos[]")):
            rows = [p for p in rows if p.id in ids]
        if codes := query.get("codigos[]"):
            rows = [p for p in rows if p.codigo in codes]
        criterio = _int(query, "criterio", 1)
        if criterio in (2, 3):
            rows = [p for p in rows if p.situacao == ("A" if criterio == 2 else "I")]
        # As the spec documents: filtroSaldoEstoque defaults to 1, so a listing that does not
        # ask for zero (0) or negative (2) balances leaves those products out.
        wanted = _BALANCE_FILTERS.get(_int(query, "filtroSaldoEstoque", 1), _BALANCE_FILTERS[1])
        deposit = _int(query, "filtroSaldoEstoqueDeposito", 0)
        scope = [deposit] if deposit else list(self.deposits)  # omitted: every deposit
        rows = [p for p in rows if wanted(sum(p.virtual(d) for d in scope))]
        return 200, {"data": [_product_row(p, self.deposits) for p in _page(rows, query)]}

    def balances(
        self, query: dict[str, list[str]], raw: bytes, deposit: int | None = None
    ) -> Reply:
        ids = _ints(query.get("idsProdutos[]"))
        if not ids:
            return 400, error(
                "MISSING_REQUIRED_FIELD_ERROR", "idsProdutos é obrigatório", "Informe os produtos."
            )
        if deposit is not None and deposit not in self.deposits:
            return 404, error("RESOURCE_NOT_FOUND", "Depósito não encontrado")
        wanted = _int(query, "filtroSaldoEstoque", 1)  # 0 zero, 1 positive (default), 2 negative
        rows = []
        for product in (self.products[i] for i in sorted(ids) if i in self.products):
            scope = [deposit] if deposit is not None else list(self.deposits)
            physical = sum(product.physical.get(d, 0.0) for d in scope)
            virtual = sum(product.virtual(d) for d in scope)
            if not _BALANCE_FILTERS.get(wanted, _BALANCE_FILTERS[1])(virtual):
                continue
            row: dict[str, Any] = {
                "produto": {"id": product.id, "codigo": product.codigo},
                "saldoFisicoTotal": physical,
                "saldoVirtualTotal": virtual,
            }
            if deposit is None:
                row["depositos"] = [
                    {
                        "id": d,
                        "saldoFisico": product.physical.get(d, 0.0),
                        "saldoVirtual": product.virtual(d),
                    }
                    for d in self.deposits
                ]
            rows.append(row)
        return 200, {"data": rows}

    def list_deposits(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        """``GET /depositos``: active ones unless ``situacao=0`` (the spec's default is 1)."""
        active = _int(query, "situacao", 1) == 1
        rows = [
            {
                "id": d,
                "descricao": self.deposit_names.get(d, str(d)),
                "situacao": 1 if d not in self.inactive_deposits else 0,
                "padrao": d == self.default_deposit,
                "desconsiderarSaldo": False,
            }
            for d in self.deposits
            if (d not in self.inactive_deposits) == active
        ]
        if name := _one(query, "descricao"):
            rows = [r for r in rows if name.lower() in str(r["descricao"]).lower()]
        return 200, {"data": _page(rows, query)}

    def company(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        """``GET /empresas/me/dados-basicos``: its ``id`` is the ``companyId`` of webhooks."""
        return 200, {
            "data": {
                "id": self.company_id,
                "nome": "Bázico Moda Ltda",
                "cnpj": "12.345.678/0001-90",
                "email": "financeiro@bazico.example",
                "dataContrato": "2024-03-01",
            }
        }

    def list_contacts(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        rows = sorted(self.contacts.values(), key=lambda c: c["id"])
        deleted = _int(query, "criterio", 3) == 2
        rows = [c for c in rows if (c["situacao"] == "E") == deleted]
        if document := _one(query, "numeroDocumento"):
            rows = [c for c in rows if c.get("numeroDocumento") == document]
        if term := _one(query, "pesquisa").lower():
            keys = ("nome", "numeroDocumento", "email", "codigo")
            rows = [c for c in rows if any(term in str(c.get(k) or "").lower() for k in keys)]
        keep = ("id", "nome", "codigo", "situacao", "numeroDocumento", "telefone", "celular")
        return 200, {"data": [{k: c.get(k, "") for k in keep} for c in _page(rows, query)]}

    def get_contact(self, query: dict[str, list[str]], raw: bytes, contact_id: int) -> Reply:
        if contact_id not in self.contacts:
            return 404, error("RESOURCE_NOT_FOUND", "Contato não encontrado")
        return 200, {"data": dict(self.contacts[contact_id])}

    def consumer_final(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        return 200, {"data": dict(self.contacts[CONSUMIDOR_FINAL_ID])}

    def create_contact(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        body, problem = _json_body(raw)
        if problem:
            return problem
        missing = [k for k in ("nome", "tipo", "situacao") if not body.get(k)]
        if missing:
            fields = [{"code": 1, "msg": f"{k} é obrigatório", "element": k} for k in missing]
            return 400, error(
                "MISSING_REQUIRED_FIELD_ERROR", "Campos obrigatórios", "", fields=fields
            )
        if body["tipo"] not in ("F", "J", "E") or body["situacao"] not in ("A", "E", "I", "S"):
            return 400, error("VALIDATION_ERROR", "Não foi possível salvar o contato")
        contact = {"codigo": "", "telefone": "", "celular": "", "email": "", **body}
        contact["id"] = next(self._ids)
        self.contacts[contact["id"]] = contact
        return 201, {"data": {"id": contact["id"]}}

    def list_orders(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        rows = sorted(self.sales_orders.values(), key=lambda o: o["id"])
        if numbers := query.get("numerosLojas[]"):
            rows = [o for o in rows if o["numeroLoja"] in numbers]
        if store := _int(query, "idLoja", 0):
            rows = [o for o in rows if o["loja"]["id"] == store]
        if numero := _int(query, "numero", 0):
            rows = [o for o in rows if o["numero"] == numero]
        keep = (
            "id",
            "numero",
            "numeroLoja",
            "data",
            "dataSaida",
            "dataPrevista",
            "totalProdutos",
            "total",
            "contato",
            "situacao",
            "loja",
        )
        return 200, {"data": [{k: o[k] for k in keep} for o in _page(rows, query)]}

    def get_order(self, query: dict[str, list[str]], raw: bytes, order_id: int) -> Reply:
        if order_id not in self.sales_orders:
            return 404, error("RESOURCE_NOT_FOUND", "Pedido de venda não encontrado")
        order = self.sales_orders[order_id]
        return 200, {"data": {k: v for k, v in order.items() if not k.startswith("_")}}

    def create_order(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        body, problem = _json_body(raw)
        if problem:
            return problem
        fields = self._order_problems(body)
        if fields:
            return 400, error(
                "VALIDATION_ERROR",
                "Não foi possível salvar a venda",
                "A venda não pode ser salva, pois ocorreram problemas em sua validação.",
                fields=fields,
            )
        items_total = sum(float(i["quantidade"]) * float(i["valor"]) for i in body["itens"])
        contact = self.contacts[int(body["contato"]["id"])]
        numero = body.get("numero") or next(self._numbers)
        order = {
            **body,
            "id": next(self._ids),
            "numero": numero,
            "numeroLoja": str(body.get("numeroLoja") or ""),
            "dataSaida": body.get("dataSaida") or body["data"],
            "dataPrevista": body.get("dataPrevista") or body["data"],
            "contato": {
                "id": contact["id"],
                "nome": contact["nome"],
                "tipoPessoa": contact.get("tipo", "F"),
                "numeroDocumento": contact.get("numeroDocumento", ""),
            },
            "situacao": {"id": OPEN_SITUATION, "valor": 0},
            "loja": {"id": int((body.get("loja") or {}).get("id") or 0)},
            "totalProdutos": round(items_total, 2),
            "total": round(_order_total(body), 2),
            "_posted_in": None,
        }
        self.sales_orders[order["id"]] = order
        return 201, {"data": {"id": order["id"], "alertas": []}}

    def update_order(self, query: dict[str, list[str]], raw: bytes, order_id: int) -> Reply:
        """``PUT /pedidos/vendas/{id}``: the order is replaced by the body (the create's fields,
        validated alike); its id, situation and stock posting stay. 200 with ``id`` and
        ``alertas``. Bling's answer for an order whose stock is posted is not documented: this
        stand-in refuses it (400), as it refuses any order ``refuse_updates`` names."""
        order = self.sales_orders.get(order_id)
        if order is None:
            return 404, error("RESOURCE_NOT_FOUND", "Pedido de venda não encontrado")
        body, problem = _json_body(raw)
        if problem:
            return problem
        if order_id in self._locked_orders or order["_posted_in"] is not None:
            return 400, error(
                "VALIDATION_ERROR",
                "Não foi possível salvar a venda",
                "A venda não pode ser alterada.",
            )
        fields = self._order_problems(body, editing=order_id)
        if fields:
            return 400, error(
                "VALIDATION_ERROR",
                "Não foi possível salvar a venda",
                "A venda não pode ser salva, pois ocorreram problemas em sua validação.",
                fields=fields,
            )
        contact = self.contacts[int(body["contato"]["id"])]
        items_total = sum(float(i["quantidade"]) * float(i["valor"]) for i in body["itens"])
        kept = {k: order[k] for k in ("id", "situacao", "_posted_in")}
        order.clear()
        order.update(
            {
                **body,
                **kept,
                "numero": body.get("numero") or next(self._numbers),
                "numeroLoja": str(body.get("numeroLoja") or ""),
                "dataSaida": body.get("dataSaida") or body["data"],
                "dataPrevista": body.get("dataPrevista") or body["data"],
                "contato": {
                    "id": contact["id"],
                    "nome": contact["nome"],
                    "tipoPessoa": contact.get("tipo", "F"),
                    "numeroDocumento": contact.get("numeroDocumento", ""),
                },
                "loja": {"id": int((body.get("loja") or {}).get("id") or 0)},
                "totalProdutos": round(items_total, 2),
                "total": round(_order_total(body), 2),
            }
        )
        self.order_updates[order_id] += 1
        return 200, {"data": {"id": order_id, "alertas": []}}

    def refuse_updates(self, order_id: int) -> None:
        """Bling will not change this sales order (``PUT`` answers 400)."""
        with self._lock:
            self._locked_orders.add(order_id)

    def _order_problems(
        self, body: dict[str, Any], editing: int | None = None
    ) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []

        def problem(element: str, msg: str, code: int = 1, **extra: Any) -> None:
            problems.append(
                {"code": code, "msg": msg, "element": element, "namespace": "VENDAS", **extra}
            )

        if int((body.get("contato") or {}).get("id") or 0) not in self.contacts:
            problem("contato", "O contato informado não existe.")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(body.get("data") or "")):
            problem("data", "A data da venda é inválida.")
        numero = body.get("numero")
        if numero and any(
            o["numero"] == numero and o["id"] != editing for o in self.sales_orders.values()
        ):
            problem("numero", "Já existe uma venda com este número.")
        items = body.get("itens") or []
        if not items:
            problem("itens", "A venda deve possuir ao menos um item.")
        for index, item in enumerate(items, start=1):
            product = int((item.get("produto") or {}).get("id") or 0)
            if product not in self.products or not item.get("descricao"):
                problem("itens", f"Item {index}: produto ou descrição inválidos.", index=index)
            if not float(item.get("quantidade") or 0) > 0 or item.get("valor") is None:
                problem("itens", f"Item {index}: quantidade ou valor inválidos.", index=index)
        installments = body.get("parcelas") or []
        bad = [
            {
                "index": i,
                "code": 12,
                "msg": "Id da forma de pagamento inválido.",
                "element": "formaPagamento",
                "namespace": "VENDAS",
            }
            for i, p in enumerate(installments, start=1)
            if int((p.get("formaPagamento") or {}).get("id") or 0) != PAYMENT_METHOD_ID
        ]
        if not installments:
            problem("parcelas", "A venda deve possuir ao menos uma parcela.")
        elif bad:
            msg = "Uma ou mais parcelas da venda possuem erros de validação"
            problem("parcelas", msg, code=49, collection=bad)
        elif items and not problems:
            paid = sum(float(p.get("valor") or 0) for p in installments)
            if abs(paid - _order_total(body)) > 0.005:
                problem("parcelas", "A soma das parcelas difere do total da venda.", code=50)
        return problems

    def post_stock(
        self, query: dict[str, list[str]], raw: bytes, order_id: int, deposit: int | None = None
    ) -> Reply:
        order = self.sales_orders.get(order_id)
        if order is None:
            return 404, error("RESOURCE_NOT_FOUND", "Pedido de venda não encontrado")
        deposit = deposit or self.default_deposit
        if deposit is None:
            return 400, error("VALIDATION_ERROR", "Nenhum depósito padrão definido")
        if deposit not in self.deposits:
            return 400, error("VALIDATION_ERROR", "Depósito inválido")
        if order["_posted_in"] is not None:
            # The real message is undocumented; this one stands for "refused, already posted".
            return 400, error("VALIDATION_ERROR", "O estoque deste pedido já foi lançado")
        self._move_stock(order, deposit, -1)
        order["_posted_in"] = deposit
        self.postings[order_id] += 1
        if self.after_posting is not None:
            self.after_posting()
        return 204, None

    def reverse_stock(self, query: dict[str, list[str]], raw: bytes, order_id: int) -> Reply:
        order = self.sales_orders.get(order_id)
        if order is None:
            return 404, error("RESOURCE_NOT_FOUND", "Pedido de venda não encontrado")
        if order["_posted_in"] is None:
            return 400, error("VALIDATION_ERROR", "O pedido não possui lançamento de estoque")
        self._move_stock(order, order["_posted_in"], +1)
        order["_posted_in"] = None
        self.reversals[order_id] += 1
        return 204, None

    def _move_stock(self, order: dict[str, Any], deposit: int, sign: int) -> None:
        """Post (-1) or reverse (+1) the order's items in ``deposit``; each movement emits its
        stock event, as Bling's physical postings do."""
        for item in order["itens"]:
            product = self.products[int(item["produto"]["id"])]
            quantity = float(item["quantidade"])
            product.physical[deposit] = product.physical.get(deposit, 0.0) + sign * quantity
            self._emit_posting(product, deposit, "S" if sign < 0 else "E", quantity)

    # --- sales order situations, and orders other integrations import (the order's life) -----
    #
    # Bling's standard "Vendas" situations keep the ids of a default account (``OPEN_SITUATION``
    # is "Em aberto"); the module ids and one custom situation are made up. Tests may rename,
    # renumber or drop them (``sales_situations``) to play another account. A move to
    # "Cancelado" (or a situation derived from it) reverses a posted order's stock when
    # ``cancelling_reverses_stock`` is set, as an account's transition action "estornar estoque"
    # does. ``refuse_situation_changes(order_id)`` makes Bling refuse to move that order (an
    # invoiced one, say). ``import_order`` plays Bling's own Shopify integration.

    def _init_order_life(self) -> None:
        self.situation_modules: list[dict[str, Any]] = [
            {"id": SALES_MODULE_ID, "nome": "Vendas", "descricao": "Pedidos de Venda"},
            {"id": SALES_MODULE_ID + 1, "nome": "Compras", "descricao": "Pedidos de Compra"},
            {"id": SALES_MODULE_ID + 2, "nome": "Propostas", "descricao": "Propostas comerciais"},
        ]
        self.sales_situations: list[dict[str, Any]] = [
            {"id": OPEN_SITUATION, "nome": "Em aberto", "idHerdado": 0, "cor": "#E9DC40"},
            {"id": 9, "nome": "Atendido", "idHerdado": 0, "cor": "#3FB57A"},
            {"id": CANCELLED_SITUATION, "nome": "Cancelado", "idHerdado": 0, "cor": "#CD2828"},
            {"id": 15, "nome": "Em andamento", "idHerdado": 0, "cor": "#5A9BD5"},
            {"id": 24, "nome": "Verificado", "idHerdado": 0, "cor": "#000080"},
            {"id": 301_001, "nome": "Cancelado", "idHerdado": CANCELLED_SITUATION, "cor": "#999"},
        ]
        self.cancelling_reverses_stock = False
        #: ``PUT /pedidos/vendas/{id}`` made, per order; orders ``refuse_updates`` names.
        self.order_updates: collections.Counter[int] = collections.Counter()
        self._locked_orders: set[int] = set()
        self._frozen_orders: set[int] = set()
        #: (order id, situation before, situation after) for each change (a repeat is none).
        self.situation_changes: list[tuple[int, int, int]] = []
        self.situation_reversals: collections.Counter[int] = collections.Counter()

    def refuse_situation_changes(self, order_id: int) -> None:
        with self._lock:
            self._frozen_orders.add(order_id)

    def situation_of(self, order_id: int) -> str:
        """The name of the sales order's current situation."""
        with self._lock:
            current = self.sales_orders[order_id]["situacao"]["id"]
            return next(s["nome"] for s in self.sales_situations if s["id"] == current)

    def import_order(
        self, numero_loja: str, lines: list[tuple[str, int]], *, store_id: int = 204_000_001
    ) -> int:
        """A sales order as Bling's own Shopify integration imports one: the shop's order name
        as ``numeroLoja``, its own channel, no marker of ours, and its stock posted."""
        with self._lock:
            order = {
                "id": next(self._ids),
                "numero": next(self._numbers),
                "numeroLoja": numero_loja,
                "data": time.strftime("%Y-%m-%d"),
                "dataSaida": time.strftime("%Y-%m-%d"),
                "dataPrevista": time.strftime("%Y-%m-%d"),
                "contato": {"id": CONSUMIDOR_FINAL_ID, "nome": "Consumidor Final"},
                "itens": [
                    {
                        "codigo": codigo,
                        "quantidade": float(quantity),
                        "valor": 1.0,
                        "descricao": codigo,
                        "produto": {"id": self.product_id(codigo)},
                    }
                    for codigo, quantity in lines
                ],
                "parcelas": [],
                "situacao": {"id": OPEN_SITUATION, "valor": 0},
                "loja": {"id": store_id},
                "totalProdutos": 0.0,
                "total": 0.0,
                "observacoes": "Pedido importado da Shopify",
                "observacoesInternas": "",
                "_posted_in": None,
            }
            self.sales_orders[order["id"]] = order
            self._move_stock(order, self.default_deposit, -1)
            order["_posted_in"] = self.default_deposit
            self.postings[order["id"]] += 1
            return int(order["id"])

    def list_situation_modules(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        rows = [{**m, "criarSituacoes": True} for m in self.situation_modules]
        return 200, {"data": rows}

    def list_situations(self, query: dict[str, list[str]], raw: bytes, module_id: int) -> Reply:
        if module_id == SALES_MODULE_ID:
            return 200, {"data": [dict(s) for s in self.sales_situations]}
        if any(m["id"] == module_id for m in self.situation_modules):
            return 200, {"data": []}
        return 404, error("RESOURCE_NOT_FOUND", "Módulo não encontrado")

    def set_situation(
        self, query: dict[str, list[str]], raw: bytes, order_id: int, situation: int
    ) -> Reply:
        order = self.sales_orders.get(order_id)
        if order is None:
            return 404, error("RESOURCE_NOT_FOUND", "Pedido de venda não encontrado")
        target = next((s for s in self.sales_situations if s["id"] == situation), None)
        if target is None:
            return 400, error("VALIDATION_ERROR", "Situação inválida para pedidos de venda")
        before = int(order["situacao"]["id"])
        if before == situation:
            return 204, None  # already there: nothing changes
        if order_id in self._frozen_orders:
            return 400, error(
                "VALIDATION_ERROR",
                "Não foi possível alterar a situação",
                "A situação do pedido não pode ser alterada.",
            )
        cancelling = CANCELLED_SITUATION in (target["id"], target.get("idHerdado"))
        if cancelling and self.cancelling_reverses_stock and order["_posted_in"] is not None:
            self._move_stock(order, order["_posted_in"], +1)  # the transition's own action
            order["_posted_in"] = None
            self.situation_reversals[order_id] += 1
        order["situacao"] = {"id": situation, "valor": 0}
        self.situation_changes.append((order_id, before, situation))
        return 204, None

    # --- stock entries outside sales orders (refunds and order edits) ----------------------------
    #
    # ``POST /estoques`` (spec: EstoquesDadosDTO + EstoquesDadosBaseDTO): ``produto.id``,
    # ``deposito.id``, ``operacao`` ``E`` (entrada), ``S`` (saída) or ``B`` (balanço: the balance
    # becomes ``quantidade``), ``quantidade`` > 0, optional ``observacoes``; 201 with the
    # movement's ``id``. Bling keeps no idempotency key: each call is one more movement, recorded
    # in ``stock_entries``. Each emits its ``stock.updated`` webhook, as postings do.

    def _init_stock_entries(self) -> None:
        #: Every movement made: (id, product id, deposit, operacao, quantidade, observacoes).
        self.stock_entries: list[tuple[int, int, int, str, float, str]] = []
        self._entry_ids = itertools.count(77_000_001)

    def entries_of(self, codigo: str) -> list[tuple[str, float]]:
        """(operacao, quantidade) of each movement of a product, in order."""
        product = self.product_id(codigo)
        return [(op, qty) for _, pid, _, op, qty, _ in self.stock_entries if pid == product]

    def create_stock_entry(self, query: dict[str, list[str]], raw: bytes) -> Reply:
        body, bad = _json_body(raw)
        if bad is not None:
            return bad
        product_id = (body.get("produto") or {}).get("id")
        deposit = (body.get("deposito") or {}).get("id")
        operation = body.get("operacao")
        quantity = body.get("quantidade")
        problems = []
        if not isinstance(product_id, int) or product_id not in self.products:
            problems.append({"element": "produto", "msg": "Produto não encontrado"})
        if not isinstance(deposit, int) or deposit not in self.deposits:
            problems.append({"element": "deposito", "msg": "Depósito inválido"})
        if operation not in ("E", "S", "B"):
            problems.append({"element": "operacao", "msg": "Operação inválida"})
        if not isinstance(quantity, int | float) or isinstance(quantity, bool) or quantity <= 0:
            problems.append({"element": "quantidade", "msg": "Quantidade inválida"})
        if problems:
            return 400, error("VALIDATION_ERROR", "Não foi possível salvar", fields=problems)
        assert isinstance(product_id, int) and isinstance(deposit, int)
        product = self.products[product_id]
        current = product.physical.get(deposit, 0.0)
        amount = float(quantity)
        if operation == "B":
            product.physical[deposit] = amount
        else:
            product.physical[deposit] = current + (amount if operation == "E" else -amount)
        entry_id = next(self._entry_ids)
        note = str(body.get("observacoes") or "")
        self.stock_entries.append((entry_id, product_id, deposit, operation, amount, note))
        self._emit_posting(product, deposit, operation, amount)
        return 201, {"data": {"id": entry_id}}


_BALANCE_FILTERS = {0: lambda v: v == 0, 1: lambda v: v > 0, 2: lambda v: v < 0}
_N = r"(\d+)"
_ROUTES = [
    ("GET", r"/produtos", "list_products"),
    ("GET", r"/estoques/saldos", "balances"),
    ("GET", rf"/estoques/saldos/{_N}", "balances"),
    ("GET", r"/depositos", "list_deposits"),
    ("GET", r"/empresas/me/dados-basicos", "company"),
    ("GET", r"/contatos", "list_contacts"),
    ("POST", r"/contatos", "create_contact"),
    ("GET", r"/contatos/consumidor-final", "consumer_final"),
    ("GET", rf"/contatos/{_N}", "get_contact"),
    ("GET", r"/pedidos/vendas", "list_orders"),
    ("POST", r"/pedidos/vendas", "create_order"),
    ("GET", rf"/pedidos/vendas/{_N}", "get_order"),
    ("PUT", rf"/pedidos/vendas/{_N}", "update_order"),
    ("POST", rf"/pedidos/vendas/{_N}/lancar-estoque(?:/{_N})?", "post_stock"),
    ("POST", rf"/pedidos/vendas/{_N}/estornar-estoque", "reverse_stock"),
    ("PATCH", rf"/pedidos/vendas/{_N}/situacoes/{_N}", "set_situation"),
]
# stock entries outside sales orders (refunds and order edits)
_ROUTES += [("POST", r"/estoques", "create_stock_entry")]
# sales order situations (the order's life)
_ROUTES += [
    ("GET", r"/situacoes/modulos", "list_situation_modules"),
    ("GET", rf"/situacoes/modulos/{_N}", "list_situations"),
]


def _one(query: dict[str, list[str]], name: str) -> str:
    return (query.get(name) or [""])[0]


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    value = _one(query, name)
    return int(value) if value.lstrip("-").isdigit() else default


def _ints(values: list[str] | None) -> set[int]:
    return {int(v) for v in values or () if v.isdigit()}


def _page(rows: list[Any], query: dict[str, list[str]]) -> list[Any]:
    page = max(1, _int(query, "pagina", 1))
    limit = min(100, max(1, _int(query, "limite", 100)))
    return rows[(page - 1) * limit : page * limit]


def _product_row(product: Product, deposits: tuple[int, ...]) -> dict[str, Any]:
    virtual = sum(product.virtual(d) for d in deposits)
    return {
        **{"id": product.id, "idProdutoPai": 0, "nome": product.nome, "codigo": product.codigo},
        **{"preco": 0, "precoCusto": 0, "estoque": {"saldoVirtualTotal": virtual}, "tipo": "P"},
        **{"situacao": product.situacao, "formato": "S", "descricaoCurta": "", "imagemURL": ""},
    }


def _order_total(body: dict[str, Any]) -> float:
    items = sum(float(i.get("quantidade") or 0) * float(i.get("valor") or 0) for i in body["itens"])
    shipping = float((body.get("transporte") or {}).get("frete") or 0)
    discount = body.get("desconto") or {}
    off = float(discount.get("valor") or 0)
    if discount.get("unidade") == "PERCENTUAL":
        off = items * off / 100
    return items + shipping - off + float(body.get("outrasDespesas") or 0)


def _json_body(raw: bytes) -> tuple[dict[str, Any], Reply | None]:
    if not raw.strip():
        return {}, (400, error("EMPTY_REQUEST_BODY", "O corpo da requisição está vazio"))
    try:
        body = json.loads(raw)
    except ValueError:
        return {}, (400, error("INVALID_REQUEST_BODY", "O corpo da requisição é inválido"))
    if not isinstance(body, dict):
        return {}, (400, error("INVALID_REQUEST_BODY", "O corpo da requisição é inválido"))
    return body, None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and left is expected here; ``calls`` records the rest


class _Handler(BaseHTTPRequestHandler):
    standin: BlingStandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        arrived = time.monotonic()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.standin.unavailable():
            self._unavailable()
            return
        parts = urlsplit(self.path)
        if not parts.path.startswith(PREFIX + "/"):
            self._answer(404, error("RESOURCE_NOT_FOUND", "Recurso não encontrado"))
            return
        path = parts.path[len(PREFIX) :]
        standin, authorization = self.standin, self.headers.get("Authorization") or ""
        if path == "/oauth/authorize" and method == "GET":
            status, headers = standin.oauth_authorize(dict(parse_qsl(parts.query)))
            self._answer(status, None, headers)
            return
        if path == "/oauth/token" and method == "POST":
            self._answer(*standin.oauth_token(authorization, dict(parse_qsl(raw.decode()))))
            return
        call = Call(method, path, parse_qs(parts.query), arrived)
        call.jwt_header = self.headers.get("enable-jwt") == "1"
        reply = standin.admit(call, authorization) or standin.route(method, path, call.query, raw)
        if method != "GET" and reply[0] < 300 and standin.lose_this_answer():
            call.status = 0  # applied, but the client never hears of it
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        call.status = reply[0]
        self._answer(*reply)

    def _unavailable(self) -> None:
        data = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
        try:
            self.send_response(503)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None or status == 204 else json.dumps(body).encode()
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a read timeout under test)
