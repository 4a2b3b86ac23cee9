"""Settings, read from the environment only (README, Configuration) and validated once at start.

Every problem found is reported on its own line, so an operator fixes them all in one go instead of
one per deploy. Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from limits import parse_many

DEFAULT_DATABASE_URL = "sqlite:///instance/bazico.db"
#: Signs cookies and derives the token key when SECRET_KEY is unset, which only development and
#: test allow (production refuses to start without SECRET_KEY, or with this value as SECRET_KEY).
DEVELOPMENT_SECRET_KEY = "development-only-not-secret"  # noqa: S105 # nosec B105 # not secret
# carts/*, checkouts/* and orders/* webhooks need read_orders; the App Proxy needs write_app_proxy;
# the stock metafields on variants need write_products; the checkout rule (validationCreate, and
# listing validations) write_validations and read_validations; Shopify's inventory following the
# ledger read_/write_inventory (the levels and inventoryAdjust/SetQuantities) and read_locations
# (the location that fulfils online orders: Location fields need it since 2024-07).
DEFAULT_SHOPIFY_SCOPES = (
    "read_orders,read_products,write_products,write_app_proxy,"
    "read_validations,write_validations,read_inventory,write_inventory,read_locations"
)
SHOP_DOMAIN_RE = re.compile(r"\A[a-z0-9][a-z0-9-]*\.myshopify\.com\Z")
ENVIRONMENTS = ("development", "test", "production")


class ConfigError(Exception):
    """The environment does not describe a runnable service; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one process."""

    environment: str
    database_url: str
    port: int
    secret_key: str | None
    shopify_api_key: str | None
    shopify_api_secret: str | None
    shopify_api_secret_previous: str | None
    shopify_shop_domain: str | None
    shopify_access_token: str | None
    shopify_admin_url: str
    shopify_scopes: str
    app_url: str
    stock_api_token: str | None
    reservation_ttl_seconds: int
    checkout_hold_seconds: int
    cart_hold_grace_seconds: int
    bling_api_base_url: str
    bling_client_id: str | None
    bling_client_secret: str | None
    bling_deposit_id: str | None
    bling_store_id: str | None
    bling_payment_method_id: str | None
    bling_cancelled_situation_id: str | None
    bling_requests_per_second: int
    bling_job_lease_seconds: float
    metrics_token: str | None
    log_level: str
    web_threads: int
    db_pool_size: int
    db_max_overflow: int
    db_lock_timeout_ms: int
    worker_sweep_interval_seconds: float
    worker_drift_check_seconds: float
    worker_outbox_interval_seconds: float
    worker_bling_sync_seconds: float
    worker_webhook_check_seconds: float
    worker_order_reconcile_seconds: float
    worker_metrics_port: int | None
    hold_max_units_per_sku: int | None
    hold_max_active_holds: int | None
    rate_limit_per_ip: str | None
    rate_limit_per_cart: str | None
    rate_limit_storage_url: str | None
    trusted_proxy_hops: int
    #: Where confirmed orders go: ``bling`` (the default) or ``none`` (no ERP: the ledger's
    #: ``on_hand`` is the truth and a sale leaves it at once, orders/forwarding.py NullGateway).
    erp_backend: str = "bling"
    #: ADMIN_DEV_MODE=1: the embedded admin pages answer without a Shopify session token, for a
    #: local try outside Shopify's admin (refused in production).
    admin_dev_mode: bool = False
    #: The stock publisher (shopify/publisher.py): on by default; off stops writing the checkout
    #: function's metafields (the marks keep accumulating, so turning it on again catches up).
    shopify_publish_stock: bool = True
    #: How often the publisher looks for dirty SKUs when none were waiting.
    shopify_publish_interval_seconds: float = 0.1
    #: A SKU's variants are written at most once per this many seconds (bursts coalesce).
    shopify_publish_min_interval_seconds: float = 1.0
    #: How often the publisher reconciles what it wrote with the variants known.
    shopify_publish_reconcile_seconds: float = 300.0
    #: Shopify's inventory follows the ledger (shopify/inventory_follower.py): on by default.
    shopify_inventory_sync: bool = True
    #: The location whose ``available`` follows the ledger (numeric id or gid); None: the one
    #: active location that fulfils online orders.
    shopify_location_id: str | None = None
    #: How often the follower looks for outside changes to send when none were waiting.
    shopify_inventory_interval_seconds: float = 1.0
    #: How often Shopify's catalog is walked again for the SKU → inventory item map.
    shopify_inventory_map_seconds: float = 3600.0
    #: How often Shopify's figures are compared with the ledger's (a drift is repaired when two
    #: checks this far apart find the same one).
    shopify_inventory_drift_seconds: float = 900.0
    #: An absolute write waits until Shopify's count has not moved for this long (a sale whose
    #: order webhook has not arrived yet must not be handed back).
    shopify_inventory_settle_seconds: float = 120.0

    @property
    def is_development(self) -> bool:
        return self.environment in ("development", "test")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def normalize_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` and plain ``postgresql://``; always use psycopg 3.

    SQLAlchemy dropped the ``postgres`` dialect name in 1.4, and its default PostgreSQL driver
    differs between 2.0 (psycopg2) and 2.1 (psycopg), so the driver is made explicit.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class _Reader:
    """Reads typed values out of an environment mapping, collecting problems instead of raising.

    Its methods are named after the types they read, so inside the class ``str`` names the method:
    the annotations after it say ``builtins.str``.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def int(
        self, name: builtins.str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be an integer, got {raw!r}")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.problems.append(f"{name} must be {bound}, got {value}")
            return default
        return value

    def rate(self, name: builtins.str, default: builtins.str) -> builtins.str | None:
        """A rate limit in the ``limits`` notation ("30/minute", "5 per second; 100/hour");
        "off" or "0" for none."""
        raw = self.str(name, default) or default
        if raw.lower() in ("off", "0", "none"):
            return None
        try:
            parse_many(raw)
        except ValueError:
            self.problems.append(f"{name} must be a rate such as 30/minute or off, got {raw!r}")
            return default
        return raw

    def switch(self, name: builtins.str, default: bool) -> bool:
        """on/off (also true/false, 1/0, yes/no)."""
        raw = self.str(name)
        if raw is None:
            return default
        if raw.lower() in ("on", "true", "1", "yes"):
            return True
        if raw.lower() in ("off", "false", "0", "no"):
            return False
        self.problems.append(f"{name} must be on or off, got {raw!r}")
        return default

    def float(self, name: builtins.str, default: float, *, minimum: float) -> float:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {raw!r}")
            return default
        if value < minimum:
            self.problems.append(f"{name} must be >= {minimum}, got {value}")
            return default
        return value


def _on_heroku(env: Mapping[str, str]) -> bool:
    """A dyno that serves the public: Heroku sets DYNO on every dyno, and Heroku CI sets CI as
    well (same rule as Heroku's template); a CI run is reached by nobody outside it."""
    return "DYNO" in env and "CI" not in env


def _default_environment(env: Mapping[str, str]) -> str:
    return "production" if _on_heroku(env) else "development"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) or raise ConfigError."""
    env = os.environ if environ is None else environ
    r = _Reader(env)

    environment = (r.str("APP_ENV") or _default_environment(env)).lower()
    if environment not in ENVIRONMENTS:
        r.problems.append(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
        environment = "production"

    database_url = normalize_database_url(r.str("DATABASE_URL", DEFAULT_DATABASE_URL) or "")
    if not database_url.startswith(("sqlite", "postgresql+psycopg://")):
        r.problems.append(
            "DATABASE_URL must be a postgres://, postgresql:// or sqlite:/// URL, "
            f"got scheme {database_url.split(':', 1)[0]!r}"
        )

    port = r.int("PORT", 8000, minimum=1, maximum=65535)
    shop = r.str("SHOPIFY_SHOP_DOMAIN")
    admin_url = r.str("SHOPIFY_ADMIN_URL")
    if (
        admin_url is not None
        and "{shop}" not in admin_url
        and not admin_url.startswith("http://127.")
    ):
        r.problems.append("SHOPIFY_ADMIN_URL must contain {shop} (or point at a 127.x stand-in)")
    if shop is not None and not SHOP_DOMAIN_RE.match(shop):
        r.problems.append(f"SHOPIFY_SHOP_DOMAIN must look like name.myshopify.com, got {shop!r}")

    log_level = (r.str("LOG_LEVEL", "INFO") or "INFO").upper()
    if not isinstance(logging.getLevelName(log_level), int):
        r.problems.append(
            f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}"
        )
        log_level = "INFO"

    web_threads = r.int("WEB_THREADS", 16, minimum=1, maximum=64)
    settings = Settings(
        environment=environment,
        database_url=database_url,
        port=port,
        secret_key=r.str("SECRET_KEY"),
        shopify_api_key=r.str("SHOPIFY_API_KEY"),
        shopify_api_secret=r.str("SHOPIFY_API_SECRET"),
        shopify_api_secret_previous=r.str("SHOPIFY_API_SECRET_PREVIOUS"),
        shopify_shop_domain=shop,
        shopify_access_token=r.str("SHOPIFY_ACCESS_TOKEN"),
        # Where a shop's Admin API lives; tests point it at a loopback stand-in for Shopify.
        shopify_admin_url=r.str("SHOPIFY_ADMIN_URL", "https://{shop}") or "",
        shopify_scopes=r.str("SHOPIFY_SCOPES", DEFAULT_SHOPIFY_SCOPES) or "",
        app_url=(r.str("APP_URL") or f"http://localhost:{port}").rstrip("/"),
        stock_api_token=r.str("STOCK_API_TOKEN"),
        reservation_ttl_seconds=r.int("RESERVATION_TTL_SECONDS", 900, minimum=1, maximum=86_400),
        checkout_hold_seconds=r.int("CHECKOUT_HOLD_SECONDS", 1800, minimum=1, maximum=86_400),
        # How long a storefront hold waits for a cart webhook to list its line (domain.Hold).
        cart_hold_grace_seconds=r.int("CART_HOLD_GRACE_SECONDS", 120, minimum=1, maximum=3_600),
        bling_api_base_url=(
            r.str("BLING_API_BASE_URL", "https://api.bling.com.br/Api/v3") or ""
        ).rstrip("/"),
        bling_client_id=r.str("BLING_CLIENT_ID"),
        bling_client_secret=r.str("BLING_CLIENT_SECRET"),
        bling_deposit_id=r.str("BLING_DEPOSIT_ID"),
        bling_store_id=r.str("BLING_STORE_ID"),
        bling_payment_method_id=r.str("BLING_PAYMENT_METHOD_ID"),
        # The sales orders' "Cancelado" situation; unset: looked up in the account (erp/).
        bling_cancelled_situation_id=r.str("BLING_CANCELLED_SITUATION_ID"),
        # Bling allows 3 requests/s per account (docs/bling-api.md); shared by every process.
        bling_requests_per_second=r.int("BLING_REQUESTS_PER_SECOND", 3, minimum=1, maximum=100),
        # How long a worker owns a Bling job before another may take it over (a worker that
        # died mid-job holds it this long); a forward starts no write after a third of it.
        bling_job_lease_seconds=r.float("BLING_JOB_LEASE_SECONDS", 300.0, minimum=10.0),
        metrics_token=r.str("METRICS_TOKEN"),
        log_level=log_level,
        web_threads=web_threads,
        # Fewer connections than threads: the hot routes combine the requests waiting in a
        # process into one statement on one connection (stock/combiner.py), so 8 serve 16
        # threads; the rest wait for one (pool timeout 10 s, then 503). Heroku's smallest
        # databases allow only 20 connections in all, so the cap must stay explicit.
        db_pool_size=r.int("DB_POOL_SIZE", min(web_threads, 8), minimum=1, maximum=100),
        db_max_overflow=r.int("DB_MAX_OVERFLOW", 2, minimum=0, maximum=100),
        db_lock_timeout_ms=r.int("DB_LOCK_TIMEOUT_MS", 5000, minimum=0, maximum=60_000),
        worker_sweep_interval_seconds=r.float("WORKER_SWEEP_INTERVAL_SECONDS", 5.0, minimum=0.05),
        worker_drift_check_seconds=r.float("WORKER_DRIFT_CHECK_SECONDS", 300.0, minimum=1.0),
        worker_outbox_interval_seconds=r.float("WORKER_OUTBOX_INTERVAL_SECONDS", 0.5, minimum=0.05),
        # The reconciliation under Bling's webhooks: a full sync costs about one request per
        # 50 SKUs plus one per 100 products, out of Bling's 3/s and 120,000/day.
        worker_bling_sync_seconds=r.float("WORKER_BLING_SYNC_SECONDS", 900.0, minimum=1.0),
        # How often the worker checks each shop's webhook subscriptions and recreates missing
        # ones (Shopify deletes failing API subscriptions); each check also refreshes the token.
        worker_webhook_check_seconds=r.float("WORKER_WEBHOOK_CHECK_SECONDS", 3600.0, minimum=1.0),
        # How often the worker lists each shop's recently updated orders and applies those no
        # webhook brought (shopify/reconcile.py).
        worker_order_reconcile_seconds=r.float(
            "WORKER_ORDER_RECONCILE_SECONDS", 300.0, minimum=1.0
        ),
        # The worker's own /metrics (outbox runs, Bling calls) on this port; unset: not served.
        worker_metrics_port=(
            r.int("WORKER_METRICS_PORT", 0, minimum=1, maximum=65_535)
            if r.str("WORKER_METRICS_PORT")
            else None
        ),
        # Denial-of-inventory caps per holder (cart token): 0 turns one off.
        hold_max_units_per_sku=r.int("HOLD_MAX_UNITS_PER_SKU", 5, minimum=0) or None,
        hold_max_active_holds=r.int("HOLD_MAX_ACTIVE_HOLDS", 25, minimum=0) or None,
        # Request rates on the reservation routes, shared by every process (RATE_LIMIT_STORAGE_URL,
        # default the database). Generous per IP: shoppers on mobile networks share addresses.
        rate_limit_per_ip=r.rate("RATE_LIMIT_PER_IP", "300/minute"),
        rate_limit_per_cart=r.rate("RATE_LIMIT_PER_CART", "30/minute"),
        rate_limit_storage_url=r.str("RATE_LIMIT_STORAGE_URL"),
        # Proxies in front of the web process that append to X-Forwarded-For (Heroku's router: 1).
        trusted_proxy_hops=r.int(
            "TRUSTED_PROXY_HOPS", 1 if "DYNO" in env else 0, minimum=0, maximum=5
        ),
        erp_backend=(r.str("ERP_BACKEND", "bling") or "bling").lower(),
        admin_dev_mode=r.str("ADMIN_DEV_MODE", "0") == "1",
        shopify_publish_stock=r.switch("SHOPIFY_PUBLISH_STOCK", True),
        shopify_publish_interval_seconds=r.float(
            "SHOPIFY_PUBLISH_INTERVAL_SECONDS", 0.1, minimum=0.01
        ),
        shopify_publish_min_interval_seconds=r.float(
            "SHOPIFY_PUBLISH_MIN_INTERVAL_SECONDS", 1.0, minimum=0.0
        ),
        shopify_publish_reconcile_seconds=r.float(
            "SHOPIFY_PUBLISH_RECONCILE_SECONDS", 300.0, minimum=1.0
        ),
        shopify_inventory_sync=r.switch("SHOPIFY_INVENTORY_SYNC", True),
        shopify_location_id=r.str("SHOPIFY_LOCATION_ID"),
        shopify_inventory_interval_seconds=r.float(
            "SHOPIFY_INVENTORY_INTERVAL_SECONDS", 1.0, minimum=0.01
        ),
        shopify_inventory_map_seconds=r.float("SHOPIFY_INVENTORY_MAP_SECONDS", 3600.0, minimum=1.0),
        shopify_inventory_drift_seconds=r.float(
            "SHOPIFY_INVENTORY_DRIFT_SECONDS", 900.0, minimum=1.0
        ),
        shopify_inventory_settle_seconds=r.float(
            "SHOPIFY_INVENTORY_SETTLE_SECONDS", 120.0, minimum=0.0
        ),
    )
    app_url = r.str("APP_URL")
    if app_url is None and _on_heroku(env):
        r.problems.append(
            "APP_URL is required on Heroku (DYNO is set): Shopify's webhooks, the App Proxy and "
            "the OAuth redirects (Shopify's /auth/callback, Bling's /bling/callback) are "
            "registered at it, and without it they would name http://localhost:$PORT, which "
            "nothing outside the dyno reaches. Set it to the app's public https:// address"
        )
    elif app_url is not None and not app_url.lower().startswith(("https://", "http://")):
        r.problems.append(f"APP_URL must be an absolute http(s):// URL, got {app_url!r}")
    storage = settings.rate_limit_storage_url
    if storage is not None and storage.split(":", 1)[0] in ("memory", "async+memory"):
        r.problems.append(
            "RATE_LIMIT_STORAGE_URL must be a storage every process shares (redis://, "
            "memcached://, …); memory:// would count each process apart"
        )

    if r.str("ADMIN_DEV_MODE", "0") not in ("0", "1"):
        r.problems.append(f"ADMIN_DEV_MODE must be 0 or 1, got {r.str('ADMIN_DEV_MODE')!r}")
    if environment == "production":
        if settings.admin_dev_mode:
            r.problems.append(
                "ADMIN_DEV_MODE=1 serves the admin pages without Shopify's session token: "
                "it is refused when APP_ENV=production"
            )
        for name in ("SECRET_KEY", "SHOPIFY_API_KEY", "SHOPIFY_API_SECRET"):
            if r.str(name) is None:
                r.problems.append(f"{name} is required when APP_ENV=production")
        if settings.secret_key is not None and len(settings.secret_key) < 16:
            r.problems.append("SECRET_KEY must be at least 16 characters long")
        if settings.secret_key == DEVELOPMENT_SECRET_KEY:
            r.problems.append("SECRET_KEY must not be the development key published in the code")
    for name in (
        "BLING_DEPOSIT_ID",
        "BLING_STORE_ID",
        "BLING_PAYMENT_METHOD_ID",
        "BLING_CANCELLED_SITUATION_ID",
    ):
        value = r.str(name)
        if value is not None and not (value.isascii() and value.isdigit()):
            r.problems.append(f"{name} must be a numeric Bling id, got {value!r}")
    bling_parts = (settings.bling_client_id, settings.bling_client_secret)
    if any(bling_parts) and not all(bling_parts):
        r.problems.append("BLING_CLIENT_ID and BLING_CLIENT_SECRET must be set together")
    if settings.erp_backend not in ("bling", "none"):
        r.problems.append(f"ERP_BACKEND must be bling or none, got {settings.erp_backend!r}")
    elif settings.erp_backend == "none" and any(bling_parts):
        r.problems.append(
            "ERP_BACKEND=none sends orders nowhere, yet BLING_CLIENT_ID is set: unset one of them"
        )

    if r.problems:
        raise ConfigError(r.problems)
    return settings
