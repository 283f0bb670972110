"""The dispatch pipeline: who can be reached and why not, create-once dispatches, claim before
send (one provider call however often a send is asked for), retries with a bound, the outbox
sweep, and the Celery tasks — eagerly and on a real embedded worker."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any, cast

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connection
from django.utils import timezone

from channels.models import Dispatch, DispatchStatus
from channels.services.addresses import Unreachable, resolve_addresses
from channels.services.dispatch import (
    OUTCOME_UNKNOWN_MESSAGE,
    dispatch_enqueue,
    dispatch_prepare,
    dispatch_send,
    dispatch_sweep,
)
from channels.tasks import dispatch_send_task, dispatch_sweep_task
from channels.testing import WebhookReceiver
from channels.testing.http import Response
from channels.transports.base import TransientError
from config.celery import app as celery_app
from profiles.engagement import MESSAGE_RECEIVED
from profiles.models import Event, SubscriptionState, Workspace
from profiles.tests.factories import WorkspaceFactory

from .dispatch_helpers import engagement_names, make_device, make_profile, prepare_one, webhook_receiver

__all__ = ["webhook_receiver"]


def hook(receiver: WebhookReceiver) -> dict[str, str]:
    return {"url": f"{receiver.url}/hook", "body": '{"hello": "world"}'}


# --- reachability -----------------------------------------------------------------------------------


def reason(result: object) -> str:
    assert isinstance(result, Unreachable), result
    return result.reason


def test_why_a_person_cannot_be_reached_on_each_channel(workspace: Workspace) -> None:
    nobody = make_profile(workspace)
    for channel, expected in {
        "email": "no email address",
        "push": "no push-enabled device",
        "webpush": "no web push subscription",
        "sms": "no phone number",
        "webhook": "no webhook URL",
    }.items():
        assert reason(resolve_addresses(profile=nobody, channel=channel, content={})) == expected

    opted_out = make_profile(
        workspace,
        email="out@example.com",
        phone="+14155550100",
        email_subscription=SubscriptionState.UNSUBSCRIBED,
        push_subscription=SubscriptionState.UNSUBSCRIBED,
        sms_subscription=SubscriptionState.UNSUBSCRIBED,
    )
    make_device(opted_out, "fcm", "fcm-token")
    make_device(
        opted_out, "webpush", json.dumps({"endpoint": "https://push.example/x", "keys": {"p256dh": "a", "auth": "b"}})
    )
    assert reason(resolve_addresses(profile=opted_out, channel="email", content={})) == "unsubscribed from email"
    assert reason(resolve_addresses(profile=opted_out, channel="push", content={})) == "unsubscribed from push"
    assert reason(resolve_addresses(profile=opted_out, channel="webpush", content={})) == "unsubscribed from push"
    assert reason(resolve_addresses(profile=opted_out, channel="sms", content={})) == "unsubscribed from SMS"


def test_transactional_messages_ignore_email_and_push_opt_outs_but_never_sms(workspace: Workspace) -> None:
    person = make_profile(
        workspace,
        email="out@example.com",
        phone="+14155550100",
        email_subscription=SubscriptionState.UNSUBSCRIBED,
        push_subscription=SubscriptionState.UNSUBSCRIBED,
        sms_subscription=SubscriptionState.UNSUBSCRIBED,
    )
    make_device(person, "apns", "ab" * 32)
    email = resolve_addresses(profile=person, channel="email", content={}, transactional=True)
    push = resolve_addresses(profile=person, channel="push", content={}, transactional=True)
    assert [a.address for a in email] == ["out@example.com"]  # type: ignore[union-attr]
    assert [a.address for a in push] == ["ab" * 32]  # type: ignore[union-attr]
    assert reason(resolve_addresses(profile=person, channel="sms", content={}, transactional=True)) == (
        "unsubscribed from SMS"
    )


def test_in_app_and_cards_address_the_profile_itself(workspace: Workspace) -> None:
    person = make_profile(workspace)
    for channel in ("in_app", "content_card"):
        [address] = resolve_addresses(profile=person, channel=channel, content={})  # type: ignore[misc]
        assert (address.address, address.device_id, address.provider) == (str(person.pk), None, "")


def test_malformed_web_push_subscriptions_are_skipped(workspace: Workspace) -> None:
    person = make_profile(workspace)
    make_device(person, "webpush", "not json")
    make_device(person, "webpush", json.dumps({"endpoint": "https://push.example/1"}))
    assert reason(resolve_addresses(profile=person, channel="webpush", content={})) == "no web push subscription"


# --- prepare ------------------------------------------------------------------------------------------


def test_preparing_twice_returns_the_same_dispatches(workspace: Workspace) -> None:
    person = make_profile(workspace)
    make_device(person, "fcm", "token-a")
    make_device(person, "apns", "ab" * 32)
    kwargs: dict[str, Any] = {
        "workspace_id": workspace.pk,
        "profile": person,
        "channel": "push",
        "content": {"body": "Hi"},
        "idempotency_key": "campaign-3:2024-06-01:profile",
        "metadata": {"campaign_id": "3"},
    }

    first = dispatch_prepare(**kwargs)
    second = dispatch_prepare(**kwargs)

    assert isinstance(first, list) and isinstance(second, list)
    assert len(first) == 2
    assert [d.pk for d in first] == [d.pk for d in second]
    assert Dispatch.objects.count() == 2
    assert {d.status for d in second} == {DispatchStatus.PENDING}

    # A device registered since gets its own dispatch; the others are not repeated.
    make_device(person, "fcm", "token-new")
    third = dispatch_prepare(**kwargs)
    assert isinstance(third, list) and len(third) == 3
    assert {d.pk for d in first} < {d.pk for d in third}


def test_metadata_must_be_flat_strings(workspace: Workspace) -> None:
    person = make_profile(workspace, email="a@example.com")
    with pytest.raises(ValueError, match="flat"):
        dispatch_prepare(
            workspace_id=workspace.pk, profile=person, channel="email", content={}, idempotency_key="k",
            metadata={"nested": {"a": 1}},  # type: ignore[dict-item]
        )  # fmt: skip
    with pytest.raises(ValueError, match="reserved"):
        dispatch_prepare(
            workspace_id=workspace.pk, profile=person, channel="email", content={}, idempotency_key="k",
            metadata={"dispatch_id": "x"},
        )  # fmt: skip


def test_a_profile_of_another_workspace_is_refused(workspace: Workspace) -> None:
    stranger = make_profile(cast(Workspace, WorkspaceFactory()), email="a@example.com")
    with pytest.raises(ValueError, match="another workspace"):
        dispatch_prepare(workspace_id=workspace.pk, profile=stranger, channel="email", content={}, idempotency_key="k")


# --- send ---------------------------------------------------------------------------------------------


def test_sending_twice_calls_the_provider_once(workspace: Workspace, webhook_receiver: WebhookReceiver) -> None:
    person = make_profile(workspace)
    dispatch = prepare_one(person, "webhook", hook(webhook_receiver))

    first = dispatch_send(dispatch_id=dispatch.pk)
    second = dispatch_send(dispatch_id=dispatch.pk)

    assert first.status == second.status == DispatchStatus.SENT
    assert second.attempts == 1
    assert len(webhook_receiver.requests) == 1
    assert engagement_names(person) == [MESSAGE_RECEIVED]


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_dispatch_send_it_once(webhook_receiver: WebhookReceiver) -> None:
    workspace = cast(Workspace, WorkspaceFactory())
    person = make_profile(workspace)
    dispatch = prepare_one(person, "webhook", hook(webhook_receiver))
    start = threading.Barrier(4)
    statuses: list[str] = []

    def worker() -> None:
        try:
            start.wait()
            statuses.append(dispatch_send(dispatch_id=dispatch.pk).status)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(webhook_receiver.requests) == 1
    dispatch.refresh_from_db()
    assert (dispatch.status, dispatch.attempts) == (DispatchStatus.SENT, 1)
    assert Event.objects.filter(profile=person, name=MESSAGE_RECEIVED).count() == 1
    assert len(statuses) == 4


def test_a_dispatch_gives_up_after_its_attempts(
    workspace: Workspace, webhook_receiver: WebhookReceiver, settings: Any
) -> None:
    settings.CHANNELS_DISPATCH_MAX_ATTEMPTS = 3
    person = make_profile(workspace)
    dispatch = prepare_one(person, "webhook", hook(webhook_receiver))
    webhook_receiver.fail_next(*[Response(503, b"down")] * 3)

    for _ in range(2):
        with pytest.raises(TransientError):
            dispatch_send(dispatch_id=dispatch.pk)
    final = dispatch_send(dispatch_id=dispatch.pk)

    assert (final.status, final.attempts, final.permanent_failure) == (DispatchStatus.FAILED, 3, False)
    assert final.error_message.startswith("gave up after 3 attempts: the webhook answered 503")
    assert dispatch_send(dispatch_id=dispatch.pk).attempts == 3  # nothing more happens


def test_an_unexpected_error_is_recorded_and_not_retried(
    workspace: Workspace, webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.transports import webhook

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(webhook.WebhookTransport, "send", broken)
    dispatch = prepare_one(make_profile(workspace), "webhook", hook(webhook_receiver))

    with pytest.raises(RuntimeError):
        dispatch_send(dispatch_id=dispatch.pk)

    dispatch.refresh_from_db()
    assert (dispatch.status, dispatch.error_code) == (DispatchStatus.FAILED, "internal_error")
    assert "RuntimeError: boom" in dispatch.error_message


# --- the outbox sweep ---------------------------------------------------------------------------------


def test_the_sweep_requeues_lost_pending_dispatches_and_gives_up_on_stuck_ones(
    workspace: Workspace, webhook_receiver: WebhookReceiver
) -> None:
    person = make_profile(workspace)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        lost = prepare_one(person, "webhook", hook(webhook_receiver), key="lost")
        stuck = prepare_one(person, "webhook", hook(webhook_receiver), key="stuck")
        Dispatch.objects.filter(pk=stuck.pk).update(status=DispatchStatus.SENDING, claimed_at=start, attempts=1)

        clock.move_to(start + timedelta(seconds=60))
        fresh = prepare_one(person, "webhook", hook(webhook_receiver), key="fresh")
        early = dispatch_sweep()
        assert (early.requeue, early.abandoned) == ([], 0)

        clock.move_to(start + timedelta(minutes=16))
        result = dispatch_sweep()

    assert result.requeue == [str(lost.pk), str(fresh.pk)]
    assert result.abandoned == 1
    stuck.refresh_from_db()
    assert (stuck.status, stuck.error_code, stuck.error_message) == (
        DispatchStatus.FAILED,
        "outcome_unknown",
        OUTCOME_UNKNOWN_MESSAGE,
    )
    assert webhook_receiver.requests == []  # the stuck one is never sent again


def test_the_sweep_task_sends_what_was_lost(
    workspace: Workspace, webhook_receiver: WebhookReceiver, settings: Any
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    try:
        person = make_profile(workspace)
        with time_machine.travel(timezone.now() - timedelta(minutes=10)):
            lost = prepare_one(person, "webhook", hook(webhook_receiver))
        assert dispatch_sweep_task.apply().get() == {"requeued": 1, "abandoned": 0}
    finally:
        celery_app.conf.task_always_eager = False
    lost.refresh_from_db()
    assert lost.status == DispatchStatus.SENT
    assert len(webhook_receiver.requests) == 1


# --- tasks --------------------------------------------------------------------------------------------


def test_the_task_retries_a_transient_failure(workspace: Workspace, webhook_receiver: WebhookReceiver) -> None:
    dispatch = prepare_one(make_profile(workspace), "webhook", hook(webhook_receiver))
    webhook_receiver.fail_next(Response(503, b"down"))

    result = dispatch_send_task.apply(args=(str(dispatch.pk),))

    assert result.get() == DispatchStatus.SENT
    dispatch.refresh_from_db()
    assert dispatch.attempts == 2
    assert len(webhook_receiver.requests) == 2


def test_enqueue_waits_for_the_commit(
    workspace: Workspace, webhook_receiver: WebhookReceiver, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    queued: list[str] = []
    monkeypatch.setattr(dispatch_send_task, "delay", lambda dispatch_id: queued.append(dispatch_id))
    dispatch = prepare_one(make_profile(workspace), "webhook", hook(webhook_receiver))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        dispatch_enqueue(dispatch_ids=[dispatch.pk])
        assert queued == []
    assert len(callbacks) == 1
    assert queued == [str(dispatch.pk)]


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_once_however_often_the_task_is_delivered(
    monkeypatch: pytest.MonkeyPatch, webhook_receiver: WebhookReceiver
) -> None:
    """The project's Celery app, an embedded worker and an in-memory broker: the dispatch is queued
    on commit and delivered three times (a lost ack, a sweep); the endpoint is called once."""
    workspace = cast(Workspace, WorkspaceFactory())
    for key, value in {
        "broker_url": "memory://",
        "task_always_eager": False,
        "worker_hijack_root_logger": False,
    }.items():
        monkeypatch.setitem(celery_app.conf, key, value)
    # Producer pools made by earlier tests (any .delay()) still point at the default broker.
    celery_app.close()
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    finished: list[str] = []
    all_done = threading.Event()

    def on_postrun(task: Any = None, retval: Any = None, **_: Any) -> None:
        if task is None or task.name != dispatch_send_task.name:
            return  # engagement recorded by the send may queue other apps' tasks
        finished.append(str(retval))
        if len(finished) == 3:
            all_done.set()

    task_postrun.connect(on_postrun, weak=False)
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            dispatch = prepare_one(make_profile(workspace), "webhook", hook(webhook_receiver))
            dispatch_enqueue(dispatch_ids=[dispatch.pk])  # no transaction here: enqueued at once
            dispatch_send_task.delay(str(dispatch.pk))
            dispatch_send_task.delay(str(dispatch.pk))
            assert all_done.wait(timeout=60), finished
    finally:
        task_postrun.disconnect(on_postrun)
        celery_app.close()
        celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]

    assert sorted(finished) == ["sent", "sent", "sent"]  # each run reports the status it found
    dispatch.refresh_from_db()
    assert (dispatch.status, dispatch.attempts) == (DispatchStatus.SENT, 1)
    assert len(webhook_receiver.requests) == 1
