"""The checkout validation function (extensions/bazico-checkout-validation): the real Wasm module,
built once per session with Debian's Rust toolchain (scripts/function build), run with wasmtime
as Shopify runs it (tests/support/shopify_function.py) on inputs of the input query's shape.

Skipped where the toolchain or wasmtime is missing, unless REQUIRE_FUNCTION=1 (scripts/test).
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from pathlib import Path
from typing import Any

import graphql
import pytest

from shopify_app.shopify.payloads import HOLD_PROPERTY
from tests.support.shopify_function import (
    EXPORT,
    EXTENSION,
    INPUT_LIMIT,
    INSTRUCTIONS_LIMIT,
    MODULE_SIZE_LIMIT,
    OUTPUT_LIMIT,
    TARGET,
    build_function,
    fixture_payload,
    run_function,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "function"
QUERY = EXTENSION / "src" / "cart_validations_generate_run.graphql"
#: Shopify reads at most this many bytes of a metafield's value in an input query.
METAFIELD_LIMIT = 10_000
#: The publisher's cap on hold entries per variant (README.md, "The metafield").
MAX_HOLD_ENTRIES = 200


def fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def wasm() -> Path:
    return build_function()


@pytest.fixture(scope="module")
def schema() -> graphql.GraphQLSchema:
    return graphql.build_schema((EXTENSION / "schema.graphql").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def query() -> graphql.DocumentNode:
    return graphql.parse(QUERY.read_text(encoding="utf-8"))


def stock(free: int, holds: dict[str, int]) -> dict[str, Any]:
    return {"v": 1, "free": free, "h": holds}


def tracked_line(
    number: int, quantity: int, metafield: dict[str, Any] | None, hold: str | None
) -> dict[str, Any]:
    return {
        "quantity": quantity,
        "attribute": None if hold is None else {"value": hold},
        "merchandise": {
            "id": f"gid://shopify/ProductVariant/{40_000_000_000 + number}",
            "title": "Azul Marinho / GG",
            "product": {"title": f"Camiseta Básica Algodão Orgânico {number}"},
            "metafield": None if metafield is None else {"jsonValue": metafield},
        },
    }


def big_cart(lines: int, quantity: int, holds: int = 3) -> dict[str, Any]:
    """A cart of ``lines`` tracked variants, each line on its own hold of 1 unit among
    ``holds - 1`` other carts' holds, with no free units: ``quantity`` 1 passes, 2 is refused
    on every line."""
    mine, others = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(holds - 1)]
    held = {**{other: 2 for other in others}, mine: 1}
    cart_lines = [tracked_line(n, quantity, stock(0, held), mine) for n in range(lines)]
    return {"buyerJourney": {"step": "CHECKOUT_COMPLETION"}, "cart": {"lines": cart_lines}}


def compact(input_data: dict[str, Any]) -> bytes:
    """The input as Shopify sends it: JSON without spaces, UTF-8."""
    return json.dumps(input_data, separators=(",", ":"), ensure_ascii=False).encode()


# --- the extension's files ------------------------------------------------------------------


def test_the_extension_is_a_cart_validation_function() -> None:
    config = tomllib.loads((EXTENSION / "shopify.extension.toml").read_text(encoding="utf-8"))
    assert config["api_version"] == "2026-04"
    [extension] = config["extensions"]
    assert extension["type"] == "function"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,29}", extension["handle"])
    [targeting] = extension["targeting"]
    assert targeting["target"] == TARGET
    assert targeting["export"] == EXPORT
    assert (EXTENSION / targeting["input_query"]) == QUERY
    cargo = tomllib.loads((EXTENSION / "Cargo.toml").read_text(encoding="utf-8"))
    assert set(cargo["dependencies"]) == {"serde", "serde_json"}
    build = extension["build"]
    assert "--release" in build["command"]
    assert build["path"].endswith(f"/release/{cargo['package']['name']}.wasm")
    release = cargo["profile"]["release"]
    assert (release["opt-level"], release["lto"], release["strip"], release["panic"]) == (
        "s",
        True,
        True,
        "abort",
    )


def test_the_input_query_is_valid_against_the_schema(
    schema: graphql.GraphQLSchema, query: graphql.DocumentNode
) -> None:
    assert graphql.validate(schema, query) == []


def test_the_input_query_reads_the_app_metafield_and_the_storefront_hold_property() -> None:
    text = QUERY.read_text(encoding="utf-8")
    assert f'attribute(key: "{HOLD_PROPERTY}")' in text
    assert 'metafield(namespace: "$app:bazico", key: "stock")' in text
    readme = (EXTENSION / "README.md").read_text(encoding="utf-8")
    assert "`$app:bazico`" in readme and "`stock`" in readme


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_each_fixture_input_is_what_the_input_query_returns(
    path: Path, schema: graphql.GraphQLSchema, query: graphql.DocumentNode
) -> None:
    """Executing the query on a fixture's input gives it back: no field missing, none extra,
    and every value of its schema type. The query asks for no ``__typename``: a line's
    merchandise with fields is a ProductVariant, ``{}`` a CustomProduct."""
    input_data, _, _ = fixture_payload(load(path))

    def merchandise_type(value: Any, *_: Any) -> str:
        return "ProductVariant" if value else "CustomProduct"

    result = graphql.execute_sync(
        schema, query, root_value=input_data, type_resolver=merchandise_type
    )
    assert result.errors is None
    assert result.data == input_data


# --- the rule, on the real module -----------------------------------------------------------


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_fixture(path: Path, wasm: Path) -> None:
    input_data, expected, export = fixture_payload(load(path))
    run = run_function(wasm, input_data, export)
    assert run.exit_code == 0, run.logs
    assert run.output == expected
    assert run.instructions < INSTRUCTIONS_LIMIT


def test_a_cart_without_a_hold_cannot_take_the_unit_another_cart_holds(wasm: Path) -> None:
    input_data, _, _ = fixture_payload(load(FIXTURES / "buy_it_now_unit_held_by_another_cart.json"))
    [line] = input_data["cart"]["lines"]
    assert line["attribute"] is None
    assert line["merchandise"]["metafield"]["jsonValue"]["free"] == 0
    [error] = run_function(wasm, input_data).output["operations"][0]["validationAdd"]["errors"]
    assert error == {
        "message": "Esgotado: Camiseta Azul / M.",
        "target": "$.cart.lines[0].quantity",
    }
    # The cart that holds it, naming its hold id, checks out.
    [holder] = line["merchandise"]["metafield"]["jsonValue"]["h"]
    line["attribute"] = {"value": holder}
    assert run_function(wasm, input_data).output == {"operations": []}


def test_a_malformed_metafield_is_logged_and_not_checked(wasm: Path) -> None:
    input_data, _, _ = fixture_payload(load(FIXTURES / "malformed_metafields_are_not_checked.json"))
    run = run_function(wasm, input_data)
    assert "bazico: malformed stock metafield on gid://shopify/ProductVariant/3001" in run.logs
    assert len(run.logs.encode()) <= 1_000, "Shopify keeps 1,000 bytes of logs"
    # Only the well-formed line is refused.
    errors = run.output["operations"][0]["validationAdd"]["errors"]
    assert [e["target"] for e in errors] == ["$.cart.lines[9].quantity"]


def test_a_metafield_without_json_value_is_not_checked(wasm: Path) -> None:
    input_data = big_cart(1, 5)
    input_data["cart"]["lines"][0]["merchandise"]["metafield"] = {"jsonValue": None}
    run = run_function(wasm, input_data)
    assert run.output == {"operations": []}
    assert "without jsonValue" in run.logs


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        b'{"cart": {"lines": "none"}}',
        b'{"cart": {"lines": [{"quantity": "1"}]}}',
        b'{"cart": {"lines": []}, "x": "\xff"}',
    ],
)
def test_input_that_is_not_the_query_shape_fails_the_run(wasm: Path, raw: bytes) -> None:
    """A failed run: Shopify records it, and the merchant's "block on failure" decides."""
    run = run_function(wasm, raw)
    assert run.exit_code == 1
    assert run.stdout == b""
    assert "bazico: unreadable input" in run.logs


