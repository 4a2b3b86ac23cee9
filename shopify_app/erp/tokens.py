"""``SqlTokenStore``: Bling's OAuth tokens in one database row, encrypted, changed under its lock.

Bling rotates the refresh token on every refresh and kills the old one, so two processes that
refresh at once would leave one of them with ``invalid_grant`` and the connection lost. The cure
(docs/bling-api.md §1) is that ``bling.oauth.TokenManager`` refreshes *inside*
``update(change)``:

1. one transaction, on a connection of its own, locks the row (``SELECT … FOR UPDATE`` on
   PostgreSQL; on SQLite the transaction itself began with ``BEGIN IMMEDIATE``, see db/engine.py);
2. ``change(current)`` runs under that lock: it re-reads what is stored and refreshes only if
   nobody has yet, so a process that waited on the lock finds its predecessor's new token;
3. the new access token and the rotated refresh token are written in that same transaction.

The refresh is an HTTP call made while the row is locked: that is the single flight. The wait is
one token request (its timeouts bound it), and on PostgreSQL the transaction touches this row
only, so nothing else queues. On SQLite (one machine, development) the lock is the database's
write lock: other writers wait for that one request.

On ``invalid_grant`` the row is read again before the connection is declared lost: a writer
outside this protocol (a re-connect through ``/bling/callback``, an older release, a script) may
have stored a newer token meanwhile. Only a refused token that is still the stored one is a lost
connection; the tokens are then erased and ``lost_at`` records when and why.

Tokens never reach a log line or an exception message, and the columns hold ciphertext only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bling.errors import BlingNotConnected, InvalidGrant
from bling.oauth import StoredToken

from ..clock import Clock
from ..crypto import TokenCipher, TokenUnreadable
from ..db.engine import READ_ONLY
from ..observability import metrics
from .tables import REASON_LENGTH, bling_connection

log = logging.getLogger(__name__)

Change = Callable[[StoredToken | None], StoredToken | None]

#: Waiting on the row lock behind a refresh may take a token request's whole timeout (~13 s);
#: the engine's usual lock and statement timeouts (5 s / 15 s) would turn that wait into errors.
LOCK_WAIT = "30s"
#: How many times a refused refresh is retried with a token someone else stored meanwhile.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ConnectionStatus:
    """What an operator may see about the connection: never the tokens themselves."""

    account: str
    connected: bool
    expires_at: datetime | None
    scope: str
    connected_at: datetime | None
    updated_at: datetime | None
    lost_at: datetime | None
    lost_reason: str | None
    #: The connected account as Bling reported it (erp/account.py); None: not learnt yet.
    company_id: str | None = None
    default_deposit_id: int | None = None


class SqlTokenStore:
    """A ``bling.oauth.TokenStore`` over the ``bling_connection`` row of ``account``.

    Holds no state besides its configuration: one per process or per job, as convenient.
    """

    def __init__(
        self,
        engine: Engine,
        cipher: TokenCipher,
        clock: Clock,
        *,
        account: str = "default",
        connecting: bool = False,
    ) -> None:
        self.engine = engine
        self.cipher = cipher
        self.clock = clock
        self.account = account
        self._connecting = connecting

    def __repr__(self) -> str:
        return f"SqlTokenStore(account={self.account!r})"

    def connecting(self) -> SqlTokenStore:
        """The same store, whose writes start a new authorization (``connected_at`` = now).

        Only the OAuth callback writes through it; a refresh keeps the authorization it renews.
        """
        return SqlTokenStore(
            self.engine, self.cipher, self.clock, account=self.account, connecting=True
        )

    # --- bling.oauth.TokenStore ----------------------------------------------------------------

    def load(self) -> StoredToken | None:
        """The stored token, or None when never connected or the connection was lost."""
        with self._transaction(lock=False) as connection:
            return self._token(self._row(connection, lock=False))

    def update(self, change: Change) -> StoredToken | None:
        """Run ``change(current)`` under the row lock and store its result in that transaction.

        If ``change`` raises ``InvalidGrant`` (Bling refused the refresh token), the row is read
        again: a token stored meanwhile by someone else gets ``change`` once more; the same,
        refused token means the connection is lost (recorded, then the error is raised).
        """
        refused: str | None = None
        error: InvalidGrant | None = None
        for _ in range(MAX_ATTEMPTS):
            tried: str | None = None
            try:
                with self._transaction(lock=True) as connection:
                    current = self._token(self._row(connection, lock=True))
                    tried = current.refresh_token if current is not None else None
                    if error is not None and tried in (None, refused):
                        # Still the token Bling refused: nobody has a better one. Commit the
                        # mark, then raise outside the transaction.
                        self._erase(connection, self.clock(), "Bling refused the refresh token")
                        log.error("bling.connection_lost account=%s: authorize again", self.account)
                        break
                    result = change(current)
                    if result != current:
                        self._write(connection, result)
                        if current is not None and result is not None:
                            metrics.TOKEN_REFRESHES.labels("bling", "ok").inc()
                    return result
            except InvalidGrant as exc:
                metrics.TOKEN_REFRESHES.labels("bling", "failed").inc()
                # Rolled back, lock released: whoever waited on it (a re-connect) may write now.
                log.warning("bling.refresh_refused account=%s; reading the row again", self.account)
                refused, error = tried, exc
        if error is None:  # unreachable: the loop ends without returning only after a refusal
            raise RuntimeError("token update ended without a result")
        raise error

    # --- for operators and the factory -----------------------------------------------------------

    def status(self) -> ConnectionStatus:
        with self._transaction(lock=False) as connection:
            row = self._row(connection, lock=False)
        if row is None:
            return ConnectionStatus(self.account, False, None, "", None, None, None, None)
        return ConnectionStatus(
            account=self.account,
            connected=row["access_token_encrypted"] is not None,
            expires_at=row["expires_at"],
            scope=row["scope"],
            connected_at=row["connected_at"],
            updated_at=row["updated_at"],
            lost_at=row["lost_at"],
            lost_reason=row["lost_reason"],
            company_id=row["company_id"],
            default_deposit_id=row["default_deposit_id"],
        )

    def save_account(self, company_id: str | None, default_deposit_id: int | None) -> None:
        """Record what Bling reported about the connected account (erp/account.py), on the row
        of a connection that exists (a lost one keeps its facts until the next authorization)."""
        with self._transaction(lock=True) as connection:
            connection.execute(
                update(bling_connection)
                .where(bling_connection.c.account == self.account)
                .values(company_id=company_id, default_deposit_id=default_deposit_id)
            )

    # --- rows ------------------------------------------------------------------------------------

    def _row(self, connection: Connection, *, lock: bool) -> dict[str, Any] | None:
        stmt = select(bling_connection).where(bling_connection.c.account == self.account)
        if lock and connection.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        found = connection.execute(stmt).mappings().first()
        return None if found is None else dict(found)

    def _token(self, row: dict[str, Any] | None) -> StoredToken | None:
        if row is None or row["access_token_encrypted"] is None:
            return None
        try:
            return StoredToken(
                access_token=self.cipher.decrypt(row["access_token_encrypted"]),
                refresh_token=self.cipher.decrypt(row["refresh_token_encrypted"] or ""),
                expires_at=row["expires_at"],
                scope=row["scope"],
            )
        except TokenUnreadable:
            # Callers treat this like any "no usable Bling" case: skip the work, alert, reconnect.
            raise BlingNotConnected(
                "the stored Bling token cannot be decrypted (SECRET_KEY changed?); "
                "run `flask --app wsgi bling connect`"
            ) from None

    def _write(self, connection: Connection, token: StoredToken | None) -> None:
        now = self.clock()
        if token is None:  # a change that disconnects (none does today; kept well defined)
            self._erase(connection, now, "disconnected")
            return
        values = {
            "access_token_encrypted": self.cipher.encrypt(token.access_token),
            "refresh_token_encrypted": self.cipher.encrypt(token.refresh_token),
            "expires_at": token.expires_at,
            "scope": token.scope,
            "updated_at": now,
            "lost_at": None,
            "lost_reason": None,
        }
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(bling_connection).values(
            account=self.account, connected_at=now, **values
        )
        # A refresh renews the current authorization; a callback (or a token stored after the
        # connection was lost) starts a new one.
        set_ = dict(values)
        if self._connecting:
            set_["connected_at"] = now
            # Perhaps another Bling account: what was learnt of the previous one is void.
            set_["company_id"] = None
            set_["default_deposit_id"] = None
        connection.execute(
            insert.on_conflict_do_update(index_elements=[bling_connection.c.account], set_=set_)
        )

    def _erase(self, connection: Connection, now: datetime, reason: str) -> None:
        connection.execute(
            update(bling_connection)
            .where(bling_connection.c.account == self.account)
            .values(
                access_token_encrypted=None,
                refresh_token_encrypted=None,
                expires_at=None,
                updated_at=now,
                lost_at=now,
                lost_reason=reason[:REASON_LENGTH],
            )
        )

    @contextmanager
    def _transaction(self, *, lock: bool) -> Iterator[Connection]:
        """A transaction on a connection of its own, committed on success.

        ``lock=False`` reads without queueing behind writers (SQLite's deferred transaction).
        """
        with self.engine.connect() as connection:
            if not lock:
                connection = connection.execution_options(**{READ_ONLY: True})
            with connection.begin():
                if lock and connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
                    connection.exec_driver_sql(f"SET LOCAL statement_timeout = '{LOCK_WAIT}'")
                yield connection
