"""The embedded app's pages (Agora, SKU, Pedidos, Saúde) and the JSON calls they make.

Every page and every call checks Shopify's session token (``shopify/session_tokens.py``) and
that its shop is one this service serves; a page's first load carries it as ``id_token`` in the
query (Shopify's admin adds it), every call and every action as ``Authorization: Bearer``
(App Bridge's ``shopify.idToken()``), never in a cookie. Actions are POSTs and change nothing
without a valid token. ``ADMIN_DEV_MODE=1`` (refused in production) serves the same pages
without a token, for a local try outside Shopify's admin.

``/`` is where Shopify opens the app (``application_url``, with a signed query): the query is
verified, a shop without a token is sent through OAuth, and otherwise the home page is shown.

The pages are rendered here (Jinja, ``templates/admin``); App Bridge and Polaris come from
Shopify's CDN, and ``static/admin.js`` polls the JSON calls, whose answers carry the same
fragments re-rendered, so one template draws a table whether on the first load or live.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, g, jsonify, redirect, render_template, request

from ..config import SHOP_DOMAIN_RE
from ..erp.connection import is_configured
from ..runtime import Runtime, current_runtime
from ..web.errors import error_response
from . import actions, health, order_queries, queries, rates, session
from .texts import pick_locale, translator

log = logging.getLogger(__name__)
bp = Blueprint(
    "admin",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/admin/static",
)
LIVE_REFRESH_MS = 2000
#: Times are shown on the merchant's clock.
SHOWN_TZ = ZoneInfo("America/Sao_Paulo")


def _locale() -> str:
    return pick_locale(request.args.get("locale"), request.accept_languages.values())


def _refusal(reason: str, *, document: bool) -> Response:
    log.warning("admin.refused reason=%s path=%s", reason, request.path)
    if not document:
        return error_response(401, "invalid_session_token", f"session token refused: {reason}")
    t = translator(_locale())
    response = Response(render_template("admin/refused.html", t=t, reason=reason), 401)
    return _page_headers(response)


def _page_headers(response: Response) -> Response:
    # The page's URL may carry the id_token: never send it on in a Referer.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(
    template: str, admin: session.Admin, *, nav: str, live: str | None = None, **data: Any
) -> Any:
    runtime = current_runtime()
    locale = _locale()
    config = {
        "locale": locale,
        "dev": admin.dev,
        "live": live,
        "refreshMs": LIVE_REFRESH_MS,
    }
    body = render_template(
        template,
        t=translator(locale),
        admin=admin,
        nav=nav,
        locale=locale,
        api_key=runtime.settings.shopify_api_key or "",
        config=config,
        now=runtime.clock(),
        **data,
    )
    return _page_headers(Response(body, 200, mimetype="text/html"))


def _json_call(view: Any) -> Any:
    """Authenticate a JSON call or action; refusals are 401 and change nothing."""
    try:
        admin = session.authenticate(document=False)
    except session.Refused as exc:
        return _refusal(exc.reason, document=False)
    try:
        return view(admin)
    except actions.ActionRefused as exc:
        return error_response(exc.status, exc.code, str(exc))


def _document(view: Any) -> Any:
    try:
        admin = session.authenticate(document=True)
    except session.Refused as exc:
        return _refusal(exc.reason, document=True)
    return view(admin)


# --- the app's entry: Shopify's application_url -----------------------------------------------


@bp.get("/")
def home() -> Any:
    """Shopify opens the app here with a signed query; the Agora page is the app's home."""
    runtime = current_runtime()
    settings = runtime.settings
    if "hmac" not in request.args:
        return _document(_agora_page)
    shop = request.args.get("shop", "")
    if SHOP_DOMAIN_RE.match(shop):
        g.frame_shop = shop
    refusal = session.bad_signed_query(runtime, shop)
    if refusal is not None:
        return refusal
    if not session.has_token(runtime, shop):
        target = "/auth/install?" + urlencode(list(request.args.items(multi=True)))
        if request.args.get("embedded") == "1":
            # OAuth's consent page refuses to be framed: leave Shopify's iframe first.
            t = translator(_locale())
            page = render_template("admin/exit_iframe.html", t=t, target=target)
            return _page_headers(Response(page, 200, mimetype="text/html"))
        return redirect(target, code=302)
    if request.args.get("id_token") or settings.admin_dev_mode:
        return _document(_agora_page)
    # A signed query without an id_token (an older admin): the shop is proven, the user not.
    return _agora_page(session.Admin(shop, "shopify-admin"))


