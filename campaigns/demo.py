"""The brief's seven campaigns, ready to use in the demo workspace (and to copy).

``demo_campaigns_create`` builds them, idempotently (a campaign of the same name is left as it is:
a marketer may have edited it). Six are triggered and launched at once, so they react to new events
from the moment they exist (events from before launch never trigger); the seventh, the winter
storm notice, is a scheduled one-off left as a draft with its region segment, to launch when a
storm comes. tests/test_brief_campaigns.py drives each through the intake and checks who got
what, when, and with what text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from profiles.models import Workspace
from segments.models import Segment
from segments.services import segment_create

from .models import Campaign, CampaignStatus, ChannelMessage, DeliveryType, QuietHoursAction, ScheduleTiming, Variant
from .services.launch import campaign_launch

DAY = 86400

ONBOARDING = "Onboarding: finish setting up"
PERMISSION_PRIMING = "Permission priming: push, in context"
MILESTONE = "Milestone: 100th session reward"
ABANDONED_CART = "Abandoned cart reminder"
SOCIAL_SHARING = "Social sharing: invite to share"
LOYALTY = "Loyalty: programme or points after a purchase"
WINTER_STORM = "Winter storm delivery notice"

STORM_SEGMENT = "Winter storm area (Chicago, 300 km)"
STORM_CENTRE = (41.8781, -87.6298)
STORM_RADIUS_KM = 300
# The features whose use needs push or location permission (the app sends "Feature Opened").
PERMISSION_FEATURES = ["order_tracking", "store_locator"]
MILESTONE_SESSIONS = 100
REWARD_CODE = "CENTURY20"
# The trigger is any session start; this condition (read after the session is counted) picks the 100th.
MILESTONE_CONDITION = {"type": "attribute", "attribute": "session_count", "op": "eq", "value": MILESTONE_SESSIONS}
STORM_CODE = "STORM10"

FOOTER_HTML = '<p style="font-size:12px;color:#888"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'


@dataclass(frozen=True)
class Message:
    channel: str
    template: dict[str, Any]
    delay_seconds: int = 0


@dataclass(frozen=True)
class DemoCampaign:
    name: str
    description: str
    fields: dict[str, Any]
    messages: tuple[Message, ...]
    tags: tuple[str, ...] = ("demo",)
    launch: bool = True
    segments: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _specs(now: datetime) -> list[DemoCampaign]:
    return [
        DemoCampaign(
            name=ONBOARDING,
            description="Started onboarding but did not finish within a day: a push, then an email two days "
            "later if still not finished. Finishing cancels whatever is still pending.",
            tags=("demo", "onboarding"),
            fields={
                "delivery_type": DeliveryType.ACTION,
                "triggers": [{"type": "custom_event", "event": "Onboarding Started"}],
                "delay": {"type": "duration", "seconds": DAY},
                "exception_events": [{"event": "Onboarding Completed"}],
                "conversion_events": [{"event": "Onboarding Completed"}],
                "conversion_window_seconds": 7 * DAY,
            },
            messages=(
                Message(
                    "push",
                    {
                        "title": "Almost there, {{ first_name | default: 'friend' }}",
                        "body": "Finish setting up your account: it takes two minutes.",
                        "deep_link": "acme://onboarding",
                    },
                ),
                Message(
                    "email",
                    {
                        "subject": "Your account is one step away",
                        "text": "Hi {{ first_name | default: 'there' }},\n\nYou started setting up your Acme account "
                        "but did not finish. Pick up where you left off: https://acme.example/onboarding\n",
                        "html": "<p>Hi {{ first_name | default: 'there' }},</p><p>You started setting up your Acme "
                        'account but did not finish. <a href="https://acme.example/onboarding">Pick up where you '
                        "left off</a>.</p>" + FOOTER_HTML,
                    },
                    delay_seconds=2 * DAY,
                ),
            ),
        ),
        DemoCampaign(
            name=PERMISSION_PRIMING,
            description="The first time someone without push opens a feature that needs it, explain why and offer "
            "the system prompt (in-app message with a 'request push permission' button).",
            tags=("demo", "permissions"),
            fields={
                "delivery_type": DeliveryType.ACTION,
                "triggers": [
                    {
                        "type": "custom_event",
                        "event": "Feature Opened",
                        "filters": [{"property": "feature", "op": "one_of", "value": PERMISSION_FEATURES}],
                    }
                ],
                "extra_conditions": {"all": [{"type": "push_enabled", "value": False}]},
            },
            messages=(
                Message(
                    "in_app",
                    {
                        "layout": "modal",
                        "header": "Know the moment it moves",
                        "body": "Turn on notifications and we will tell you when your order ships, "
                        "is nearby and arrives. Nothing else, promise.",
                        "buttons": [
                            {"text": "Turn on notifications", "action": "request_push_permission"},
                            {"text": "Not now", "action": "close"},
                        ],
                        "trigger": "Feature Opened",
                    },
                ),
            ),
        ),
        DemoCampaign(
            name=MILESTONE,
            description=f"The {MILESTONE_SESSIONS}th session: thank the person with a reward code.",
            tags=("demo", "milestones"),
            fields={
                "delivery_type": DeliveryType.ACTION,
                "triggers": [{"type": "session_start"}],
                "extra_conditions": {
                    "all": [
                        {"type": "attribute", "attribute": "session_count", "op": "eq", "value": MILESTONE_SESSIONS}
                    ]
                },
            },
            messages=(
                Message(
                    "push",
                    {
                        "title": f"{MILESTONE_SESSIONS} visits, {{{{ first_name | default: 'friend' }}}}!",
                        "body": f"Thank you for sticking with us. Here is 20% off your next order: {REWARD_CODE}",
                        "data": {"reward_code": REWARD_CODE},
                    },
                ),
            ),
        ),
        DemoCampaign(
            name=ABANDONED_CART,
            description="Added to cart, no order for the same cart within an hour: a push naming the product, or "
            "an email for people without a push token. An order with the same cart_id cancels it.",
            tags=("demo", "ecommerce"),
            fields={
                "delivery_type": DeliveryType.ACTION,
                "triggers": [{"type": "custom_event", "event": "Product Added"}],
                "delay": {"type": "duration", "seconds": 3600},
                "exception_events": [{"event": "Order Completed", "match_property": "cart_id"}],
                "reeligible": True,
                "reeligibility_seconds": DAY,
                "send_first_reachable_only": True,
                "conversion_events": [{"purchase": True}],
                "conversion_window_seconds": 3 * DAY,
            },
            messages=(
                Message(
                    "push",
                    {
                        "title": "Still thinking it over?",
                        "body": "{{ event_properties.name | default: 'Your item' }} is waiting in your cart.",
                        "deep_link": "acme://cart",
                        "data": {"cart_id": "{{ event_properties.cart_id }}"},
                    },
                ),
                Message(
                    "email",
                    {
                        "subject": "You left {{ event_properties.name | default: 'something' }} in your cart",
                        "text": "Hi {{ first_name | default: 'there' }},\n\n{{ event_properties.name | default: "
                        "'Your item' }} is still in your cart: https://acme.example/cart\n",
                        "html": "<p>Hi {{ first_name | default: 'there' }},</p><p>{{ event_properties.name | "
                        "default: 'Your item' }} is still in your cart. "
                        '<a href="https://acme.example/cart">Complete your order</a>.</p>' + FOOTER_HTML,
                    },
                ),
            ),
        ),
        DemoCampaign(
            name=SOCIAL_SHARING,
            description="After a ticket purchase or an RSVP, invite the person to tell their friends.",
            tags=("demo", "social"),
            fields={
                "delivery_type": DeliveryType.ACTION,
                "triggers": [
                    {"type": "custom_event", "event": "Ticket Purchased"},
                    {"type": "custom_event", "event": "RSVP"},
                ],
                "reeligible": True,
                "reeligibility_seconds": 0,
            },
            messages=(
                Message(
                    "in_app",
                    {
                        "layout": "slideup",
                        "header": "You're going!",
                        "body": "Tell your friends you're going to "
                        "{{ event_properties.event_name | default: 'the event' }}.",
                        "buttons": [
                            {
                                "text": "Share",
                                "action": "deep_link",
                                "url": "acme://share?event={{ event_properties.event_id | default: '' }}",
                            },
                            {"text": "Maybe later", "action": "close"},
                        ],
                    },
                ),
            ),
        ),
        DemoCampaign(
            name=LOYALTY,
            description="Five minutes after a purchase (so the points from the order are in): people who are not "
            "members (no loyalty_member attribute) hear about the programme; members get their new balance "
            "(loyalty_points).",
            tags=("demo", "loyalty"),
            fields={
                "delivery_type": DeliveryType.ACTION,
                "triggers": [{"type": "purchase"}],
                "delay": {"type": "duration", "seconds": 300},
                "reeligible": True,
                "reeligibility_seconds": 0,
            },
            messages=(
                Message(
                    "push",
                    {
                        "title": "{% if custom_attributes.loyalty_member %}Points added{% else %}"
                        "Earn points on this order{% endif %}",
                        "body": "{% if custom_attributes.loyalty_member %}You now have "
                        "{{ custom_attributes.loyalty_points | default: 0 }} points. Thanks for shopping with us!"
                        "{% else %}Join Acme Rewards today and this order counts: points on every purchase."
                        "{% endif %}",
                    },
                ),
            ),
        ),
        DemoCampaign(
            name=WINTER_STORM,
            description="A one-off push to people within 300 km of Chicago at 10:00 in their own time zone, never "
            "during quiet hours (21:00-08:00). Launch it when a storm is forecast.",
            tags=("demo", "geo"),
            launch=False,
            segments=(STORM_SEGMENT,),
            fields={
                "delivery_type": DeliveryType.SCHEDULED,
                "schedule_timing": ScheduleTiming.LOCAL_TIME,
                # A local wall time, stored as if UTC (see Campaign.send_at): 10:00 tomorrow.
                "send_at": datetime.combine(now.date() + timedelta(days=1), time(10, 0), tzinfo=now.tzinfo),
                "quiet_hours_start": time(21, 0),
                "quiet_hours_end": time(8, 0),
                "quiet_hours_action": QuietHoursAction.WAIT,
            },
            messages=(
                Message(
                    "push",
                    {
                        "title": "Winter storm ahead",
                        "body": f"A winter storm may delay your delivery. Here is 10% off your next order: "
                        f"{STORM_CODE}",
                        "data": {"coupon": STORM_CODE},
                    },
                ),
            ),
        ),
    ]


def _storm_segment(workspace: Workspace) -> Segment:
    existing = Segment.objects.filter(workspace=workspace, name=STORM_SEGMENT).first()
    if existing is not None:
        return existing
    latitude, longitude = STORM_CENTRE
    near = {"type": "near", "latitude": latitude, "longitude": longitude, "radius_km": STORM_RADIUS_KM}
    return segment_create(
        workspace=workspace,
        name=STORM_SEGMENT,
        description="People whose last known location is within 300 km of Chicago.",
        definition={"all": [near]},
    )


def demo_campaigns_create(*, workspace: Workspace, now: datetime | None = None) -> list[Campaign]:
    """Create the demo campaigns that do not exist yet (by name) and launch the triggered ones.
    Returns every demo campaign of the workspace, created now or before."""
    now = now or timezone.now()
    campaigns = []
    for spec in _specs(now):
        existing = Campaign.objects.filter(workspace=workspace, name=spec.name).first()
        if existing is not None:
            campaigns.append(existing)
            continue
        with transaction.atomic():
            campaign = Campaign.objects.create(
                workspace=workspace,
                name=spec.name,
                description=spec.description,
                tags=list(spec.tags),
                status=CampaignStatus.DRAFT,
                **spec.fields,
            )
            variant = Variant.objects.create(campaign=campaign, key="A", name="Default", percent=100)
            for position, message in enumerate(spec.messages):
                ChannelMessage.objects.create(
                    variant=variant,
                    channel=message.channel,
                    position=position,
                    delay_seconds=message.delay_seconds,
                    template=message.template,
                )
            if STORM_SEGMENT in spec.segments:
                campaign.include_segments.set([_storm_segment(workspace)])
            if spec.launch:
                campaign = campaign_launch(campaign=campaign, actor="seed_demo_campaigns", now=now)
        campaigns.append(campaign)
    return campaigns


DEMO_NAMES = (ONBOARDING, PERMISSION_PRIMING, MILESTONE, ABANDONED_CART, SOCIAL_SHARING, LOYALTY, WINTER_STORM)
