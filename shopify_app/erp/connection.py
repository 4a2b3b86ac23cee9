"""The Bling connection as the app sees it: ``bling_client(runtime)`` and the OAuth flow.

``bling_client(runtime)`` is the one way to talk to Bling: the ``bling.BlingClient`` wired to the
encrypted, row-locked token store (single-flight refreshes across processes) and to the rate
limiter every process shares. When Bling is off (no ``BLING_CLIENT_ID``) or not connected yet it
raises ``BlingNotConnected``: the "null Bling" case, which callers turn into "skip, try later".

Authorization (``flask bling connect`` or ``GET /bling/connect`` → Bling → ``/bling/callback``)
carries a ``state`` that is signed with SECRET_KEY and expires after 30 minutes. It is checked
on the server alone (no cookie), so the printed URL works from any browser: the operator may
run the command on a dyno and open the link on a laptop. Only someone who could run the command
or holds the API token can mint one, which is what stops a forged callback (CSRF).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import replace
from datetime import datetime, timedelta

import requests
from itsdangerous import BadSignature, URLSafeSerializer

from bling.client import BlingClient
from bling.errors import BlingError, BlingNotConnected
from bling.oauth import OAuthClient, StoredToken, TokenManager, authorization_url

from ..config import DEVELOPMENT_SECRET_KEY, Settings
from ..crypto import TokenCipher
from ..observability import metrics
from ..runtime import Runtime
from .account import (
    BlingAccount,
    DepositUnknown,
    default_deposit,
    learn_company,
    remember_deposit,
    sales_deposit,
)
from .ratelimit import BLING_RATE, DEFAULT_MARGIN, SqlRateLimiter
from .tokens import ConnectionStatus, SqlTokenStore

log = logging.getLogger(__name__)

#: How long the merchant has between printing the URL and approving the app in Bling.
STATE_MAX_AGE = timedelta(minutes=30)
#: Clocks of the dyno that signed and the one that checks may differ a little.
STATE_CLOCK_SKEW = timedelta(minutes=1)
_STATE_SALT = "bling-oauth-state"
CONNECT_HINT = "run `flask --app wsgi bling connect` and approve the app in Bling"


class InvalidState(Exception):
    """The callback's ``state`` was not minted here, is for another app, or is too old."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "missing", "forged", "expired"


def is_configured(settings: Settings) -> bool:
    """Bling is on: the app's credentials are set (config.py insists on both or neither)."""
    return bool(settings.bling_client_id and settings.bling_client_secret)


def token_store(runtime: Runtime) -> SqlTokenStore:
    """The store of the configured app's tokens, encrypted with the key SECRET_KEY derives."""
    settings = runtime.settings
    return SqlTokenStore(
        runtime.engine,
        TokenCipher.for_settings(settings),
        runtime.clock,
        account=_account(settings),
    )


def bling_client(runtime: Runtime) -> BlingClient:
    """A ready ``BlingClient``; raises ``BlingNotConnected`` when Bling is off or not connected,
    and its ``DepositUnknown`` when the deposit to work with is not known (erp/account.py).

    One per job or request is fine: it holds an HTTP session, nothing else worth sharing (the
    tokens and the rate limit live in the database). Close it (or use ``with``) when done. From
    then on ``stock_sync.configured_deposit(settings)`` names the deposit in this process.
    """
    store, status = _connected(runtime)
    deposit = sales_deposit(runtime.settings, _known(status))
    remember_deposit(runtime.settings, deposit)
    return _client(runtime, store)


def ensure_account(runtime: Runtime) -> BlingAccount:
    """What is known of the connected account, after asking Bling for what was missing (the
    company id; the default deposit while BLING_DEPOSIT_ID is unset) and storing it. Calls Bling
    only when something is missing: at the connection, and once after this release for a
    connection made before it. Raises ``DepositUnknown`` (after storing what it did learn) when
    the deposit cannot be known, the other ``BlingError``s when Bling cannot be asked."""
    settings = runtime.settings
    store, status = _connected(runtime)
    known = _known(status)
    if not known.needs_learning(settings):
        return known
    problem: DepositUnknown | None = None
    with _client(runtime, store) as client:
        learnt = learn_company(client, known)
        if settings.bling_deposit_id is None and learnt.default_deposit_id is None:
            try:
                learnt = replace(learnt, default_deposit_id=default_deposit(client))
            except DepositUnknown as exc:
                problem = exc
    if learnt != known:
        store.save_account(learnt.company_id, learnt.default_deposit_id)
        log.info(
            "bling.account_learnt company=%s default_deposit=%s",
            learnt.company_id,
            learnt.default_deposit_id,
        )
    if problem is not None:
        raise problem
    return learnt


def stored_account(runtime: Runtime) -> BlingAccount:
    """What is known of the connected account, from the database alone (no Bling call): what a
    webhook, answered within Bling's 5 seconds, may use."""
    if not is_configured(runtime.settings):
        return BlingAccount()
    return _known(token_store(runtime).status())


