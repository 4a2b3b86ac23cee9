"""Installed shops and their Admin API tokens: stored encrypted, refreshed single-flight.

Shopify's expiring offline tokens last an hour; the refresh token that renews them is rotated on
every use (the old one stops working after a short retry window). So a refresh must happen once
per expiry across every process, and its result must be stored before anyone else reads the row:

1. read the row; a token valid beyond ``REFRESH_MARGIN`` is returned as is (the common case);
2. otherwise lock the row (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the write
   transaction began with ``BEGIN IMMEDIATE``, db.py), **re-read** it, and refresh only if it is
   still needed: a process that waited on the lock finds the token its predecessor stored;
3. the new access token and the rotated refresh token are written in that same transaction;
4. on ``invalid_grant`` the row is read again before the connection is declared lost: a writer
   outside this protocol (a re-install, an older release) may have rotated the token meanwhile.

``SHOPIFY_ACCESS_TOKEN`` (a custom app's token, which never expires) short-circuits all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    String,
    Table,
    Text,
    case,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ..clock import Clock
from ..config import Settings
from ..crypto import TokenCipher
from ..db.engine import READ_ONLY
from ..db.metadata import UTCDateTime, metadata
from ..observability import metrics
from ..runtime import Runtime
from ..unit_of_work import UnitOfWork
from . import client

log = logging.getLogger(__name__)

#: A token that expires sooner than this is refreshed first, so a call never starts with a token
#: that dies on the way (and clocks that disagree by a little do not matter).
REFRESH_MARGIN = timedelta(minutes=5)

shops = Table(
    "shops",
    metadata,
    Column("shop", String(255), primary_key=True),
    # Fernet ciphertexts (base64 text); NULL once the app is uninstalled.
    Column("access_token_encrypted", Text, nullable=True),
    Column("refresh_token_encrypted", Text, nullable=True),
    Column("access_expires_at", UTCDateTime, nullable=True),  # NULL: a non-expiring token
    Column("refresh_expires_at", UTCDateTime, nullable=True),
    Column("scopes", String(1024), nullable=False),
    Column("installed_at", UTCDateTime, nullable=False),
    Column("uninstalled_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)


class ShopTokenError(Exception):
    """No usable Admin API token for a shop."""


class ShopNotInstalled(ShopTokenError):
    """The shop never installed the app, or uninstalled it."""


class ShopConnectionLost(ShopTokenError):
    """The refresh token is expired or refused: the merchant must open the app (re-install)."""


@dataclass(frozen=True)
class _ShopRow:
    shop: str
    access_token: str | None
    refresh_token: str | None
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    uninstalled_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        if self.access_token is None or self.uninstalled_at is not None:
            return False
        return self.access_expires_at is None or self.access_expires_at - REFRESH_MARGIN > now


# --- writes inside a caller's transaction ---------------------------------------------------


def save_tokens(
    connection: Connection,
    cipher: TokenCipher,
    shop: str,
    grant: client.TokenGrant,
    *,
    issued_at: datetime,
    now: datetime,
) -> None:
    """Store ``grant`` for ``shop`` (insert or replace), encrypted, in the caller's transaction.

    ``issued_at`` is when the token request was sent: lifetimes count from then, so the stored
    expiry errs early. A re-install clears ``uninstalled_at`` and restarts ``installed_at``.
    """
    values: dict[str, Any] = {
        "access_token_encrypted": cipher.encrypt(grant.access_token),
        "refresh_token_encrypted": (
            cipher.encrypt(grant.refresh_token) if grant.refresh_token else None
        ),
        "access_expires_at": _after(issued_at, grant.expires_in),
        "refresh_expires_at": _after(issued_at, grant.refresh_token_expires_in),
        "scopes": grant.scope,
        "updated_at": now,
    }
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(shops).values(shop=shop, installed_at=now, uninstalled_at=None, **values)
    reinstalled = case(
        (shops.c.uninstalled_at.is_not(None), literal(now, UTCDateTime)),
        else_=shops.c.installed_at,
    )
    connection.execute(
        stmt.on_conflict_do_update(
            index_elements=[shops.c.shop],
            set_={**values, "installed_at": reinstalled, "uninstalled_at": None},
        )
    )


def forget_shop(db: Connection | UnitOfWork, shop: str, *, now: datetime | None = None) -> bool:
    """Erase ``shop``'s tokens and mark it uninstalled (the ``app/uninstalled`` webhook).

    Runs in the caller's transaction: pass the webhook's unit of work (its ``now`` is used) or a
    ``Connection`` (then ``now`` defaults to the wall clock). The row stays, with
    ``uninstalled_at`` set, so a later ``access_token(shop)`` raises ShopNotInstalled instead of
    using a revoked token, and a re-install is recognised. Returns whether the shop had a row;
    repeating it is harmless. A concurrent refresh holds the row lock, so this waits for it and
    then erases what it stored.
    """
    if isinstance(db, Connection):
        connection, when = db, now or datetime.now(UTC)
    else:
        connection, when = db.connection, now or db.now
    result = connection.execute(
        update(shops)
        .where(shops.c.shop == shop)
        .values(
            access_token_encrypted=None,
            refresh_token_encrypted=None,
            access_expires_at=None,
            refresh_expires_at=None,
            scopes="",
            uninstalled_at=when,
            updated_at=when,
        )
    )
    return result.rowcount > 0


# --- the token store ------------------------------------------------------------------------


def installed_shops(engine: Engine, settings: Settings) -> list[str]:
    """The shops this service holds a token for (installed, not uninstalled), plus the custom
    app's shop (SHOPIFY_ACCESS_TOKEN), sorted."""
    with engine.connect() as connection:
        found = set(
            connection.execute(
                select(shops.c.shop).where(
                    shops.c.uninstalled_at.is_(None), shops.c.access_token_encrypted.is_not(None)
                )
            ).scalars()
        )
    if settings.shopify_access_token and settings.shopify_shop_domain:
        found.add(settings.shopify_shop_domain)
    return sorted(found)


