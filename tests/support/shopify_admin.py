"""The Shopify stand-in's Admin GraphQL API (``tests/support/shopify_standin.py`` serves it).

Long because it is a small Admin API: the schema check, the query cost and its bucket, and the
resolvers of every operation the service sends, each refusing bad input the way Shopify does.

- **The schema.** Every document is parsed and validated with graphql-core against
  ``tests/fixtures/shopify/admin_2026_07_subset.graphql`` (Shopify's 2026-07 schema, the part
  this project uses), then executed by the resolvers below, so a field, argument or variable
  Shopify would refuse is refused here too, and a selection gets exactly the fields it names.
  An invalid document gets Shopify's answer: HTTP 200, ``{"errors": [{"message", "locations",
  "extensions": {"code"}}]}`` and no ``data`` (the codes are graphql-ruby's, which Shopify runs).
- **The cost.** Every executed answer carries ``extensions.cost`` (``requestedQueryCost``,
  ``actualQueryCost``, ``throttleStatus``) computed with Shopify's default costs: a mutation 10
  points, an object field 1, a connection 2 plus its page size times its node's cost. Each shop
  has a leaky bucket (2,000 points, 100 restored a second: the Standard plan). A call the bucket
  cannot pay for gets Shopify's ``THROTTLED`` answer; a test can force that (``throttle``) or
  change the bucket (``set_bucket``).
- **The operations.** ``webhookSubscriptions``/``webhookSubscriptionCreate``; ``metafieldsSet``
  (at most 25 a call, atomic, userErrors for bad owners, namespaces, keys, types, values and
  stale digests), ``metafieldsDelete``, ``metafieldDefinitionCreate``; ``shopifyFunctions`` (what
  a test deployed with ``deploy_function``), ``validations``, ``validationCreate`` and
  ``validationUpdate``. ``$app:`` namespaces are stored as Shopify stores them,
  ``app--<app id>--…``.
- **Inventory.** ``locations``/``location``, ``inventoryItem`` (and a variant's ``inventoryItem``),
  their ``inventoryLevel``/``inventoryLevels`` and ``quantities``; ``inventoryAdjustQuantities``
  and ``inventorySetQuantities`` as 2026-04+ has them: ``@idempotent(key:)`` required (a
  top-level ``BAD_REQUEST`` error without it), ``changeFromQuantity`` required on every entry
  (explicit ``null`` skips the compare-and-swap), atomic, and replayed by key: the same key with
  the same input gets the first answer again (userErrors included) without applying twice, with
  another input ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``. Only ``available`` is kept for real;
  ``committed`` grows with a sale (``sell``), ``on_hand`` is ``available + committed``, the other
  names are 0. Times are Shopify's, ``2026-11-27T12:00:00Z``, from the stand-in's clock if any.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import graphql
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
)
from graphql.execution.values import get_directive_values
from graphql.validation import (
    FieldsOnCorrectTypeRule,
    KnownArgumentNamesRule,
    KnownTypeNamesRule,
    NoUndefinedVariablesRule,
    NoUnusedVariablesRule,
    ProvidedRequiredArgumentsRule,
    ScalarLeafsRule,
    ValuesOfCorrectTypeRule,
    VariablesInAllowedPositionRule,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "shopify" / "admin_2026_07_subset.graphql"
MUTATION_COST = 10
#: Shopify's refusal of a protected topic before the app was approved for protected customer data
#: (Shopify/cli#3443; docs/shopify-api.md).
PROTECTED_DATA_REFUSAL = (
    "This app is not approved to subscribe to webhook topics containing protected customer data."
)
PROTECTED_TOPIC_PREFIXES = ("ORDERS_", "CHECKOUTS_")
METAFIELDS_SET_LIMIT = 25
MAX_ACTIVE_VALIDATIONS = 25
#: The numeric API client id Shopify puts in ``$app:`` namespaces (``app--<id>--bazico``).
APP_ID = 7015381
VALIDATION_API = "cart_checkout_validation"
RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_GID = re.compile(r"gid://shopify/(?P<type>[A-Za-z]+)/(?P<id>[0-9]+)")
#: Metafield types this stand-in checks values of (Shopify has more; others are refused).
_VALUE_CHECKS = {
    "json": lambda v: _parses_as_json(v),
    "single_line_text_field": lambda v: "\n" not in v,
    "multi_line_text_field": lambda v: True,
    "number_integer": lambda v: bool(re.fullmatch(r"-?[0-9]+", v)),
    "boolean": lambda v: v in ("true", "false"),
}
#: graphql-ruby's error codes for graphql-core's validation rules.
_RULE_CODES = {
    FieldsOnCorrectTypeRule: "undefinedField",
    KnownArgumentNamesRule: "argumentNotAccepted",
    ProvidedRequiredArgumentsRule: "missingRequiredArguments",
    KnownTypeNamesRule: "undefinedType",
    NoUndefinedVariablesRule: "variableNotDefined",
    NoUnusedVariablesRule: "variableNotUsed",
    VariablesInAllowedPositionRule: "variableMismatch",
    ScalarLeafsRule: "selectionMismatch",
    ValuesOfCorrectTypeRule: "argumentLiteralsIncompatible",
}


def _parses_as_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


@functools.cache
def admin_schema() -> GraphQLSchema:
    return graphql.build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=512)
def checked(query: str) -> tuple[DocumentNode | None, tuple[dict[str, Any], ...]]:
    """The parsed document, or None and the errors Shopify answers for it."""
    try:
        document = graphql.parse(query)
    except GraphQLError as exc:
        return None, ({"message": exc.message, "locations": _locations(exc)},)
    schema = admin_schema()
    errors = graphql.validate(schema, document)
    if not errors:
        return document, ()
    codes: dict[str, str] = {}
    for rule, code in _RULE_CODES.items():
        for error in graphql.validate(schema, document, [rule]):
            codes.setdefault(error.message, code)
    return None, tuple(
        {
            "message": e.message,
            "locations": _locations(e),
            "extensions": {"code": codes.get(e.message, "validationFailed")},
        }
        for e in errors
    )


def _locations(error: GraphQLError) -> list[dict[str, int]]:
    return [{"line": loc.line, "column": loc.column} for loc in error.locations or []]


# --- cost ------------------------------------------------------------------------------------


def requested_cost(
    document: DocumentNode, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> int:
    """Shopify's requested cost of ``operation`` with its default field costs."""
    roots = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
    if operation.operation is OperationType.MUTATION:
        return MUTATION_COST * len(roots)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    schema = admin_schema()
    return _selection_cost(schema, operation.selection_set, schema.query_type, fragments, variables)


