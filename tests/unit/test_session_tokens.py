"""Shopify session tokens: what passes and every way one is refused (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
import pytest

from shopify_app.config import ConfigError, load_settings
from shopify_app.shopify.session_tokens import InvalidSessionToken, mint, shop_of, verify

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KEY, SHOP = "app-key", "bazico.myshopify.com"
SECRET = "shpss_app-secret-of-shopify-000000"  # 32+ bytes: PyJWT warns below that


def check(token: str, *, secrets: tuple[str, ...] = (SECRET,), now: datetime = NOW) -> str:
    try:
        verify(token, api_key=KEY, secrets=list(secrets), now=now)
    except InvalidSessionToken as exc:
        return exc.reason
    return "ok"


def token(**overrides: object) -> str:
    base = {"api_key": KEY, "shop": SHOP, "user": "42", "now": NOW}
    return mint(str(overrides.pop("secret", SECRET)), **{**base, **overrides})  # type: ignore[arg-type]


def test_a_good_token_names_its_shop_and_user() -> None:
    found = verify(token(), api_key=KEY, secrets=[SECRET], now=NOW)
    assert (found.shop, found.user, found.session) == (SHOP, "42", "session-42")


def test_every_bad_token_is_refused_with_its_reason() -> None:
    assert check(token(lifetime=-10)) == "expired"
    assert check(token(lifetime=-4)) == "ok"  # the leeway covers a little clock skew
    assert check(token(not_before=30)) == "not_yet_valid"
    assert check(token(api_key="another-app")) == "wrong_audience"
    assert check(token(secret="shpss_a-forged-secret-0000000000000")) == "bad_signature"
    assert check("") == "missing"
    assert check("a.b.c") == "malformed"
    assert check(token(shop="evil.example.com")) == "wrong_shop"
    unsigned = jwt.encode({"aud": KEY, "dest": f"https://{SHOP}"}, None, algorithm="none")
    assert check(unsigned) == "malformed"
    claims = jwt.decode(
        token(), SECRET, algorithms=["HS256"], audience=KEY, options={"verify_exp": False}
    )
    assert check(jwt.encode({**claims, "iss": "https://other.myshopify.com/admin"}, SECRET)) == (
        "wrong_shop"
    )
    del claims["nbf"]
    assert check(jwt.encode(claims, SECRET)) == "malformed"  # a required claim is missing


def test_no_key_or_secret_refuses_everything_and_the_previous_secret_passes() -> None:
    assert check(token(), secrets=()) == "missing"
    assert (
        check(
            token(secret="shpss_an-older-secret-of-shopify-0000"),
            secrets=(SECRET, "shpss_an-older-secret-of-shopify-0000"),
        )
        == "ok"
    )


def test_shop_of_reads_only_https_myshopify_hosts() -> None:
    assert shop_of("https://bazico.myshopify.com") == "bazico.myshopify.com"
    assert shop_of("https://bazico.myshopify.com/admin") == "bazico.myshopify.com"
    assert shop_of("http://bazico.myshopify.com") is None
    assert shop_of("https://bazico.myshopify.com.evil.io") is None


def test_development_mode_is_refused_in_production() -> None:
    assert load_settings({"ADMIN_DEV_MODE": "1"}).admin_dev_mode is True
    with pytest.raises(ConfigError) as refused:
        load_settings(
            {
                "APP_ENV": "production",
                "ADMIN_DEV_MODE": "1",
                "SECRET_KEY": "a-long-enough-production-key",
                "SHOPIFY_API_KEY": "k",
                "SHOPIFY_API_SECRET": "s",
            }
        )
    assert any("ADMIN_DEV_MODE" in p for p in refused.value.problems)
    with pytest.raises(ConfigError):
        load_settings({"ADMIN_DEV_MODE": "yes"})
