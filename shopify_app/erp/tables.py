"""The Bling connection's tables (SQLAlchemy Core). Alembic migrations must match these exactly.

Both are keyed by ``account``: the Bling app's client id. Tokens belong to one app, so a new
``BLING_CLIENT_ID`` starts disconnected instead of using another app's tokens; and the 3 req/s
limit is the account's, which the one connected app speaks for.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table, Text

from ..db.metadata import UTCDateTime, metadata

ACCOUNT = String(255)
#: ``lost_reason`` is for an operator's eye (``flask bling status``); details are in the logs.
REASON_LENGTH = 500
#: Bling's company ids are 32 hex characters today.
COMPANY_ID_LENGTH = 64

bling_connection = Table(
    "bling_connection",
    metadata,
    Column("account", ACCOUNT, primary_key=True),
    # Fernet ciphertexts (TokenCipher); JWT access tokens run to ~3,000 characters, hence Text.
    # NULL once the connection is lost: a refused refresh token is worth nothing.
    Column("access_token_encrypted", Text, nullable=True),
    Column("refresh_token_encrypted", Text, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("scope", Text, nullable=False),
    Column("connected_at", UTCDateTime, nullable=False),  # the current authorization's start
    Column("updated_at", UTCDateTime, nullable=False),
    Column("lost_at", UTCDateTime, nullable=True),
    Column("lost_reason", String(REASON_LENGTH), nullable=True),
    # The account the tokens speak for, as Bling reported it (erp/account.py): its id, which its
    # webhooks carry as companyId, and its default deposit (sold from and posted to when
    # BLING_DEPOSIT_ID is unset). NULL: not learnt yet; a new authorization clears both.
    Column("company_id", String(COMPANY_ID_LENGTH), nullable=True),
    Column("default_deposit_id", BigInteger, nullable=True),
)

# One row per account: the moment the next request to Bling may leave, whoever sends it.
bling_rate_limit = Table(
    "bling_rate_limit",
    metadata,
    Column("account", ACCOUNT, primary_key=True),
    Column("next_slot_at", UTCDateTime, nullable=False),
)
