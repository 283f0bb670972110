"""Building hand-countable data for the report tests: people, their own events and purchases,
campaign deliveries, and the engagement the channels would record for them."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from campaigns.models import Campaign, Delivery, Variant
from profiles.engagement import PROP_CAMPAIGN_ID, PROP_CHANNEL, PROP_SEND_ID, PROP_VARIANT
from profiles.models import Event, Profile, Purchase, Workspace
from profiles.services.engagement import Engagement, engagement_record

# A Monday.
NOW = datetime(2030, 3, 4, 12, 0, tzinfo=UTC)

_ids = itertools.count(1)


def at(day: int, hour: int = 12, month: int = 3, minute: int = 0) -> datetime:
    return datetime(2030, month, day, hour, minute, tzinfo=UTC)


def person(
    workspace: Workspace,
    *,
    first_seen: datetime,
    platform: str = "ios",
    source: str = "",
    external_id: str | None = None,
) -> Profile:
    return Profile.objects.create(
        workspace=workspace,
        external_id=external_id or f"u{next(_ids)}",
        first_seen=first_seen,
        last_seen=first_seen,
        platform=platform,
        utm_source=source,
    )


def event(profile: Profile, name: str, when: datetime, **properties: Any) -> Event:
    return Event.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        type="track",
        name=name,
        properties=properties,
        message_id=str(uuid.uuid4()),
        timestamp=when,
        received_at=when,
    )


def purchase(profile: Profile, when: datetime, price: str, *, currency: str = "USD", quantity: int = 1) -> Event:
    order = event(profile, "Order Completed", when, revenue=price, currency=currency)
    Purchase.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        event=order,
        product_id="sku-1",
        price=Decimal(price),
        currency=currency,
        quantity=quantity,
        timestamp=when,
    )
    return order


def campaign(workspace: Workspace, name: str = "Onboarding", variants: tuple[str, ...] = ("A", "B")) -> Campaign:
    created = Campaign.objects.create(workspace=workspace, name=name, control_percent=20)
    for key in variants:
        Variant.objects.create(campaign=created, key=key, percent=50)
    return created


def delivery(
    campaign: Campaign,
    profile: Profile,
    *,
    variant: str | None,
    status: str,
    due: datetime,
    step_key: str = "main",
    occurrence: str = "once",
    sent_channels: tuple[str, ...] = (),
) -> Delivery:
    return Delivery.objects.create(
        workspace_id=campaign.workspace_id,
        campaign=campaign,
        profile=profile,
        step_key=step_key,
        occurrence=occurrence,
        variant=Variant.objects.get(campaign=campaign, key=variant) if variant else None,
        status=status,
        scheduled_for=due,
        sent_at=due if status == "sent" else None,
        sent_channels=list(sent_channels),
    )


def engage(
    delivery: Delivery, name: str, when: datetime, *, channel: str | None = None, **properties: Any
) -> list[int]:
    """Record an engagement event for ``delivery`` as channels and campaigns do (campaign id,
    variant, send id, channel)."""
    props: dict[str, Any] = {
        PROP_CAMPAIGN_ID: delivery.campaign_id,
        PROP_VARIANT: delivery.variant.key if delivery.variant else "control",
        PROP_SEND_ID: str(delivery.pk),
        **properties,
    }
    if channel:
        props[PROP_CHANNEL] = channel
    return engagement_record(
        workspace_id=delivery.workspace_id,
        engagements=[
            Engagement(
                profile_id=delivery.profile_id,
                name=name,
                dedupe_key=f"test:{next(_ids)}",
                properties=props,
                timestamp=when,
            )
        ],
    )


# --- the hand-counted scenario ---------------------------------------------------------------------
#
# Seven people, first seen in February 2030, an onboarding campaign (variants A and B, a control
# group) sent on 14 and 15 February, and what they did. "Now" is Monday 4 March 12:00 UTC. The
# tests count every number on the pages from the comments here.
#
#   person  first seen      platform  source    active days (Application Opened at 10:00)
#   alice   Feb  4 10:00    ios       google    Feb 4, 11, 25; Mar 3
#   bob     Feb  4 11:00    ios       google    Feb 4, 5
#   carol   Feb  5 09:00    android   facebook  Feb 5, 19
#   dan     Feb 12 10:00    android   (none)    Feb 12, 13; Mar 3
#   erin    Feb 12 12:00    web       google    Feb 12
#   frank   Feb 13 10:00    ios       facebook  Feb 13, 20; Mar 4
#   grace   Feb 20 10:00    ios       (none)    Feb 20; Mar 1
#
# Account Created: alice Feb 4 10:30, bob Feb 5 11:00, carol Feb 19 11:00, dan Feb 12 10:30,
# frank Feb 20 11:00. Order Completed: alice Feb 11 12:00 (30 USD), dan Mar 3 12:00 (20 EUR),
# frank Mar 4 11:00 (15 USD). (All on days they were active anyway.)
#
# Campaign "Onboarding" (main step due Feb 14 10:00 for alice and bob, Feb 15 10:00 for the rest):
#   alice  A        sent email: received 10:00, delivered 10:01, opened 11:00 and 13:00, clicked
#                   11:05, converted 15:00 (12.50); a follow-up push (step msg1) received Feb 16
#                   10:00, opened 11:00
#   bob    A        sent email: received 10:00, bounced 10:02
#   carol  B        sent push: received Feb 15 10:00, opened 12:00, converted 18:00 (5.00)
#   dan    B        skipped (no push token)
#   erin   control  enrolled Feb 15 10:00, converted Feb 16 12:00
#   frank  control  enrolled Feb 15 10:00
#   grace  A        still scheduled


def opened_app(profile: Profile, day: int, month: int = 2, hour: int = 10) -> Event:
    return event(profile, "Application Opened", at(day, hour, month=month))


def build_scenario(workspace: Workspace) -> dict[str, Any]:
    from profiles.engagement import (
        CONTROL_GROUP_ENROLLED,
        MESSAGE_BOUNCED,
        MESSAGE_CLICKED,
        MESSAGE_CONVERTED,
        MESSAGE_DELIVERED,
        MESSAGE_OPENED,
        MESSAGE_RECEIVED,
    )

    feb = 2
    people = {
        "alice": person(
            workspace, first_seen=at(4, 10, month=feb), platform="ios", source="google", external_id="alice"
        ),
        "bob": person(workspace, first_seen=at(4, 11, month=feb), platform="ios", source="google", external_id="bob"),
        "carol": person(
            workspace, first_seen=at(5, 9, month=feb), platform="android", source="facebook", external_id="carol"
        ),
        "dan": person(workspace, first_seen=at(12, 10, month=feb), platform="android", external_id="dan"),
        "erin": person(
            workspace, first_seen=at(12, 12, month=feb), platform="web", source="google", external_id="erin"
        ),
        "frank": person(
            workspace, first_seen=at(13, 10, month=feb), platform="ios", source="facebook", external_id="frank"
        ),
        "grace": person(workspace, first_seen=at(20, 10, month=feb), platform="ios", external_id="grace"),
    }
    p = people
    opened_app(p["alice"], 4)
    opened_app(p["alice"], 11)
    opened_app(p["alice"], 25)
    opened_app(p["alice"], 3, month=3)
    opened_app(p["bob"], 4, hour=11)
    opened_app(p["bob"], 5)
    opened_app(p["carol"], 5, hour=9)
    opened_app(p["carol"], 19)
    opened_app(p["dan"], 12)
    opened_app(p["dan"], 13)
    opened_app(p["dan"], 3, month=3)
    opened_app(p["erin"], 12, hour=12)
    opened_app(p["frank"], 13)
    opened_app(p["frank"], 20)
    opened_app(p["frank"], 4, month=3)
    opened_app(p["grace"], 20)
    opened_app(p["grace"], 1, month=3)
    event(p["alice"], "Account Created", at(4, 10, month=feb, minute=30))
    event(p["bob"], "Account Created", at(5, 11, month=feb))
    event(p["carol"], "Account Created", at(19, 11, month=feb))
    event(p["dan"], "Account Created", at(12, 10, month=feb, minute=30))
    event(p["frank"], "Account Created", at(20, 11, month=feb))
    purchase(p["alice"], at(11, 12, month=feb), "30.00")
    purchase(p["dan"], at(3, 12), "20.00", currency="EUR")
    purchase(p["frank"], at(4, 11), "15.00")

    onboarding = campaign(workspace, "Onboarding")
    due_14, due_15 = at(14, 10, month=feb), at(15, 10, month=feb)
    d = {
        "alice": delivery(onboarding, p["alice"], variant="A", status="sent", due=due_14, sent_channels=("email",)),
        "bob": delivery(onboarding, p["bob"], variant="A", status="sent", due=due_14, sent_channels=("email",)),
        "carol": delivery(onboarding, p["carol"], variant="B", status="sent", due=due_15, sent_channels=("push",)),
        "dan": delivery(onboarding, p["dan"], variant="B", status="skipped", due=due_15),
        "erin": delivery(onboarding, p["erin"], variant=None, status="control", due=due_15),
        "frank": delivery(onboarding, p["frank"], variant=None, status="control", due=due_15),
        "grace": delivery(onboarding, p["grace"], variant="A", status="scheduled", due=due_15),
    }
    follow_up = delivery(
        onboarding,
        p["alice"],
        variant="A",
        status="sent",
        due=at(16, 10, month=feb),
        step_key="msg1",
        sent_channels=("push",),
    )
    engage(d["alice"], MESSAGE_RECEIVED, at(14, 10, month=feb), channel="email")
    engage(d["alice"], MESSAGE_DELIVERED, at(14, 10, month=feb, minute=1), channel="email")
    engage(d["alice"], MESSAGE_OPENED, at(14, 11, month=feb), channel="email")
    engage(d["alice"], MESSAGE_OPENED, at(14, 13, month=feb), channel="email")
    engage(d["alice"], MESSAGE_CLICKED, at(14, 11, month=feb, minute=5), channel="email")
    engage(d["alice"], MESSAGE_CONVERTED, at(14, 15, month=feb), revenue="12.5000")
    engage(follow_up, MESSAGE_RECEIVED, at(16, 10, month=feb), channel="push")
    engage(follow_up, MESSAGE_OPENED, at(16, 11, month=feb), channel="push")
    engage(d["bob"], MESSAGE_RECEIVED, at(14, 10, month=feb), channel="email")
    engage(d["bob"], MESSAGE_BOUNCED, at(14, 10, month=feb, minute=2), channel="email")
    engage(d["carol"], MESSAGE_RECEIVED, at(15, 10, month=feb), channel="push")
    engage(d["carol"], MESSAGE_OPENED, at(15, 12, month=feb), channel="push")
    engage(d["carol"], MESSAGE_CONVERTED, at(15, 18, month=feb), revenue="5.0000")
    engage(d["erin"], CONTROL_GROUP_ENROLLED, at(15, 10, month=feb))
    engage(d["erin"], MESSAGE_CONVERTED, at(16, 12, month=feb))
    engage(d["frank"], CONTROL_GROUP_ENROLLED, at(15, 10, month=feb))
    return {"people": people, "deliveries": d, "campaign": onboarding, "follow_up": follow_up}
