"""What the service knows of the Bling account it is connected to, and the deposit it sells from.

**The deposit.** Reads and postings must use one and the same deposit: a balance summed over all
deposits (showroom, defective goods, other warehouses) while ``lancar-estoque`` posts to one never
converges, and sells units that are not where the orders leave from. So the deposit is:

1. ``BLING_DEPOSIT_ID`` when set;
2. else the account's **default deposit**, the active one Bling marks ``padrao`` (``GET
   /depositos``), read once (when Bling is connected, or by the first reconciliation after this
   release for a connection made before it) and stored on the connection row. Postings then name
   it (``lancar-estoque/{idDeposito}``) rather than leave the choice to Bling, so a default
   changed later in Bling does not split reads from writes; a new ``bling connect`` reads it
   again;
3. else no Bling work starts: ``bling_client`` raises ``DepositUnknown`` (a ``BlingNotConnected``,
   so every caller already waits: forwarding pauses, the reconciliation skips, ``bling sync`` says
   why), and stock webhooks are answered 503 for Bling to retry.

**The company.** Every account that authorizes the Bling app sends its webhooks to the same URL,
signed with the same client secret. ``GET /empresas/me/dados-basicos`` gives this account's id,
which its webhooks carry as ``companyId``; events of any other account are not applied. Until the
id is learnt (a connection made before this release), events are applied unchecked, as before.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

from bling import account as bling_account
from bling.client import BlingClient
from bling.errors import BlingError, BlingForbidden, BlingNotConnected
from bling.webhooks import BlingEvent

from ..config import Settings

log = logging.getLogger(__name__)

HOW_TO_CHOOSE = (
    "set BLING_DEPOSIT_ID to the id of the deposit the store sells from, or mark that deposit as "
    "the default (padrão) in Bling"
)


class DepositUnknown(BlingNotConnected):
    """BLING_DEPOSIT_ID is unset and the account's default deposit is not known: Bling work
    waits (reading every deposit while posting to one would sell stock that is elsewhere)."""


@dataclass(frozen=True)
class BlingAccount:
    """The connected account as Bling reported it; None where not learnt yet."""

    company_id: str | None = None
    default_deposit_id: int | None = None

    def needs_learning(self, settings: Settings) -> bool:
        """Something Bling can tell is still unknown (the default deposit only matters while
        BLING_DEPOSIT_ID is unset)."""
        return self.company_id is None or (
            settings.bling_deposit_id is None and self.default_deposit_id is None
        )

    def owns(self, event: BlingEvent) -> bool:
        """Whether ``event`` is this account's: same ``companyId``, or the id is not learnt yet."""
        if self.company_id is None:
            return True
        return isinstance(event.company_id, str) and event.company_id.strip() == self.company_id


def sales_deposit(settings: Settings, known: BlingAccount) -> int:
    """The deposit whose balance is sold and where orders post their stock: ``BLING_DEPOSIT_ID``,
    else the default deposit learnt from Bling; ``DepositUnknown`` when neither is known."""
    if settings.bling_deposit_id is not None:
        return int(settings.bling_deposit_id)  # config.py checked it is a number
    if known.default_deposit_id is not None:
        return known.default_deposit_id
    raise DepositUnknown(
        "BLING_DEPOSIT_ID is unset and the Bling account's default deposit is not known yet (it "
        "is read from Bling when connecting and by each reconciliation, `flask --app wsgi bling "
        f"sync`); until then no Bling work starts. To skip this, {HOW_TO_CHOOSE}"
    )


def learn_company(client: BlingClient, known: BlingAccount) -> BlingAccount:
    """``known`` with the company id asked of Bling if it lacks it. Best effort: a failure is
    logged, and webhooks stay unchecked until a later attempt learns it."""
    if known.company_id is not None:
        return known
    try:
        company = bling_account.company_id(client)
    except BlingError as exc:
        log.warning("bling.company_unknown error=%s: webhooks are not checked yet", exc)
        return known
    return replace(known, company_id=company)


def default_deposit(client: BlingClient) -> int:
    """The id of the account's default deposit (the one active deposit Bling marks ``padrao``);
    ``DepositUnknown``, saying what Bling listed, when there is none or several."""
    try:
        active = bling_account.deposits(client)
    except BlingForbidden:
        raise DepositUnknown(
            "BLING_DEPOSIT_ID is unset and Bling refused to list the account's deposits (403: "
            f"the app may lack access to them); {HOW_TO_CHOOSE}"
        ) from None
    chosen = bling_account.default_deposit(active)
    if chosen is None:
        marked = sum(1 for d in active if d.default)
        listed = ", ".join(f'{d.id} "{d.description}"' for d in active) or "none"
        what = "several deposits as" if marked > 1 else "no active deposit as"
        raise DepositUnknown(
            f"BLING_DEPOSIT_ID is unset and Bling marks {what} the default (padrão), so it is "
            "unknown which deposit to sell from: reading all of them while orders post to one "
            f"would sell stock that is elsewhere. Active deposits: {listed}. {HOW_TO_CHOOSE}"
        )
    log.info("bling.default_deposit id=%s description=%r", chosen.id, chosen.description)
    return chosen.id


# --- the deposit this process's Bling client works with ------------------------------------------
# ``stock_sync.configured_deposit(settings)`` is the one question every Bling job asks ("which
# deposit?"), with the settings only. ``bling_client`` answers it for this process each time it
# builds a client (from the connection row it reads anyway), so a job that holds a client asks
# nothing of the database again.

_deposits: dict[tuple[str, str], int] = {}
_deposits_lock = threading.Lock()


def remember_deposit(settings: Settings, deposit_id: int) -> None:
    with _deposits_lock:
        _deposits[_key(settings)] = deposit_id


def remembered_deposit(settings: Settings) -> int | None:
    with _deposits_lock:
        return _deposits.get(_key(settings))


def _key(settings: Settings) -> tuple[str, str]:
    return settings.bling_api_base_url, settings.bling_client_id or ""
