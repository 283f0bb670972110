"""The trigger path on a real Celery worker: the intake commits, ``events_stored`` enqueues trigger
matching, the worker enrols and sends the due delivery through the sender, the push reaches a fake
FCM.
Nothing is called directly: what the test checks is what the worker did on its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.test import Client

from campaigns.models import Delivery, DeliveryStatus
from campaigns.tests.trigger_helpers import action_campaign
from channels.testing import FakeFcm
from channels.tests.dispatch_helpers import fake_fcm, fcm_config
from config.celery import app as celery_app
from profiles.models import App, Platform, Workspace
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
