"""An app that connects to Bling through OAuth (the stand-in at ``base_url``) and the stored
connection row, read raw and decrypted as an operator would with SECRET_KEY.

``oauth_environ`` is the whole app environment with the OAuth settings (SECRET_KEY, APP_URL);
tests/support/bling_app.py's ``bling_environ`` is only the Bling variables of an app whose tokens
the test hands over directly (no OAuth dance, no SECRET_KEY).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from shopify_app.crypto import TokenCipher
from shopify_app.erp.tables import bling_connection
from tests.support.app import app_environ
from tests.support.bling_standin import CLIENT_ID, CLIENT_SECRET

SECRET_KEY = "bling-test-secret-key-0123456789"
APP_URL = "https://stock.bazico.test"
CALLBACK = APP_URL + "/bling/callback"


def oauth_environ(database_url: str, base_url: str, **extra: str) -> dict[str, str]:
    """The environment of an app whose Bling is the stand-in at ``base_url``."""
    bling = {
        "BLING_API_BASE_URL": base_url,
        "BLING_CLIENT_ID": CLIENT_ID,
        "BLING_CLIENT_SECRET": CLIENT_SECRET,
        "SECRET_KEY": SECRET_KEY,
        "APP_URL": APP_URL,
    }
    return app_environ(database_url, **{**bling, **extra})


def raw_row(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(bling_connection)).mappings().first()
    return None if row is None else dict(row)


def decrypted(engine: Engine) -> tuple[str, str]:
    """(access, refresh) as stored, decrypted with the key an operator derives from SECRET_KEY."""
    row = raw_row(engine)
    assert row is not None and row["access_token_encrypted"], "no token stored"
    cipher = TokenCipher(SECRET_KEY)
    return (
        cipher.decrypt(row["access_token_encrypted"]),
        cipher.decrypt(row["refresh_token_encrypted"]),
    )
