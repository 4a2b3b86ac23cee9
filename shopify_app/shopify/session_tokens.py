"""Shopify session tokens (ID tokens): the JWT App Bridge gives an embedded app's page.

Checked as Shopify's own library checks them, plus the shop (research: checkout_enforcement.md
§3.2): HS256 signed with the app's secret (the current one, then the previous one while it
rotates), ``aud`` = the app's API key, ``exp`` and ``nbf`` with a few seconds of leeway for
clock skew (a token lives one minute), and ``dest`` (and ``iss``) naming a ``*.myshopify.com``
shop. Whether this service serves that shop is the caller's question (it needs the database).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from ..config import SHOP_DOMAIN_RE

#: Shopify's library allows 1 s (10 s in older releases); 5 s covers a dyno's clock drift.
LEEWAY_SECONDS = 5
REQUIRED_CLAIMS = ("exp", "nbf", "aud", "dest", "iss")


@contextmanager
def _shopify_key() -> Iterator[None]:
    """The key is the app's secret, whose length Shopify chooses: PyJWT's advice to use 32
    bytes or more is not ours to follow (Shopify's are 32+; test secrets are shorter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


class InvalidSessionToken(Exception):
    """The token is missing, forged, expired or not for this app; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class SessionToken:
    shop: str  # the shop's domain, from ``dest``
    user: str  # ``sub``: the admin user (staff member id) the page acts for
    session: str | None  # ``sid``
    expires_at: datetime


def shop_of(url: str) -> str | None:
    """``https://name.myshopify.com[/admin]`` → ``name.myshopify.com``, or None."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not SHOP_DOMAIN_RE.match(host):
        return None
    return host


def verify(
    token: str, *, api_key: str | None, secrets: Sequence[str], now: datetime
) -> SessionToken:
    """The token's shop and user, or InvalidSessionToken (no secret or key set: always)."""
    if not token or not api_key or not secrets:
        raise InvalidSessionToken("missing")
    claims = None
    for secret in secrets:
        try:
            with _shopify_key():
                claims = jwt.decode(
                    token,
                    secret,
                    algorithms=["HS256"],
                    audience=api_key,
                    # exp and nbf are checked below against the service's clock, not the machine's.
                    options={
                        "require": list(REQUIRED_CLAIMS),
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                    },
                )
            break
        except jwt.InvalidSignatureError:
            continue  # maybe signed with the other secret
        except jwt.InvalidAudienceError:
            raise InvalidSessionToken("wrong_audience") from None
        except jwt.PyJWTError:
            raise InvalidSessionToken("malformed") from None
    if claims is None:
        raise InvalidSessionToken("bad_signature")
    try:
        expires, not_before = float(claims["exp"]), float(claims["nbf"])
    except (TypeError, ValueError):
        raise InvalidSessionToken("malformed") from None
    if expires + LEEWAY_SECONDS < now.timestamp():
        raise InvalidSessionToken("expired")
    if not_before - LEEWAY_SECONDS > now.timestamp():
        raise InvalidSessionToken("not_yet_valid")
    shop = shop_of(str(claims["dest"]))
    if shop is None or shop_of(str(claims["iss"])) != shop:
        raise InvalidSessionToken("wrong_shop")
    return SessionToken(
        shop=shop,
        user=str(claims.get("sub") or "unknown"),
        session=str(claims["sid"]) if claims.get("sid") else None,
        expires_at=datetime.fromtimestamp(expires, tz=UTC),
    )


def mint(
    secret: str,
    *,
    api_key: str,
    shop: str,
    user: str,
    now: datetime,
    lifetime: int = 60,
    not_before: int = 0,
) -> str:
    """A token as Shopify signs one (tests, and the development mode's stub of App Bridge)."""
    issued = int(now.timestamp())
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": api_key,
        "sub": user,
        "exp": issued + lifetime,
        "nbf": issued + not_before,
        "iat": issued,
        "jti": f"{user}-{issued}",
        "sid": f"session-{user}",
    }
    with _shopify_key():
        return jwt.encode(claims, secret, algorithm="HS256")