def _connected(runtime: Runtime) -> tuple[SqlTokenStore, ConnectionStatus]:
    settings = runtime.settings
    _require_configured(settings)
    store = token_store(runtime)
    status = store.status()
    if not status.connected:
        if status.lost_at is not None:
            raise BlingNotConnected(
                f"the Bling connection was lost at {status.lost_at.isoformat()} "
                f"({status.lost_reason}); {CONNECT_HINT}"
            )
        raise BlingNotConnected(f"Bling is not connected yet; {CONNECT_HINT}")
    return store, status


def _known(status: ConnectionStatus) -> BlingAccount:
    return BlingAccount(status.company_id, status.default_deposit_id)


def _client(runtime: Runtime, store: SqlTokenStore) -> BlingClient:
    settings = runtime.settings
    session = requests.Session()  # one pool for the token endpoint and the API; close() ends it
    manager = TokenManager(_oauth_client(settings, session), store, now=runtime.clock)
    # The limiter runs on the wall clock whatever the runtime's clock is: Bling counts real
    # seconds, and every process must measure them the same way.
    rate = settings.bling_requests_per_second
    limiter = SqlRateLimiter(
        runtime.engine,
        account=_account(settings),
        rate=rate,
        margin=DEFAULT_MARGIN * BLING_RATE / rate,  # the same relative slack at any rate
    )
    return BlingClient(
        settings.bling_api_base_url, manager, limiter, session=session, on_call=_count_call
    )


def _count_call(method: str, outcome: str, status: int) -> None:
    metrics.BLING_REQUESTS.labels(method, outcome, str(status)).inc()


# --- the authorization flow ---------------------------------------------------------------------


def authorize_url(runtime: Runtime) -> str:
    """Where the merchant approves the app, with a fresh signed ``state``."""
    settings = runtime.settings
    _require_configured(settings)
    state = make_state(settings, runtime.clock())
    return authorization_url(settings.bling_api_base_url, settings.bling_client_id or "", state)


def connect(runtime: Runtime, code: str) -> StoredToken:
    """Finish the authorization: exchange the callback's ``code``, store the tokens, then learn
    the account (``ensure_account``: its company id, and its default deposit while
    BLING_DEPOSIT_ID is unset).

    Raises ``InvalidGrant`` for a code Bling refuses (expired after a minute, or used), and the
    other ``BlingError``s when Bling cannot be reached or refuses the app's credentials. Once
    the tokens are stored the connection stands: a failure to learn the account is logged, and
    the next reconciliation tries again (meanwhile ``bling_client`` says what is missing).
    """
    settings = runtime.settings
    _require_configured(settings)
    with requests.Session() as session:
        oauth = _oauth_client(settings, session)
        manager = TokenManager(oauth, token_store(runtime).connecting(), now=runtime.clock)
        token = manager.connect(code)
    try:
        ensure_account(runtime)
    except DepositUnknown as exc:
        log.error("bling.deposit_unknown %s", exc)
    except BlingError as exc:
        log.warning("bling.account_unread error=%s: the next reconciliation reads it", exc)
    return token


def make_state(settings: Settings, now: datetime) -> str:
    """A signed ``state``: a nonce, the app it is for and when it was issued (no secret inside)."""
    payload = {"n": secrets.token_urlsafe(16), "a": _account(settings), "t": int(now.timestamp())}
    return _serializer(settings).dumps(payload)


def check_state(settings: Settings, state: str, now: datetime) -> None:
    """Raise ``InvalidState`` unless ``state`` was made here, for this app, within 30 minutes."""
    if not state:
        raise InvalidState("missing", "the callback carries no state")
    try:
        payload = _serializer(settings).loads(state)
    except BadSignature:
        raise InvalidState("forged", "the state was not issued by this service") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("t"), int):
        raise InvalidState("forged", "the state was not issued by this service")
    account = str(payload.get("a", ""))
    if not hmac.compare_digest(account.encode(), _account(settings).encode()):
        raise InvalidState("forged", "the state was issued for another Bling app")
    age = now.timestamp() - payload["t"]
    if age > STATE_MAX_AGE.total_seconds() or age < -STATE_CLOCK_SKEW.total_seconds():
        raise InvalidState("expired", "the authorization took too long; start again")


# --- helpers --------------------------------------------------------------------------------------


def _account(settings: Settings) -> str:
    return settings.bling_client_id or ""


def _require_configured(settings: Settings) -> None:
    if not is_configured(settings):
        raise BlingNotConnected("Bling is off: BLING_CLIENT_ID and BLING_CLIENT_SECRET are unset")


def _oauth_client(settings: Settings, session: requests.Session) -> OAuthClient:
    return OAuthClient(
        settings.bling_client_id or "",
        settings.bling_client_secret or "",
        settings.bling_api_base_url,
        session=session,
    )


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key or DEVELOPMENT_SECRET_KEY, salt=_STATE_SALT)
