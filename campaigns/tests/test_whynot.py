""" "Why not?": for a campaign and a person, what happened and what would stop a send now."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

import pytest
import time_machine

from campaigns.models import Campaign, Delivery, DeliveryStatus, FrequencyCapRule, QuietHours
from campaigns.services.launch import campaign_launch, campaigns_tick
from campaigns.services.sending import deliveries_enqueue_due, delivery_send_batch
from campaigns.services.variants import CONTROL, Split, assign_variant
from campaigns.services.whynot import why_not
from channels.models import Dispatch, DispatchStatus
from profiles.models import Profile, SubscriptionState, Workspace

from .builder import NOW, action_campaign, campaign, person, segment

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def run(c: Campaign) -> None:
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()
    for batch in deliveries_enqueue_due(enqueue=False).batches:
        delivery_send_batch(delivery_ids=batch)


def ask(c: Campaign, p: Profile) -> list[str]:
    c.refresh_from_db()
    return why_not(campaign=c, profile=p)


def test_sent_and_not_in_audience(workspace: Workspace, frozen: Any) -> None:
    fr = segment(
        workspace, "France", {"all": [{"type": "attribute", "attribute": "country", "op": "eq", "value": "FR"}]}
    )
    ana = person(workspace, "ana", country="FR")
    bob = person(workspace, "bob", country="US")
    c = campaign(workspace, include=[fr])
    run(c)
    assert ask(c, ana) == ["sent at 2030-01-08 12:00 UTC by email (email: sent)"]
    assert ask(c, bob) == ['now: not in audience: in none of the segments "France"']


def test_unsubscribed_no_address_and_template_abort(workspace: Workspace, frozen: Any) -> None:
    everyone = segment(workspace, "All")
    gone = person(workspace, "gone", email_subscription=SubscriptionState.UNSUBSCRIBED)
    nomail = person(workspace, "nomail", email="")
    c = campaign(workspace, include=[everyone])
    run(c)
    assert ask(c, gone) == ["not sent: email: unsubscribed from email", "now: email: unsubscribed from email",
                            "now: no channel of their variant can reach them"]  # fmt: skip
    assert ask(c, nomail)[0] == "not sent: email: no email address"

    aborting = campaign(
        workspace,
        name="Balance",
        include=[segment(workspace, "All 2")],
        messages=[("email", {"subject": "{% abort_message 'no balance' %}", "text": "x"})],
    )
    run(aborting)
    abort_answer = ask(aborting, nomail)
    assert abort_answer[0] == "not sent: aborted by the template: no balance"
    assert "now: email: the template would abort: no balance" in abort_answer


def test_control_group(workspace: Workspace, frozen: Any) -> None:
    everyone = segment(workspace, "All")
    crowd = [person(workspace, f"p{n}") for n in range(30)]
    c = campaign(workspace, include=[everyone], control_percent=50)
    run(c)
    held = next(
        p
        for p in crowd
        if assign_variant(campaign_id=c.pk, profile_id=p.pk, control_percent=50, variants=[Split("A", 100)]) == CONTROL
    )
    assert ask(c, held) == [
        "control group: held out on purpose, nothing is sent",
        "now: in the control group: they are held out of every send of this campaign",
    ]


def test_frequency_cap_and_quiet_hours(workspace: Workspace, frozen: Any) -> None:
    FrequencyCapRule.objects.create(workspace=workspace, max_messages=1, window=1, unit="days")
    ana = person(workspace, "ana")
    first = campaign(workspace, name="First", include=[segment(workspace, "All")])
    run(first)
    second = campaign(workspace, name="Second", include=[segment(workspace, "All 2")])
    run(second)
    answer = ask(second, ana)
    assert answer[0] == "not sent: email: frequency-capped (at most 1 messages per 1 day (calendar days))"
    assert "now: email: frequency-capped: at most 1 messages per 1 day (calendar days)" in answer

    QuietHours.objects.create(workspace=workspace, channel="email", start=time(11, 0), end=time(13, 0))
    third = campaign(workspace, name="Third", include=[segment(workspace, "All 3")], frequency_cap_exempt=True)
    run(third)
    answer = ask(third, ana)
    assert answer[0] == "scheduled for 2030-01-08 13:00 UTC (quiet hours: waiting until they end)"
    assert "now: email: in quiet hours in their time zone (UTC): it would wait until 2030-01-08 13:00 UTC" in answer


def test_exception_event_and_re_eligibility(workspace: Workspace, frozen: Any) -> None:
    ana = person(workspace, "ana")
    c = action_campaign(workspace)
    campaign_launch(campaign=c, actor=None)
    variant = c.variants.get()
    Delivery.objects.create(
        workspace=workspace, campaign=c, profile=ana, occurrence="e1", variant=variant, scheduled_for=NOW,
        status=DeliveryStatus.CANCELLED, reason="exception event Order Completed",
    )  # fmt: skip
    assert ask(c, ana)[0] == "cancelled by an exception event: exception event Order Completed"

    Delivery.objects.create(
        workspace=workspace, campaign=c, profile=ana, occurrence="e2", variant=variant, scheduled_for=NOW,
    )  # fmt: skip
    for batch in deliveries_enqueue_due(enqueue=False).batches:
        delivery_send_batch(delivery_ids=batch)
    answer = ask(c, ana)
    assert answer[0] == "sent at 2030-01-08 12:00 UTC by email [e2] (email: sent)"
    assert "now: not re-eligible: they received it at 2030-01-08 12:00 UTC and the campaign sends once per person" in (
        answer
    )
    Campaign.objects.filter(pk=c.pk).update(reeligible=True, reeligibility_seconds=86400)
    c.refresh_from_db()
    assert "now: not re-eligible until 2030-01-09 12:00 UTC (received at 2030-01-08 12:00 UTC)" in ask(c, ana)


def test_provider_error_and_not_launched(workspace: Workspace, frozen: Any) -> None:
    ana = person(workspace, "ana")
    c = campaign(workspace, include=[segment(workspace, "All")])
    assert ask(c, ana)[0] == "now: the campaign has not been launched"
    run(c)
    delivery = Delivery.objects.get(campaign=c)
    Dispatch.objects.filter(pk__in=delivery.dispatch_ids).update(
        status=DispatchStatus.BOUNCED, error_code="550", error_message="5.1.1 user unknown"
    )
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED)
    assert ask(c, ana)[0] == "failed: email to ana@example.com: provider error: 550: 5.1.1 user unknown"
    frozen.shift(timedelta(days=1))
