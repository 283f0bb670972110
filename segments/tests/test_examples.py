"""The audiences the product brief names, and nested groups, end to end through both evaluators."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from profiles.engagement import SESSION_STARTED
from profiles.models import Workspace
from segments.tests.conftest import NOW, buy, make_profile, track, track_many

Members = Callable[[dict[str, Any]], set[str]]
DAY = timedelta(days=1)


def test_teens_in_mississippi(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "teen-ms", date_of_birth=date(2010, 6, 1), region="Mississippi", country="US")
    make_profile(workspace, "adult-ms", date_of_birth=date(1990, 6, 1), region="Mississippi", country="US")
    make_profile(workspace, "teen-tx", date_of_birth=date(2010, 6, 1), region="Texas", country="US")
    teens_in_ms = {
        "all": [
            {"type": "age", "op": "between", "value": [13, 19]},
            {"type": "location", "field": "region", "op": "eq", "value": "Mississippi"},
        ]
    }
    assert members(teens_in_ms) == {"teen-ms"}


def test_opened_the_app_five_times_this_month_but_never_purchased(workspace: Workspace, members: Members) -> None:
    keen = make_profile(workspace, "keen")
    track_many(keen, SESSION_STARTED, [NOW - n * DAY for n in range(5)])
    buyer = make_profile(workspace, "buyer")
    track_many(buyer, SESSION_STARTED, [NOW - n * DAY for n in range(6)])
    buy(buyer, "sku-1", "9.99", NOW - 60 * DAY)
    casual = make_profile(workspace, "casual")
    track_many(casual, SESSION_STARTED, [NOW - n * DAY for n in range(4)])
    definition = {
        "all": [
            {"type": "sessions", "op": "gte", "value": 5, "window": {"from": "2026-03-01"}},
            {"type": "purchase_count", "op": "eq", "value": 0},
        ]
    }
    assert members(definition) == {"keen"}


def test_added_to_cart_in_the_last_day_and_did_not_buy(workspace: Workspace, members: Members) -> None:
    abandoned = make_profile(workspace, "abandoned")
    track(abandoned, "Added to Cart", NOW - timedelta(hours=3))
    converted = make_profile(workspace, "converted")
    track(converted, "Added to Cart", NOW - timedelta(hours=3))
    track(converted, "Order Completed", NOW - timedelta(hours=2))
    stale = make_profile(workspace, "stale")
    track(stale, "Added to Cart", NOW - 2 * DAY)
    last_day = {"last": 1, "unit": "days"}
    definition = {
        "all": [
            {"type": "event", "event": "Added to Cart", "window": last_day},
            {"type": "never_performed", "event": "Order Completed", "window": last_day},
        ]
    }
    assert members(definition) == {"abandoned"}


def test_lapsed_users_who_came_from_social_ads(workspace: Workspace, members: Members) -> None:
    seen = {"first_seen": NOW - 200 * DAY, "last_seen": NOW - 40 * DAY}
    make_profile(workspace, "lapsed-fb", utm_source="facebook", utm_medium="paid_social", **seen)
    make_profile(workspace, "lapsed-ig", utm_source="instagram", utm_medium="cpc", **seen)
    make_profile(workspace, "lapsed-google", utm_source="google", utm_medium="cpc", **seen)
    make_profile(workspace, "active-fb", utm_source="facebook", first_seen=NOW - 200 * DAY, last_seen=NOW)
    definition = {
        "all": [
            {"type": "lifecycle_stage", "op": "eq", "value": "lapsed"},
            {
                "any": [
                    {"type": "acquisition", "field": "medium", "op": "contains", "value": "social"},
                    {"type": "acquisition", "field": "source", "op": "one_of", "value": ["facebook", "instagram"]},
                ]
            },
        ]
    }
    assert members(definition) == {"lapsed-fb", "lapsed-ig"}


def test_three_level_nesting_with_none(workspace: Workspace, members: Members) -> None:
    for name, country, platform, sessions in [
        ("us-ios-busy", "US", "ios", 10),
        ("us-ios-idle", "US", "ios", 1),
        ("us-web-busy", "US", "web", 10),
        ("fr-ios-busy", "FR", "ios", 10),
        ("fr-android-idle", "FR", "android", 0),
    ]:
        make_profile(workspace, name, country=country, platform=platform, session_count=sessions)

    # US people neither on the web nor idle on iOS, or FR people with 5+ sessions.
    definition = {
        "any": [
            {
                "all": [
                    {"type": "location", "field": "country", "op": "eq", "value": "US"},
                    {
                        "none": [
                            {"type": "platform", "op": "eq", "value": "web"},
                            {
                                "all": [
                                    {"type": "platform", "op": "eq", "value": "ios"},
                                    {"type": "attribute", "attribute": "session_count", "op": "lt", "value": 2},
                                ]
                            },
                        ]
                    },
                ]
            },
            {
                "all": [
                    {"type": "location", "field": "country", "op": "eq", "value": "FR"},
                    {"any": [{"type": "attribute", "attribute": "session_count", "op": "gte", "value": 5}]},
                ]
            },
        ]
    }
    assert members(definition) == {"us-ios-busy", "fr-ios-busy"}


def test_empty_groups(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "a")
    make_profile(workspace, "b")
    assert members({"all": []}) == {"a", "b"}
    assert members({"any": []}) == set()
    assert members({"none": []}) == {"a", "b"}
    assert members({"all": [{"any": []}]}) == set()


def test_membership_changes_as_events_arrive(workspace: Workspace, members: Members) -> None:
    ann = make_profile(workspace, "ann")
    three_times = {"type": "event", "event": "Opened", "op": "gte", "value": 3, "window": {"last": 30, "unit": "days"}}
    track_many(ann, "Opened", [NOW - DAY, NOW - 2 * DAY])
    assert members(three_times) == set()
    track(ann, "Opened", NOW)
    assert members(three_times) == {"ann"}
