"""How events build the profile: automatic fields, sessions, traits, devices, purchases, identity."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from profiles.models import AnonymousId, App, Device, Event, Profile, ProfileMerge, Purchase
from profiles.services.ingest import IngestResult, ingest_batch
from profiles.tests.intake_helpers import msg

pytestmark = pytest.mark.django_db

MOBILE_CONTEXT: dict[str, Any] = {
    "app": {"name": "Acme", "version": "3.2.1", "build": "321"},
    "device": {"id": "dev-abc", "manufacturer": "Apple", "model": "iPhone15,2", "type": "ios", "token": "apns-tok-1"},
    "os": {"name": "iOS", "version": "17.1"},
    "locale": "fr-FR",
    "timezone": "Europe/Paris",
    "ip": "203.0.113.9",
    "location": {"latitude": 48.85, "longitude": 2.35, "city": "Paris"},
    "campaign": {"source": "instagram", "medium": "social", "name": "launch"},
}


def at(minute: int, hour: int = 10, day: int = 20) -> str:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC).isoformat()


def ingest(app: App, *messages: dict[str, Any]) -> IngestResult:
    return ingest_batch(app=app, messages=list(messages))


def test_first_event_of_an_unknown_user_creates_the_profile_from_context(app: App) -> None:
    ingest(app, msg("track", anonymousId="anon-1", event="Application Opened", timestamp=at(0), context=MOBILE_CONTEXT))
    profile = Profile.objects.get()
    assert profile.external_id is None
    assert profile.first_seen == profile.last_seen == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert (profile.language, profile.country, profile.locale) == ("fr", "FR", "fr-FR")
    assert profile.time_zone == "Europe/Paris"
    assert (profile.app_version, profile.platform) == ("3.2.1", "ios")
    assert (profile.latitude, profile.longitude, profile.city) == (48.85, 2.35, "Paris")
    assert profile.last_ip == "203.0.113.9"
    assert (profile.utm_source, profile.utm_medium, profile.utm_campaign) == ("instagram", "social", "launch")
    assert 0 <= profile.random_bucket <= 9999
    assert profile.session_count == 1
    device = Device.objects.get()
    assert (device.device_id, device.model, device.os_name, device.os_version) == (
        "dev-abc",
        "iPhone15,2",
        "iOS",
        "17.1",
    )
    assert (device.push_provider, device.push_token, device.push_enabled) == ("apns", "apns-tok-1", True)
    assert AnonymousId.objects.get().profile == profile


def test_sessions_count_app_opens_and_screens_after_30_idle_minutes(app: App) -> None:
    ingest(
        app,
        msg("track", userId="u1", event="Application Opened", timestamp=at(0)),
        msg("screen", userId="u1", name="Home", timestamp=at(1)),
        msg("screen", userId="u1", name="Cart", timestamp=at(25)),  # 24 min idle: same session
        msg("screen", userId="u1", name="Home", timestamp=at(56)),  # 31 min idle: new session
        msg("track", userId="u1", event="Product Viewed", timestamp=at(59, hour=11)),  # tracks never start one
    )
    profile = Profile.objects.get()
    assert profile.session_count == 2
    assert profile.last_seen == datetime(2026, 11, 20, 11, 59, tzinfo=UTC)
    # Each session start is recorded as an event, so "sessions in the last N days" can count them.
    starts = profile.events.filter(name="$session_started").order_by("timestamp")
    assert [e.timestamp.minute for e in starts] == [0, 56]
    assert [e.properties["started_by"] for e in starts] == ["track", "screen"]


def test_sessions_are_counted_across_batches_from_last_seen(app: App) -> None:
    ingest(app, msg("page", userId="u1", name="Home", timestamp=at(0)))
    ingest(app, msg("page", userId="u1", name="Pricing", timestamp=at(10)))
    ingest(app, msg("page", userId="u1", name="Home", timestamp=at(50)))
    assert Profile.objects.get().session_count == 2


def test_every_event_moves_last_seen_but_an_old_one_does_not_move_it_back(app: App) -> None:
    ingest(app, msg("track", userId="u1", event="A", timestamp=at(30)))
    ingest(app, msg("track", userId="u1", event="B", timestamp=at(10)))
    profile = Profile.objects.get()
    assert profile.last_seen == datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    assert profile.first_seen == datetime(2026, 11, 20, 10, 10, tzinfo=UTC)


def test_identify_sets_known_traits_into_columns_and_the_rest_into_custom_attributes(app: App) -> None:
    ingest(
        app,
        msg(
            "identify",
            userId="u1",
            traits={
                "firstName": "Ada",
                "lastName": "Lovelace",
                "email": "Ada@Example.COM",
                "phone": "+44 20 7946 0958",
                "gender": "F",
                "birthday": "1990-12-10",
                "address": {"city": "London", "country": "gb", "state": "England"},
                "plan": "pro",
                "score": 7.5,
                "beta": True,
                "tags": ["a", "b"],
                "prefs": {"theme": "dark"},
                "email_subscribe": "opted_in",
            },
            timestamp=at(0),
        ),
    )
    profile = Profile.objects.get()
    assert (profile.first_name, profile.last_name, profile.email) == ("Ada", "Lovelace", "ada@example.com")
    assert profile.phone == "+442079460958"
    assert profile.gender == "female"
    assert str(profile.date_of_birth) == "1990-12-10"
    assert (profile.city, profile.country, profile.region) == ("London", "GB", "England")
    assert profile.custom_attributes == {
        "plan": "pro",
        "score": 7.5,
        "beta": True,
        "tags": ["a", "b"],
        "prefs": {"theme": "dark"},
    }
    assert profile.email_subscription == "opted_in"
    assert profile.email_subscription_changed_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert profile.push_subscription == "subscribed"
    assert profile.push_subscription_changed_at is None


def test_a_null_trait_removes_a_custom_attribute(app: App) -> None:
    ingest(app, msg("identify", userId="u1", traits={"plan": "pro", "level": 3}, timestamp=at(0)))
    ingest(app, msg("identify", userId="u1", traits={"plan": None}, timestamp=at(1)))
    assert Profile.objects.get().custom_attributes == {"level": 3}


def test_purchases_are_queryable_as_such(app: App) -> None:
    ingest(
        app,
        msg(
            "track",
            userId="u1",
            event="Order Completed",
            properties={
                "order_id": "o-1",
                "currency": "USD",
                "products": [
                    {"product_id": "sku-1", "price": 19.99, "quantity": 2},
                    {"product_id": "sku-2", "price": 5, "currency": "EUR"},
                ],
            },
            timestamp=at(0),
        ),
    )
    lines = sorted(Purchase.objects.values_list("product_id", "price", "currency", "quantity"))
    assert lines == [("sku-1", Decimal("19.9900"), "USD", 2), ("sku-2", Decimal("5.0000"), "EUR", 1)]
    assert Purchase.objects.filter(event__name="Order Completed", profile__external_id="u1").count() == 2


def test_identify_with_user_and_anonymous_id_turns_the_anonymous_profile_known(app: App) -> None:
    ingest(app, msg("screen", anonymousId="anon-1", name="Welcome", timestamp=at(0), context=MOBILE_CONTEXT))
    ingest(app, msg("identify", anonymousId="anon-1", userId="u1", traits={"email": "a@b.co"}, timestamp=at(5)))
    profile = Profile.objects.get()
    assert profile.external_id == "u1"
    assert profile.events.exclude(name="$session_started").count() == 2
    assert not ProfileMerge.objects.exists()  # nothing to merge: the same person's profile became known


def test_anonymous_profile_is_merged_into_the_known_one_without_losing_anything(app: App) -> None:
    # The known profile, from an earlier install.
    ingest(
        app,
        msg("identify", userId="u1", traits={"firstName": "Ada", "plan": "pro", "email": "ada@x.io"}, timestamp=at(30)),
        msg("track", userId="u1", event="Application Opened", timestamp=at(30)),
    )
    # A new device: anonymous activity, its own attributes and an email opt-out.
    ingest(
        app,
        msg("track", anonymousId="anon-2", event="Application Opened", timestamp=at(0, day=19), context=MOBILE_CONTEXT),
        msg(
            "identify",
            anonymousId="anon-2",
            traits={
                "firstName": "Someone",
                "lastName": "Lovelace",
                "theme": "dark",
                "plan": "free",
                "email_subscribe": "unsubscribed",
            },
            timestamp=at(1, day=19),
        ),
    )
    anonymous = Profile.objects.get(external_id__isnull=True)
    anonymous_events = set(anonymous.events.values_list("id", flat=True))
    # The person logs in on the new device.
    result = ingest(app, msg("identify", anonymousId="anon-2", userId="u1", timestamp=at(40)))
    assert result.stored == 1

    profile = Profile.objects.get()  # exactly one profile remains
    assert profile.external_id == "u1"
    assert anonymous_events <= set(profile.events.values_list("id", flat=True))
    assert profile.events.exclude(name="$session_started").count() == 5
    assert Device.objects.get().profile == profile
    assert set(profile.anonymous_ids.values_list("anonymous_id", flat=True)) == {"anon-2"}
    # Known values win; anonymous ones fill gaps.
    assert (profile.first_name, profile.last_name) == ("Ada", "Lovelace")
    assert profile.custom_attributes == {"plan": "pro", "theme": "dark"}
    assert profile.app_version == "3.2.1"
    # The opt-out was the person's latest word about email: it survives.
    assert profile.email_subscription == "unsubscribed"
    # Activity spans both.
    assert profile.first_seen == datetime(2026, 11, 19, 10, 0, tzinfo=UTC)
    assert profile.session_count == 2
    merge = ProfileMerge.objects.get()
    assert merge.into_profile == profile
    assert merge.merged_profile_id == anonymous.pk
    assert merge.reason == "identify"
    assert merge.merged_snapshot["first_name"] == "Someone"
    assert merge.moved["event"] == 3  # two calls and the session the first one started
    assert "Acme iOS" in merge.actor


def test_later_anonymous_events_land_on_the_known_profile_after_a_merge(app: App) -> None:
    ingest(app, msg("track", userId="u1", event="A", timestamp=at(0)))
    ingest(app, msg("track", anonymousId="anon-3", event="B", timestamp=at(1)))
    ingest(app, msg("identify", anonymousId="anon-3", userId="u1", timestamp=at(2)))
    ingest(app, msg("track", anonymousId="anon-3", event="C", timestamp=at(3)))
    assert Profile.objects.count() == 1
    assert Profile.objects.get().events.exclude(name="$session_started").count() == 4


def test_two_known_users_are_never_merged(app: App) -> None:
    ingest(app, msg("identify", userId="u1", anonymousId="shared-tablet", timestamp=at(0)))
    ingest(app, msg("identify", userId="u2", anonymousId="shared-tablet", timestamp=at(1)))
    assert sorted(Profile.objects.values_list("external_id", flat=True)) == ["u1", "u2"]
    result = ingest(app, msg("alias", userId="u2", previousId="u1", timestamp=at(2)))
    assert [r.code for r in result.rejected] == ["alias_conflict"]
    assert "two known users are never merged" in result.rejected[0].message
    assert Profile.objects.count() == 2
    assert not ProfileMerge.objects.exists()


def test_alias_merges_an_anonymous_profile_into_the_known_one(app: App) -> None:
    ingest(app, msg("track", userId="u1", event="A", timestamp=at(0)))
    ingest(app, msg("track", anonymousId="anon-5", event="B", timestamp=at(1)))
    ingest(app, msg("alias", userId="u1", previousId="anon-5", timestamp=at(2)))
    profile = Profile.objects.get()
    assert profile.events.count() == 3
    assert ProfileMerge.objects.get().reason == "alias"


def test_merge_within_one_batch(app: App) -> None:
    ingest(app, msg("track", userId="u1", event="Known", timestamp=at(0)))
    ingest(
        app,
        msg("track", anonymousId="anon-6", event="Anonymous", timestamp=at(1)),
        msg("identify", anonymousId="anon-6", userId="u1", timestamp=at(2)),
        msg("track", anonymousId="anon-6", event="After", timestamp=at(3)),
    )
    profile = Profile.objects.get()
    assert sorted(profile.events.values_list("name", flat=True)) == ["", "After", "Anonymous", "Known"]


def test_device_moves_with_the_person_and_keeps_its_token_when_later_calls_omit_it(app: App) -> None:
    ingest(app, msg("track", userId="u1", event="A", timestamp=at(0), context=MOBILE_CONTEXT))
    no_token = {**MOBILE_CONTEXT, "device": {"id": "dev-abc", "model": "iPhone15,2"}}
    ingest(app, msg("track", userId="u2", event="B", timestamp=at(1), context=no_token))
    device = Device.objects.get()
    assert device.profile.external_id == "u2"
    assert device.push_token == "apns-tok-1"
    assert device.push_enabled is True


def test_duplicate_message_ids_within_and_across_batches_count_once(app: App) -> None:
    opened = msg("track", userId="u1", event="Application Opened", timestamp=at(0))
    result = ingest(app, opened, opened)
    assert (result.stored, result.duplicates) == (1, 1)
    again = ingest(app, opened)
    assert (again.stored, again.duplicates) == (0, 1)
    assert Event.objects.exclude(name="$session_started").count() == 1
    assert Profile.objects.get().session_count == 1


def test_event_keeps_its_own_context_and_the_device_row_keeps_the_device(app: App) -> None:
    context = {**MOBILE_CONTEXT, "page": {"path": "/shoes"}, "library": {"name": "analytics-ios"}}
    ingest(app, msg("track", userId="u1", event="Product Viewed", timestamp=at(0), context=context))
    event = Event.objects.get(name="Product Viewed")
    assert event.context == {
        "app": {"name": "Acme", "version": "3.2.1", "build": "321"},
        "ip": "203.0.113.9",
        "location": {"latitude": 48.85, "longitude": 2.35, "city": "Paris"},
        "campaign": {"source": "instagram", "medium": "social", "name": "launch"},
        "page": {"path": "/shoes"},
    }
    device = Device.objects.get()
    assert (device.model, device.os_name, device.os_version, device.locale) == ("iPhone15,2", "iOS", "17.1", "fr-FR")
    assert Profile.objects.get().time_zone == "Europe/Paris"


def test_batch_mixing_resent_and_new_messages_applies_only_the_new_ones(app: App) -> None:
    opened = msg("track", userId="u1", event="Application Opened", timestamp=at(0))
    order = msg(
        "track",
        userId="u1",
        event="Order Completed",
        timestamp=at(1),
        properties={"products": [{"product_id": "sku-1", "price": 10, "quantity": 2}], "currency": "EUR"},
    )
    ingest(app, opened, order)
    # The SDK resends both (it timed out on the first answer) along with a new session start.
    later = msg("track", userId="u1", event="Application Opened", timestamp=at(0, hour=12))
    result = ingest(app, opened, order, later)
    assert (result.stored, result.duplicates) == (1, 2)
    profile = Profile.objects.get()
    assert profile.session_count == 2
    assert profile.last_seen == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert Event.objects.filter(name="Application Opened").count() == 2
    assert Event.objects.filter(name="$session_started").count() == 2
    assert list(Purchase.objects.values_list("product_id", "quantity")) == [("sku-1", 2)]
    assert len(result.event_ids) == 2  # the new event and the session it started


def test_apps_cannot_post_reserved_engagement_event_names(app: App) -> None:
    result = ingest(app, msg("track", userId="u1", event="$message_opened"))
    assert [(r.code, r.message) for r in result.rejected] == [
        ("reserved_name", "event: names starting with $ are reserved")
    ]
    assert not Event.objects.exists()