class TokenStore:
    """Hands out a valid Admin API token per shop; one per process is enough (it holds no state)."""

    def __init__(self, engine: Engine, settings: Settings, clock: Clock) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.cipher = TokenCipher.for_settings(settings)

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> TokenStore:
        return cls(runtime.engine, runtime.settings, runtime.clock)

    def save_tokens(self, shop: str, grant: client.TokenGrant, *, issued_at: datetime) -> None:
        """Store ``grant`` in a transaction of its own (the OAuth callback)."""
        with self._transaction(lock=True) as connection:
            save_tokens(connection, self.cipher, shop, grant, issued_at=issued_at, now=self.clock())

    def access_token(self, shop: str) -> str:
        """A token for ``shop`` valid for at least ``REFRESH_MARGIN``, refreshed if need be.

        Raises ShopNotInstalled, ShopConnectionLost, TokenUnreadable, or client.ShopifyError
        when Shopify cannot be reached to refresh.
        """
        static = self.settings.shopify_access_token
        if static and self.settings.shopify_shop_domain in (None, shop):
            return static  # a custom app's token: no OAuth, no expiry
        with self._transaction(lock=False) as connection:
            row = self._load(connection, shop, lock=False)
        if row.usable_at(self.clock()):
            return self._plain(row.access_token)
        return self._refresh(shop)

    def _refresh(self, shop: str, *, attempts: int = 2) -> str:
        with self._transaction(lock=True) as connection:
            row = self._load(connection, shop, lock=True)
            now = self.clock()
            if row.usable_at(now):
                return self._plain(row.access_token)  # refreshed while this process waited
            used = self._refresh_token_of(row, now)
            try:
                grant = client.refresh_access_token(
                    client.admin_base_url(self.settings.shopify_admin_url, shop),
                    client_id=self.settings.shopify_api_key or "",
                    client_secret=self.settings.shopify_api_secret or "",
                    refresh_token=used,
                )
            except client.InvalidGrant:
                metrics.TOKEN_REFRESHES.labels("shopify", "failed").inc()
                log.warning("shop %s: refresh token refused; reading the row again", shop)
            else:
                save_tokens(connection, self.cipher, shop, grant, issued_at=now, now=now)
                metrics.TOKEN_REFRESHES.labels("shopify", "ok").inc()
                log.info("shop %s: access token refreshed", shop)
                return grant.access_token
        # The refused transaction is over (rolled back, lock released): look again.
        with self._transaction(lock=True) as connection:
            row = self._load(connection, shop, lock=True)
        if row.usable_at(self.clock()):
            return self._plain(row.access_token)
        if row.refresh_token is not None and row.refresh_token != used and attempts > 1:
            return self._refresh(shop, attempts=attempts - 1)  # rotated by someone else
        log.error("shop %s: refresh token refused and not replaced; re-install needed", shop)
        raise ShopConnectionLost(f"{shop}: refresh token refused; open the app to re-install")

    def _refresh_token_of(self, row: _ShopRow, now: datetime) -> str:
        if row.refresh_token is None:
            raise ShopConnectionLost(f"{row.shop}: token expired and no refresh token is stored")
        if row.refresh_expires_at is not None and row.refresh_expires_at <= now:
            raise ShopConnectionLost(f"{row.shop}: refresh token expired; re-install the app")
        return row.refresh_token

    def _load(self, connection: Connection, shop: str, *, lock: bool) -> _ShopRow:
        stmt = select(shops).where(shops.c.shop == shop)
        if lock and connection.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        found = connection.execute(stmt).mappings().first()
        if found is None or found["uninstalled_at"] is not None:
            raise ShopNotInstalled(f"{shop} has not installed the app")
        return _ShopRow(
            shop=shop,
            access_token=self._decrypt(found["access_token_encrypted"]),
            refresh_token=self._decrypt(found["refresh_token_encrypted"]),
            access_expires_at=found["access_expires_at"],
            refresh_expires_at=found["refresh_expires_at"],
            uninstalled_at=found["uninstalled_at"],
        )

    def _decrypt(self, ciphertext: str | None) -> str | None:
        return None if ciphertext is None else self.cipher.decrypt(ciphertext)

    @staticmethod
    def _plain(token: str | None) -> str:
        if token is None:  # usable_at() is False without a token; this is the type checker's due
            raise ShopNotInstalled("no access token stored")
        return token

    @contextmanager
    def _transaction(self, *, lock: bool) -> Iterator[Connection]:
        """A transaction, committed on success; ``lock=False`` reads without queueing (SQLite)."""
        with self.engine.connect() as connection:
            if not lock:
                connection = connection.execution_options(**{READ_ONLY: True})
            with connection.begin():
                yield connection


def _after(start: datetime, seconds: int | None) -> datetime | None:
    return None if seconds is None else start + timedelta(seconds=seconds)
