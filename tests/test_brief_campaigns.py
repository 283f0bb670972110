"""The brief's seven campaigns, as the demo ships them (campaigns.demo), driven end to end: events are
posted to the intake (/v1/batch with an app's write key), trigger matching and the sender run as
their tasks would (Celery in eager mode: the tasks run in-process when enqueued; the beat's
due-sender is called as time moves on), and messages arrive at local servers speaking the
providers' protocols: a fake FCM for push, an SMTP sink for email, the inbox for in-app messages.

Each test checks who got what, when and with what text.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any, cast

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client

from campaigns import demo
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, ScheduleTiming
from campaigns.services.launch import campaign_launch, campaigns_tick
from campaigns.services.sending import deliveries_enqueue_due, delivery_send_batch
from campaigns.services.triggers import rules_cache_clear
from channels.models import InboxItem
from channels.testing import FakeFcm, SmtpMessage, SmtpSink
from channels.tests.dispatch_helpers import fake_fcm, fcm_config, make_config, smtp_sink
from config.celery import app as celery_app
from profiles.models import App, Platform, Profile, Workspace
from profiles.tests.factories import AppFactory
from profiles.tests.intake_helpers import post_json

__all__ = ["fake_fcm", "smtp_sink"]

pytestmark = pytest.mark.django_db

# Monday 15 January 2024, 12:00 UTC; the demo campaigns were set up an hour before.
NOW = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


# --- the set-up: a workspace with the demo campaigns, an Android app, push and email providers ----


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def eager(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Tasks run in-process as soon as they are enqueued (after commit), campaign rules are read
    fresh on every batch."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    settings.CAMPAIGN_RULES_CACHE_SECONDS = 0
    rules_cache_clear()


@pytest.fixture
def android(workspace: Workspace) -> App:
    return cast(App, AppFactory(workspace=workspace, name="Acme Android", platform=Platform.ANDROID))


@pytest.fixture
def campaigns(workspace: Workspace, clock: Any, fake_fcm: FakeFcm, smtp_sink: SmtpSink) -> dict[str, Campaign]:
    fcm_config(workspace, fake_fcm)
    make_config(
        workspace, "smtp", settings={"host": "127.0.0.1", "port": smtp_sink.port, "from_email": "hello@acme.example"}
    )
    created = demo.demo_campaigns_create(workspace=workspace, now=NOW - timedelta(hours=1))
    return {campaign.name: campaign for campaign in created}


class Intake:
    """Posts to /v1/batch the way an SDK does; what the intake commits is then matched (eagerly)."""

    def __init__(self, client: Client, app: App, capture: Any) -> None:
        self.client, self.app, self.capture = client, app, capture

    def post(self, *messages: dict[str, Any]) -> None:
        with self.capture(execute=True):
            response = post_json(self.client, "/v1/batch", {"batch": list(messages)}, app=self.app)
        assert response.status_code == 200, response.content

    def person(
        self, user: str, *, token: str | None = None, zone: str = "America/Chicago", location: Any = None, **traits: Any
    ) -> None:
        context: dict[str, Any] = {"timezone": zone, "os": {"name": "Android"}}
        if token:
            context["device"] = {"id": f"device-{user}", "token": token}
        if location:
            context["location"] = {"latitude": location[0], "longitude": location[1]}
        self.post({"type": "identify", "userId": user, "traits": traits, "context": context, "messageId": _id()})

    def track(self, user: str, event: str, properties: dict[str, Any] | None = None) -> None:
        self.post(event_message(user, event, properties))


@pytest.fixture
def intake(client: Client, android: App, django_capture_on_commit_callbacks: Any) -> Intake:
    return Intake(client, android, django_capture_on_commit_callbacks)


def _id() -> str:
    return str(uuid.uuid4())


def event_message(user: str, event: str, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "properties": properties or {}, "messageId": _id()}


def run_due() -> None:
    """What the beat's due-sender does, then the send tasks it enqueues."""
    for batch in deliveries_enqueue_due(enqueue=False).batches:
        delivery_send_batch(delivery_ids=batch)


