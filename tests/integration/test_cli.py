"""``flask --app wsgi stock …`` commands."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine, text

from tests.support.app import ApiClient
from tests.support.ledger import assert_ledger_balanced, figures


def test_stock_set_then_show(app: Flask, engine: Engine) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["stock", "set", "BAZI-TEE-P", "12"])
    assert result.exit_code == 0, result.output
    assert "BAZI-TEE-P" in result.output and "12" in result.output
    runner.invoke(args=["stock", "set", "BAZI-CAP", "3"])
    runner.invoke(args=["stock", "set", "BAZI-TEE-P", "10"])
    assert figures(engine, "BAZI-TEE-P")["on_hand"] == 10
    assert_ledger_balanced(engine)

    result = runner.invoke(args=["stock", "show"])
    lines = result.output.strip().splitlines()
    assert lines[0].split() == ["sku", "on_hand", "reserved", "committed", "available"]
    assert [line.split() for line in lines[1:]] == [
        ["BAZI-CAP", "3", "0", "0", "3"],
        ["BAZI-TEE-P", "10", "0", "0", "10"],
    ]
    result = runner.invoke(args=["stock", "show", "BAZI-CAP"])
    assert result.output.strip().splitlines()[1].split() == ["BAZI-CAP", "3", "0", "0", "3"]


def test_stock_cli_refuses_bad_input(app: Flask, engine: Engine) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["stock", "set", "A", "-1"]).exit_code != 0
    assert runner.invoke(args=["stock", "set", "A", "lots"]).exit_code != 0
    result = runner.invoke(args=["stock", "show", "NOPE"])
    assert result.exit_code != 0 and "unknown SKU" in result.output


def test_stock_check_finds_drift_between_counters_and_ledger(
    app: Flask, engine: Engine, api: ApiClient
) -> None:
    api.put("/stock/A", json={"on_hand": 5})
    api.post("/stock/A/reserve", json={"quantity": 2})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["stock", "check"])
    assert result.exit_code == 0, result.output
    assert "ledger consistent" in result.output

    # A write that bypasses the repository, like the counter bugs of Saleor and Medusa.
    with engine.begin() as conn:
        conn.execute(text("UPDATE skus SET reserved = reserved + 1 WHERE sku = 'A'"))
    result = runner.invoke(args=["stock", "check"])
    assert result.exit_code == 1
    assert "DRIFT A reserved: counter 3, movements say 2" in result.output
    assert "DRIFT A reserved: counter 3, holds say 2" in result.output