def test_start_runs_the_same_function(wasm: Path) -> None:
    """`wasmtime run` (the `_start` export) gives what Shopify's export gives."""
    input_data, expected, _ = fixture_payload(load(FIXTURES / "above_free_plus_own_hold.json"))
    assert run_function(wasm, input_data, "_start").output == expected


def test_units_are_written_with_thousands_separators(wasm: Path) -> None:
    hold = str(uuid.uuid4())
    input_data = big_cart(1, 20_000)
    input_data["cart"]["lines"][0] = tracked_line(7, 20_000, stock(12_000, {hold: 345}), hold)
    [error] = run_function(wasm, input_data).output["operations"][0]["validationAdd"]["errors"]
    assert error["message"] == (
        "Só restam 12.345 unidades disponíveis de Camiseta Básica Algodão Orgânico 7 / "
        "Azul Marinho / GG."
    )


# --- Shopify's limits ------------------------------------------------------------------------


def test_the_module_is_under_shopifys_size_limit(wasm: Path) -> None:
    size = wasm.stat().st_size
    print(f"\nmodule size: {size:,} bytes (limit {MODULE_SIZE_LIMIT:,})")
    assert size < MODULE_SIZE_LIMIT


@pytest.mark.parametrize("quantity", [1, 2], ids=["every-line-passes", "every-line-refused"])
def test_a_200_line_cart_stays_within_shopifys_limits(wasm: Path, quantity: int) -> None:
    """200 lines is the most that Shopify's 1x limits cover (cart.lines scales them above)."""
    raw = compact(big_cart(200, quantity))
    assert len(raw) < INPUT_LIMIT
    run = run_function(wasm, raw)
    print(
        f"\n200-line cart, {'every line refused' if quantity == 2 else 'every line passes'}: "
        f"{run.instructions:,} instructions (wasmtime fuel; limit {INSTRUCTIONS_LIMIT:,}), "
        f"input {len(raw):,} bytes, output {len(run.stdout):,} bytes"
    )
    assert run.exit_code == 0, run.logs
    assert run.instructions < INSTRUCTIONS_LIMIT
    assert len(run.stdout) < OUTPUT_LIMIT
    if quantity == 1:
        assert run.output == {"operations": []}
    else:
        # As many errors as fit the output limit, in line order; one blocks the checkout.
        errors = run.output["operations"][0]["validationAdd"]["errors"]
        assert 100 < len(errors) < 200
        assert [e["target"] for e in errors] == [
            f"$.cart.lines[{i}].quantity" for i in range(len(errors))
        ]
        assert errors[0]["message"] == (
            "Só resta 1 unidade disponível de Camiseta Básica Algodão Orgânico 0 / "
            "Azul Marinho / GG."
        )
        assert f"{200 - len(errors)} of 200 line errors left out (output limit)" in run.logs


