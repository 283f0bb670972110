"""The batch forms of dispatch_prepare / dispatch_send: the same rows and outcomes as one by one,
email over one connection per batch."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.mail.backends.smtp import EmailBackend

from channels.models import Dispatch, DispatchStatus
from channels.services.addresses import Unreachable
from channels.services.dispatch import dispatch_prepare
from channels.services.dispatch_batch import DispatchRequest, dispatch_prepare_many, dispatch_send_many
from channels.testing import SmtpSink
from profiles.engagement import MESSAGE_BOUNCED, MESSAGE_RECEIVED
from profiles.models import Event, Profile, SubscriptionState, Workspace

from .dispatch_helpers import smtp_sink  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

CONTENT = {"subject": "Hello", "text": "Hi there"}
opened: list[int] = []


class CountingBackend(EmailBackend):
    """Django's SMTP backend, counting the connections it opens."""

    def open(self) -> bool | None:
        created = super().open()
        if created:
            opened.append(1)
        return created


def person(workspace: Workspace, name: str, **fields: Any) -> Profile:
    return Profile.objects.create(workspace=workspace, external_id=name, email=f"{name}@example.com", **fields)


def request(profile: Profile, key: str) -> DispatchRequest:
    return DispatchRequest(
        workspace_id=profile.workspace_id,
        profile=profile,
        channel="email",
        content=CONTENT,
        idempotency_key=key,
        source="test",
        metadata={"campaign_id": "7", "send_id": key},
    )


@pytest.fixture
def smtp_settings(settings: Any, smtp_sink: SmtpSink) -> SmtpSink:  # noqa: F811
    settings.EMAIL_BACKEND = f"{__name__}.CountingBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_sink.port
    opened.clear()
    return smtp_sink


def test_prepare_many_makes_the_rows_prepare_would_and_is_idempotent(workspace: Workspace) -> None:
    ana, ben = person(workspace, "ana"), person(workspace, "ben")
    gone = person(workspace, "gone", email_subscription=SubscriptionState.UNSUBSCRIBED)
    answers = dispatch_prepare_many(requests=[request(ana, "k1"), request(gone, "k2"), request(ben, "k3")])
    assert answers[1] == Unreachable("unsubscribed from email")
    first, third = answers[0], answers[2]
    assert isinstance(first, list) and isinstance(third, list)
    single = dispatch_prepare(
        workspace_id=workspace.pk, profile=ana, channel="email", content=CONTENT, idempotency_key="k1"
    )
    assert isinstance(single, list) and [d.pk for d in single] == [d.pk for d in first]  # the same row
    again = dispatch_prepare_many(requests=[request(ana, "k1"), request(ben, "k3")])
    assert [[d.pk for d in answer] for answer in again if isinstance(answer, list)] == [
        [first[0].pk],
        [third[0].pk],
    ]
    assert Dispatch.objects.count() == 2


def test_send_many_sends_each_once_over_one_connection(workspace: Workspace, smtp_settings: SmtpSink) -> None:
    people = [person(workspace, f"p{n}") for n in range(5)]
    prepared = dispatch_prepare_many(requests=[request(p, f"key{n}") for n, p in enumerate(people)])
    ids = [answer[0].pk for answer in prepared if isinstance(answer, list)]
    result = dispatch_send_many(dispatch_ids=ids)
    assert {d.status for d in result.dispatches.values()} == {DispatchStatus.SENT}
    assert sorted(r for m in smtp_settings.messages for r in m.recipients) == sorted(p.email for p in people)
    assert len(opened) == 1
    received = Event.objects.filter(name=MESSAGE_RECEIVED)
    assert received.count() == 5
    assert {e.properties["campaign_id"] for e in received} == {7}
    # Again: nothing is pending, nothing is sent.
    assert dispatch_send_many(dispatch_ids=ids).transient == {}
    assert len(smtp_settings.messages) == 5


def test_a_refused_recipient_fails_alone_and_a_deferral_comes_back_pending(
    workspace: Workspace, smtp_settings: SmtpSink
) -> None:
    ok, refused, deferred, later = (person(workspace, n) for n in ("ok", "refused", "deferred", "later"))
    smtp_settings.reject.add(refused.email)
    smtp_settings.defer.add(deferred.email)
    prepared = dispatch_prepare_many(requests=[request(p, p.external_id or "") for p in (ok, refused, deferred, later)])
    ids = [answer[0].pk for answer in prepared if isinstance(answer, list)]
    result = dispatch_send_many(dispatch_ids=ids)
    by_person = {d.profile_id: d for d in result.dispatches.values()}
    assert by_person[ok.pk].status == DispatchStatus.SENT
    assert by_person[later.pk].status == DispatchStatus.SENT
    assert by_person[refused.pk].status == DispatchStatus.FAILED
    assert by_person[refused.pk].error_code == "550"
    assert Event.objects.filter(name=MESSAGE_BOUNCED, profile=refused).count() == 1
    assert by_person[deferred.pk].status == DispatchStatus.PENDING
    assert list(result.transient) == [str(by_person[deferred.pk].pk)]
    assert sorted(r for m in smtp_settings.messages for r in m.recipients) == ["later@example.com", "ok@example.com"]
