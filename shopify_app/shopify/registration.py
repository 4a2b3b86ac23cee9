"""Webhook subscriptions through the Admin GraphQL API, and ``flask shopify register-webhooks``.

Subscriptions made through the API are per shop, and Shopify deletes them after repeated failed
deliveries, so registering is idempotent and cheap to rerun: list what exists, create what is
missing. The mandatory privacy topics cannot be subscribed this way; they are declared in
``shopify.app.toml`` (deployed with the Shopify CLI) together with the same API version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import click
from flask.cli import AppGroup

from ..config import SHOP_DOMAIN_RE, Settings
from ..crypto import TokenUnreadable
from ..observability import metrics
from ..runtime import Runtime, current_runtime
from . import client
from .shops import ShopTokenError, TokenStore, installed_shops

log = logging.getLogger(__name__)

#: Where Shopify delivers (the webhooks blueprint); APP_URL is prefixed.
WEBHOOK_PATH = "/webhooks/shopify"
TOPICS = (
    "CARTS_CREATE",
    "CARTS_UPDATE",
    "CHECKOUTS_CREATE",
    "CHECKOUTS_UPDATE",
    "ORDERS_CREATE",
    "ORDERS_PAID",
    "ORDERS_CANCELLED",
    "ORDERS_EDITED",
    "REFUNDS_CREATE",
    "APP_UNINSTALLED",
)

LIST_QUERY = """
query webhookSubscriptions($first: Int!, $after: String) {
  webhookSubscriptions(first: $first, after: $after) {
    edges { cursor node { id topic uri } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

CREATE_MUTATION = """
mutation webhookSubscriptionCreate(
  $topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!
) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
"""


class WebhookRegistrationError(client.ShopifyError):
    """Shopify refused a subscription (``userErrors``), e.g. an http:// address."""


@dataclass(frozen=True)
class Subscription:
    id: str
    topic: str
    uri: str


#: What Shopify says when the app may not (yet) receive protected customer data: orders and
#: checkouts are, so their topics cannot be subscribed until access is requested (and, for a
#: public app, approved) in the Partner Dashboard.
PROTECTED_DATA_MARK = "protected customer data"
PROTECTED_DATA_HINT = (
    "request access to protected customer data in the Partner Dashboard (the app's API access "
    "page: Protected customer data access; the order and checkout topics need it), then run "
    "`flask --app wsgi shopify register-webhooks` again"
)


@dataclass
class Registration:
    """What a run found and did; ``elsewhere`` are our topics also delivered to another URI;
    ``refused`` the topics Shopify would not subscribe for lack of protected-data access."""

    uri: str
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    elsewhere: list[Subscription] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def webhook_uri(settings: Settings) -> str:
    return settings.app_url + WEBHOOK_PATH


def list_subscriptions(
    admin_base: str, access_token: str, *, page_size: int = 100
) -> list[Subscription]:
    """Every webhook subscription this app has on the shop, following the pages."""
    found: list[Subscription] = []
    after: str | None = None
    while True:
        data = client.graphql(
            admin_base, access_token, LIST_QUERY, {"first": page_size, "after": after}
        )
        connection = data.get("webhookSubscriptions") or {}
        for edge in connection.get("edges") or []:
            node = edge.get("node") or {}
            found.append(Subscription(str(node["id"]), str(node["topic"]), str(node["uri"])))
        page = connection.get("pageInfo") or {}
        if not page.get("hasNextPage"):
            return found
        after = page.get("endCursor")
        if not after:
            raise client.ShopifyUnavailable("webhookSubscriptions: next page without a cursor")


def register_webhooks(
    settings: Settings, shop: str, access_token: str, *, page_size: int = 100
) -> Registration:
    """Make sure each of ``TOPICS`` is delivered to ``APP_URL/webhooks/shopify``; create only
    what is missing, so a rerun creates nothing. Raises WebhookRegistrationError on userErrors
    (the subscriptions created before it stay; a rerun completes them)."""
    admin_base = client.admin_base_url(settings.shopify_admin_url, shop)
    result = Registration(uri=webhook_uri(settings))
    present = list_subscriptions(admin_base, access_token, page_size=page_size)
    ours = {s.topic for s in present if s.uri == result.uri}
    # Another URI for one of our topics (an old APP_URL) is reported, not deleted: it may be a
    # second deployment on purpose, and deliveries are deduplicated anyway.
    result.elsewhere = [s for s in present if s.topic in TOPICS and s.uri != result.uri]
    for topic in TOPICS:
        if topic in ours:
            result.existing.append(topic)
            continue
        data = client.graphql(
            admin_base,
            access_token,
            CREATE_MUTATION,
            {"topic": topic, "webhookSubscription": {"uri": result.uri}},
        )
        payload = data.get("webhookSubscriptionCreate") or {}
        errors = payload.get("userErrors") or []
        messages = "; ".join(str(e.get("message", e)) for e in errors) or "nothing created"
        if PROTECTED_DATA_MARK in messages.lower():
            # The other topics still get subscribed; these wait for the merchant's request.
            result.refused.append(topic)
            continue
        if errors or not payload.get("webhookSubscription"):
            raise WebhookRegistrationError(f"{topic}: {messages}")
        result.created.append(topic)
    if result.refused:
        log.warning(
            "shop %s: Shopify refused %s for lack of protected customer data access; %s",
            shop,
            ", ".join(result.refused),
            PROTECTED_DATA_HINT,
        )
    return result


# --- kept subscribed ------------------------------------------------------------------------


def keep_subscribed(runtime: Runtime) -> dict[str, Registration]:
    """The worker's periodic check: for every installed shop, recreate the subscriptions Shopify
    deleted (it does so after repeated failed deliveries, and tells no one). Asking for the
    shop's token refreshes it when due, which also keeps the refresh token from idling out. A
    shop that fails is logged and the others still run."""
    settings = runtime.settings
    if not settings.shopify_api_key:
        return {}
    if not webhook_uri(settings).startswith("https://"):
        # Shopify delivers only to https addresses (a local run without a tunnel): nothing to do.
        log.debug("webhook subscription check skipped: APP_URL is not https")
        return {}
    store = TokenStore.for_runtime(runtime)
    results: dict[str, Registration] = {}
    for shop in installed_shops(runtime.engine, settings):
        try:
            result = register_webhooks(settings, shop, store.access_token(shop))
        except (ShopTokenError, TokenUnreadable, client.ShopifyError) as exc:
            log.error("shop %s: webhook subscription check failed: %s", shop, exc)
            continue
        results[shop] = result
        for topic in result.created:
            metrics.WEBHOOK_SUBSCRIPTIONS_RECREATED.labels(topic=topic).inc()
        for topic in result.refused:
            metrics.WEBHOOK_TOPICS_REFUSED.labels(topic=topic).inc()
        if result.created and result.existing:
            log.warning(
                "shop %s: webhook subscriptions were missing and are created again: %s",
                shop,
                ", ".join(result.created),
            )
    return results


# --- command line ---------------------------------------------------------------------------

shopify_cli = AppGroup("shopify", help="Shopify: webhook subscriptions, the checkout rule.")


@shopify_cli.command("register-webhooks")
@click.option("--shop", default=None, help="name.myshopify.com (default: SHOPIFY_SHOP_DOMAIN)")
def register_webhooks_command(shop: str | None) -> None:
    """(Re)create the webhook subscriptions of SHOP; existing ones are left alone."""
    runtime = current_runtime()
    shop = shop or runtime.settings.shopify_shop_domain
    if not shop:
        raise click.UsageError("give --shop or set SHOPIFY_SHOP_DOMAIN")
    if not SHOP_DOMAIN_RE.match(shop):
        raise click.BadParameter(f"{shop!r} is not name.myshopify.com", param_hint="--shop")
    try:
        token = TokenStore.for_runtime(runtime).access_token(shop)
        result = register_webhooks(runtime.settings, shop, token)
    except (ShopTokenError, TokenUnreadable, client.ShopifyError) as exc:
        raise click.ClickException(f"{shop}: {exc}") from None
    click.echo(f"{shop}: webhooks deliver to {result.uri}")
    for topic in result.created:
        click.echo(f"  created  {topic}")
    for topic in result.existing:
        click.echo(f"  exists   {topic}")
    for other in result.elsewhere:
        click.echo(f"  note     {other.topic} also delivers to {other.uri} ({other.id})")
    for topic in result.refused:
        click.echo(f"  refused  {topic} (protected customer data)")
    if result.refused:
        click.echo(f"To receive orders and checkouts, {PROTECTED_DATA_HINT}.", err=True)