def _selection_cost(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode | None,
    parent: Any,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> int:
    if selection_set is None or not hasattr(parent, "fields"):
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            total += _field_cost(schema, selection, parent, fragments, variables)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = schema.get_type(condition.name.value) if condition else parent
            total += _selection_cost(schema, selection.selection_set, target, fragments, variables)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                target = schema.get_type(fragment.type_condition.name.value)
                total += _selection_cost(
                    schema, fragment.selection_set, target, fragments, variables
                )
    return total


def _field_cost(
    schema: GraphQLSchema,
    node: FieldNode,
    parent: Any,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> int:
    definition = parent.fields.get(node.name.value)
    if definition is None or node.selection_set is None:
        return 0  # a scalar, an enum, or __typename: free
    named = graphql.get_named_type(definition.type)
    if not named.name.endswith("Connection"):
        return 1 + _selection_cost(schema, node.selection_set, named, fragments, variables)
    node_type = named.fields["nodes"].type
    node_cost = 0
    for part in node.selection_set.selections:
        if not isinstance(part, FieldNode):
            continue
        if part.name.value == "nodes":
            inner = graphql.get_named_type(node_type)
            cost = 1 + _selection_cost(schema, part.selection_set, inner, fragments, variables)
            node_cost = max(node_cost, cost)
        elif part.name.value == "edges" and part.selection_set is not None:
            for edge_part in part.selection_set.selections:
                if isinstance(edge_part, FieldNode) and edge_part.name.value == "node":
                    inner = graphql.get_named_type(node_type)
                    cost = 1 + _selection_cost(
                        schema, edge_part.selection_set, inner, fragments, variables
                    )
                    node_cost = max(node_cost, cost)
    return 2 + _page_size(node, variables) * node_cost


def _page_size(node: FieldNode, variables: dict[str, Any]) -> int:
    for argument in node.arguments:
        if argument.name.value in ("first", "last"):
            value = argument.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                return int(variables.get(value.name.value) or 1)
    return 1


@dataclass
class Bucket:
    """Shopify's leaky bucket of query cost for one app on one shop."""

    maximum: float = 2000.0
    restore_rate: float = 100.0
    available: float = 2000.0
    at: float = field(default_factory=time.monotonic)

    def _refill(self) -> None:
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self.at) * self.restore_rate)
        self.at = now

    def take(self, cost: int) -> bool:
        self._refill()
        if cost > self.available:
            return False
        self.available -= cost
        return True

    def status(self) -> dict[str, Any]:
        self._refill()
        return {
            "maximumAvailable": self.maximum,
            "currentlyAvailable": int(self.available),
            "restoreRate": self.restore_rate,
        }


# --- what a shop holds -----------------------------------------------------------------------


@dataclass
class StoredMetafield:
    id: int
    owner_id: str
    namespace: str
    key: str
    type: str
    value: str
    created_at: datetime
    updated_at: datetime
    writes: int = 1

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.value.encode("utf-8")).hexdigest()

    @property
    def json_value(self) -> Any:
        return json.loads(self.value) if self.type == "json" else self.value


@dataclass
class ShopAdmin:
    subscriptions: list[dict[str, str]] = field(default_factory=list)
    metafields: dict[tuple[str, str, str], StoredMetafield] = field(default_factory=dict)
    definitions: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    functions: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)
    #: The catalog ``productVariants`` lists: nodes in the query's shape (``add_variant``).
    variants: list[dict[str, Any]] = field(default_factory=list)
    #: The shop's orders ``orders`` lists: nodes in the query's shape (``add_order``).
    orders: list[dict[str, Any]] = field(default_factory=list)
    #: Owners Shopify no longer has (a deleted variant): writes to them get a userError.
    missing_owners: set[str] = field(default_factory=set)
    bucket: Bucket = field(default_factory=Bucket)
    #: The next this many calls are answered THROTTLED whatever the bucket holds.
    throttled_calls: int = 0
    #: Protected customer data not approved (yet) for the app: orders/* and checkouts/* cannot
    #: be subscribed (``refuse_protected_topics``).
    protected_data_refused: bool = False
    #: Inventory: locations and items by gid, levels by (item gid, location gid).
    locations: dict[str, StoredLocation] = field(default_factory=dict)
    items: dict[str, StoredItem] = field(default_factory=dict)
    levels: dict[tuple[str, str], StoredLevel] = field(default_factory=dict)
    #: Every ``available`` change applied, in order (``inventory_changes``).
    inventory_changes: list[InventoryChangeRecord] = field(default_factory=list)
    #: @idempotent key -> (fingerprint of the mutation and its input, the payload answered).
    idempotency: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class StoredLocation:
    id: int
    name: str
    fulfills_online_orders: bool
    active: bool
    created_at: datetime

    @property
    def gid(self) -> str:
        return f"gid://shopify/Location/{self.id}"