def pushes(fake: FakeFcm, token: str) -> list[dict[str, Any]]:
    return [message["notification"] for message in fake.messages if message["token"] == token]


def emails(sink: SmtpSink, address: str) -> list[SmtpMessage]:
    return [message for message in sink.messages if address in message.recipients]


def text(email: SmtpMessage) -> str:
    return email.body().replace("\r\n", "\n")


def inbox(user: str) -> list[InboxItem]:
    return list(InboxItem.objects.filter(profile__external_id=user).order_by("id"))


def delivery_of(campaign: Campaign, user: str) -> Delivery:
    return Delivery.objects.get(campaign=campaign, profile__external_id=user, step_key="main")


# --- 1. onboarding ---------------------------------------------------------------------------------


def test_onboarding_not_finished_within_a_day_gets_a_push_then_an_email_two_days_later(
    campaigns: dict[str, Campaign], intake: Intake, clock: Any, fake_fcm: FakeFcm, smtp_sink: SmtpSink
) -> None:
    for user in ("ada", "bob", "cy"):
        intake.person(user, token=f"fcm-{user}", email=f"{user}@example.com", first_name=user.title())
        intake.track(user, "Onboarding Started")
    clock.shift(timedelta(hours=3))
    intake.track("bob", "Onboarding Completed")  # finished in time: nothing for Bob

    clock.shift(timedelta(hours=20, minutes=59))
    run_due()
    assert fake_fcm.messages == []  # not before a day has passed
    clock.shift(timedelta(minutes=1))  # NOW + 24 h
    run_due()
    assert pushes(fake_fcm, "fcm-ada") == [
        {"title": "Almost there, Ada", "body": "Finish setting up your account: it takes two minutes."}
    ]
    assert len(pushes(fake_fcm, "fcm-cy")) == 1
    assert pushes(fake_fcm, "fcm-bob") == []

    clock.shift(timedelta(hours=30))
    intake.track("cy", "Onboarding Completed")  # after the push: Cy's email is cancelled
    clock.shift(timedelta(hours=17, minutes=59))
    run_due()
    assert smtp_sink.messages == []  # the email waits two days after the push
    clock.shift(timedelta(minutes=1))  # NOW + 72 h
    run_due()
    [email] = emails(smtp_sink, "ada@example.com")
    assert email.subject == "Your account is one step away"
    assert text(email).startswith("Hi Ada,\n\nYou started setting up your Acme account but did not finish.")
    assert emails(smtp_sink, "cy@example.com") == emails(smtp_sink, "bob@example.com") == []

    onboarding = campaigns[demo.ONBOARDING]
    assert delivery_of(onboarding, "bob").status == DeliveryStatus.CANCELLED
    cy = delivery_of(onboarding, "cy")
    assert cy.status == DeliveryStatus.SENT and cy.converted_at == NOW + timedelta(hours=54)  # the push worked
    follow_up = Delivery.objects.get(campaign=onboarding, profile__external_id="cy", step_key__startswith="msg")
    assert (follow_up.status, follow_up.reason) == (DeliveryStatus.CANCELLED, "exception event Onboarding Completed")


# --- 2. permission priming -------------------------------------------------------------------------


def test_permission_priming_in_app_message_when_the_feature_is_first_opened(
    campaigns: dict[str, Campaign], intake: Intake, clock: Any
) -> None:
    intake.person("ada")  # no push token yet
    intake.person("bob", token="fcm-bob")  # already has push: nothing to ask
    intake.person("cy")
    intake.track("ada", "Feature Opened", {"feature": "order_tracking"})
    intake.track("bob", "Feature Opened", {"feature": "order_tracking"})
    intake.track("cy", "Feature Opened", {"feature": "settings"})  # a feature that needs no permission
    run_due()

    [item] = inbox("ada")
    assert item.kind == "in_app" and item.trigger == "Feature Opened"
    assert item.content["header"] == "Know the moment it moves"
    assert item.content["buttons"][0] == {"text": "Turn on notifications", "action": "request_push_permission"}
    assert item.created_at == NOW
    assert inbox("bob") == inbox("cy") == []

    clock.shift(timedelta(days=1))
    intake.track("ada", "Feature Opened", {"feature": "store_locator"})  # only the first time
    run_due()
    assert len(inbox("ada")) == 1


