"""The checkout rule over the Admin API: the stock metafield's definition and the validation
that runs the function (``flask shopify enforce``, and the OAuth install).

- **The definition** of ``$app:bazico``/``stock`` (json, on product variants) fixes the type and
  keeps the app-owned namespace's default access (private to this app). Creating it again gets
  Shopify's ``TAKEN``, which means it is there.
- **The validation.** A deployed validation function does nothing until a validation uses it:
  ``validationCreate`` with the function's handle and ``enable: true`` (the schema's default is
  ``false``). ``blockOnFailure`` stays ``false`` unless asked for: the function's own refusals
  always block; this only decides what a *failed run* does (a timeout, an input over Shopify's
  limit), and blocking then would stop every checkout of the store on a Shopify-side fault,
  while the App Proxy holds and ``orders/create`` still guard the sale. An existing validation
  that is off is switched on, keeping its ``blockOnFailure`` unless one is given.
- Idempotent: a rerun finds the definition, the function and the validation and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import client
from .stock_metafield import KEY, NAMESPACE, TYPE

#: ``extensions/bazico-checkout-validation/shopify.extension.toml``'s handle.
FUNCTION_HANDLE = "bazico-checkout-validation"
FUNCTION_API = "cart_checkout_validation"
#: What merchants see in Settings → Checkout → Checkout rules.
VALIDATION_TITLE = "Bázico: reservas de estoque"
DEFINITION_NAME = "Bázico: estoque para o checkout"
DEFINITION_DESCRIPTION = (
    "Unidades livres e reservadas deste SKU, escritas pelo Bázico Stock para a regra de checkout."
)

DEFINITION_MUTATION = """
mutation bazicoStockDefinition($definition: MetafieldDefinitionInput!) {
  metafieldDefinitionCreate(definition: $definition) {
    createdDefinition { id }
    userErrors { field message code }
  }
}
"""

FUNCTIONS_QUERY = """
query bazicoFunctions($first: Int!, $after: String, $apiType: String) {
  shopifyFunctions(first: $first, after: $after, apiType: $apiType) {
    nodes { id handle title apiType apiVersion }
    pageInfo { hasNextPage endCursor }
  }
}
"""

VALIDATIONS_QUERY = """
query bazicoValidations($first: Int!, $after: String) {
  validations(first: $first, after: $after) {
    nodes { id title enabled blockOnFailure shopifyFunction { id handle } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

_VALIDATION_FIELDS = "validation { id title enabled blockOnFailure shopifyFunction { id handle } }"

CREATE_MUTATION = f"""
mutation bazicoValidationCreate($validation: ValidationCreateInput!) {{
  validationCreate(validation: $validation) {{
    {_VALIDATION_FIELDS}
    userErrors {{ field message code }}
  }}
}}
"""

UPDATE_MUTATION = f"""
mutation bazicoValidationUpdate($id: ID!, $validation: ValidationUpdateInput!) {{
  validationUpdate(id: $id, validation: $validation) {{
    {_VALIDATION_FIELDS}
    userErrors {{ field message code }}
  }}
}}
"""


class EnforcementError(client.ShopifyError):
    """Shopify refused a step (``userErrors``)."""


@dataclass(frozen=True)
class FunctionInfo:
    id: str
    handle: str
    title: str
    api_version: str


@dataclass(frozen=True)
class ValidationInfo:
    id: str
    title: str
    enabled: bool
    block_on_failure: bool


@dataclass
class EnforcementReport:
    #: ``created`` or ``exists`` (None when only checked).
    definition: str | None
    function: FunctionInfo | None
    validation: ValidationInfo | None
    #: ``created``, ``enabled``, ``exists``, or ``none`` (no function deployed).
    validation_action: str

    def as_json(self) -> dict[str, Any]:
        return {
            "definition": self.definition,
            "function": self.function.handle if self.function else None,
            "validation": (
                {
                    "id": self.validation.id,
                    "enabled": self.validation.enabled,
                    "block_on_failure": self.validation.block_on_failure,
                }
                if self.validation
                else None
            ),
            "validation_action": self.validation_action,
        }


def _nodes(admin_base: str, token: str, query: str, root: str, **variables: Any) -> Iterator[Any]:
    after: str | None = None
    while True:
        data = client.graphql(admin_base, token, query, {"first": 50, "after": after, **variables})
        connection = data.get(root) or {}
        yield from connection.get("nodes") or []
        page = connection.get("pageInfo") or {}
        after = page.get("endCursor")
        if not page.get("hasNextPage") or not after:
            return


def find_function(admin_base: str, token: str) -> FunctionInfo | None:
    """The app's deployed checkout validation function, by handle (None until deployed)."""
    for node in _nodes(
        admin_base, token, FUNCTIONS_QUERY, "shopifyFunctions", apiType=FUNCTION_API
    ):
        if node.get("handle") == FUNCTION_HANDLE:
            return FunctionInfo(
                str(node["id"]),
                FUNCTION_HANDLE,
                str(node.get("title") or ""),
                str(node.get("apiVersion") or ""),
            )
    return None


def find_validation(
    admin_base: str, token: str, function: FunctionInfo | None = None
) -> ValidationInfo | None:
    """The validation running the function (by handle, or by the function's id)."""
    for node in _nodes(admin_base, token, VALIDATIONS_QUERY, "validations"):
        used = node.get("shopifyFunction") or {}
        if used.get("handle") == FUNCTION_HANDLE or (function and used.get("id") == function.id):
            return _validation(node)
    return None


def _validation(node: dict[str, Any]) -> ValidationInfo:
    return ValidationInfo(
        str(node["id"]),
        str(node.get("title") or ""),
        bool(node.get("enabled")),
        bool(node.get("blockOnFailure")),
    )


def define_metafield(admin_base: str, token: str) -> str:
    """Create the stock metafield's definition: ``created``, or ``exists`` (Shopify: TAKEN)."""
    definition = {
        "name": DEFINITION_NAME,
        "description": DEFINITION_DESCRIPTION,
        "namespace": NAMESPACE,
        "key": KEY,
        "type": TYPE,
        "ownerType": "PRODUCTVARIANT",
    }
    data = client.graphql(admin_base, token, DEFINITION_MUTATION, {"definition": definition})
    payload = data.get("metafieldDefinitionCreate") or {}
    errors = payload.get("userErrors") or []
    if errors and all(e.get("code") == "TAKEN" for e in errors):
        return "exists"
    if errors or not payload.get("createdDefinition"):
        raise EnforcementError(f"metafieldDefinitionCreate: {_messages(errors)}")
    return "created"


def check(admin_base: str, token: str) -> EnforcementReport:
    """What Shopify has now, changing nothing."""
    function = find_function(admin_base, token)
    validation = find_validation(admin_base, token, function)
    return EnforcementReport(None, function, validation, "exists" if validation else "none")


def enforce(
    admin_base: str, token: str, *, block_on_failure: bool | None = None
) -> EnforcementReport:
    """Define the metafield, then create (or switch on) the validation of the deployed
    function. Without a deployed function the validation waits: ``validation_action`` is
    ``none`` and a rerun after ``shopify app deploy`` completes it."""
    definition = define_metafield(admin_base, token)
    function = find_function(admin_base, token)
    if function is None:
        return EnforcementReport(definition, None, None, "none")
    existing = find_validation(admin_base, token, function)
    if (
        existing is not None
        and existing.enabled
        and block_on_failure
        in (
            None,
            existing.block_on_failure,
        )
    ):
        return EnforcementReport(definition, function, existing, "exists")
    if existing is None:
        data = client.graphql(
            admin_base,
            token,
            CREATE_MUTATION,
            {
                "validation": {
                    "functionHandle": FUNCTION_HANDLE,
                    "enable": True,
                    "blockOnFailure": bool(block_on_failure),
                    "title": VALIDATION_TITLE,
                }
            },
        )
        return EnforcementReport(definition, function, _done(data, "validationCreate"), "created")
    blocking = existing.block_on_failure if block_on_failure is None else block_on_failure
    data = client.graphql(
        admin_base,
        token,
        UPDATE_MUTATION,
        {
            "id": existing.id,
            # Every field: the input's defaults would switch ``enable`` and ``blockOnFailure``
            # off for whatever is left out.
            "validation": {"enable": True, "blockOnFailure": blocking, "title": existing.title},
        },
    )
    return EnforcementReport(definition, function, _done(data, "validationUpdate"), "enabled")


def _done(data: dict[str, Any], root: str) -> ValidationInfo:
    payload = data.get(root) or {}
    errors = payload.get("userErrors") or []
    if errors or not payload.get("validation"):
        raise EnforcementError(f"{root}: {_messages(errors)}")
    return _validation(payload["validation"])


def _messages(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e.get('message')} ({e.get('code')})" for e in errors) or "nothing returned"
