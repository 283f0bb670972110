"""The Segment tracking spec as the intake reads it: one raw JSON message in, a validated
``Message`` (or a ``Rejection`` naming the field and the rule) out.

Pure functions, no database. Tolerant of what real SDKs send (explicit nulls, numeric ids, traits
under ``traits`` or ``context.traits``, batch-level ``context``), strict about what would corrupt a
profile (a malformed email, a non-numeric price).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .engagement import RESERVED_PREFIX
from .traits import NormalizedTraits, normalize_traits

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 255

# Track events that are purchases: Segment's e-commerce spec, and the names Braze-style apps use.
PURCHASE_EVENTS = frozenset({"Order Completed", "Purchase", "Purchased", "Product Purchased"})
SESSION_START_EVENT = "Application Opened"


@dataclass(slots=True)
class Rejection:
    index: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclass(slots=True)
class PurchaseLine:
    product_id: str
    price: Decimal
    currency: str
    quantity: int


@dataclass(slots=True)
class Message:
    index: int
    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    name: str
    properties: dict[str, Any]
    context: dict[str, Any]
    timestamp: datetime
    traits: NormalizedTraits | None = None
    previous_id: str | None = None
    purchases: list[PurchaseLine] = field(default_factory=list)


class _Invalid(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_timestamp(value: Any, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid("invalid_timestamp", f"{name}: must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise _Invalid("invalid_timestamp", f"{name}: must be an ISO 8601 date-time, got {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _identifier(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is str and len(value) <= MAX_ID_LENGTH:  # nearly every id: one check, no copy
        return value.strip() or None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid("invalid_id", f"{key}: must be a string or a number")
    if isinstance(value, float):
        if not value.is_integer():
            raise _Invalid("invalid_id", f"{key}: a numeric id must be a whole number")
        value = int(value)
    text = str(value).strip()
    if len(text) > MAX_ID_LENGTH:
        raise _Invalid("invalid_id", f"{key}: must be at most {MAX_ID_LENGTH} characters")
    return text or None


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid("invalid_field", f"{key}: must be a JSON object")
    return value


def _name(value: Any, key: str, *, required: bool) -> str:
    if value is None or value == "":
        if required:
            raise _Invalid("missing_field", f"{key}: is required (a non-empty string)")
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _Invalid("invalid_field", f"{key}: must be a string")
    text = str(value)
    if len(text) > MAX_NAME_LENGTH:
        raise _Invalid("invalid_field", f"{key}: must be at most {MAX_NAME_LENGTH} characters")
    return text


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid("invalid_purchase", f"{name}: must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _Invalid("invalid_purchase", f"{name}: must be a number, got {str(value)[:40]!r}") from None
    if not number.is_finite() or abs(number) >= Decimal(10) ** 10:
        raise _Invalid("invalid_purchase", f"{name}: must be a finite amount below 10^10")
    return number


def _quantity(value: Any, name: str) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 1:
        raise _Invalid("invalid_purchase", f"{name}: must be a whole number of at least 1")
    return int(value)


def _currency(value: Any, name: str) -> str:
    if value is None or value == "":
        return "USD"
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise _Invalid("invalid_purchase", f"{name}: must be an ISO 4217 currency code, e.g. USD")
    return value.upper()


def parse_purchases(properties: dict[str, Any]) -> list[PurchaseLine]:
    """Purchase lines of a purchase event: ``products`` (Segment e-commerce) or a single product."""
    currency = _currency(properties.get("currency"), "properties.currency")
    products = properties.get("products")
    lines: list[PurchaseLine] = []
    if products is not None:
        if not isinstance(products, list):
            raise _Invalid("invalid_purchase", "properties.products: must be an array of products")
        for position, product in enumerate(products):
            path = f"properties.products[{position}]"
            if not isinstance(product, dict):
                raise _Invalid("invalid_purchase", f"{path}: must be an object")
            product_id = product.get("product_id", product.get("sku", product.get("id")))
            lines.append(
                PurchaseLine(
                    product_id=_name(product_id, f"{path}.product_id", required=True),
                    price=_decimal(product.get("price", 0), f"{path}.price"),
                    currency=_currency(product.get("currency"), f"{path}.currency")
                    if product.get("currency")
                    else currency,
                    quantity=_quantity(product.get("quantity"), f"{path}.quantity"),
                )
            )
        return lines
    product_id = properties.get("product_id", properties.get("sku"))
    if product_id is not None or "price" in properties:
        lines.append(
            PurchaseLine(
                product_id=_name(product_id, "properties.product_id", required=True),
                price=_decimal(properties.get("price", properties.get("revenue", 0)), "properties.price"),
                currency=currency,
                quantity=_quantity(properties.get("quantity"), "properties.quantity"),
            )
        )
    elif "revenue" in properties or "total" in properties:
        # An order with a total but no line items still counts as money spent.
        amount = properties.get("revenue", properties.get("total"))
        lines.append(
            PurchaseLine(
                product_id=_name(properties.get("order_id"), "properties.order_id", required=False) or "order",
                price=_decimal(amount, "properties.revenue"),
                currency=currency,
                quantity=1,
            )
        )
    return lines


def _merge_context(batch_context: dict[str, Any] | None, context: dict[str, Any]) -> dict[str, Any]:
    if not batch_context:
        return context
    merged = dict(batch_context)
    for key, value in context.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def parse_message(
    raw: Any,
    *,
    index: int,
    received_at: datetime,
    forced_type: str | None = None,
    batch_context: dict[str, Any] | None = None,
    batch_sent_at: datetime | None = None,
) -> Message | Rejection:
    """Validate one message. ``forced_type`` is the call type of a single-message endpoint
    (``/v1/track`` is a track call whatever ``type`` says)."""
    try:
        return _parse(
            raw,
            index=index,
            received_at=received_at,
            forced_type=forced_type,
            batch_context=batch_context,
            batch_sent_at=batch_sent_at,
        )
    except _Invalid as invalid:
        return Rejection(index=index, code=invalid.code, message=invalid.message)


def _parse(
    raw: Any,
    *,
    index: int,
    received_at: datetime,
    forced_type: str | None,
    batch_context: dict[str, Any] | None,
    batch_sent_at: datetime | None,
) -> Message:
    if not isinstance(raw, dict):
        raise _Invalid("invalid_message", "message: must be a JSON object")
    kind = forced_type or raw.get("type")
    if kind not in MESSAGE_TYPES:
        raise _Invalid("invalid_type", f"type: must be one of {', '.join(MESSAGE_TYPES)}")
    user_id = _identifier(raw, "userId")
    anonymous_id = _identifier(raw, "anonymousId")
    previous_id = None
    if kind == "alias":
        previous_id = _identifier(raw, "previousId")
        if user_id is None or previous_id is None:
            raise _Invalid("missing_id", "alias calls need both userId and previousId")
    elif user_id is None and anonymous_id is None:
        raise _Invalid("missing_id", "userId or anonymousId is required")
    properties = _object(raw, "properties")
    context = _merge_context(batch_context, _object(raw, "context"))
    message_id = _identifier(raw, "messageId") or uuid.uuid4().hex

    timestamp = parse_timestamp(raw.get("timestamp"), "timestamp") or parse_timestamp(
        raw.get("originalTimestamp"), "originalTimestamp"
    )
    sent_at = parse_timestamp(raw.get("sentAt"), "sentAt") or batch_sent_at
    if timestamp is None:
        timestamp = received_at
    elif sent_at is not None:
        # Segment's clock-skew correction: the device clock may be wrong, but the delay between the
        # event and its upload is right, so anchor it on the server's receipt time.
        timestamp = received_at - (sent_at - timestamp)

    traits: NormalizedTraits | None = None
    purchases: list[PurchaseLine] = []
    if kind == "track":
        name = _name(raw.get("event"), "event", required=True)
        if name.startswith(RESERVED_PREFIX):
            # Engagement events ($message_opened, ...) are recorded by the platform; an SDK must
            # not be able to forge them.
            raise _Invalid("reserved_name", f"event: names starting with {RESERVED_PREFIX} are reserved")
        if name in PURCHASE_EVENTS:
            purchases = parse_purchases(properties)
    elif kind in ("page", "screen"):
        name = _name(raw.get("name"), "name", required=False)
        if not name and isinstance(properties.get("name"), str):
            name = properties["name"][:MAX_NAME_LENGTH]
    elif kind == "identify":
        name = ""
        raw_traits = raw.get("traits")
        if raw_traits is None:
            raw_traits = context.get("traits")  # RudderStack sends identify traits here
        if raw_traits is not None and not isinstance(raw_traits, dict):
            raise _Invalid("invalid_field", "traits: must be a JSON object")
        traits = normalize_traits(raw_traits or {})
        if traits.errors:
            field_name, problem = traits.errors[0]
            extra = f" (and {len(traits.errors) - 1} more)" if len(traits.errors) > 1 else ""
            raise _Invalid("invalid_trait", f"{field_name}: {problem}{extra}")
    elif kind == "group":
        name = _name(_identifier(raw, "groupId"), "groupId", required=True)
        group_traits = raw.get("traits")
        if group_traits is not None and not isinstance(group_traits, dict):
            raise _Invalid("invalid_field", "traits: must be a JSON object")
        properties = {**properties, "group_id": name, "traits": group_traits or {}}
    else:  # alias
        name = ""
        properties = {**properties, "previous_id": previous_id}

    return Message(
        index=index,
        type=kind,
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        name=name,
        properties=properties,
        context=context,
        timestamp=timestamp,
        traits=traits,
        previous_id=previous_id,
        purchases=purchases,
    )