@dataclass
class StoredItem:
    """An inventory item (one per variant, numbered as its variant)."""

    id: int
    sku: str | None
    tracked: bool
    created_at: datetime

    @property
    def gid(self) -> str:
        return f"gid://shopify/InventoryItem/{self.id}"


@dataclass
class StoredLevel:
    """An item stocked at a location: its quantities and when each last changed."""

    id: int
    item: StoredItem
    location: StoredLocation
    available: int
    created_at: datetime
    committed: int = 0
    changed_at: dict[str, datetime] = field(default_factory=dict)

    @property
    def gid(self) -> str:
        return f"gid://shopify/InventoryLevel/{self.id}?inventory_item_id={self.item.id}"

    def quantity(self, name: str) -> int:
        if name == "available":
            return self.available
        if name == "committed":
            return self.committed
        if name == "on_hand":
            return self.available + self.committed
        return 0


@dataclass(frozen=True)
class InventoryChangeRecord:
    """One change of an ``available`` quantity the stand-in applied (for assertions)."""

    at: float  # time.time() when applied
    kind: str  # "adjust", "set" or "sale"
    inventory_item_id: str
    location_id: str
    delta: int  # of available
    quantity_after: int  # available after the change
    key: str | None  # the @idempotent key (None for a sale)
    reason: str | None
    reference_document_uri: str | None


#: The quantity names Shopify knows (``quantities(names:)``); only these are answered.
QUANTITY_NAMES = (
    "available",
    "committed",
    "damaged",
    "incoming",
    "on_hand",
    "quality_control",
    "reserved",
    "safety_stock",
)
#: Shopify's inventory change reasons (``reason`` of the inventory mutations).
INVENTORY_REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "movement_updated",
        "movement_received",
        "movement_canceled",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)
IDEMPOTENCY_REQUIRED = "The @idempotent directive is required for this mutation."
IDEMPOTENCY_KEY_BLANK = "The idempotency key cannot be an empty string or whitespace only."
CHANGE_FROM_REQUIRED = (
    "changeFromQuantity is required: pass the quantity you expect, or null to skip the check."
)


