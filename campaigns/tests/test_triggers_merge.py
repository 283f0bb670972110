"""A person who used the app anonymously and then logs in is merged into their known profile: what
they triggered while anonymous (a pending send, a segment entry) carries on with the known profile,
and what both profiles had is kept once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from campaigns.models import Campaign, Delivery, DeliveryStatus, SegmentEntryMember
from campaigns.tests.trigger_helpers import (
    NOW,
    action_campaign,
    deliveries,
    identify,
    ingest,
    send_events,
)
from profiles.models import App, Profile, Workspace
from profiles.services.identity import profile_merge
from segments.models import Segment
from segments.services import segment_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rules", "trigger_clock")]


def anonymous(anonymous_id: str, kind: str, event: str = "", **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind, "anonymousId": anonymous_id, "messageId": str(uuid.uuid4()), **fields}
    if event:
        message["event"] = event
    return message


def log_in(user_id: str, anonymous_id: str) -> dict[str, Any]:
    """The app's identify call at login: the anonymous profile is merged into the known one."""
    return {"type": "identify", "userId": user_id, "anonymousId": anonymous_id, "messageId": str(uuid.uuid4())}


def pro_segment(workspace: Workspace) -> Segment:
    definition = {
        "all": [{"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": "eq", "value": "pro"}]
    }
    return segment_create(workspace=workspace, name="Pro", definition=definition)


def campaigns_of(workspace: Workspace, pro: Segment) -> tuple[Campaign, Campaign]:
    cart = action_campaign(
        workspace,
        name="Abandoned cart",
        triggers=[{"type": "custom_event", "event": "Product Added"}],
        delay={"type": "duration", "seconds": 3600},
        exception_events=[{"event": "Order Completed", "match_property": "cart_id"}],
    )
    welcome = action_campaign(
        workspace,
        name="Welcome to Pro",
        triggers=[{"type": "segment_entry", "segment_id": pro.pk}],
        delay={"type": "duration", "seconds": 600},
    )
    return cart, welcome


def entries(campaign: Campaign) -> list[str | None]:
    return [
        m.profile.external_id for m in SegmentEntryMember.objects.filter(campaign=campaign).select_related("profile")
    ]


def test_what_an_anonymous_person_triggered_carries_on_after_login(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    ingest(app, identify("ada"))
    pro = pro_segment(workspace)
    cart, welcome = campaigns_of(workspace, pro)
    trigger_clock.shift(timedelta(minutes=1))
    send_events(
        app,
        anonymous("anon-1", "identify", traits={"plan": "pro"}),
        anonymous("anon-1", "track", "Product Added", properties={"cart_id": "c-1", "product": "Lamp"}),
    )
    [anon] = Profile.objects.filter(external_id=None)
    assert [d.profile_id for d in [*deliveries(cart), *deliveries(welcome)]] == [anon.pk, anon.pk]

    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, log_in("ada", "anon-1"))

    ada = Profile.objects.get(external_id="ada")
    assert not Profile.objects.filter(pk=anon.pk).exists()
    [reminder] = deliveries(cart)
    assert (reminder.profile_id, reminder.status, reminder.scheduled_for) == (
        ada.pk,
        DeliveryStatus.SCHEDULED,
        NOW + timedelta(minutes=1, hours=1),
    )
    [welcome_send] = deliveries(welcome)
    assert (welcome_send.profile_id, welcome_send.status) == (ada.pk, DeliveryStatus.SCHEDULED)
    assert entries(welcome) == ["ada"]

    # The state works on the survivor: still in the segment is no new entry, and her order for
    # the same cart cancels the reminder.
    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, identify("ada", plan="pro"), {**identify("ada"), "type": "track", "event": "Order Completed",
                                                   "properties": {"cart_id": "c-1"}})  # fmt: skip
    assert [d.status for d in deliveries(welcome)] == [DeliveryStatus.SCHEDULED]
    assert [d.status for d in deliveries(cart)] == [DeliveryStatus.CANCELLED]
    assert entries(welcome) == ["ada"]


def test_a_send_pending_on_both_profiles_is_sent_once(workspace: Workspace, app: App, trigger_clock: Any) -> None:
    ingest(app, identify("ada", plan="free"))
    pro = pro_segment(workspace)
    cart, welcome = campaigns_of(workspace, pro)
    trigger_clock.shift(timedelta(minutes=1))
    # Her phone (logged in) and her laptop (not yet) each add a product and enter Pro.
    send_events(
        app,
        identify("ada", plan="pro"),
        {**identify("ada"), "type": "track", "event": "Product Added", "properties": {"cart_id": "phone"}},
        anonymous("laptop", "identify", traits={"plan": "pro"}),
        anonymous("laptop", "track", "Product Added", properties={"cart_id": "laptop"}),
    )
    assert len(deliveries(cart)) == len(deliveries(welcome)) == 2
    assert SegmentEntryMember.objects.filter(campaign=welcome).count() == 2

    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, log_in("ada", "laptop"))

    ada = Profile.objects.get(external_id="ada")
    for campaign in (cart, welcome):
        sends = deliveries(campaign)
        assert {d.profile_id for d in sends} == {ada.pk}
        # Hers stays pending; the laptop's is cancelled, saying why.
        assert [d.status for d in sends if d.status == DeliveryStatus.SCHEDULED] == [DeliveryStatus.SCHEDULED]
        [dropped] = [d for d in sends if d.status != DeliveryStatus.SCHEDULED]
        assert dropped.status == DeliveryStatus.CANCELLED
        assert dropped.reason == f"merged into profile {ada.pk}, which already has or had this campaign"
    assert [d.trigger_properties["cart_id"] for d in deliveries(cart, status=DeliveryStatus.SCHEDULED)] == ["phone"]
    assert entries(welcome) == ["ada"]


def test_the_same_send_on_both_profiles_keeps_the_one_that_went_out(workspace: Workspace, app: App) -> None:
    ingest(app, identify("ada"), anonymous("a-1", "track", "Opened"), anonymous("a-2", "track", "Opened"))
    ada = Profile.objects.get(external_id="ada")
    first, second = Profile.objects.filter(external_id=None).order_by("id")
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Opened"}])

    def delivery(profile: Profile, occurrence: str, status: str) -> Delivery:
        return Delivery.objects.create(
            workspace=workspace, campaign=campaign, profile=profile, occurrence=occurrence, status=status,
            scheduled_for=NOW,
        )  # fmt: skip

    delivery(ada, "weekly-1", DeliveryStatus.SCHEDULED)
    sent = delivery(first, "weekly-1", DeliveryStatus.SENT)
    delivery(ada, "weekly-2", DeliveryStatus.SENT)
    delivery(second, "weekly-2", DeliveryStatus.SENT)

    profile_merge(source=first, target=ada, reason="test", actor="test")
    # weekly-1 went out to the merged profile: hers, still waiting, is dropped (sent once).
    assert list(Delivery.objects.filter(occurrence="weekly-1").values_list("id", "profile_id", "status")) == [
        (sent.pk, ada.pk, DeliveryStatus.SENT)
    ]

    profile_merge(source=second, target=ada, reason="test", actor="test")
    # weekly-2 went out to both: both stay, as history.
    assert sorted(Delivery.objects.filter(profile=ada).values_list("occurrence", "status")) == [
        ("weekly-1", DeliveryStatus.SENT),
        ("weekly-2", DeliveryStatus.SENT),
        (f"weekly-2~merged:{second.pk}", DeliveryStatus.SENT),
    ]
