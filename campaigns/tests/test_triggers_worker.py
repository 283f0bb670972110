"""The trigger path on a real Celery worker: the intake commits, ``events_stored`` enqueues trigger
matching, the worker enrols and sends the due delivery through the sender, the push reaches a fake
FCM; when the broker is down during the intake, the backlog keeps the matching until it is back.
Nothing is called directly: what the test checks is what the worker did on its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.test import Client

from campaigns.models import Delivery, DeliveryStatus, TriggerBacklog
from campaigns.services.trigger_backlog import broker_mark
from campaigns.tasks_triggers import campaign_triggers_task
from campaigns.tests.trigger_helpers import action_campaign
from channels.testing import FakeFcm
from channels.tests.dispatch_helpers import fake_fcm, fcm_config
from config.celery import app as celery_app
from profiles.models import App, Event, Platform, Workspace
from profiles.tests.factories import AppFactory, WorkspaceFactory
from profiles.tests.intake_helpers import post_json

__all__ = ["fake_fcm"]


class Finished:
    """The tasks the worker finished, by name; ``wait_until`` blocks until an outcome holds."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.changed = threading.Condition()

    def add(self, name: str) -> None:
        with self.changed:
            self.names.append(name)
            self.changed.notify_all()

    def wait_until(self, done: Callable[[], bool], timeout: float = 30) -> None:
        """Block until ``done()`` holds, checked each time the worker finishes a task. (The broker
        may also hold other tests' leftover tasks: only the outcome counts, not the task count.)"""
        with self.changed:
            assert self.changed.wait_for(done, timeout=timeout), f"not done after {timeout}s; ran {self.names}"


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Finished]:
    """An embedded worker thread on an in-memory broker."""
    settings.CAMPAIGN_RULES_CACHE_SECONDS = 0
    for key, value in {
        "broker_url": "memory://",
        "task_always_eager": False,
        "worker_hijack_root_logger": False,
    }.items():
        monkeypatch.setitem(celery_app.conf, key, value)
    finished = Finished()

    def on_postrun(sender: Any = None, **_: Any) -> None:
        finished.add(str(getattr(sender, "name", sender)))

    task_postrun.connect(on_postrun, weak=False)
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            yield finished
    finally:
        task_postrun.disconnect(on_postrun)
        # ./run test's broker is a real Redis shared by the whole run (CELERY_BROKER_URL wins over
        # the memory:// set above): leave no task of ours for another test's worker to pick up.
        celery_app.control.purge()
        celery_app.close()


@pytest.mark.django_db(transaction=True)
def test_an_event_posted_to_the_intake_is_pushed_by_the_worker_once(
    worker: Finished, fake_fcm: FakeFcm, client: Client
) -> None:
    workspace = cast(Workspace, WorkspaceFactory())
    app = cast(App, AppFactory(workspace=workspace, platform=Platform.ANDROID))
    fcm_config(workspace, fake_fcm)
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Product Added"}],
        template={"title": "Nice pick", "body": "{{ event_properties.name }} is in your cart"},
    )
    identify = {
        "type": "identify",
        "userId": "ada",
        "messageId": "m-identify",
        "context": {"device": {"id": "phone-1", "token": "fcm-ada"}},
    }
    added = {"type": "track", "userId": "ada", "event": "Product Added", "messageId": "m-added",
             "properties": {"name": "Red Shoes"}}  # fmt: skip
    assert post_json(client, "/v1/batch", {"batch": [identify, added]}, app=app).status_code == 200
    # The triggers task matches, enrols, and sends what is due at once.
    worker.wait_until(lambda: Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.SENT).exists())

    [delivery] = Delivery.objects.filter(campaign=campaign)
    assert delivery.status == DeliveryStatus.SENT
    [push] = fake_fcm.messages
    assert push["token"] == "fcm-ada"
    assert push["notification"] == {"title": "Nice pick", "body": "Red Shoes is in your cart"}

    # The SDK resends the batch after a timeout: stored once, so nothing is triggered again.
    assert post_json(client, "/v1/batch", {"batch": [identify, added]}, app=app).json()["success"] is True
    assert Delivery.objects.filter(campaign=campaign).count() == 1
    assert len(fake_fcm.messages) == 1


