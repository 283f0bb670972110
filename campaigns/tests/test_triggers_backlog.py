"""The trigger backlog: stored events whose matching could not be enqueued wait in PostgreSQL until
the beat's drain enqueues them, and matching the same events again (the drain and the original
enqueue both got through) never schedules a second send. The whole path on a real worker with the
broker down and back is in ``test_triggers_worker.py``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import DeliveryStatus, TriggerBacklog
from campaigns.receivers import _enqueue
from campaigns.services.trigger_backlog import (
    CLAIM_SECONDS,
    OUTBOX_GRACE_SECONDS,
    broker_mark,
    trigger_backlog_drain,
)
from campaigns.services.triggers import campaign_events_process
from campaigns.tasks_triggers import campaign_triggers_task
from campaigns.tests.trigger_helpers import action_campaign, deliveries, identify, ingest, track
from profiles.models import App, Event, Workspace
from segments.services import segment_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rules", "trigger_clock")]


@pytest.fixture(autouse=True)
def _broker_up() -> Any:
    broker_mark(up=True)
    yield
    broker_mark(up=True)


class Broker:
    """Stands in for ``campaign_triggers_task.delay``: down (raises, as kombu does when Redis
    refuses the connection) or up (records what it was given)."""

    def __init__(self, *, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.published: list[tuple[int, list[int]]] = []
        self.outbox_ids: list[int | None] = []

    def __call__(self, workspace_id: int, event_ids: list[int], outbox_id: int | None = None) -> None:
        if self.fail_after is not None and len(self.published) >= self.fail_after:
            raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.published.append((workspace_id, list(event_ids)))
        self.outbox_ids.append(outbox_id)


def test_a_failed_enqueue_keeps_the_events_and_the_next_batches_skip_the_broker(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = Broker(fail_after=0)
    monkeypatch.setattr("campaigns.receivers.campaign_triggers_task.delay", down)
    _enqueue(workspace.pk, [1, 2, 3])
    _enqueue(workspace.pk, [4])  # moments later: straight to the backlog
    rows = list(TriggerBacklog.objects.order_by("id").values_list("event_ids", "last_error"))
    assert rows == [
        ([1, 2, 3], "ConnectionRefusedError: Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        ([4], "the broker was down moments ago"),
    ]


def test_the_drain_stops_at_the_first_failure_and_resumes_in_order(workspace: Workspace, trigger_clock: Any) -> None:
    for ids in ([1, 2], [3], [4, 5]):
        TriggerBacklog.objects.create(workspace=workspace, event_ids=ids)
    flaky = Broker(fail_after=1)
    result = trigger_backlog_drain(enqueue=flaky)
    assert (result.enqueued, result.events, result.left) == (1, 2, 2)
    assert flaky.published == [(workspace.pk, [1, 2])]
    waiting = list(TriggerBacklog.objects.order_by("id").values_list("event_ids", "claimed_until", "attempts"))
    # Released at once (not left claimed), so the next tick need not wait for the claim to expire.
    assert waiting == [([3], None, 1), ([4, 5], None, 1)]

    up = Broker()
    assert trigger_backlog_drain(enqueue=up).enqueued == 2
    assert up.published == [(workspace.pk, [3]), (workspace.pk, [4, 5])]
    assert not TriggerBacklog.objects.exists()
    assert trigger_backlog_drain(enqueue=up).enqueued == 0


def test_a_row_claimed_by_a_drain_that_died_is_drained_after_its_claim_expires(
    workspace: Workspace, trigger_clock: Any
) -> None:
    TriggerBacklog.objects.create(
        workspace=workspace, event_ids=[7], claimed_until=timezone.now() + timedelta(seconds=CLAIM_SECONDS)
    )
    broker = Broker()
    assert trigger_backlog_drain(enqueue=broker).enqueued == 0  # another drain holds it
    trigger_clock.shift(timedelta(seconds=CLAIM_SECONDS + 1))
    assert trigger_backlog_drain(enqueue=broker).enqueued == 1
    assert broker.published == [(workspace.pk, [7])]


def test_matching_the_backlog_after_the_live_task_schedules_nothing_more(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    """Every kind of match, processed twice (the enqueue raised after the broker had the task, so
    the events were also kept): one delivery each, and a send cancelled by its exception event
    stays cancelled."""
    ingest(app, identify("bob", plan="free"))
    pro = segment_create(
        workspace=workspace,
        name="Pro",
        definition={"all": [{"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": "eq",
                             "value": "pro"}]},
    )  # fmt: skip
    cart = action_campaign(
        workspace,
        name="Cart",
        triggers=[{"type": "custom_event", "event": "Product Added"}],
        exception_events=[{"event": "Order Completed", "match_property": "cart_id"}],
        delay={"type": "duration", "seconds": 3600},
        reeligible=True,
    )
    welcome = action_campaign(workspace, name="Pro", triggers=[{"type": "segment_entry", "segment_id": pro.pk}])
    control = action_campaign(
        workspace, name="Control", triggers=[{"type": "custom_event", "event": "Tapped"}], control_percent=100,
        variants=(),
    )  # fmt: skip
    trigger_clock.shift(timedelta(minutes=1))
    first = ingest(
        app,
        track("ada", "Product Added", {"cart_id": "c-1"}),
        identify("bob", plan="pro"),
        track("cy", "Tapped"),
    )
    campaign_events_process(workspace_id=workspace.pk, event_ids=first)
    trigger_clock.shift(timedelta(minutes=1))
    campaign_events_process(
        workspace_id=workspace.pk, event_ids=ingest(app, track("ada", "Order Completed", {"cart_id": "c-1"}))
    )
    [cancelled] = deliveries(cart)
    assert cancelled.status == DeliveryStatus.CANCELLED

    # The intake's outbox rows (their matching ran above, as the tasks would have) aside, the
    # first batch kept once more.
    TriggerBacklog.objects.all().delete()
    TriggerBacklog.objects.create(workspace=workspace, event_ids=first)
    trigger_clock.shift(timedelta(minutes=1))
    trigger_backlog_drain(enqueue=lambda ws, ids: campaign_events_process(workspace_id=ws, event_ids=ids))

    assert [(d.pk, d.status) for d in deliveries(cart)] == [(cancelled.pk, DeliveryStatus.CANCELLED)]
    assert [(d.profile.external_id, d.status) for d in deliveries(welcome)] == [("bob", DeliveryStatus.SCHEDULED)]
    assert [(d.profile.external_id, d.status) for d in deliveries(control)] == [("cy", DeliveryStatus.CONTROL)]
    assert not TriggerBacklog.objects.exists()


def test_only_events_a_campaign_may_react_to_are_enqueued(
    workspace: Workspace, app: App, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Product Added"}])
    broker = Broker()
    monkeypatch.setattr("campaigns.receivers.campaign_triggers_task.delay", broker)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(app, track("ada", "Product Viewed"), track("ada", "Product Added"), track("bob", "Product Viewed"))
    [added] = Event.objects.filter(name="Product Added").values_list("id", flat=True)
    assert broker.published == [(workspace.pk, [added])]

    with django_capture_on_commit_callbacks(execute=True):
        ingest(app, *[track(f"user-{n}", "Product Viewed") for n in range(100)])
    assert broker.published == [(workspace.pk, [added])]  # page views: no task at all


def test_the_intake_keeps_the_matching_in_an_outbox_until_the_task_has_done_it(
    workspace: Workspace, app: App, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Product Added"}])
    broker = Broker()
    monkeypatch.setattr("campaigns.receivers.campaign_triggers_task.delay", broker)
    with django_capture_on_commit_callbacks(execute=True):
        ids = ingest(app, track("ada", "Product Added"))
        # Written in the intake's transaction, before its commit; left to the task for a while.
        [kept] = TriggerBacklog.objects.all()
        assert (kept.event_ids, kept.claimed_until) == (ids, timezone.now() + timedelta(seconds=OUTBOX_GRACE_SECONDS))
    assert broker.published == [(workspace.pk, ids)] and broker.outbox_ids == [kept.pk]
    assert trigger_backlog_drain(enqueue=Broker()).enqueued == 0  # the task's, for now
    campaign_triggers_task(workspace.pk, ids, kept.pk)  # the worker
    assert [d.profile.external_id for d in deliveries(campaign)] == ["ada"]
    assert not TriggerBacklog.objects.exists()


def test_a_web_process_that_dies_after_its_commit_leaves_the_matching_to_the_drain(
    workspace: Workspace, app: App, trigger_clock: Any, django_capture_on_commit_callbacks: Any
) -> None:
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Product Added"}])
    # The callbacks after the commit never run: the process was killed right after its commit.
    with django_capture_on_commit_callbacks(execute=False) as after_commit:
        ids = ingest(app, track("ada", "Product Added"))
    assert len(after_commit) == 1
    assert not deliveries(campaign)
    broker = Broker()
    assert trigger_backlog_drain(enqueue=broker).enqueued == 0  # within the grace: maybe in flight
    trigger_clock.shift(timedelta(seconds=OUTBOX_GRACE_SECONDS + 1))
    assert trigger_backlog_drain(enqueue=broker).enqueued == 1
    assert broker.published == [(workspace.pk, ids)]
    assert not TriggerBacklog.objects.exists()
    campaign_triggers_task(workspace.pk, ids)  # the worker, given the drained row
    assert [d.profile.external_id for d in deliveries(campaign)] == ["ada"]


def test_a_failed_enqueue_after_commit_hands_the_outbox_row_to_the_next_drain(
    workspace: Workspace, app: App, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Product Added"}])
    monkeypatch.setattr("campaigns.receivers.campaign_triggers_task.delay", Broker(fail_after=0))
    with django_capture_on_commit_callbacks(execute=True):
        ids = ingest(app, track("ada", "Product Added"))
    [kept] = TriggerBacklog.objects.all()
    assert (kept.event_ids, kept.claimed_until) == (ids, None)  # not after its grace: at once
    assert kept.last_error.startswith("ConnectionRefusedError")
    up = Broker()
    assert trigger_backlog_drain(enqueue=up).enqueued == 1
    assert up.published == [(workspace.pk, ids)]


def test_a_batch_no_campaign_reacts_to_writes_no_outbox_row(workspace: Workspace, app: App) -> None:
    action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Product Added"}])
    ingest(app, *[track(f"user-{n}", "Product Viewed") for n in range(20)])
    assert not TriggerBacklog.objects.exists()
