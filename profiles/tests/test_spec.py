from datetime import UTC, datetime, timedelta
from decimal import Decimal

from profiles.spec import Message, Rejection, parse_message

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def parse(raw: object, **kwargs: object) -> Message | Rejection:
    return parse_message(raw, index=4, received_at=NOW, **kwargs)  # type: ignore[arg-type]


def test_track_needs_an_event_name() -> None:
    result = parse({"type": "track", "userId": "u1"})
    assert isinstance(result, Rejection)
    assert result.index == 4
    assert result.message == "event: is required (a non-empty string)"


def test_a_message_needs_a_user_id_or_an_anonymous_id() -> None:
    result = parse({"type": "track", "event": "x", "userId": None, "anonymousId": None})
    assert isinstance(result, Rejection)
    assert result.message == "userId or anonymousId is required"


def test_numeric_ids_are_stringified_and_nulls_tolerated() -> None:
    result = parse({"type": "track", "event": "x", "userId": 42, "anonymousId": None, "properties": None})
    assert isinstance(result, Message)
    assert result.user_id == "42"
    assert result.properties == {}


def test_unknown_type_is_named() -> None:
    result = parse({"type": "purchase", "userId": "u"})
    assert isinstance(result, Rejection)
    assert result.message.startswith("type: must be one of identify, track")


def test_clock_skew_is_corrected_with_sent_at() -> None:
    # The device clock runs an hour fast: event 10 s before upload, both stamped by that clock.
    result = parse(
        {
            "type": "track",
            "event": "x",
            "userId": "u",
            "timestamp": "2026-11-22T13:00:00Z",
            "sentAt": "2026-11-22T13:00:10Z",
        }
    )
    assert isinstance(result, Message)
    assert result.timestamp == NOW - timedelta(seconds=10)


def test_bad_timestamp_is_rejected_with_the_field_name() -> None:
    result = parse({"type": "track", "event": "x", "userId": "u", "timestamp": "yesterday"})
    assert isinstance(result, Rejection)
    assert result.message.startswith("timestamp: must be an ISO 8601 date-time")


def test_identify_traits_come_from_context_traits_when_absent() -> None:
    result = parse({"type": "identify", "userId": "u", "context": {"traits": {"email": "A@B.co"}}})
    assert isinstance(result, Message)
    assert result.traits is not None
    assert result.traits.columns == {"email": "a@b.co"}


def test_invalid_trait_names_field_and_rule() -> None:
    result = parse({"type": "identify", "userId": "u", "traits": {"phone": "call me"}})
    assert isinstance(result, Rejection)
    assert result.code == "invalid_trait"
    assert result.message == "traits.phone: must be a phone number in E.164 form, e.g. +14155550100"


def test_purchase_lines_from_products() -> None:
    result = parse(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u",
            "properties": {"currency": "eur", "products": [{"sku": "A", "price": "9.5", "quantity": 3}]},
        }
    )
    assert isinstance(result, Message)
    assert [(p.product_id, p.price, p.currency, p.quantity) for p in result.purchases] == [
        ("A", Decimal("9.5"), "EUR", 3)
    ]


def test_purchase_with_non_numeric_price_is_rejected() -> None:
    result = parse(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u",
            "properties": {"products": [{"sku": "A", "price": "free"}]},
        }
    )
    assert isinstance(result, Rejection)
    assert result.message.startswith("properties.products[0].price: must be a number")


def test_batch_context_is_merged_under_the_message_context() -> None:
    result = parse(
        {"type": "track", "event": "x", "userId": "u", "context": {"app": {"build": "7"}}},
        batch_context={"app": {"version": "1.0"}, "locale": "fr-FR"},
    )
    assert isinstance(result, Message)
    assert result.context == {"app": {"version": "1.0", "build": "7"}, "locale": "fr-FR"}


def test_alias_needs_previous_id() -> None:
    result = parse({"type": "alias", "userId": "u"})
    assert isinstance(result, Rejection)
    assert result.message == "alias calls need both userId and previousId"