# --- 3. milestone ----------------------------------------------------------------------------------


def test_the_hundredth_session_gets_a_reward_code(
    campaigns: dict[str, Campaign], intake: Intake, clock: Any, fake_fcm: FakeFcm
) -> None:
    intake.person("ada", token="fcm-ada", first_name="Ada")
    intake.post(*[event_message("ada", "Application Opened") for _ in range(99)])
    run_due()
    assert Profile.objects.get(external_id="ada").session_count == 99
    assert fake_fcm.messages == []

    clock.shift(timedelta(hours=2))
    intake.track("ada", "Application Opened")  # the 100th
    run_due()
    assert pushes(fake_fcm, "fcm-ada") == [
        {
            "title": "100 visits, Ada!",
            "body": "Thank you for sticking with us. Here is 20% off your next order: CENTURY20",
        }
    ]
    clock.shift(timedelta(hours=2))
    intake.track("ada", "Application Opened")  # the 101st: nothing more
    run_due()
    assert len(fake_fcm.messages) == 1


# --- 4. abandoned cart -----------------------------------------------------------------------------


def reminders(fake: FakeFcm) -> list[tuple[str, str, str]]:
    return sorted(
        (m["token"], m["notification"]["body"], m["data"]["cart_id"])
        for m in fake.messages
        if m["notification"]["title"] == "Still thinking it over?"
    )


def _added(user: str, cart: str, name: str) -> dict[str, Any]:
    properties = {"cart_id": cart, "product_id": name.lower().replace(" ", "-"), "name": name, "price": 89.0}
    return event_message(user, "Product Added", properties)


def test_abandoned_cart_push_names_the_product_or_falls_back_to_email(
    campaigns: dict[str, Campaign], intake: Intake, clock: Any, fake_fcm: FakeFcm, smtp_sink: SmtpSink
) -> None:
    intake.person("ada", token="fcm-ada", email="ada@example.com")
    intake.person("bob", email="bob@example.com", first_name="Bob")  # no push token: email instead
    intake.person("cy", token="fcm-cy")
    intake.person("dee", token="fcm-dee")
    intake.post(
        _added("ada", "cart-a", "Trail Running Shoes"),
        _added("bob", "cart-b", "Rain Jacket"),
        _added("cy", "cart-c", "Wool Socks"),
        _added("dee", "cart-d", "Headlamp"),
    )
    clock.shift(timedelta(minutes=20))
    intake.track(
        "cy", "Order Completed", {"cart_id": "cart-c", "products": [{"product_id": "wool-socks", "price": 12}]}
    )
    intake.track("dee", "Order Completed", {"cart_id": "cart-z", "products": [{"product_id": "other", "price": 5}]})

    clock.shift(timedelta(minutes=39))
    run_due()
    assert reminders(fake_fcm) == [] and smtp_sink.messages == []  # an hour has not passed
    clock.shift(timedelta(minutes=1))
    run_due()
    # (Cy's and Dee's orders also brought them the loyalty campaign's push; only reminders count here.)
    assert reminders(fake_fcm) == [
        ("fcm-ada", "Trail Running Shoes is waiting in your cart.", "cart-a"),
        ("fcm-dee", "Headlamp is waiting in your cart.", "cart-d"),  # Dee ordered another cart
    ]
    assert emails(smtp_sink, "ada@example.com") == []  # push reached Ada: no email as well
    [email] = emails(smtp_sink, "bob@example.com")  # Bob has no push token
    assert email.subject == "You left Rain Jacket in your cart"
    assert "Rain Jacket is still in your cart" in text(email)
    cancelled = delivery_of(campaigns[demo.ABANDONED_CART], "cy")
    assert (cancelled.status, cancelled.reason) == (DeliveryStatus.CANCELLED, "exception event Order Completed")