# --- Agora --------------------------------------------------------------------------------------


def agora_data(runtime: Runtime) -> dict[str, Any]:
    now = runtime.clock()
    with queries.reading(runtime) as connection:
        hot = queries.hottest_skus(connection, now)
        expiring = queries.live_holds(connection, now, limit=10)
        backlog = order_queries.bling_backlog(connection, now)
        oversold_units, oversold_lines = order_queries.oversells(connection)
    return {
        "hot": hot,
        "expiring": expiring,
        "backlog": backlog,
        "oversold_units": oversold_units,
        "oversold_lines": oversold_lines,
        "totals": rates.read_totals(),
        "updated_at": now,
    }


AGORA_FRAGMENTS = ("hot", "expiring", "backlog", "oversells", "updated")


def _agora_page(admin: session.Admin) -> Any:
    data = agora_data(current_runtime())
    return _page("admin/agora.html", admin, nav="agora", live="/admin/api/agora", **data)


@bp.get("/admin")
def agora() -> Any:
    return _document(_agora_page)


@bp.get("/admin/api/agora")
def agora_api() -> Any:
    return _json_call(lambda admin: _live("admin/agora_parts.html", AGORA_FRAGMENTS, agora_data))


def _live(template: str, names: tuple[str, ...], read: Any, *args: Any) -> Response:
    """The data as JSON plus each fragment re-rendered by the page's own template."""
    runtime = current_runtime()
    data = read(runtime, *args)
    t = translator(_locale())
    fragments = {
        name: render_template(template, part=name, t=t, now=runtime.clock(), **data)
        for name in names
    }
    return jsonify(data=queries.as_json(data), html=fragments)


# --- a SKU --------------------------------------------------------------------------------------


def sku_data(runtime: Runtime, sku: str) -> dict[str, Any]:
    now = runtime.clock()
    with queries.reading(runtime) as connection:
        return {
            "sku": sku,
            "figures": queries.sku_figures(connection, now, sku),
            "holds": queries.live_holds(connection, now, sku=sku),
            "history": queries.movement_history(connection, sku),
            "bling_product": queries.bling_product_of(connection, sku),
            "bling_on": is_configured(runtime.settings),
        }


SKU_FRAGMENTS = ("figures", "holds", "history")


@bp.get("/admin/skus/<path:sku>")
def sku_page(sku: str) -> Any:
    def show(admin: session.Admin) -> Any:
        data = sku_data(current_runtime(), sku)
        if data["figures"] is None:
            return error_response(404, "unknown_sku", f"SKU {sku!r} is not tracked")
        return _page("admin/sku.html", admin, nav="agora", live=_sku_api(sku), **data)

    return _document(show)


def _sku_api(sku: str) -> str:
    return f"/admin/api/skus/{quote(sku, safe='')}"


@bp.get("/admin/api/skus/<path:sku>")
def sku_api(sku: str) -> Any:
    def show(admin: session.Admin) -> Any:
        if queries_figures(sku) is None:
            return error_response(404, "unknown_sku", f"SKU {sku!r} is not tracked")
        return _live("admin/sku_parts.html", SKU_FRAGMENTS, sku_data, sku)

    return _json_call(show)


