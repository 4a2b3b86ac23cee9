"""The one module that talks to Shopify's Admin API and the only one that imports ``shopify``.

ShopifyAPI (import ``shopify``) is deprecated upstream and its successor's import name
(``shopify_app``) clashes with this package, so every use of the library sits here and a switch
replaces this module only. What it is used for:

- the OAuth query HMAC (``shopify.Session.calculate_hmac``: sorted ``key=value`` pairs joined
  with ``&``, delimiters escaped, ``key[]`` lists rendered the way Shopify signs them);
- the API version: ``shopify.ApiVersion`` validates the pinned version and builds its path.

The HTTP calls (code exchange, token refresh, GraphQL) go through ``requests`` instead, because
ShopifyAPI cannot make them the way this service needs:

- ``shopify.Session`` rewrites any host to ``<first label>.myshopify.com`` over ``https``
  (class-wide ``protocol``/``port``), so it cannot reach ``SHOPIFY_ADMIN_URL`` when that points at
  the loopback stand-in the tests use, and one code path for tests and production is the point;
- ``shopify.GraphQL().execute`` uses the session activated on ``ShopifyResource`` (class state
  that threads fall back to: a global API session shared by threads, a known trap), calls
  ``urlopen`` with no timeout and prints error bodies to stdout;
- ``Session.request_token`` cannot ask for expiring tokens (``expiring=1``) nor refresh them.

Every call has a timeout; every failure is raised as a :class:`ShopifyError` subclass, never
returned as ``None``. Tokens and secrets never appear in messages or logs.
"""

from __future__ import annotations

import http.cookiejar
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
import shopify

#: Every Admin API call and webhook payload uses this version (Shopify releases quarterly and
#: supports each for 12 months; bump it deliberately, together with ``shopify.app.toml``).
API_VERSION = "2026-07"
_VERSION = shopify.ApiVersion.coerce_to_version(API_VERSION)  # fails at import on a typo

#: (connect, read) seconds. Token calls run while the shop row is locked (single-flight refresh),
#: so they are kept short: a waiter gives up on the lock after DB_LOCK_TIMEOUT_MS (5 s default).
TOKEN_TIMEOUT = (3.05, 4.0)
GRAPHQL_TIMEOUT = (3.05, 10.0)


# --- errors --------------------------------------------------------------------------------


class ShopifyError(Exception):
    """Any failure talking to Shopify."""


class ShopifyUnavailable(ShopifyError):
    """Shopify did not answer usefully (network, timeout, 5xx, throttled): worth a retry later."""


class ShopifyRejected(ShopifyError):
    """Shopify refused the request (4xx); retrying the same request will not help."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ShopifyUnauthorized(ShopifyRejected):
    """401/403: the access token or the app's client credentials are not accepted."""


class InvalidGrant(ShopifyRejected):
    """The authorization code or refresh token is not (or no longer) valid."""


@dataclass(frozen=True)
class ThrottleStatus:
    """Shopify's cost bucket for this app on the shop (``extensions.cost.throttleStatus``)."""

    maximum_available: float
    currently_available: float
    restore_rate: float

    def seconds_until(self, points: float) -> float:
        """How long until the bucket holds ``points`` (0 when it already does)."""
        missing = min(points, self.maximum_available) - self.currently_available
        if missing <= 0:
            return 0.0
        return missing / self.restore_rate if self.restore_rate > 0 else 60.0


