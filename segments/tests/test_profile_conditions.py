"""Conditions on what a profile *is*: attributes, custom attributes, age, birthday, location, app.

Every check runs both evaluators (see ``members_of``) and asserts they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import time_machine

from profiles.models import Workspace
from segments.tests.conftest import NOW, add_device, make_profile, members_of

Members = Callable[[dict[str, Any]], set[str]]


def test_string_attributes_match_case_insensitively_and_negations_include_the_unknown(
    workspace: Workspace, members: Members
) -> None:
    make_profile(workspace, "us", country="US", city="New York", email="ann@example.com")
    make_profile(workspace, "fr", country="FR", city="Paris", email="bob@example.org")
    make_profile(workspace, "unknown")

    assert members({"type": "attribute", "attribute": "country", "op": "eq", "value": "us"}) == {"us"}
    assert members({"type": "attribute", "attribute": "country", "op": "ne", "value": "US"}) == {"fr", "unknown"}
    assert members({"type": "attribute", "attribute": "country", "op": "one_of", "value": ["FR", "de"]}) == {"fr"}
    assert members({"type": "attribute", "attribute": "country", "op": "not_one_of", "value": ["FR"]}) == {
        "us",
        "unknown",
    }
    assert members({"type": "attribute", "attribute": "email", "op": "contains", "value": "EXAMPLE.ORG"}) == {"fr"}
    assert members({"type": "attribute", "attribute": "email", "op": "not_contains", "value": "ann"}) == {
        "fr",
        "unknown",
    }
    assert members({"type": "attribute", "attribute": "city", "op": "starts_with", "value": "new"}) == {"us"}
    assert members({"type": "attribute", "attribute": "city", "op": "exists"}) == {"us", "fr"}
    assert members({"type": "attribute", "attribute": "city", "op": "blank"}) == {"unknown"}


def test_external_id_blank_finds_anonymous_profiles(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "known")
    make_profile(workspace, None)  # type: ignore[arg-type]

    assert members({"type": "attribute", "attribute": "external_id", "op": "blank"}) == {None}
    assert members({"type": "attribute", "attribute": "external_id", "op": "exists"}) == {"known"}


def test_number_and_time_attributes(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "fresh", session_count=2, last_seen=NOW - timedelta(hours=30), first_seen=NOW)
    make_profile(workspace, "old", session_count=40, last_seen=NOW - timedelta(days=10), first_seen=NOW)
    make_profile(workspace, "never", session_count=0)

    assert members({"type": "attribute", "attribute": "session_count", "op": "between", "value": [1, 5]}) == {"fresh"}
    assert members({"type": "attribute", "attribute": "session_count", "op": "gt", "value": 2}) == {"old"}
    assert members({"type": "attribute", "attribute": "session_count", "op": "lte", "value": 2}) == {
        "fresh",
        "never",
    }
    assert members({"type": "attribute", "attribute": "last_seen", "op": "less_than_days_ago", "value": 2}) == {"fresh"}
    assert members({"type": "attribute", "attribute": "last_seen", "op": "more_than_days_ago", "value": 2}) == {"old"}
    assert members({"type": "attribute", "attribute": "last_seen", "op": "blank"}) == {"never"}
    # A date compares with whole UTC days: "after 13 March" starts at midnight on the 14th.
    assert members({"type": "attribute", "attribute": "last_seen", "op": "after", "value": "2026-03-13"}) == {"fresh"}
    assert members({"type": "attribute", "attribute": "last_seen", "op": "on", "value": "2026-03-14"}) == {"fresh"}
    assert members(
        {"type": "attribute", "attribute": "last_seen", "op": "before", "value": "2026-03-14T06:00:00+00:00"}
    ) == {"old"}
    assert members(
        {"type": "attribute", "attribute": "last_seen", "op": "between", "value": ["2026-03-01", "2026-03-05"]}
    ) == {"old"}


def test_custom_attributes_by_type(workspace: Workspace, members: Members) -> None:
    make_profile(
        workspace,
        "gold",
        custom_attributes={
            "plan": "Gold",
            "score": 42,
            "vip": True,
            "renews_at": "2026-04-01T00:00:00Z",
            "tags": ["Beta", "ios"],
        },
    )
    make_profile(
        workspace,
        "free",
        custom_attributes={"plan": "free", "score": "7", "vip": False, "renews_at": "not a date", "tags": []},
    )
    make_profile(workspace, "odd", custom_attributes={"plan": 3, "score": "lots", "vip": "yes", "tags": "beta"})
    make_profile(workspace, "none")

    def custom(data_type: str, attribute: str, op: str, value: Any = None) -> set[str]:
        condition = {"type": "custom_attribute", "attribute": attribute, "data_type": data_type, "op": op}
        if value is not None:
            condition["value"] = value
        return members(condition)

    assert custom("string", "plan", "eq", "gold") == {"gold"}
    assert custom("string", "plan", "eq", "3") == {"odd"}  # scalars compare by their text
    assert custom("string", "plan", "ne", "gold") == {"free", "odd", "none"}
    # Numbers, and strings that spell numbers; "lots" is not one.
    assert custom("number", "score", "gte", 7) == {"gold", "free"}
    assert custom("number", "score", "between", [0, 10]) == {"free"}
    assert custom("number", "score", "exists") == {"gold", "free"}
    assert custom("boolean", "vip", "eq", True) == {"gold"}
    assert custom("boolean", "vip", "eq", False) == {"free"}
    assert custom("boolean", "vip", "blank") == {"odd", "none"}
    assert custom("time", "renews_at", "within_next_days", 30) == {"gold"}
    assert custom("time", "renews_at", "exists") == {"gold"}
    assert custom("array", "tags", "includes", "beta") == {"gold"}
    assert custom("array", "tags", "includes", ["android", "IOS"]) == {"gold"}
    assert custom("array", "tags", "not_includes", "beta") == {"free", "odd", "none"}
    assert custom("array", "tags", "blank") == {"free", "odd", "none"}


def test_array_includes_compares_elements_as_text_in_any_case(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "numbers", custom_attributes={"codes": [42, 7.5, True, None]})
    make_profile(workspace, "quotes", custom_attributes={"codes": ['Say "Hi"', "back\\slash", "Ünïcode", "snowshoes"]})
    make_profile(workspace, "nested", custom_attributes={"codes": [["shoes"], {"shoes": 1}]})

    def includes(*values: str) -> set[str]:
        return members(
            {"type": "custom_attribute", "attribute": "codes", "data_type": "array", "op": "includes",
             "value": list(values)}
        )  # fmt: skip

    assert includes("42") == {"numbers"}
    assert includes("7.5") == {"numbers"}
    assert includes("TRUE") == {"numbers"}
    assert includes("null") == set()
    assert includes('say "hi"') == {"quotes"}
    assert includes("BACK\\SLASH") == {"quotes"}
    assert includes("üNÏCODE") == {"quotes"}
    assert includes("shoes") == set(), "a whole element, not part of one or of a nested value"
    assert includes("43", "snowshoes") == {"quotes"}


def test_a_string_condition_never_matches_an_array_or_object_value(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "array", custom_attributes={"plan": ["pro"]})
    make_profile(workspace, "object", custom_attributes={"plan": {"pro": True}})
    make_profile(workspace, "text", custom_attributes={"plan": "Pro"})
    make_profile(workspace, "number", custom_attributes={"plan": 3})

    def plan(op: str, value: Any) -> set[str]:
        return members(
            {"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": op, "value": value}
        )

    assert plan("eq", "pro") == {"text"}
    assert plan("eq", '["pro"]') == set()
    assert plan("one_of", ['{"pro": true}', "PRO", "3"]) == {"text", "number"}
    assert plan("ne", "pro") == {"array", "object", "number"}
    assert plan("contains", "pro") == {"text"}


def test_age_counts_whole_years_as_of_today(workspace: Workspace, members: Members) -> None:
    # Today is 2026-03-15.
    make_profile(workspace, "13-today", date_of_birth=date(2013, 3, 15))
    make_profile(workspace, "12-until-tomorrow", date_of_birth=date(2013, 3, 16))
    make_profile(workspace, "19", date_of_birth=date(2006, 3, 16))
    make_profile(workspace, "20-today", date_of_birth=date(2006, 3, 15))
    make_profile(workspace, "no-dob")

    teens = {"type": "age", "op": "between", "value": [13, 19]}
    assert members(teens) == {"13-today", "19"}
    assert members({"type": "age", "op": "lt", "value": 13}) == {"12-until-tomorrow"}
    assert members({"type": "age", "op": "gte", "value": 20}) == {"20-today"}
    assert members({"type": "age", "op": "eq", "value": 19}) == {"19"}
    assert members({"type": "age", "op": "ne", "value": 19}) == {"13-today", "12-until-tomorrow", "20-today", "no-dob"}


def test_age_of_someone_born_on_february_29(workspace: Workspace) -> None:
    make_profile(workspace, "leapling", date_of_birth=date(2008, 2, 29))
    eighteen = {"all": [{"type": "age", "op": "gte", "value": 18}]}
    # In a common year the leapling turns a year older on March 1.
    with time_machine.travel(datetime(2026, 2, 28, 12, tzinfo=NOW.tzinfo), tick=False):
        assert members_of(workspace, eighteen) == set()
    with time_machine.travel(datetime(2026, 3, 1, 12, tzinfo=NOW.tzinfo), tick=False):
        assert members_of(workspace, eighteen) == {"leapling"}
    # In a leap year, on the day itself.
    with time_machine.travel(datetime(2028, 2, 29, 12, tzinfo=NOW.tzinfo), tick=False):
        assert members_of(workspace, {"all": [{"type": "age", "op": "eq", "value": 20}]}) == {"leapling"}


def test_birthday_within_next_days_crosses_the_year_end(workspace: Workspace) -> None:
    make_profile(workspace, "dec-31", date_of_birth=date(1990, 12, 31))
    make_profile(workspace, "jan-2", date_of_birth=date(1985, 1, 2))
    make_profile(workspace, "jan-10", date_of_birth=date(1985, 1, 10))
    make_profile(workspace, "dec-29", date_of_birth=date(1985, 12, 29))
    soon = {"all": [{"type": "birthday", "op": "within_next_days", "value": 4}]}
    with time_machine.travel(datetime(2026, 12, 30, 9, tzinfo=NOW.tzinfo), tick=False):
        assert members_of(workspace, soon) == {"dec-31", "jan-2"}
        assert members_of(workspace, {"all": [{"type": "birthday", "op": "in_month", "value": 1}]}) == {
            "jan-2",
            "jan-10",
        }


def test_february_29_birthdays_are_celebrated_on_march_1_in_common_years(workspace: Workspace) -> None:
    make_profile(workspace, "leapling", date_of_birth=date(2004, 2, 29))
    make_profile(workspace, "march-1", date_of_birth=date(1999, 3, 1))
    make_profile(workspace, "feb-28", date_of_birth=date(1999, 2, 28))
    today = {"all": [{"type": "birthday", "op": "today"}]}
    with time_machine.travel(datetime(2027, 3, 1, 9, tzinfo=NOW.tzinfo), tick=False):
        assert members_of(workspace, today) == {"leapling", "march-1"}
    with time_machine.travel(datetime(2027, 2, 28, 9, tzinfo=NOW.tzinfo), tick=False):
        assert members_of(workspace, today) == {"feb-28"}
    with time_machine.travel(datetime(2028, 2, 29, 9, tzinfo=NOW.tzinfo), tick=False):
        assert members_of(workspace, today) == {"leapling"}
    with time_machine.travel(datetime(2028, 3, 1, 9, tzinfo=NOW.tzinfo), tick=False):
        assert members_of(workspace, today) == {"march-1"}
    # "On" a month and day is the calendar date itself, in any year.
    on_feb_29 = {"all": [{"type": "birthday", "op": "on", "value": {"month": 2, "day": 29}}]}
    assert members_of(workspace, on_feb_29) == {"leapling"}


def test_location_fields_language_and_time_zone(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "jackson", country="US", region="Mississippi", city="Jackson", language="en",
                 time_zone="America/Chicago")  # fmt: skip
    make_profile(workspace, "paris", country="FR", region="Île-de-France", city="Paris", language="fr",
                 time_zone="Europe/Paris")  # fmt: skip

    assert members({"type": "location", "field": "region", "op": "eq", "value": "mississippi"}) == {"jackson"}
    assert members({"type": "location", "field": "city", "op": "one_of", "value": ["Paris", "Lyon"]}) == {"paris"}
    assert members({"type": "location", "field": "country", "op": "ne", "value": "FR"}) == {"jackson"}
    assert members({"type": "language", "op": "eq", "value": "FR"}) == {"paris"}
    assert members({"type": "time_zone", "op": "starts_with", "value": "America/"}) == {"jackson"}


def test_within_radius_of_a_point(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "louvre", latitude=48.8606, longitude=2.3376)
    make_profile(workspace, "versailles", latitude=48.8049, longitude=2.1204)  # about 17 km from the Louvre
    make_profile(workspace, "lyon", latitude=45.764, longitude=4.8357)  # about 390 km
    make_profile(workspace, "nowhere")
    # Either side of the antimeridian, 22 km apart.
    make_profile(workspace, "fiji-east", latitude=-17.0, longitude=179.9)
    make_profile(workspace, "fiji-west", latitude=-17.0, longitude=-179.9)

    paris = {"type": "near", "latitude": 48.8566, "longitude": 2.3522}
    assert members({**paris, "radius_km": 10}) == {"louvre"}
    assert members({**paris, "radius_km": 20}) == {"louvre", "versailles"}
    assert members({**paris, "radius_km": 400}) == {"louvre", "versailles", "lyon"}
    assert members({"type": "near", "latitude": -17.0, "longitude": 179.95, "radius_km": 25}) == {
        "fiji-east",
        "fiji-west",
    }
    # Outside the radius includes people with no known position, like any negation.
    assert members({"none": [{**paris, "radius_km": 400}]}) == {"nowhere", "fiji-east", "fiji-west"}


def test_app_version_compares_as_a_version_not_as_text(workspace: Workspace, members: Members) -> None:
    make_profile(workspace, "1.10.0", app_version="1.10.0")
    make_profile(workspace, "1.9.2", app_version="1.9.2")
    make_profile(workspace, "2.0.0-beta.1", app_version="2.0.0-beta.1")
    make_profile(workspace, "v2", app_version="v2")
    make_profile(workspace, "junk", app_version="nightly")
    make_profile(workspace, "none", app_version="")

    assert members({"type": "app_version", "op": "gt", "value": "1.9.2"}) == {"1.10.0", "2.0.0-beta.1", "v2"}
    assert members({"type": "app_version", "op": "lt", "value": "1.10"}) == {"1.9.2"}
    assert members({"type": "app_version", "op": "lt", "value": "2.0.0"}) == {"1.10.0", "1.9.2", "2.0.0-beta.1"}
    assert members({"type": "app_version", "op": "eq", "value": "2"}) == {"v2"}
    assert members({"type": "app_version", "op": "between", "value": ["1.9.3", "2.0.0"]}) == {
        "1.10.0",
        "2.0.0-beta.1",
        "v2",
    }
    assert members({"type": "app_version", "op": "blank"}) == {"none"}


def test_platform_push_subscription_acquisition_and_random_bucket(workspace: Workspace, members: Members) -> None:
    ios = make_profile(workspace, "ios", platform="ios", email_subscription="opted_in", utm_source="facebook",
                       utm_medium="paid_social")  # fmt: skip
    web = make_profile(workspace, "web", platform="web", email_subscription="unsubscribed", utm_source="google")
    add_device(ios, "ios-device", push_enabled=True)
    add_device(web, "web-device", push_enabled=False)
    make_profile(workspace, "none")

    assert members({"type": "platform", "op": "one_of", "value": ["ios", "android"]}) == {"ios"}
    assert members({"type": "push_enabled", "value": True}) == {"ios"}
    assert members({"type": "push_enabled", "value": False}) == {"web", "none"}
    assert members({"type": "subscription", "channel": "email", "op": "one_of",
                    "value": ["subscribed", "opted_in"]}) == {"ios", "none"}  # fmt: skip
    assert members({"type": "acquisition", "field": "medium", "op": "contains", "value": "social"}) == {"ios"}
    assert members({"type": "acquisition", "field": "utm_source", "op": "eq", "value": "google"}) == {"web"}

    buckets = {"type": "random_bucket", "op": "between", "value": [0, 4999]}
    half = members(buckets)
    other_half = members({"none": [buckets]})
    assert half | other_half == {"ios", "web", "none"}
    assert not half & other_half
    assert members(buckets) == half  # stable
