"""Conditions on what a person *did*: events, sessions, lifecycle, purchases, message engagement.

Now is Sunday 2026-03-15 12:00 UTC. Both evaluators run for every check (see ``members_of``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from profiles.engagement import (
    CONTROL_GROUP_ENROLLED,
    MESSAGE_CLICKED,
    MESSAGE_OPENED,
    MESSAGE_RECEIVED,
    SESSION_STARTED,
)
from profiles.models import Workspace
from segments import selectors
from segments.models import Segment
from segments.services import lifecycle_settings_update
from segments.tests.conftest import NOW, buy, make_profile, members_of, track, track_many

Members = Callable[[dict[str, Any]], set[str]]
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def event(name: str, op: str | None = None, value: int | None = None, **extra: Any) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": "event", "event": name, **extra}
    if op is not None:
        condition.update(op=op, value=value)
    return condition


def test_performed_at_least_at_most_exactly_in_the_last_days(workspace: Workspace, members: Members) -> None:
    three = make_profile(workspace, "three")
    track_many(three, "Opened", [NOW - 1 * DAY, NOW - 2 * DAY, NOW - 29 * DAY])
    old = make_profile(workspace, "old")
    track_many(old, "Opened", [NOW - 31 * DAY, NOW - 40 * DAY, NOW - 50 * DAY, NOW - 1 * DAY])
    make_profile(workspace, "never")
    month = {"window": {"last": 30, "unit": "days"}}

    assert members(event("Opened", "gte", 3, **month)) == {"three"}
    assert members(event("Opened", "lte", 1, **month)) == {"old", "never"}
    assert members(event("Opened", "eq", 1, **month)) == {"old"}
    assert members(event("Opened", "eq", 0, **month)) == {"never"}
    assert members(event("Opened", "gt", 3)) == {"old"}  # all time
    assert members(event("Opened", "between", [1, 3], **month)) == {"three", "old"}
    assert members(event("Opened", **month)) == {"three", "old"}  # at least once by default
    assert members({"type": "never_performed", "event": "Opened"}) == {"never"}
    assert members({"type": "never_performed", "event": "Opened", **month}) == {"never"}


def test_windows_in_minutes_and_hours_cut_inside_a_day(workspace: Workspace, members: Members) -> None:
    # Events early this morning and just before noon: a 2-hour window splits today's rollup row.
    split = make_profile(workspace, "split")
    track_many(split, "Viewed", [NOW.replace(hour=1), NOW.replace(hour=2), NOW - 30 * timedelta(minutes=1)])
    late = make_profile(workspace, "late")
    track(late, "Viewed", NOW - 90 * timedelta(minutes=1))

    two_hours = {"window": {"last": 2, "unit": "hours"}}
    assert members(event("Viewed", "eq", 1, **two_hours)) == {"split", "late"}
    assert members(event("Viewed", "gte", 2, **two_hours)) == set()
    assert members(event("Viewed", "gte", 1, window={"last": 45, "unit": "minutes"})) == {"split"}
    assert members(event("Viewed", "eq", 3, window={"last": 12, "unit": "hours"})) == {"split"}


def test_window_cut_on_the_first_day_of_the_window(workspace: Workspace, members: Members) -> None:
    # The 7-day window starts at 12:00 on 8 March; a person active that morning and afternoon.
    edge = make_profile(workspace, "edge")
    start = NOW - 7 * DAY
    track_many(edge, "Opened", [start - 3 * HOUR, start - 1 * HOUR, start + 1 * HOUR, start + 2 * HOUR])
    assert members(event("Opened", "eq", 2, window={"last": 7, "unit": "days"})) == {"edge"}
    assert members(event("Opened", "eq", 4, window={"last": 8, "unit": "days"})) == {"edge"}


def test_between_dates_includes_both_whole_days(workspace: Workspace, members: Members) -> None:
    march = make_profile(workspace, "march")
    track_many(march, "Bought", [NOW.replace(day=1, hour=0), NOW.replace(day=10, hour=23, minute=59)])
    track(march, "Bought", NOW.replace(day=11, hour=0))
    window = {"from": "2026-03-01", "to": "2026-03-10"}
    assert members(event("Bought", "eq", 2, window=window)) == {"march"}
    # Date-times bound the window at those instants (both included).
    instants = {"from": "2026-03-10T23:59:00Z", "to": "2026-03-11T00:00:00Z"}
    assert members(event("Bought", "eq", 2, window=instants)) == {"march"}
    assert members(event("Bought", "gte", 1, window={"from": "2026-03-11"})) == {"march"}


def test_there_is_no_ceiling_on_counts_or_windows(workspace: Workspace, members: Members) -> None:
    fan = make_profile(workspace, "fan")
    track_many(fan, "Played", [NOW - timedelta(hours=5 * n) for n in range(300)])  # 300 plays over 62 days
    assert members(event("Played", "gte", 300, window={"last": 63, "unit": "days"})) == {"fan"}
    assert members(event("Played", "gte", 250, window={"last": 45, "unit": "days"})) == set()
    # 45 days is 1080 hours: plays at 0, 5, ..., 1080 hours ago, the last one exactly on the boundary.
    assert members(event("Played", "eq", 217, window={"last": 45, "unit": "days"})) == {"fan"}


def test_event_property_conditions_count_only_matching_events(workspace: Workspace, members: Members) -> None:
    big = make_profile(workspace, "big")
    track_many(big, "Added to Cart", [NOW - HOUR, NOW - 2 * HOUR], {"price": 150, "category": "Shoes"})
    track(big, "Added to Cart", NOW - 3 * HOUR, {"price": 10, "category": "socks"})
    small = make_profile(workspace, "small")
    track_many(small, "Added to Cart", [NOW - HOUR, NOW - 2 * HOUR, NOW - 3 * HOUR], {"price": "12.5"})

    pricey = [{"property": "price", "data_type": "number", "op": "gt", "value": 100}]
    day = {"window": {"last": 1, "unit": "days"}}
    assert members(event("Added to Cart", "gte", 2, properties=pricey, **day)) == {"big"}
    assert members(event("Added to Cart", "eq", 0, properties=pricey, **day)) == {"small"}
    assert members(event("Added to Cart", "lte", 1, properties=pricey, **day)) == {"small"}
    shoes = [{"property": "category", "data_type": "string", "op": "eq", "value": "shoes"}]
    assert members(event("Added to Cart", "eq", 2, properties=shoes)) == {"big"}
    cheap = [{"property": "price", "data_type": "number", "op": "between", "value": [10, 20]}]
    assert members(event("Added to Cart", "gte", 3, properties=cheap)) == {"small"}


def test_first_and_last_performed(workspace: Workspace, members: Members) -> None:
    veteran = make_profile(workspace, "veteran")
    track_many(veteran, "Login", [NOW - 100 * DAY, NOW - 1 * DAY])
    newbie = make_profile(workspace, "newbie")
    track(newbie, "Login", NOW - 2 * DAY)
    make_profile(workspace, "never")

    assert members({"type": "first_performed", "event": "Login", "op": "more_than_days_ago", "value": 30}) == {
        "veteran"
    }
    assert members({"type": "first_performed", "event": "Login", "op": "after", "value": "2026-03-01"}) == {"newbie"}
    assert members({"type": "last_performed", "event": "Login", "op": "less_than_days_ago", "value": 1}) == {"veteran"}
    assert members({"type": "last_performed", "event": "Login", "op": "before", "value": "2026-03-14"}) == {"newbie"}
    assert members({"type": "last_performed", "event": "Login", "op": "blank"}) == {"never"}


def test_sessions_in_the_last_days(workspace: Workspace, members: Members) -> None:
    regular = make_profile(workspace, "regular", session_count=50)
    track_many(regular, SESSION_STARTED, [NOW - n * DAY for n in range(1, 8)])
    rare = make_profile(workspace, "rare", session_count=50)
    track_many(rare, SESSION_STARTED, [NOW - 2 * DAY, NOW - 40 * DAY])

    week = {"window": {"last": 7, "unit": "days"}}
    assert members({"type": "sessions", "op": "gte", "value": 5, **week}) == {"regular"}
    assert members({"type": "sessions", "op": "lt", "value": 5, **week}) == {"rare"}
    assert members({"type": "attribute", "attribute": "session_count", "op": "eq", "value": 50}) == {
        "regular",
        "rare",
    }


def test_lifecycle_stages_follow_the_workspace_thresholds(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "new", first_seen=NOW - 3 * DAY, last_seen=NOW - 3 * DAY)
    make_profile(workspace, "active", first_seen=NOW - 300 * DAY, last_seen=NOW - 10 * DAY)
    make_profile(workspace, "lapsed", first_seen=NOW - 300 * DAY, last_seen=NOW - 45 * DAY)
    make_profile(workspace, "churned", first_seen=NOW - 300 * DAY, last_seen=NOW - 120 * DAY)
    make_profile(workspace, "never-seen")

    def stage(op: str, value: Any) -> set[str]:
        return members({"type": "lifecycle_stage", "op": op, "value": value})

    # Defaults: new for 7 days, lapsed after 30, churned after 90.
    assert {name: stage("eq", name) for name in ("new", "active", "lapsed", "churned")} == {
        "new": {"new"},
        "active": {"active"},
        "lapsed": {"lapsed"},
        "churned": {"churned"},
    }
    assert stage("not_one_of", ["new", "active"]) == {"lapsed", "churned", "never-seen"}

    lifecycle_settings_update(workspace=workspace, new_days=2, lapsed_after_days=7, churned_after_days=60)
    assert stage("eq", "active") == {"new"}  # 3 days old is no longer new
    assert stage("eq", "lapsed") == {"active", "lapsed"}
    assert stage("eq", "churned") == {"churned"}


def test_purchases(workspace: Workspace, members: Members) -> None:
    whale = make_profile(workspace, "whale")
    buy(whale, "sku-tv", "899.00", NOW - 100 * DAY)
    buy(whale, "sku-cable", "10.00", NOW - 5 * DAY, quantity=3)
    shopper = make_profile(workspace, "shopper")
    buy(shopper, "sku-cable", "10.00", NOW - 1 * DAY)
    buy(shopper, "sku-euro", "50.00", NOW - 1 * DAY, currency="EUR")
    make_profile(workspace, "browser")

    quarter = {"window": {"last": 90, "unit": "days"}}
    assert members({"type": "purchased_product", "products": ["sku-tv"]}) == {"whale"}
    assert members({"type": "purchased_product", "products": ["sku-tv"], **quarter}) == set()
    assert members({"type": "purchased_product", "products": ["sku-cable", "sku-x"], **quarter}) == {
        "whale",
        "shopper",
    }
    assert members({"type": "purchase_count", "op": "gte", "value": 2}) == {"whale", "shopper"}
    assert members({"type": "purchase_count", "op": "eq", "value": 0}) == {"browser"}
    assert members({"type": "purchase_count", "op": "lt", "value": 2, **quarter}) == {"whale", "browser"}
    assert members({"type": "purchase_count", "op": "eq", "value": 1, "products": ["sku-tv"]}) == {"whale"}
    # Money: price x quantity, all time or in a window, optionally in one currency.
    assert members({"type": "money_spent", "op": "gt", "value": 900}) == {"whale"}
    assert members({"type": "money_spent", "op": "gte", "value": 30, **quarter}) == {"whale", "shopper"}
    assert members({"type": "money_spent", "op": "eq", "value": 10, "currency": "usd", **quarter}) == {"shopper"}
    assert members({"type": "money_spent", "op": "lt", "value": 20, "currency": "USD"}) == {"shopper", "browser"}
    assert members({"type": "first_purchase", "op": "more_than_days_ago", "value": 30}) == {"whale"}
    assert members({"type": "last_purchase", "op": "less_than_days_ago", "value": 2}) == {"shopper"}
    assert members({"type": "last_purchase", "op": "blank"}) == {"browser"}


def test_engagement_with_earlier_messages(workspace: Workspace, members: Members) -> None:
    opener = make_profile(workspace, "opener")
    track(opener, MESSAGE_RECEIVED, NOW - 3 * DAY, {"campaign_id": 12, "channel": "email", "variant": "a"})
    track(opener, MESSAGE_OPENED, NOW - 2 * DAY, {"campaign_id": 12, "channel": "email", "variant": "a"})
    clicker = make_profile(workspace, "clicker")
    track(clicker, MESSAGE_RECEIVED, NOW - 20 * DAY, {"campaign_id": 7, "channel": "push", "variant": "b"})
    track(clicker, MESSAGE_CLICKED, NOW - 20 * DAY, {"campaign_id": 7, "channel": "push", "variant": "b"})
    held_out = make_profile(workspace, "held-out")
    track(held_out, CONTROL_GROUP_ENROLLED, NOW - 3 * DAY, {"campaign_id": 12, "channel": "email",
                                                             "variant": "control"})  # fmt: skip

    def engaged(action: str, **extra: Any) -> set[str]:
        return members({"type": "message_engagement", "action": action, **extra})

    week = {"window": {"last": 7, "unit": "days"}}
    assert engaged("received", campaign_id=12) == {"opener"}
    assert engaged("opened", campaign_id=12, **week) == {"opener"}
    assert engaged("clicked", campaign_id=7, **week) == set()
    assert engaged("clicked", channel="push") == {"clicker"}
    assert engaged("received") == {"opener", "clicker"}  # any message on any channel
    assert engaged("received", channel="email", variant="a") == {"opener"}
    assert engaged("received", op="eq", value=0) == {"held-out"}
    assert members({"type": "control_group", "campaign_id": 12}) == {"held-out"}
    assert members({"type": "control_group", "campaign_id": 7}) == set()


def test_an_or_of_behaviours_with_attributes_and_exclusions(workspace: Workspace, members: Members) -> None:
    # The benchmark's nested tree: (US and 3+ sessions in 14 days) or (FR and 2+ views in 30 days),
    # none of (unsubscribed, bought in 30 days). Counted from the people in either behaviour set
    # (see count_query); members_of checks the size against the member list and the single check.
    def person(name: str, country: str, sessions: int, views: int, **fields: Any) -> Any:
        profile = make_profile(workspace, name, country=country, **fields)
        track_many(profile, SESSION_STARTED, [NOW - (n + 1) * DAY for n in range(sessions)])
        track_many(profile, "Viewed", [NOW - (n + 1) * 2 * DAY for n in range(views)])
        return profile

    person("us_active", "US", 3, 0)
    person("us_idle", "US", 2, 5)  # views count only in France
    person("fr_viewer", "FR", 0, 2)
    person("fr_active", "FR", 4, 1)  # sessions count only in the US
    person("us_unsubscribed", "US", 3, 0, email_subscription="unsubscribed")
    buyer = person("us_buyer", "US", 5, 0)
    buy(buyer, "sku-1", "10.00", NOW - 3 * DAY)
    old_buyer = person("fr_old_buyer", "FR", 0, 3)
    buy(old_buyer, "sku-1", "10.00", NOW - 40 * DAY)
    make_profile(workspace, "nobody", country="US")
    month, fortnight = {"window": {"last": 30, "unit": "days"}}, {"window": {"last": 14, "unit": "days"}}

    assert members(
        {"all": [
            {"any": [
                {"all": [
                    {"type": "location", "field": "country", "op": "eq", "value": "US"},
                    {"type": "sessions", "op": "gte", "value": 3, **fortnight},
                ]},
                {"all": [
                    {"type": "location", "field": "country", "op": "one_of", "value": ["FR", "DE"]},
                    event("Viewed", "gte", 2, **month),
                ]},
            ]},
            {"none": [
                {"any": [
                    {"type": "subscription", "channel": "email", "op": "eq", "value": "unsubscribed"},
                    {"type": "purchase_count", "op": "gte", "value": 1, **month},
                ]},
            ]},
        ]}
    ) == {"us_active", "fr_viewer", "fr_old_buyer"}  # fmt: skip
    # Behaviour alone (no profile column): "viewed twice, or 4+ sessions, and never bought".
    assert members(
        {"all": [
            {"any": [event("Viewed", "gte", 2, **month), {"type": "sessions", "op": "gte", "value": 4, **fortnight}]},
            {"none": [{"type": "purchase_count", "op": "gte", "value": 1}]},
        ]}
    ) == {"us_idle", "fr_viewer", "fr_active"}  # fmt: skip


@pytest.mark.parametrize("share", [0.0, 1e9])
def test_an_or_of_behaviours_counts_the_same_by_key_or_in_one_pass(
    workspace: Workspace, frozen: Any, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    # The size reads the candidates' profiles by key when the planner expects few of them, and
    # makes one pass over the profiles otherwise: the same people either way.
    for n in range(12):
        profile = make_profile(workspace, f"p{n}", country="US" if n % 2 else "DE")
        track_many(profile, "Viewed", [NOW - (k + 1) * DAY for k in range(n % 4)])
        track_many(profile, SESSION_STARTED, [NOW - (k + 1) * HOUR for k in range(n % 3)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")  # gives the table a row count to compare with
    monkeypatch.setattr(selectors, "CANDIDATES_BY_KEY_MAX_SHARE", share)
    definition = {"any": [
        {"all": [{"type": "location", "field": "country", "op": "eq", "value": "US"}, event("Viewed", "gte", 2)]},
        {"all": [{"type": "location", "field": "country", "op": "eq", "value": "DE"}, event(SESSION_STARTED)]},
    ]}  # fmt: skip
    segment = Segment(workspace=workspace, name="either", definition=definition)

    # US (odd n) with 2+ views (n % 4 >= 2): p3, p7, p11; DE (even n) with a session (n % 3 >= 1):
    # p2, p4, p8, p10.
    assert members_of(workspace, definition, segment=segment) == {"p3", "p7", "p11", "p2", "p4", "p8", "p10"}
    assert selectors.segment_size(segment=segment) == 7