class ShopifyThrottled(ShopifyUnavailable):
    """THROTTLED (or 429): the bucket cannot pay for the call; ``retry_after`` says how long
    until it can (from Shopify's throttle status when it came, else 1 s)."""

    def __init__(
        self,
        message: str,
        *,
        throttle: ThrottleStatus | None = None,
        requested_cost: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.throttle = throttle
        self.requested_cost = requested_cost
        if retry_after is None and throttle is not None and requested_cost is not None:
            retry_after = throttle.seconds_until(requested_cost)
        self.retry_after = max(0.0, retry_after if retry_after is not None else 1.0)


@dataclass(frozen=True)
class GraphQLAnswer:
    """An Admin GraphQL call's ``data`` and what it cost (``extensions.cost``, when given)."""

    data: dict[str, Any]
    requested_cost: float | None = None
    actual_cost: float | None = None
    throttle: ThrottleStatus | None = None


class GraphQLError(ShopifyError):
    """The GraphQL answer carries top-level ``errors`` (a malformed or refused query)."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("; ".join(messages) or "GraphQL error")
        self.messages = list(messages)


# --- OAuth query HMAC ----------------------------------------------------------------------


def _session_with_secret(secret: str) -> type[shopify.Session]:
    # Session.calculate_hmac reads the class attribute ``secret``; a throwaway subclass keeps the
    # secret out of ShopifyAPI's process-wide state (and out of other threads' way).
    return type("_SigningSession", (shopify.Session,), {"secret": secret})


def query_params(args: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
    """Turn a query string's pairs into what the HMAC is computed over.

    ``key[]`` keys become lists (Shopify signs them as a JSON array); any other key given twice
    makes the query ambiguous, so ``None`` is returned and the caller must refuse the request.
    """
    params: dict[str, Any] = {}
    for key, value in args:
        if key.endswith("[]"):
            params.setdefault(key, []).append(value)
        elif key in params:
            return None
        else:
            params[key] = value
    return params


def query_hmac(params: Mapping[str, Any], secret: str) -> str:
    """The hex HMAC-SHA256 Shopify puts in ``hmac`` of install and OAuth redirects."""
    return str(_session_with_secret(secret).calculate_hmac(dict(params)))


def verify_query_hmac(params: Mapping[str, Any], secrets: Sequence[str]) -> bool:
    """True when ``params["hmac"]`` was made with one of ``secrets`` (current, previous).

    Constant time, and every secret is tried, so timing does not tell which one matched.
    """
    given = params.get("hmac")
    if not isinstance(given, str) or not given or not secrets:
        return False
    found = False
    for secret in secrets:
        found |= bool(_session_with_secret(secret).validate_hmac({**params, "hmac": given.lower()}))
    return found


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenGrant:
    """What Shopify's token endpoint answered. ``repr`` hides the tokens."""

    access_token: str = field(repr=False)
    scope: str
    expires_in: int | None = None  # None: a non-expiring (legacy or custom app) token
    refresh_token: str | None = field(default=None, repr=False)
    refresh_token_expires_in: int | None = None


def admin_base_url(admin_url_template: str, shop: str) -> str:
    """``SHOPIFY_ADMIN_URL`` with ``{shop}`` filled in, e.g. ``https://x.myshopify.com``."""
    return admin_url_template.replace("{shop}", shop).rstrip("/")


def authorize_url(
    admin_base: str, *, client_id: str, scopes: str, redirect_uri: str, state: str
) -> str:
    """Where the merchant approves the app; no ``grant_options[]`` means an offline token."""
    query = urlencode(
        {"client_id": client_id, "scope": scopes, "redirect_uri": redirect_uri, "state": state}
    )
    return f"{admin_base}/admin/oauth/authorize?{query}"


def exchange_code(admin_base: str, *, client_id: str, client_secret: str, code: str) -> TokenGrant:
    """Trade an authorization code for an **expiring** offline token and its refresh token."""
    return _token_request(
        admin_base,
        {"client_id": client_id, "client_secret": client_secret, "code": code, "expiring": "1"},
    )


def refresh_access_token(
    admin_base: str, *, client_id: str, client_secret: str, refresh_token: str
) -> TokenGrant:
    """Rotate: a new access token and a new refresh token; the old refresh token stops working."""
    return _token_request(
        admin_base,
        {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        },
    )


def _token_request(admin_base: str, form: dict[str, str]) -> TokenGrant:
    url = f"{admin_base}/admin/oauth/access_token"
    # A form body, not a query string: the client secret and codes must not land in access logs.
    response = _post(url, data=form, headers={"Accept": "application/json"}, timeout=TOKEN_TIMEOUT)
    body = _json_or_none(response)
    if response.status_code != 200:
        code = body.get("error") if isinstance(body, dict) else None
        message = f"token endpoint answered {response.status_code}" + (f" ({code})" if code else "")
        if code == "invalid_grant":
            raise InvalidGrant(message, status=response.status_code, code=code)
        _raise_for_status(response.status_code, message, code)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise ShopifyUnavailable("token endpoint answered 200 without an access_token")
    return TokenGrant(
        access_token=body["access_token"],
        scope=str(body.get("scope", "")),
        expires_in=_optional_int(body.get("expires_in")),
        refresh_token=_optional_str(body.get("refresh_token")),
        refresh_token_expires_in=_optional_int(body.get("refresh_token_expires_in")),
    )


# --- GraphQL -------------------------------------------------------------------------------


def graphql_url(admin_base: str) -> str:
    """``{admin}/admin/api/<API_VERSION>/graphql.json``."""
    return f"{_VERSION.api_path(admin_base)}/graphql.json"


def graphql(
    admin_base: str, access_token: str, query: str, variables: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Run one Admin GraphQL operation and return its ``data``; raise on any error."""
    return graphql_answer(admin_base, access_token, query, variables).data


def graphql_answer(
    admin_base: str, access_token: str, query: str, variables: Mapping[str, Any] | None = None
) -> GraphQLAnswer:
    """``graphql`` with the call's cost and Shopify's throttle status, for callers that pace
    themselves by the bucket (the stock publisher). THROTTLED raises ShopifyThrottled."""
    response = _post(
        graphql_url(admin_base),
        data=json.dumps({"query": query, "variables": dict(variables or {})}),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Shopify-Access-Token": access_token,
        },
        timeout=GRAPHQL_TIMEOUT,
    )
    body = _json_or_none(response)
    if response.status_code == 429:
        raise ShopifyThrottled(
            "GraphQL answered 429", retry_after=_optional_float(response.headers.get("Retry-After"))
        )
    if response.status_code != 200:
        _raise_for_status(response.status_code, f"GraphQL answered {response.status_code}", None)
    if not isinstance(body, dict):
        raise ShopifyUnavailable("GraphQL answered 200 with a body that is not a JSON object")
    requested, actual, throttle = _cost_of(body)
    errors = body.get("errors")
    if errors:
        items = errors if isinstance(errors, list) else [{"message": str(errors)}]
        codes = {str(_error_code(e)) for e in items if isinstance(e, dict)}
        messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in items]
        if "THROTTLED" in codes:
            raise ShopifyThrottled(
                "GraphQL throttled: " + "; ".join(messages),
                throttle=throttle,
                requested_cost=requested,
            )
        raise GraphQLError(messages)
    data = body.get("data")
    if not isinstance(data, dict):
        raise ShopifyUnavailable("GraphQL answered without data")
    return GraphQLAnswer(data, requested, actual, throttle)


def _cost_of(body: dict[str, Any]) -> tuple[float | None, float | None, ThrottleStatus | None]:
    """``extensions.cost`` read tolerantly: anything missing or malformed is None."""
    extensions = body.get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    if not isinstance(cost, dict):
        return None, None, None
    status = cost.get("throttleStatus")
    throttle = None
    if isinstance(status, dict):
        parts = [
            _optional_float(status.get(k))
            for k in ("maximumAvailable", "currentlyAvailable", "restoreRate")
        ]
        if all(p is not None for p in parts):
            throttle = ThrottleStatus(*(float(p or 0) for p in parts))
    return (
        _optional_float(cost.get("requestedQueryCost")),
        _optional_float(cost.get("actualQueryCost")),
        throttle,
    )


# --- plumbing ------------------------------------------------------------------------------


def _error_code(error: dict[str, Any]) -> Any:
    """A GraphQL error's ``extensions.code`` (``THROTTLED``…), or None; ``extensions`` that is not
    an object carries no code."""
    extensions = error.get("extensions")
    return extensions.get("code") if isinstance(extensions, dict) else None


_sessions = threading.local()


def _session() -> requests.Session:
    """This thread's session: its connections to Shopify stay open between calls (``requests.post``
    opened and closed one per call: a TCP and TLS handshake for every page and every metafield
    batch). One per thread, as requests' sessions are not made to be shared across threads; it
    keeps no cookies, so nothing one shop's answer sets reaches another shop's call."""
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = requests.Session()
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        _sessions.session = session
    return session


def _post(url: str, *, timeout: tuple[float, float], **kwargs: Any) -> requests.Response:
    try:
        return _session().post(url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.Timeout as exc:
        raise ShopifyUnavailable(f"Shopify timed out ({exc.__class__.__name__})") from exc
    except requests.RequestException as exc:
        # requests names the host and path in its errors, never the headers or the body, so the
        # chained exception carries no token or secret.
        raise ShopifyUnavailable(f"Shopify unreachable ({exc.__class__.__name__})") from exc


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _raise_for_status(status: int, message: str, code: str | None) -> None:
    if status in (401, 403):
        raise ShopifyUnauthorized(message, status=status, code=code)
    if status == 429 or status >= 500 or status < 400:
        raise ShopifyUnavailable(message)
    raise ShopifyRejected(message, status=status, code=code)


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ShopifyUnavailable("token endpoint answered a non-numeric lifetime") from None