# --- 5. social sharing -----------------------------------------------------------------------------


def test_a_ticket_purchase_or_an_rsvp_brings_an_invitation_to_share(
    campaigns: dict[str, Campaign], intake: Intake
) -> None:
    for user in ("ada", "bob", "cy"):
        intake.person(user)
    intake.track("ada", "Ticket Purchased", {"event_name": "Jazz Night", "event_id": "ev-42"})
    intake.track("bob", "RSVP", {"event_name": "Book Club"})
    intake.track("cy", "Ticket Viewed", {"event_name": "Jazz Night"})
    run_due()

    [ada] = inbox("ada")
    assert ada.content["body"] == "Tell your friends you're going to Jazz Night."
    assert ada.content["buttons"][0] == {"text": "Share", "action": "deep_link", "url": "acme://share?event=ev-42"}
    [bob] = inbox("bob")
    assert bob.content["body"] == "Tell your friends you're going to Book Club."
    assert inbox("cy") == []


# --- 6. loyalty ------------------------------------------------------------------------------------


def test_after_a_purchase_members_get_their_balance_and_others_hear_about_the_programme(
    campaigns: dict[str, Campaign], intake: Intake, clock: Any, fake_fcm: FakeFcm
) -> None:
    intake.person("ada", token="fcm-ada", loyalty_member=True, loyalty_points=1200)
    intake.person("bob", token="fcm-bob")
    order = {"currency": "USD", "products": [{"product_id": "shoe", "price": 150}]}
    intake.track("ada", "Order Completed", order)
    intake.track("bob", "Order Completed", order)
    clock.shift(timedelta(seconds=2))
    intake.person("ada", token="fcm-ada", loyalty_points=1350)  # the back end credits the order

    clock.shift(timedelta(minutes=4, seconds=57))
    run_due()
    assert fake_fcm.messages == []  # five minutes, so the points are in
    clock.shift(timedelta(seconds=1))
    run_due()
    assert pushes(fake_fcm, "fcm-ada") == [
        {"title": "Points added", "body": "You now have 1350 points. Thanks for shopping with us!"}
    ]
    assert pushes(fake_fcm, "fcm-bob") == [
        {
            "title": "Earn points on this order",
            "body": "Join Acme Rewards today and this order counts: points on every purchase.",
        }
    ]


# --- 7. geo-targeted -------------------------------------------------------------------------------

CHICAGO = (41.88, -87.63)
MILWAUKEE = (43.04, -87.91)  # 130 km north
INDIANAPOLIS = (39.77, -86.16)  # 265 km south-east, an hour ahead
NEW_YORK = (40.71, -74.01)  # outside the area


def _storm_people(intake: Intake) -> None:
    intake.person("chi", token="fcm-chi", location=CHICAGO)
    intake.person("mke", token="fcm-mke", location=MILWAUKEE)
    intake.person("ind", token="fcm-ind", location=INDIANAPOLIS, zone="America/Indiana/Indianapolis")
    intake.person("nyc", token="fcm-nyc", location=NEW_YORK, zone="America/New_York")


def _tick_and_send(clock: Any, until: datetime, step: timedelta = timedelta(minutes=30)) -> None:
    while True:
        campaigns_tick()
        run_due()
        if datetime.now(UTC) >= until:
            return
        clock.shift(step)