def test_the_largest_input_shopify_sends_stays_under_the_instruction_limit(wasm: Path) -> None:
    """The cost grows with the input's bytes (serde_json reads every one), and Shopify sends at
    most 128,000 of them for up to 200 lines: such an input, every line refused, is the worst."""
    holds = 3
    while len(compact(big_cart(200, 2, holds + 1))) < INPUT_LIMIT:
        holds += 1
    raw = compact(big_cart(200, 2, holds))
    run = run_function(wasm, raw)
    print(
        f"\n200 lines, {len(raw):,} bytes of input ({holds} holds a variant), every line "
        f"refused: {run.instructions:,} instructions (limit {INSTRUCTIONS_LIMIT:,})"
    )
    assert INPUT_LIMIT - 10_000 < len(raw) < INPUT_LIMIT
    assert run.output["operations"][0]["validationAdd"]["errors"]
    assert run.instructions < INSTRUCTIONS_LIMIT


def test_the_documented_number_of_holds_fits_a_metafield(wasm: Path) -> None:
    """README.md's bound: 200 entries (full hold ids, up to 999 units) in compact JSON stay
    under the 10,000 bytes Shopify reads; the function finds the line's hold among them."""
    readme = (EXTENSION / "README.md").read_text(encoding="utf-8")
    assert f"at most {MAX_HOLD_ENTRIES} entries" in readme
    holds = {str(uuid.uuid4()): 999 for _ in range(MAX_HOLD_ENTRIES)}
    value = stock(-99_999, holds)
    assert len(json.dumps(value, separators=(",", ":")).encode()) <= METAFIELD_LIMIT
    mine = list(holds)[-1]
    holds[mine] = 3
    input_data = big_cart(1, 1)
    input_data["cart"]["lines"][0] = tracked_line(1, 3, stock(0, holds), mine)
    assert run_function(wasm, input_data).output == {"operations": []}
    input_data["cart"]["lines"][0]["quantity"] = 4
    [error] = run_function(wasm, input_data).output["operations"][0]["validationAdd"]["errors"]
    assert error["message"].startswith("Só restam 3 unidades disponíveis de")
