"""Configuration comes from the environment only and is checked once, one line per problem."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shopify_app.config import (
    DEFAULT_DATABASE_URL,
    DEVELOPMENT_SECRET_KEY,
    ConfigError,
    load_settings,
    normalize_database_url,
)


def test_defaults_run_a_development_service_on_sqlite() -> None:
    settings = load_settings({})
    assert settings.environment == "development"
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.port == 8000
    assert settings.app_url == "http://localhost:8000"
    assert settings.reservation_ttl_seconds == 900
    assert settings.checkout_hold_seconds == 1800
    assert settings.bling_api_base_url == "https://api.bling.com.br/Api/v3"
    assert (settings.web_threads, settings.db_pool_size) == (16, 8)


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
        load_settings(
            {"DYNO": "web.1", "DATABASE_URL": "postgres://h/db", "APP_URL": "https://s.example"}
        )
    assert caught.value.problems == [
        "SECRET_KEY is required when APP_ENV=production",
        "SHOPIFY_API_KEY is required when APP_ENV=production",
        "SHOPIFY_API_SECRET is required when APP_ENV=production",
    ]


HEROKU_READY = {
    "DYNO": "web.1",
    "DATABASE_URL": "postgres://h/db",
    "SECRET_KEY": "a-long-enough-secret-key",
    "SHOPIFY_API_KEY": "key",
    "SHOPIFY_API_SECRET": "secret",
}


def test_on_heroku_app_url_is_required_and_the_reason_is_given() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(HEROKU_READY)
    (problem,) = caught.value.problems
    assert problem.startswith("APP_URL is required on Heroku (DYNO is set): ")
    assert "webhooks" in problem and "/bling/callback" in problem and "localhost" in problem
    # Set, it is the address everything registers, whatever the environment says.
    settings = load_settings({**HEROKU_READY, "APP_URL": "https://bazico-stock.herokuapp.com/"})
    assert settings.app_url == "https://bazico-stock.herokuapp.com"
    # Heroku CI runs (CI set too) and machines without DYNO keep the local default.
    assert load_settings({**HEROKU_READY, "CI": "true"}).app_url == "http://localhost:8000"
    assert load_settings({"PORT": "5000"}).app_url == "http://localhost:5000"


def test_app_url_must_be_an_absolute_http_url() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"APP_URL": "bazico-stock.herokuapp.com"})
    assert caught.value.problems == [
        "APP_URL must be an absolute http(s):// URL, got 'bazico-stock.herokuapp.com'"
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


def test_production_refuses_the_development_secret_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "APP_ENV": "production",
                "SECRET_KEY": DEVELOPMENT_SECRET_KEY,
                "SHOPIFY_API_KEY": "key",
                "SHOPIFY_API_SECRET": "secret",
            }
        )
    assert caught.value.problems == [
        "SECRET_KEY must not be the development key published in the code"
    ]
    assert DEVELOPMENT_SECRET_KEY not in str(caught.value)


SECRET_VALUES = {
    "SECRET_KEY": "short-Zq7key",  # too short for production: a problem that names it
    "SHOPIFY_API_SECRET": "Zq7-shopify-secret-value",
    "SHOPIFY_API_SECRET_PREVIOUS": "Zq7-previous-secret-value",
    "SHOPIFY_ACCESS_TOKEN": "shpat_Zq7-static-token",
    "STOCK_API_TOKEN": "Zq7-stock-api-token",
    "BLING_CLIENT_SECRET": "Zq7-bling-client-secret",  # without BLING_CLIENT_ID: a problem
    "METRICS_TOKEN": "Zq7-metrics-token",
}


def test_configuration_errors_name_secrets_but_never_print_their_values() -> None:
    environ = {
        **SECRET_VALUES,
        "APP_ENV": "production",
        # Every other check fails too, so every message is rendered.
        "DATABASE_URL": "mysql://user:Zq7-db-password@h/db",
        "PORT": "eighty",
        "SHOPIFY_SHOP_DOMAIN": "evil.com",
        "SHOPIFY_ADMIN_URL": "https://admin.example",
        "LOG_LEVEL": "LOUD",
        "BLING_DEPOSIT_ID": "x1",
        "WORKER_METRICS_PORT": "0",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    text = str(caught.value)
    assert "SECRET_KEY must be at least 16 characters long" in text
    assert "BLING_CLIENT_ID and BLING_CLIENT_SECRET must be set together" in text
    for value in (*SECRET_VALUES.values(), "Zq7-db-password"):
        assert value not in text
    assert "Zq7" not in text


ROOT = Path(__file__).resolve().parents[2]
#: Files besides config.py that read the environment, and why: none of them reads a secret.
OTHER_ENVIRONMENT_READERS = {
    # The multiprocess metrics directory gunicorn.conf.py chooses before the app exists.
    "shopify_app/observability/metrics.py",
    # gunicorn's own settings (PORT, WEB_*, ACCESS_LOG, LOG_LEVEL), read before the app loads.
    "gunicorn.conf.py",
}


def _environment_reads(path: Path) -> list[str]:
    """Names ``path`` reads with ``os.environ[...]``, ``.get(...)`` or ``os.getenv(...)``; ``?``
    for any other touch of ``os.environ`` (a whole-environment read)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            reads_env = node.func.attr == "getenv" or (
                isinstance(owner, ast.Attribute) and owner.attr == "environ"
            )
            if reads_env and node.args and isinstance(node.args[0], ast.Constant):
                name = str(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "environ"
        ):
            name = str(node.slice.value) if isinstance(node.slice, ast.Constant) else "?"
        elif isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            name = "?"
        if name is not None:
            found.append(name)
    return found


def test_secrets_are_read_from_the_environment_by_config_py_only() -> None:
    sources = [*ROOT.glob("shopify_app/**/*.py"), *ROOT.glob("bling/**/*.py")]
    sources += [ROOT / "wsgi.py", ROOT / "gunicorn.conf.py"]
    readers = {}
    for path in sources:
        reads = _environment_reads(path)
        if reads:
            readers[path.relative_to(ROOT).as_posix()] = reads
    assert set(readers) - {"shopify_app/config.py"} == OTHER_ENVIRONMENT_READERS
    secret_words = ("SECRET", "TOKEN", "PASSWORD", "DATABASE_URL", "KEY")
    for name, reads in readers.items():
        if name != "shopify_app/config.py":
            assert not [r for r in reads if any(w in r for w in secret_words)], (name, reads)


def test_erp_backend_names_bling_or_none_and_none_refuses_bling_credentials() -> None:
    assert load_settings({}).erp_backend == "bling"
    assert load_settings({"ERP_BACKEND": "None"}).erp_backend == "none"
    with pytest.raises(ConfigError, match="ERP_BACKEND must be bling or none"):
        load_settings({"ERP_BACKEND": "tiny"})
    with pytest.raises(ConfigError, match="sends orders nowhere"):
        load_settings(
            {"ERP_BACKEND": "none", "BLING_CLIENT_ID": "id", "BLING_CLIENT_SECRET": "secret"}
        )


def test_without_an_erp_the_order_kinds_run_on_the_null_gateway() -> None:
    from shopify_app.orders.forwarding import NullGateway
    from shopify_app.outbox import Registry
    from shopify_app.outbox.kinds import CANCEL_ORDER, FORWARD_ORDER, REVERSE_ORDER, STOCK_ENTRY

    registry = Registry()
    NullGateway.register(300.0, registry)
    NullGateway.register(300.0, registry)  # again, as every create_app does: a no-op
    assert registry.kinds() == {FORWARD_ORDER, REVERSE_ORDER, CANCEL_ORDER, STOCK_ENTRY}