def _reconnect() -> None:
    """Forget the pooled broker connections: the next publish connects to the broker configured now."""
    celery_app.close()
    # The producer pool holds a connection to the broker it was made for.
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]


@pytest.fixture
def broker_outage(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """While active, the broker is a port nothing listens on (CELERY_BROKER_URL wins over the
    app's configuration, so both are changed); calling the fixture's value ends the outage."""
    unreachable = "redis://127.0.0.1:1/0"
    monkeypatch.setenv("CELERY_BROKER_URL", unreachable)
    monkeypatch.setitem(celery_app.conf, "broker_url", unreachable)
    _reconnect()
    broker_mark(up=True)

    def end() -> None:
        monkeypatch.undo()
        _reconnect()
        broker_mark(up=True)  # the intake's processes try the broker again (their pause is short)

    try:
        yield end
    finally:
        end()


@pytest.mark.django_db(transaction=True)
def test_triggers_posted_while_the_broker_is_down_are_sent_once_it_is_back(
    request: pytest.FixtureRequest,
    broker_outage: Callable[[], None],
    fake_fcm: FakeFcm,
    client: Client,
    settings: Any,
) -> None:
    workspace = cast(Workspace, WorkspaceFactory())
    app = cast(App, AppFactory(workspace=workspace, platform=Platform.ANDROID))
    fcm_config(workspace, fake_fcm)
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Product Added"}],
        template={"title": "Still there?", "body": "{{ event_properties.name }} is waiting"},
    )
    identify = {
        "type": "identify",
        "userId": "ada",
        "messageId": "m-identify",
        "context": {"device": {"id": "phone-1", "token": "fcm-ada"}},
    }
    added = {"type": "track", "userId": "ada", "event": "Product Added", "messageId": "m-added",
             "properties": {"name": "Red Shoes"}}  # fmt: skip

    # The broker is unreachable: the intake still answers and stores the events; their trigger
    # matching waits in the backlog.
    response = post_json(client, "/v1/batch", {"batch": [identify, added]}, app=app)
    assert response.status_code == 200 and response.json()["success"] is True
    assert Event.objects.filter(workspace=workspace, name="Product Added").count() == 1
    [waiting] = TriggerBacklog.objects.filter(workspace=workspace)
    assert waiting.event_ids == list(Event.objects.filter(name="Product Added").values_list("id", flat=True))
    assert "127.0.0.1:1" in waiting.last_error
    assert not Delivery.objects.filter(campaign=campaign).exists()

    # The broker is back; a worker runs; beat's next tick of the backlog entry sends it.
    broker_outage()
    worker = cast(Finished, request.getfixturevalue("worker"))
    beat_task = settings.CELERY_BEAT_SCHEDULE["campaigns-trigger-backlog"]["task"]
    celery_app.send_task(beat_task)
    worker.wait_until(lambda: Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.SENT).exists())
    assert not TriggerBacklog.objects.exists(), list(TriggerBacklog.objects.values())

    # Another tick, and the same events matched again (a drain that died after its enqueue leaves
    # its row to the next one): still one delivery, one push.
    rerun: list[Any] = []

    def on_postrun(sender: Any = None, args: Any = None, **_: Any) -> None:
        if getattr(sender, "name", None) == campaign_triggers_task.name and list(args or ()) == [
            workspace.pk,
            waiting.event_ids,
        ]:
            rerun.append(args)

    task_postrun.connect(on_postrun, weak=False)
    try:
        celery_app.send_task(beat_task)
        campaign_triggers_task.delay(workspace.pk, waiting.event_ids)
        worker.wait_until(lambda: bool(rerun) and worker.names.count(beat_task) >= 2)
    finally:
        task_postrun.disconnect(on_postrun)
    [delivery] = Delivery.objects.filter(campaign=campaign)
    assert delivery.status == DeliveryStatus.SENT
    [push] = fake_fcm.messages
    assert push["token"] == "fcm-ada"
    assert push["notification"] == {"title": "Still there?", "body": "Red Shoes is waiting"}