def shopify_time(moment: datetime) -> str:
    """A DateTime as Shopify writes it: UTC, to the second, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Refused(GraphQLError):
    """A top-level error that voids the whole answer: no ``data`` (as Shopify answers it)."""


class _InputTooLarge(_Refused):
    pass


class AdminApi:
    """The shops' Admin API state and the GraphQL endpoint over it (thread-safe)."""

    def __init__(
        self,
        client_id: str,
        lock: threading.RLock,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client_id = client_id
        self.lock = lock
        self.clock = clock
        self.shops: dict[str, ShopAdmin] = {}
        #: Every metafield written, in order: (time.time(), shop, owner id, value).
        self.writes: list[tuple[float, str, str, str]] = []
        self._ids = itertools.count(1)

    def shop(self, shop: str) -> ShopAdmin:
        with self.lock:
            return self.shops.setdefault(shop, ShopAdmin())

    def namespace(self, raw: str | None) -> str:
        """As Shopify stores it: ``$app:x`` is ``app--<id>--x``; none is the app's own."""
        if raw is None or raw == "$app":
            return f"app--{APP_ID}"
        if raw.startswith("$app:"):
            return f"app--{APP_ID}--{raw[len('$app:') :]}"
        return raw

    def next_id(self) -> int:
        return next(self._ids)

    def now(self) -> datetime:
        """The stand-in's clock when it has one, else the wall clock (UTC)."""
        return self.clock() if self.clock is not None else datetime.now(UTC)

    # --- the endpoint ------------------------------------------------------------------------

    def answer(self, shop: str, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The JSON answer (always HTTP 200) and the operation's first root field."""
        document, errors = checked(body["query"])
        if document is None:
            return {"errors": list(errors)}, None
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return {"errors": [{"message": "Variables must be an object"}]}, None
        operation = graphql.get_operation_ast(document, body.get("operationName"))
        if operation is None:
            return {"errors": [{"message": "An operation name is required"}]}, None
        roots = [s.name.value for s in operation.selection_set.selections if hasattr(s, "name")]
        name = roots[0] if roots else None
        cost = requested_cost(document, operation, variables)
        with self.lock:
            state = self.shop(shop)
            if state.throttled_calls > 0 or not state.bucket.take(cost):
                state.throttled_calls = max(0, state.throttled_calls - 1)
                return self._throttled(state, cost), name
            result = graphql.execute(
                admin_schema(),
                document,
                root_value=_Root(self, state, shop),
                variable_values=variables,
                operation_name=body.get("operationName"),
            )
            status = state.bucket.status()
        answer: dict[str, Any] = {}
        if result.errors:
            answer["errors"] = [e.formatted for e in result.errors]
        if result.data is not None and not any(
            isinstance(e.original_error or e, _Refused) for e in result.errors or []
        ):
            answer["data"] = result.data
        answer["extensions"] = {
            "cost": {
                "requestedQueryCost": cost,
                "actualQueryCost": cost,
                "throttleStatus": status,
            }
        }
        return answer, name

    @staticmethod
    def _throttled(state: ShopAdmin, cost: int) -> dict[str, Any]:
        return {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC},
                }
            ],
            "extensions": {
                "cost": {
                    "requestedQueryCost": cost,
                    "actualQueryCost": None,
                    "throttleStatus": state.bucket.status(),
                }
            },
        }

    # --- objects as the schema shapes them ---------------------------------------------------

    def metafield_object(self, stored: StoredMetafield, state: ShopAdmin) -> dict[str, Any]:
        match = _GID.fullmatch(stored.owner_id)
        owner_type = match["type"] if match else "ProductVariant"
        definition = state.definitions.get((owner_type.upper(), stored.namespace, stored.key))
        return {
            "compareDigest": stored.digest,
            "createdAt": stored.created_at.isoformat(),
            "definition": definition,
            "description": None,
            "id": f"gid://shopify/Metafield/{stored.id}",
            "jsonValue": stored.json_value,
            "key": stored.key,
            "legacyResourceId": stored.id,
            "namespace": stored.namespace,
            "owner": {"__typename": owner_type, "id": stored.owner_id},
            "ownerType": owner_type.upper(),
            "sizeInBytes": len(stored.value.encode("utf-8")),
            "type": stored.type,
            "updatedAt": stored.updated_at.isoformat(),
            "value": stored.value,
        }

    def validation_object(self, validation: dict[str, Any]) -> dict[str, Any]:
        empty = connection([], None, None)
        return {
            **validation,
            "metafield": lambda info, key, namespace=None: None,
            "metafields": lambda info, **_: empty,
        }

    def location_object(self, location: StoredLocation, state: ShopAdmin) -> dict[str, Any]:
        empty = connection([], None, None)
        levels = [v for v in state.levels.values() if v.location is location]
        primary = next(iter(state.locations.values()), None) is location
        stamp = shopify_time(location.created_at)

        def inventory_level(info: Any, inventoryItemId: str, **_: Any) -> dict[str, Any] | None:
            level = state.levels.get((inventoryItemId, location.gid))
            return self.level_object(level, state) if level is not None else None

        def inventory_levels(
            info: Any, first: int | None = None, after: str | None = None, **_: Any
        ) -> dict[str, Any]:
            return connection([self.level_object(v, state) for v in levels], first, after)

        return {
            "activatable": not location.active,
            "addressVerified": True,
            "createdAt": stamp,
            "deactivatable": location.active,
            "deactivatedAt": None if location.active else stamp,
            "deletable": not location.active,
            "fulfillsOnlineOrders": location.fulfills_online_orders,
            "hasActiveInventory": bool(levels),
            "hasUnfulfilledOrders": False,
            "id": location.gid,
            "inventoryLevel": inventory_level,
            "inventoryLevels": inventory_levels,
            "isActive": location.active,
            "isFulfillmentService": False,
            "isPrimary": primary,
            "legacyResourceId": str(location.id),
            "metafield": lambda info, key, namespace=None: None,
            "metafields": lambda info, **_: empty,
            "name": location.name,
            "shipsInventory": location.active,
            "updatedAt": stamp,
        }

    def item_object(self, item: StoredItem, state: ShopAdmin) -> dict[str, Any]:
        levels = [v for v in state.levels.values() if v.item is item]
        variants = [v for v in state.variants if v["legacyResourceId"] == str(item.id)]
        changed = [stamp for v in levels for stamp in v.changed_at.values()]

        def inventory_level(info: Any, locationId: str, **_: Any) -> dict[str, Any] | None:
            level = state.levels.get((item.gid, locationId))
            return self.level_object(level, state) if level is not None else None

        def inventory_levels(
            info: Any, first: int | None = None, after: str | None = None, **_: Any
        ) -> dict[str, Any]:
            return connection([self.level_object(v, state) for v in levels], first, after)

        return {
            "createdAt": shopify_time(item.created_at),
            "duplicateSkuCount": sum(1 for i in state.items.values() if i.sku == item.sku) - 1,
            "harmonizedSystemCode": None,
            "id": item.gid,
            "inventoryHistoryUrl": None,
            "inventoryLevel": inventory_level,
            "inventoryLevels": inventory_levels,
            "legacyResourceId": str(item.id),
            "provinceCodeOfOrigin": None,
            "requiresShipping": True,
            "sku": item.sku,
            "tracked": item.tracked,
            "updatedAt": shopify_time(max(changed, default=item.created_at)),
            "variant": lambda info: dict(variants[0]) if variants else None,
            "variants": lambda info, first=None, after=None, **_: connection(
                [dict(v) for v in variants], first, after
            ),
        }

    def level_object(self, level: StoredLevel, state: ShopAdmin) -> dict[str, Any]:
        def quantities(info: Any, names: list[str]) -> list[dict[str, Any]]:
            answered = []
            for name in names:
                if name not in QUANTITY_NAMES:
                    continue  # Shopify answers only the names it knows
                changed = level.changed_at.get(name)
                if name == "on_hand":
                    stamps = [level.changed_at.get(n) for n in ("available", "committed")]
                    changed = max((t for t in stamps if t is not None), default=None)
                answered.append(
                    {
                        "id": f"gid://shopify/InventoryQuantity/{level.id}"
                        f"?inventory_item_id={level.item.id}&name={name}",
                        "name": name,
                        "quantity": level.quantity(name),
                        "updatedAt": shopify_time(changed) if changed is not None else None,
                    }
                )
            return answered

        changed = max(level.changed_at.values(), default=level.created_at)
        return {
            "canDeactivate": True,
            "createdAt": shopify_time(level.created_at),
            "deactivationAlert": None,
            "id": level.gid,
            "isActive": True,
            "item": lambda info: self.item_object(level.item, state),
            "location": lambda info: self.location_object(level.location, state),
            "quantities": quantities,
            "updatedAt": shopify_time(changed),
        }

    def adjustment_group_object(
        self,
        state: ShopAdmin,
        id: str,
        created_at: str,
        reason: str,
        reference: str | None,
        changes: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """An InventoryAdjustmentGroup; ``changes`` hold the stored item and location, shown
        as they are when the answer is resolved (a replay too)."""

        def listed(
            info: Any,
            inventoryItemIds: list[str] | None = None,
            locationIds: list[str] | None = None,
            quantityNames: list[str] | None = None,
        ) -> list[dict[str, Any]]:
            chosen = [
                c for c in changes if not inventoryItemIds or c["item"].gid in inventoryItemIds
            ]
            chosen = [c for c in chosen if not locationIds or c["location"].gid in locationIds]
            chosen = [c for c in chosen if not quantityNames or c["name"] in quantityNames]
            return [
                {
                    **c,
                    "item": self.item_object(c["item"], state),
                    "location": self.location_object(c["location"], state),
                }
                for c in chosen
            ]

        return {
            "app": None,
            "changes": listed,
            "createdAt": created_at,
            "id": id,
            "reason": reason,
            "referenceDocumentUri": reference,
        }

    def variant_inventory(self, state: ShopAdmin, item_gid: str) -> Callable[..., Any]:
        """A variant node's ``inventoryItem``: resolved when asked, so it shows the levels now."""
        return lambda info: self.item_object(state.items[item_gid], state)

    def set_available(
        self,
        state: ShopAdmin,
        level: StoredLevel,
        available: int,
        *,
        kind: str,
        key: str | None = None,
        reason: str | None = None,
        reference_document_uri: str | None = None,
    ) -> None:
        """Change a level's ``available`` and record it."""
        delta = available - level.available
        level.available = available
        level.changed_at["available"] = self.now()
        state.inventory_changes.append(
            InventoryChangeRecord(
                at=time.time(),
                kind=kind,
                inventory_item_id=level.item.gid,
                location_id=level.location.gid,
                delta=delta,
                quantity_after=available,
                key=key,
                reason=reason,
                reference_document_uri=reference_document_uri,
            )
        )


def connection(nodes: list[dict[str, Any]], first: int | None, after: str | None) -> dict[str, Any]:
    """A Relay connection over ``nodes`` (each with an ``id``), paged by ``first``/``after``."""
    size = first if first is not None and 1 <= first <= 250 else 250
    ids = [str(n["id"]) for n in nodes]
    start = ids.index(after) + 1 if after in ids else 0
    chosen = nodes[start : start + size]
    return {
        "edges": [{"cursor": str(n["id"]), "node": n} for n in chosen],
        "nodes": chosen,
        "pageInfo": {
            "hasNextPage": start + size < len(ids),
            "hasPreviousPage": start > 0,
            "startCursor": str(chosen[0]["id"]) if chosen else None,
            "endCursor": str(chosen[-1]["id"]) if chosen else None,
        },
    }


def _user_error(path: list[str], message: str, code: str | None, index: int | None = None) -> Any:
    error: dict[str, Any] = {"field": path, "message": message, "code": code}
    if index is not None:
        error["elementIndex"] = index
    return error


def _idempotency_key(info: Any) -> str:
    """The ``@idempotent(key:)`` on the mutation field (a literal or a variable); without it, or
    blank, the whole call is refused as Shopify refuses it since 2026-04."""
    directive = info.schema.get_directive("idempotent")
    given = get_directive_values(directive, info.field_nodes[0], info.variable_values)
    if given is not None:
        key = given.get("key")
        if not isinstance(key, str) or not key.strip():
            raise _Refused(
                IDEMPOTENCY_KEY_BLANK, info.field_nodes, extensions={"code": "BAD_REQUEST"}
            )
        return key
    raise _Refused(IDEMPOTENCY_REQUIRED, info.field_nodes, extensions={"code": "BAD_REQUEST"})


def _name_problem(value: str, low: int, high: int, what: str) -> tuple[str, str] | None:
    if len(value) < low:
        return "TOO_SHORT", f"{what} is too short (minimum is {low} characters)"
    if len(value) > high:
        return "TOO_LONG", f"{what} is too long (maximum is {high} characters)"
    if not _NAME.fullmatch(value):
        return "INVALID", f"{what} contains one or more invalid characters"
    return None


class _Root:
    """The root fields of one request, resolved against one shop's state (lock held). The
    methods and their arguments are named after the GraphQL fields graphql-core resolves them
    for (its default resolver calls ``root.<field>(info, **arguments)``)."""

    def __init__(self, api: AdminApi, state: ShopAdmin, shop: str) -> None:
        self.api = api
        self.state = state
        self.shop = shop

    # --- queries -----------------------------------------------------------------------------

    def webhookSubscriptions(
        self, info: Any, first: int | None = None, after: str | None = None, **_: Any
    ) -> dict[str, Any]:
        return connection([dict(s) for s in self.state.subscriptions], first, after)

    def productVariants(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        query: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        chosen = self.state.variants
        if query and query.startswith("sku:"):  # the one search syntax the service uses
            wanted = query[len("sku:") :].strip().strip('"')
            chosen = [v for v in chosen if v["sku"] == wanted]
        return connection([dict(v) for v in chosen], first, after)

    def orders(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        query: str | None = None,
        sortKey: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        chosen = list(self.state.orders)
        match = re.fullmatch(r"updated_at:>='?([^']+)'?", query or "")
        if match:  # the one search syntax the service uses
            since = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
            chosen = [o for o in chosen if datetime.fromisoformat(o["updatedAt"]) >= since]
        if sortKey == "UPDATED_AT":
            chosen.sort(key=lambda o: (o["updatedAt"], o["id"]))
        return connection([dict(o) for o in chosen], first, after)

    def order(self, info: Any, id: str) -> dict[str, Any] | None:
        found = [o for o in self.state.orders if o["id"] == id]
        return dict(found[0]) if found else None

    def shopifyFunctions(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        apiType: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        chosen = [f for f in self.state.functions if apiType in (None, f["apiType"])]
        return connection(chosen, first, after)

    def validations(
        self, info: Any, first: int | None = None, after: str | None = None, **_: Any
    ) -> dict[str, Any]:
        objects = [self.api.validation_object(v) for v in self.state.validations]
        return connection(objects, first, after)

    def validation(self, info: Any, id: str) -> dict[str, Any] | None:
        found = [v for v in self.state.validations if v["id"] == id]
        return self.api.validation_object(found[0]) if found else None

    def productVariant(self, info: Any, id: str) -> dict[str, Any] | None:
        found = [v for v in self.state.variants if v["id"] == id]
        return dict(found[0]) if found else None

    # --- inventory ---------------------------------------------------------------------------

    def locations(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        query: str | None = None,
        includeInactive: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        chosen = [loc for loc in self.state.locations.values() if includeInactive or loc.active]
        match = re.fullmatch(r"name:\s*[\"']?([^\"']*)[\"']?", (query or "").strip())
        if match:  # the one search syntax supported here
            chosen = [loc for loc in chosen if loc.name == match.group(1)]
        objects = [self.api.location_object(loc, self.state) for loc in chosen]
        return connection(objects, first, after)

    def location(self, info: Any, id: str | None = None) -> dict[str, Any] | None:
        if id is None:  # "If no ID is provided, the primary location of the Shop is returned."
            found = next(iter(self.state.locations.values()), None)
        else:
            found = self.state.locations.get(id)
        return self.api.location_object(found, self.state) if found is not None else None

    def inventoryItem(self, info: Any, id: str) -> dict[str, Any] | None:
        item = self.state.items.get(id)
        return self.api.item_object(item, self.state) if item is not None else None

    def inventoryAdjustQuantities(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self._inventory_mutation(info, "adjust", input)

    def inventorySetQuantities(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self._inventory_mutation(info, "set", input)

    def _inventory_mutation(self, info: Any, kind: str, input: dict[str, Any]) -> dict[str, Any]:
        """Both inventory mutations: the key first, then its replay, else check all, apply all."""
        key = _idempotency_key(info)
        fingerprint = json.dumps([info.field_name, input], sort_keys=True, default=str)
        remembered = self.state.idempotency.get(key)
        if remembered is not None:
            if remembered[0] == fingerprint:
                return remembered[1]  # the first answer again; nothing applied twice
            message = "The same idempotency key was already used with different parameters."
            error = _user_error(["input"], message, "IDEMPOTENCY_KEY_PARAMETER_MISMATCH")
            return {"inventoryAdjustmentGroup": None, "userErrors": [error]}
        errors, planned = self._inventory_plan(kind, input)
        if errors:  # atomic: nothing applied when any entry is refused
            payload: dict[str, Any] = {"inventoryAdjustmentGroup": None, "userErrors": errors}
        else:
            payload = {"inventoryAdjustmentGroup": self._apply(kind, key, input, planned)}
            payload["userErrors"] = []
        self.state.idempotency[key] = (fingerprint, payload)
        return payload

    def _inventory_plan(
        self, kind: str, input: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[tuple[StoredLevel, int]]]:
        """The userErrors of ``input``, or none and each level with its new ``available``."""
        errors: list[dict[str, Any]] = []
        name = input["name"]
        if kind == "adjust" and name != "available":
            message = "The quantity name must be available (the only one this stand-in adjusts)."
            errors.append(_user_error(["input", "name"], message, "INVALID_QUANTITY_NAME"))
        if kind == "set" and name not in ("available", "on_hand"):
            message = "The quantity name must be either 'available' or 'on_hand'."
            errors.append(_user_error(["input", "name"], message, "INVALID_NAME"))
        if input["reason"] not in INVENTORY_REASONS:
            message = "The specified reason is invalid."
            errors.append(_user_error(["input", "reason"], message, "INVALID_REASON"))
        part = "changes" if kind == "adjust" else "quantities"
        staged: dict[tuple[str, str], int] = {}  # the quantity each entry sees, in order
        planned: list[tuple[StoredLevel, int]] = []
        for index, entry in enumerate(input[part]):
            path = ["input", part, str(index)]
            problem = self._entry_problem(kind, name, entry)
            if problem is None:
                level = self.state.levels[(entry["inventoryItemId"], entry["locationId"])]
                place = (level.item.gid, level.location.gid)
                before = staged.get(place, level.available)
                if name == "on_hand":
                    before += level.committed
                expected = entry["changeFromQuantity"]
                if kind == "set" and place in staged:
                    message = "The combination of inventoryItemId and locationId must be unique."
                    problem = (
                        "locationId",
                        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                        message,
                    )
                elif expected is not None and expected != before:
                    message = (
                        f"The quantity couldn't be updated because changeFromQuantity "
                        f"({expected}) does not match the current quantity ({before})."
                    )
                    problem = ("changeFromQuantity", "CHANGE_FROM_QUANTITY_STALE", message)
                else:
                    after = before + entry["delta"] if kind == "adjust" else entry["quantity"]
                    if name == "on_hand":
                        after -= level.committed
                    staged[place] = after
                    planned.append((level, after))
            if problem is not None:
                field_name, code, message = problem
                errors.append(_user_error([*path, field_name], message, code))
        return errors, planned

    def _entry_problem(
        self, kind: str, name: str, entry: dict[str, Any]
    ) -> tuple[str, str | None, str] | None:
        if "changeFromQuantity" not in entry:  # absent, not null: Shopify refuses it
            code = "COMPARE_QUANTITY_REQUIRED" if kind == "set" else None
            return "changeFromQuantity", code, CHANGE_FROM_REQUIRED
        item_gid, location_gid = entry["inventoryItemId"], entry["locationId"]
        if item_gid not in self.state.items:
            message = "The specified inventory item could not be found."
            return "inventoryItemId", "INVALID_INVENTORY_ITEM", message
        if location_gid not in self.state.locations:
            return "locationId", "INVALID_LOCATION", "The specified location could not be found."
        if (item_gid, location_gid) not in self.state.levels:
            message = "The specified inventory item is not stocked at the location."
            return "locationId", "ITEM_NOT_STOCKED_AT_LOCATION", message
        if kind == "adjust" and name == "available" and entry.get("ledgerDocumentUri"):
            message = "A ledger document URI is not allowed when adjusting available."
            return "ledgerDocumentUri", "INVALID_AVAILABLE_DOCUMENT", message
        return None

    def _apply(
        self,
        kind: str,
        key: str,
        input: dict[str, Any],
        planned: list[tuple[StoredLevel, int]],
    ) -> dict[str, Any]:
        """Apply every planned change; the adjustment group (its changes as of now)."""
        changes: list[dict[str, Any]] = []
        reason, reference = input["reason"], input.get("referenceDocumentUri")
        for level, after in planned:
            delta = after - level.available
            self.api.set_available(
                self.state,
                level,
                after,
                kind=kind,
                key=key,
                reason=reason,
                reference_document_uri=reference,
            )
            for name, quantity_after in (
                ("available", after),
                ("on_hand", level.quantity("on_hand")),
            ):
                changes.append(
                    {
                        "delta": delta,
                        "item": level.item,
                        "ledgerDocumentUri": None,
                        "location": level.location,
                        "name": name,
                        "quantityAfterChange": quantity_after,
                    }
                )
        return self.api.adjustment_group_object(
            self.state,
            f"gid://shopify/InventoryAdjustmentGroup/{self.api.next_id()}",
            shopify_time(self.api.now()),
            reason,
            reference,
            changes,
        )

    # --- webhook subscriptions ---------------------------------------------------------------

    def webhookSubscriptionCreate(
        self,
        info: Any,
        topic: str,
        webhookSubscription: dict[str, Any],
    ) -> dict[str, Any]:
        uri = str(webhookSubscription.get("uri") or "")

        def refused(message: str) -> dict[str, Any]:
            error = {"field": ["webhookSubscription", "uri"], "message": message}
            return {"webhookSubscription": None, "userErrors": [error]}

        if not uri.startswith(("https://", "pubsub://", "arn:")):
            return refused("Address protocol is not supported; use https")
        if any(s["topic"] == topic and s["uri"] == uri for s in self.state.subscriptions):
            return refused("Address for this topic has already been taken")
        if self.state.protected_data_refused and topic.startswith(PROTECTED_TOPIC_PREFIXES):
            error = {"field": ["topic"], "message": PROTECTED_DATA_REFUSAL}
            return {"webhookSubscription": None, "userErrors": [error]}
        subscription = {
            "id": f"gid://shopify/WebhookSubscription/{self.api.next_id()}",
            "topic": topic,
            "uri": uri,
        }
        self.state.subscriptions.append(subscription)
        return {"webhookSubscription": dict(subscription), "userErrors": []}

    # --- metafields --------------------------------------------------------------------------

    def metafieldsSet(self, info: Any, metafields: list[dict[str, Any]]) -> dict[str, Any]:
        if len(metafields) > METAFIELDS_SET_LIMIT:
            raise _InputTooLarge(
                f"The input array size of {len(metafields)} is greater than the maximum "
                f"allowed of {METAFIELDS_SET_LIMIT}.",
                info.field_nodes,
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        errors: list[dict[str, Any]] = []
        ready: list[tuple[str, str, str, str, str]] = []
        for index, entry in enumerate(metafields):
            problem = self._metafield_problem(entry)
            if problem is not None:
                part, code, message = problem
                errors.append(_user_error(["metafields", str(index), part], message, code, index))
            else:
                ready.append(self._prepared(entry))
        if errors:  # atomic: nothing is written when any input is refused
            return {"metafields": None, "userErrors": errors}
        now = datetime.now(UTC)
        written = []
        for owner, namespace, key, type_, value in ready:
            stored = self.state.metafields.get((owner, namespace, key))
            if stored is None:
                stored = StoredMetafield(
                    self.api.next_id(), owner, namespace, key, type_, value, now, now
                )
                self.state.metafields[(owner, namespace, key)] = stored
            else:
                stored.type, stored.value, stored.updated_at = type_, value, now
                stored.writes += 1
            self.api.writes.append((time.time(), self.shop, owner, value))
            written.append(self.api.metafield_object(stored, self.state))
        return {"metafields": written, "userErrors": []}

    def _prepared(self, entry: dict[str, Any]) -> tuple[str, str, str, str, str]:
        owner, namespace, key = self._identity(entry)
        definition = self.state.definitions.get((self._owner_type(owner), namespace, key))
        type_ = entry.get("type") or (definition or {}).get("type", {}).get("name", "")
        return owner, namespace, key, type_, entry["value"]

    def _identity(self, entry: dict[str, Any]) -> tuple[str, str, str]:
        return entry["ownerId"], self.api.namespace(entry.get("namespace")), entry["key"]

    @staticmethod
    def _owner_type(owner: str) -> str:
        match = _GID.fullmatch(owner)
        return match["type"].upper() if match else ""

    def _metafield_problem(self, entry: dict[str, Any]) -> tuple[str, str, str] | None:
        owner, namespace, key = self._identity(entry)
        if _GID.fullmatch(owner) is None:
            return "ownerId", "INVALID", f"Invalid global id '{owner}'"
        if owner in self.state.missing_owners:
            return "ownerId", "INVALID", "Owner does not exist"
        for part, value, low, high in (("namespace", namespace, 3, 255), ("key", key, 2, 64)):
            found = _name_problem(value, low, high, part.capitalize())
            if found is not None:
                return part, *found
        definition = self.state.definitions.get((self._owner_type(owner), namespace, key))
        type_ = entry.get("type")
        if definition is not None:
            wanted = definition["type"]["name"]
            if type_ not in (None, wanted):
                return "type", "INVALID_TYPE", f"Type must be {wanted} (the definition's)"
            type_ = wanted
        if not type_:
            return "type", "BLANK", "Type can't be blank"
        check = _VALUE_CHECKS.get(type_)
        if check is None:
            return "type", "INVALID_TYPE", f"Type '{type_}' is not a valid metafield type"
        value = entry["value"]
        try:
            valid = check(value)
        except ValueError:
            valid = False
        if not valid:
            return "value", "INVALID_VALUE", f"Value is invalid for type {type_}"
        if "compareDigest" in entry:
            stored = self.state.metafields.get((owner, namespace, key))
            given = entry["compareDigest"]
            if (stored is None) != (given is None) or (stored and stored.digest != given):
                return "compareDigest", "STALE_OBJECT", "The resource has been updated"
        return None

    def metafieldsDelete(self, info: Any, metafields: list[dict[str, Any]]) -> dict[str, Any]:
        if not metafields:
            error = {"field": ["metafields"], "message": "At least one identifier is required"}
            return {"deletedMetafields": None, "userErrors": [error]}
        deleted: list[dict[str, str] | None] = []
        for entry in metafields:
            owner, namespace, key = self._identity(entry)
            found = self.state.metafields.pop((owner, namespace, key), None)
            identity = {"ownerId": owner, "namespace": namespace, "key": key}
            deleted.append(identity if found is not None else None)
        return {"deletedMetafields": deleted, "userErrors": []}

    def metafieldDefinitionCreate(self, info: Any, definition: dict[str, Any]) -> dict[str, Any]:
        namespace = self.api.namespace(definition.get("namespace"))
        key, owner_type, type_ = definition["key"], definition["ownerType"], definition["type"]
        problems = []
        for part, value, low, high in (("namespace", namespace, 3, 255), ("key", key, 2, 64)):
            found = _name_problem(value, low, high, part.capitalize())
            if found is not None:
                problems.append((part, *found))
        if not definition["name"].strip():
            problems.append(("name", "BLANK", "Name can't be blank"))
        if type_ not in _VALUE_CHECKS:
            problems.append(("type", "INCLUSION", f"Type '{type_}' is not a valid type"))
        if (owner_type, namespace, key) in self.state.definitions:
            message = f"Key is in use for {owner_type} metafields on the '{namespace}' namespace."
            problems.append(("key", "TAKEN", message))
        if problems:
            errors = [
                _user_error(["definition", part], message, code) for part, code, message in problems
            ]
            return {"createdDefinition": None, "userErrors": errors}
        access = definition.get("access") or {}
        created = {
            "access": {
                "admin": access.get("admin") or "PRIVATE",
                "customerAccount": access.get("customerAccount") or "NONE",
                "storefront": access.get("storefront") or "NONE",
            },
            "description": definition.get("description"),
            "id": f"gid://shopify/MetafieldDefinition/{self.api.next_id()}",
            "key": key,
            "metafieldsCount": 0,
            "name": definition["name"],
            "namespace": namespace,
            "ownerType": owner_type,
            "pinnedPosition": None,
            "type": {
                "category": "TEXT" if type_ != "json" else "ADVANCED",
                "name": type_,
                "supportedValidations": [],
                "supportsDefinitionMigrations": False,
            },
            "useAsCollectionCondition": False,
            "validationStatus": "ALL_VALID",
            "validations": [],
        }
        self.state.definitions[(owner_type, namespace, key)] = created
        return {"createdDefinition": created, "userErrors": []}

    # --- validations -------------------------------------------------------------------------

    def validationCreate(self, info: Any, validation: dict[str, Any]) -> dict[str, Any]:
        handle = validation.get("functionHandle")

        def refused(code: str, message: str) -> dict[str, Any]:
            error = _user_error(["validation", "functionHandle"], message, code)
            return {"validation": None, "userErrors": [error]}

        if not handle:
            return refused(
                "MISSING_FUNCTION_IDENTIFIER",
                "Either function_id or function_handle must be provided.",
            )
        found = [f for f in self.state.functions if f["handle"] == handle]
        if not found:
            return refused("FUNCTION_NOT_FOUND", f"Function {handle} not found.")
        function = found[0]
        if function["apiType"] != VALIDATION_API:
            return refused(
                "FUNCTION_DOES_NOT_IMPLEMENT", "Function does not implement the required interface."
            )
        enabled = sum(1 for v in self.state.validations if v["enabled"])
        if validation["enable"] and enabled >= MAX_ACTIVE_VALIDATIONS:
            return refused(
                "MAX_VALIDATIONS_ACTIVATED", "Cannot have more than 25 active validation functions."
            )
        created = {
            "id": f"gid://shopify/Validation/{self.api.next_id()}",
            "title": validation.get("title") or function["title"],
            "enabled": validation["enable"],
            "blockOnFailure": validation["blockOnFailure"],
            "shopifyFunction": function,
        }
        self.state.validations.append(created)
        return {"validation": self.api.validation_object(created), "userErrors": []}

    def validationUpdate(
        self,
        info: Any,
        id: str,
        validation: dict[str, Any],
    ) -> dict[str, Any]:
        found = [v for v in self.state.validations if v["id"] == id]
        if not found:
            error = _user_error(["id"], "Validation not found.", "NOT_FOUND")
            return {"validation": None, "userErrors": [error]}
        target = found[0]
        # The input's defaults (enable: false, blockOnFailure: false) apply when omitted, as
        # Shopify's schema says: an update that leaves ``enable`` out switches it off.
        target["enabled"] = validation["enable"]
        target["blockOnFailure"] = validation["blockOnFailure"]
        if validation.get("title"):
            target["title"] = validation["title"]
        return {"validation": self.api.validation_object(target), "userErrors": []}