def queries_figures(sku: str) -> queries.SkuFigures | None:
    runtime = current_runtime()
    with queries.reading(runtime) as connection:
        return queries.sku_figures(connection, runtime.clock(), sku)


@bp.post("/admin/api/skus/<path:sku>/on-hand")
def set_on_hand(sku: str) -> Any:
    def act(admin: session.Admin) -> Any:
        body = request.get_json(silent=True)
        value = body.get("on_hand") if isinstance(body, dict) else None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
            return error_response(422, "invalid_request", "on_hand must be a whole number >= 0")
        view = actions.set_on_hand(current_runtime(), sku, value, user=admin.user)
        log.info("admin.set_on_hand sku=%s on_hand=%s user=%s", sku, value, admin.user)
        return jsonify(status="ok", sku=sku, level=queries.as_json(_level(view)))

    return _json_call(act)


@bp.post("/admin/api/skus/<path:sku>/resync")
def resync(sku: str) -> Any:
    def act(admin: session.Admin) -> Any:
        result = actions.resync_sku(current_runtime(), sku, user=admin.user)
        log.info("admin.resync sku=%s outcome=%s user=%s", sku, result.outcome, admin.user)
        return jsonify(
            status=result.outcome,
            sku=sku,
            bling_product_id=result.product_id,
            bling_balance=result.balance,
            level=queries.as_json(_level(result.level)) if result.level else None,
        )

    return _json_call(act)


def _level(view: Any) -> dict[str, Any]:
    return {
        "sku": view.sku,
        "on_hand": view.on_hand,
        "reserved": view.reserved,
        "committed": view.committed,
        "available": view.available,
    }


# --- Pedidos ------------------------------------------------------------------------------------


def orders_data(runtime: Runtime, state: str) -> dict[str, Any]:
    with queries.reading(runtime) as connection:
        rows = order_queries.list_orders(connection, state=state)
    return {"orders": rows, "state": state, "states": order_queries.ORDER_STATES}


def _state() -> str | None:
    state = request.args.get("state", "all")
    return state if state in order_queries.ORDER_STATES else None


@bp.get("/admin/pedidos")
def pedidos() -> Any:
    def show(admin: session.Admin) -> Any:
        state = _state()
        if state is None:
            return error_response(422, "invalid_request", "unknown state")
        data = orders_data(current_runtime(), state)
        return _page("admin/pedidos.html", admin, nav="pedidos", **data)

    return _document(show)


@bp.get("/admin/api/pedidos")
def pedidos_api() -> Any:
    def show(admin: session.Admin) -> Any:
        state = _state()
        if state is None:
            return error_response(422, "invalid_request", "unknown state")
        return _live("admin/pedidos_parts.html", ("orders",), orders_data, state)

    return _json_call(show)


@bp.post("/admin/api/jobs/<int:job_id>/retry")
def retry(job_id: int) -> Any:
    def act(admin: session.Admin) -> Any:
        job = actions.retry_job(current_runtime(), job_id)
        log.info("admin.retry job=%s user=%s", job_id, admin.user)
        return jsonify(status="queued", job={"id": job.id, "status": job.status})

    return _json_call(act)


# --- Saúde --------------------------------------------------------------------------------------


@bp.get("/admin/saude")
def saude() -> Any:
    def show(admin: session.Admin) -> Any:
        data = health.read(current_runtime(), admin.shop)
        return _page("admin/saude.html", admin, nav="saude", **data)

    return _document(show)


@bp.get("/admin/api/saude")
def saude_api() -> Any:
    def show(admin: session.Admin) -> Any:
        data = health.read(current_runtime(), admin.shop)
        return jsonify(data=queries.as_json(data))

    return _json_call(show)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _time(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(SHOWN_TZ).strftime("%d/%m %H:%M:%S")


@bp.app_template_filter("age")
def age_filter(seconds: float | None) -> str:
    return _age(seconds)


@bp.app_template_filter("when")
def when_filter(value: datetime | None) -> str:
    return _time(value)