def test_winter_storm_push_reaches_only_the_region_at_ten_in_each_local_time(
    campaigns: dict[str, Campaign], intake: Intake, clock: Any, fake_fcm: FakeFcm
) -> None:
    _storm_people(intake)
    storm = campaigns[demo.WINTER_STORM]
    assert storm.status == CampaignStatus.DRAFT  # launched by a marketer when a storm is forecast
    storm.send_at = datetime(2024, 1, 16, 10, 0, tzinfo=UTC)  # 10:00 local time tomorrow
    storm.save()
    campaign_launch(campaign=storm)

    sent_at: dict[str, datetime] = {}

    def record(until: datetime) -> None:
        while datetime.now(UTC) < until:
            campaigns_tick()
            run_due()
            for message in fake_fcm.messages:
                sent_at.setdefault(message["token"], datetime.now(UTC))
            clock.shift(timedelta(minutes=15))

    record(datetime(2024, 1, 17, 0, 0, tzinfo=UTC))
    assert sent_at == {
        "fcm-ind": datetime(2024, 1, 16, 15, 0, tzinfo=UTC),  # 10:00 in Indianapolis (UTC-5)
        "fcm-chi": datetime(2024, 1, 16, 16, 0, tzinfo=UTC),  # 10:00 in Chicago (UTC-6)
        "fcm-mke": datetime(2024, 1, 16, 16, 0, tzinfo=UTC),
    }
    assert pushes(fake_fcm, "fcm-chi") == [
        {
            "title": "Winter storm ahead",
            "body": "A winter storm may delay your delivery. Here is 10% off your next order: STORM10",
        }
    ]


def test_winter_storm_push_sent_at_night_waits_for_the_end_of_quiet_hours(
    campaigns: dict[str, Campaign], intake: Intake, clock: Any, fake_fcm: FakeFcm
) -> None:
    _storm_people(intake)
    clock.move_to(datetime(2024, 1, 16, 4, 30, tzinfo=UTC))  # 22:30 in Chicago, 23:30 in Indianapolis
    storm = campaigns[demo.WINTER_STORM]
    storm.schedule_timing = ScheduleTiming.AT_TIME  # "send now", a marketer in a hurry
    storm.send_at = datetime(2024, 1, 16, 4, 30, tzinfo=UTC)
    storm.save()
    campaign_launch(campaign=storm)

    _tick_and_send(clock, until=datetime(2024, 1, 16, 12, 30, tzinfo=UTC))
    assert fake_fcm.messages == []  # 06:30 in Chicago: still quiet
    _tick_and_send(clock, until=datetime(2024, 1, 16, 14, 0, tzinfo=UTC))
    assert sorted(m["token"] for m in fake_fcm.messages) == ["fcm-chi", "fcm-ind", "fcm-mke"]
    times = {d.profile.external_id: d.sent_at for d in Delivery.objects.filter(campaign=storm)}
    assert times == {
        "ind": datetime(2024, 1, 16, 13, 0, tzinfo=UTC),  # 08:00 in Indianapolis
        "chi": datetime(2024, 1, 16, 14, 0, tzinfo=UTC),  # 08:00 in Chicago
        "mke": datetime(2024, 1, 16, 14, 0, tzinfo=UTC),
    }


# --- the demo command ------------------------------------------------------------------------------


def test_seed_demo_campaigns_creates_the_seven_once(workspace: Workspace) -> None:
    workspace.slug = "demo"
    workspace.save()
    out = StringIO()
    call_command("seed_demo_campaigns", stdout=out)
    call_command("seed_demo_campaigns", stdout=out)
    names = sorted(Campaign.objects.filter(workspace=workspace).values_list("name", flat=True))
    assert names == sorted(demo.DEMO_NAMES)
    statuses = dict(Campaign.objects.filter(workspace=workspace).values_list("name", "status"))
    assert statuses.pop(demo.WINTER_STORM) == CampaignStatus.DRAFT
    assert set(statuses.values()) == {CampaignStatus.RUNNING}
    assert "Demo campaigns ready in Acme: 7" in out.getvalue()
