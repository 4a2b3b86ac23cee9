"""Which deposit is sold from and whose webhooks count, from what is known of the account."""

from __future__ import annotations

import json

import pytest

from bling.errors import BlingNotConnected
from bling.webhooks import parse_event
from shopify_app.config import load_settings
from shopify_app.erp.account import BlingAccount, DepositUnknown, sales_deposit

COMPANY = "436c56a5679921f5f13a3d6433561773"


def test_the_deposit_is_bling_deposit_id_else_the_default_one_else_no_bling_work() -> None:
    configured = load_settings({"BLING_DEPOSIT_ID": "14887164"})
    unset = load_settings({})
    learnt = BlingAccount(COMPANY, 555)
    assert sales_deposit(configured, learnt) == 14887164
    assert sales_deposit(unset, learnt) == 555
    with pytest.raises(DepositUnknown, match="BLING_DEPOSIT_ID is unset") as caught:
        sales_deposit(unset, BlingAccount(COMPANY, None))
    assert isinstance(caught.value, BlingNotConnected), "callers already wait on it"
    assert learnt.needs_learning(unset) is False
    assert BlingAccount(COMPANY, None).needs_learning(unset) is True
    assert BlingAccount(COMPANY, None).needs_learning(configured) is False
    assert BlingAccount(None, 555).needs_learning(configured) is True


def event(company: str | None) -> bytes:
    envelope = {"eventId": "e1", "event": "stock.updated", "date": "2026-11-27T12:00:00Z"}
    return json.dumps({**envelope, "companyId": company, "data": {}}).encode()


def test_only_the_connected_account_s_events_are_its_own() -> None:
    known = BlingAccount(COMPANY, 1)
    assert known.owns(parse_event(event(COMPANY)))
    assert not known.owns(parse_event(event("0" * 32)))
    assert not known.owns(parse_event(event(None)))
    # Not learnt yet (a connection from before the check): nothing to compare with.
    assert BlingAccount().owns(parse_event(event("0" * 32)))
