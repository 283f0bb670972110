"""The trigger rules as data: filters, specs, validation and delays (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from campaigns.services.trigger_rules import (
    Delay,
    PropertyFilter,
    delay_until,
    filters_hold,
    parse_conversions,
    parse_delay,
    parse_exceptions,
    parse_triggers,
)
from profiles.engagement import MESSAGE_OPENED, SESSION_STARTED

CART = {"cart_id": "c-1", "value": "149.90", "items": 3, "tags": ["Gift", "sale"], "product": {"name": "Red Shoes"}}


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "c-1", True),
        ("eq", "C-1", True),  # text compares case-insensitively, like segments
        ("ne", "c-2", True),
        ("gt", 100, True),  # "149.90" is a number
        ("gt", "150", False),
        ("lte", 149.9, True),
        ("exists", None, True),
        ("not_exists", None, False),
        ("one_of", ["c-0", "c-1"], True),
        ("not_one_of", ["c-1"], False),
        ("contains", "-", True),
    ],
)
def test_filters_on_a_text_property(op: str, value: object, expected: bool) -> None:
    prop = "value" if op in ("gt", "lte") else "cart_id"
    assert filters_hold([PropertyFilter(prop, op, value)], CART) is expected


def test_numbers_compare_numerically_not_alphabetically() -> None:
    assert filters_hold([PropertyFilter("items", "lt", "10")], CART)  # "3" < "10" as numbers
    assert filters_hold([PropertyFilter("items", "eq", "3")], CART)
    assert not filters_hold([PropertyFilter("cart_id", "gt", 1)], CART)  # text is never "greater"


def test_contains_on_a_list_and_nested_paths() -> None:
    assert filters_hold([PropertyFilter("tags", "contains", "gift")], CART)
    assert not filters_hold([PropertyFilter("tags", "contains", "new")], CART)
    assert filters_hold([PropertyFilter("product.name", "contains", "shoes")], CART)


def test_negative_operators_match_a_missing_property() -> None:
    assert filters_hold([PropertyFilter("coupon", "ne", "X")], CART)
    assert filters_hold([PropertyFilter("coupon", "not_exists")], CART)
    assert not filters_hold([PropertyFilter("coupon", "eq", "X")], CART)


def test_triggers_parse_and_match() -> None:
    specs, problems = parse_triggers(
        [
            {
                "type": "custom_event",
                "event": "Product Added",
                "filters": [{"property": "price", "op": "gte", "value": 50}],
            },
            {"type": "purchase", "product_id": "sku-1"},
            {"type": "session_start"},
            {"type": "engagement", "campaign_id": 12, "action": "opened", "channel": "email"},
            {"type": "segment_entry", "segment_id": 5},
        ]
    )
    assert problems == []
    added, purchase, session, engagement, entry = specs
    assert added.event is not None and added.event.matches("Product Added", {"price": 80})
    assert not added.event.matches("Product Added", {"price": 20})
    assert purchase.event is not None and purchase.event.matches(
        "Order Completed", {"products": [{"product_id": "sku-1"}]}
    )
    assert not purchase.event.matches("Order Completed", {"products": [{"product_id": "sku-2"}]})
    assert session.event is not None and session.event.matches(SESSION_STARTED, {})
    assert engagement.event is not None
    assert engagement.event.matches(MESSAGE_OPENED, {"campaign_id": 12, "channel": "email"})
    assert not engagement.event.matches(MESSAGE_OPENED, {"campaign_id": 13, "channel": "email"})
    assert entry.event is None and entry.segment_id == 5


def test_invalid_triggers_name_the_path_and_rule() -> None:
    _, problems = parse_triggers(
        [
            {"type": "custom_event"},
            {"type": "teleport"},
            {"type": "custom_event", "event": "X", "filters": [{"property": "p", "op": "gt", "value": "abc"}]},
            {"type": "custom_event", "event": "$message_opened"},
        ]
    )
    assert any(p.startswith("triggers[0].event:") for p in problems)
    assert any(p.startswith("triggers[1].type:") for p in problems)
    assert any(p.startswith("triggers[2].filters[0].value:") and "compares numbers" in p for p in problems)
    assert any(p.startswith("triggers[3].event:") for p in problems)


def test_exceptions_match_property_and_refusals() -> None:
    specs, problems = parse_exceptions([{"event": "Order Completed", "match_property": "cart_id"}, {"purchase": True}])
    assert problems == []
    assert specs[0].match_property == "cart_id"
    assert specs[1].event.matches("Purchase", {})
    triggers, _ = parse_triggers([{"type": "session_start"}])
    _, problems = parse_exceptions([{"event": SESSION_STARTED}], triggers=triggers)
    assert problems == ["exception_events: session start cannot be both the trigger and an exception event"]
    _, problems = parse_exceptions([{"event": "A", "match_property": "x"}, {"event": "B", "match_property": "y"}])
    assert "same property" in problems[0]


def test_conversions_parse() -> None:
    specs, problems = parse_conversions([{"event": "Signed Up"}, {"purchase": True}])
    assert problems == [] and len(specs) == 2
    assert parse_conversions([{"filters": []}])[1] == [
        "conversion_events[0].event: must be a non-empty event name of at most 255 characters"
    ]


def test_delay_shapes_and_problems() -> None:
    assert parse_delay({}) == (Delay(), [])
    assert parse_delay({"type": "duration", "seconds": 3600})[0].seconds == 3600
    weekday, problems = parse_delay({"type": "next_weekday", "weekday": "Monday", "time": "10:00"})
    assert problems == [] and weekday.weekday == 0 and weekday.at.hour == 10
    assert parse_delay({"type": "days_at", "days": 2, "time": "25:00"})[1] == [
        "delay.time: must be a local time such as 10:00; got '25:00'"
    ]
    assert parse_delay({"type": "soon"})[1]


PARIS = ZoneInfo("Europe/Paris")


def test_next_weekday_is_in_the_persons_zone() -> None:
    # Monday 2024-01-15 08:00 UTC = 09:00 in Paris: "next Monday at 10:00" is an hour away.
    base = datetime(2024, 1, 15, 8, 0, tzinfo=UTC)
    delay = parse_delay({"type": "next_weekday", "weekday": "monday", "time": "10:00"})[0]
    assert delay_until(delay, base=base, tz=PARIS) == datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
    # At 11:00 Paris it is the Monday after.
    later = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
    assert delay_until(delay, base=later, tz=PARIS) == datetime(2024, 1, 22, 9, 0, tzinfo=UTC)


def test_in_n_days_at_a_time_across_a_dst_change() -> None:
    # Saturday 2024-03-30 in Paris; two days later (after the spring change) at 10:00 is 08:00 UTC.
    base = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)
    delay = parse_delay({"type": "days_at", "days": 2, "time": "10:00"})[0]
    assert delay_until(delay, base=base, tz=PARIS) == datetime(2024, 4, 1, 8, 0, tzinfo=UTC)
    same_day = parse_delay({"type": "days_at", "days": 0, "time": "10:00"})[0]
    assert delay_until(same_day, base=base, tz=PARIS) == datetime(2024, 3, 31, 8, 0, tzinfo=UTC)


def test_rules_problems_collects_every_part() -> None:
    from campaigns.services.trigger_rules import rules_problems

    assert (
        rules_problems(triggers=[{"type": "session_start"}], delay={}, exception_events=[], conversion_events=[]) == []
    )
    problems = rules_problems(
        triggers=[{"type": "nope"}],
        delay={"type": "duration", "seconds": -1},
        exception_events=[{"event": ""}],
        conversion_events="x",
    )
    assert [p.split(":")[0] for p in problems] == [
        "triggers[0].type",
        "exception_events[0].event",
        "delay.seconds",
        "conversion_events",
    ]
