"""Configuration comes from the environment only and is checked once, one line per problem."""

from __future__ import annotations

import pytest

from shopify_app.config import (
    DEFAULT_DATABASE_URL,
    ConfigError,
    load_settings,
    normalize_database_url,
)

pytestmark = pytest.mark.unit


def test_defaults_run_a_development_service_on_sqlite() -> None:
    settings = load_settings({})
    assert settings.environment == "development"
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.port == 8000
    assert settings.app_url == "http://localhost:8000"
    assert settings.reservation_ttl_seconds == 900
    assert settings.checkout_hold_seconds == 1800
    assert settings.bling_api_base_url == "https://api.bling.com.br/Api/v3"
    assert settings.db_pool_size == settings.web_threads


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example:5432/x", "postgresql+psycopg://u:p@db.example:5432/x"),
        ("postgresql://u@h/x", "postgresql+psycopg://u@h/x"),
        ("postgresql+psycopg://u@h/x", "postgresql+psycopg://u@h/x"),
        ("sqlite:///instance/x.db", "sqlite:///instance/x.db"),
    ],
)
def test_heroku_postgres_urls_are_rewritten_for_psycopg3(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected
    assert load_settings({"DATABASE_URL": given}).database_url == expected


def test_heroku_dyno_means_production_and_production_needs_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DYNO": "web.1", "DATABASE_URL": "postgres://h/db"})
    assert caught.value.problems == [
        "SECRET_KEY is required when APP_ENV=production",
        "SHOPIFY_API_KEY is required when APP_ENV=production",
        "SHOPIFY_API_SECRET is required when APP_ENV=production",
    ]


def test_every_problem_is_reported_at_once_on_its_own_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "DATABASE_URL": "mysql://h/db",
                "PORT": "eighty",
                "RESERVATION_TTL_SECONDS": "0",
                "SHOPIFY_SHOP_DOMAIN": "evil.com/.myshopify.com",
                "LOG_LEVEL": "LOUD",
                "BLING_CLIENT_ID": "only-the-id",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 6, problems
    text = str(caught.value)
    for name in (
        "DATABASE_URL",
        "PORT",
        "RESERVATION_TTL_SECONDS",
        "SHOPIFY_SHOP_DOMAIN",
        "LOG_LEVEL",
        "BLING_CLIENT_SECRET",
    ):
        assert name in text
    assert text.count("\n") == 6


def test_an_unknown_app_env_fails_closed_as_production() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"APP_ENV": "staging"})
    assert caught.value.problems[0].startswith("APP_ENV must be one of")
    assert "SECRET_KEY is required when APP_ENV=production" in caught.value.problems


@pytest.mark.parametrize(
    "domain", ["shop.myshopify.com.evil.com", "shop.myshopify.com/x", "-.myshopify.com", "x.com"]
)
def test_shop_domain_is_anchored_at_both_ends(domain: str) -> None:
    with pytest.raises(ConfigError):
        load_settings({"SHOPIFY_SHOP_DOMAIN": domain})


def test_a_complete_production_environment_loads() -> None:
    settings = load_settings(
        {
            "APP_ENV": "production",
            "SECRET_KEY": "s" * 32,
            "SHOPIFY_API_KEY": "key",
            "SHOPIFY_API_SECRET": "secret",
            "SHOPIFY_SHOP_DOMAIN": "bazico.myshopify.com",
            "DATABASE_URL": "postgres://u:p@h:5432/db",
            "PORT": "5000",
            "WEB_THREADS": "4",
            "APP_URL": "https://stock.bazico.com.br/",
        }
    )
    assert settings.environment == "production" and not settings.is_development
    assert settings.app_url == "https://stock.bazico.com.br"
    assert settings.db_pool_size == 4


def test_bling_ids_must_be_numeric() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"BLING_DEPOSIT_ID": "depósito 1", "BLING_STORE_ID": "12x"})
    assert caught.value.problems == [
        "BLING_DEPOSIT_ID must be a numeric Bling id, got 'depósito 1'",
        "BLING_STORE_ID must be a numeric Bling id, got '12x'",
    ]
    assert load_settings({"BLING_DEPOSIT_ID": "14887164"}).bling_deposit_id == "14887164"
