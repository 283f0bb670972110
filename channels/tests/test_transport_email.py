"""Email through a real SMTP conversation (a local aiosmtpd sink), through an anymail ESP over
HTTP (Postmark's API, faked on loopback), and through the deployment's default backend."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from django.core import mail

from channels.models import DispatchStatus
from channels.secrets import provider_config_set_secrets
from channels.services.dispatch import dispatch_send
from channels.testing import SmtpSink
from channels.testing.http import FakeHttpServer, Received, Response
from channels.transports.base import TransientError
from channels.transports.http import close_shared_clients
from profiles.engagement import MESSAGE_BOUNCED, MESSAGE_RECEIVED
from profiles.models import SubscriptionState, Workspace

from .dispatch_helpers import engagement, engagement_names, make_config, make_profile, prepare_one, smtp_sink

__all__ = ["smtp_sink"]

CONTENT = {
    "subject": "Spring deals, Jane",
    "html": "<html><body><p>Hello Jane</p></body></html>",
    "text": "Hello Jane",
    "preheader": "Up to 40% off this week",
    "from_name": "Acme Shop",
    "reply_to": "help@acme.example",
    "unsubscribe_url": "https://engage.example.com/unsubscribe/tok123",
}


def smtp_config(workspace: Workspace, sink: SmtpSink, **settings: Any) -> Any:
    return make_config(
        workspace,
        "smtp",
        settings={"host": "127.0.0.1", "port": sink.port, "from_email": "news@acme.example", **settings},
    )


def test_marketing_email_arrives_over_smtp_with_one_click_unsubscribe(
    workspace: Workspace, smtp_sink: SmtpSink
) -> None:
    smtp_config(workspace, smtp_sink, unsubscribe_mailto="unsubscribe@acme.example")
    jane = make_profile(workspace, email="jane@example.com", first_name="Jane")
    dispatch = prepare_one(jane, "email", CONTENT)

    sent = dispatch_send(dispatch_id=dispatch.pk)

    assert sent.status == DispatchStatus.SENT
    [message] = smtp_sink.messages
    assert message.recipients == ["jane@example.com"]
    assert message.subject == "Spring deals, Jane"
    assert message.header("From") == "Acme Shop <news@acme.example>"
    assert message.header("Reply-To") == "help@acme.example"
    assert message.header("List-Unsubscribe") == (
        "<https://engage.example.com/unsubscribe/tok123>, <mailto:unsubscribe@acme.example>"
    )
    assert message.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert message.header("X-Engage-Dispatch-Id") == str(dispatch.pk)
    assert message.body("plain").strip() == "Hello Jane"
    html = message.body("html")
    # The preheader is the first thing in the body, hidden when the email is opened.
    assert html.index("Up to 40% off this week") < html.index("Hello Jane")
    assert "display:none" in html
    # The SMTP Message-ID is the id kept for the send.
    assert sent.provider_message_id == message.header("Message-ID")
    received = engagement(jane, MESSAGE_RECEIVED)
    assert received.properties == {
        "campaign_id": 7,
        "channel": "email",
        "variant": "A",
        "send_id": "send-1",
        "dispatch_id": str(dispatch.pk),
    }


def test_marketing_email_without_a_link_gets_the_hosted_unsubscribe_link(
    workspace: Workspace, smtp_sink: SmtpSink, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = "https://engage.example.com"
    smtp_config(workspace, smtp_sink)
    jane = make_profile(workspace, email="jane@example.com")
    content = {key: value for key, value in CONTENT.items() if key != "unsubscribe_url"}

    dispatch_send(dispatch_id=prepare_one(jane, "email", content).pk)

    header = smtp_sink.messages[0].header("List-Unsubscribe")
    assert header.startswith("<https://engage.example.com/unsubscribe/")
    assert smtp_sink.messages[0].header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"


def test_transactional_email_without_a_link_has_no_unsubscribe_headers(
    workspace: Workspace, smtp_sink: SmtpSink
) -> None:
    smtp_config(workspace, smtp_sink)
    jane = make_profile(workspace, email="jane@example.com", email_subscription=SubscriptionState.UNSUBSCRIBED)
    receipt = {"subject": "Your receipt", "text": "Order 1001: paid"}

    sent = dispatch_send(dispatch_id=prepare_one(jane, "email", receipt, transactional=True).pk)

    assert sent.status == DispatchStatus.SENT
    [message] = smtp_sink.messages
    assert message.header("List-Unsubscribe") == ""
    assert message.header("List-Unsubscribe-Post") == ""


def test_smtp_login_uses_the_stored_password(workspace: Workspace) -> None:
    with SmtpSink(credentials=("mailer", "pa55word")) as sink:
        config = smtp_config(workspace, sink, username="mailer")
        provider_config_set_secrets(config, password="pa55word")
        jane = make_profile(workspace, email="jane@example.com")
        sent = dispatch_send(dispatch_id=prepare_one(jane, "email", CONTENT).pk)
        assert sent.status == DispatchStatus.SENT
        assert sink.messages[0].authenticated_as == "mailer"

        provider_config_set_secrets(config, password="wrong")
        again = dispatch_send(dispatch_id=prepare_one(jane, "email", CONTENT, key="other").pk)
        assert again.status == DispatchStatus.FAILED
        assert again.error_code == "auth_failed"
        assert again.permanent_failure


def test_a_hard_reject_fails_the_send_and_records_a_bounce(workspace: Workspace, smtp_sink: SmtpSink) -> None:
    smtp_config(workspace, smtp_sink)
    smtp_sink.reject.add("gone@example.com")
    gone = make_profile(workspace, email="gone@example.com")

    failed = dispatch_send(dispatch_id=prepare_one(gone, "email", CONTENT).pk)

    assert failed.status == DispatchStatus.FAILED
    assert failed.permanent_failure
    assert failed.error_code == "550"
    assert "User unknown" in failed.error_message
    assert engagement_names(gone) == [MESSAGE_BOUNCED]
    assert engagement(gone, MESSAGE_BOUNCED).properties["reason"] == "550"
    # Whether a reject unsubscribes is the bounce webhook's call, not the send's.
    gone.refresh_from_db()
    assert gone.email_subscription == SubscriptionState.SUBSCRIBED


def test_a_deferral_is_retried_and_then_sent(workspace: Workspace, smtp_sink: SmtpSink) -> None:
    smtp_config(workspace, smtp_sink)
    smtp_sink.defer.add("busy@example.com")
    busy = make_profile(workspace, email="busy@example.com")
    dispatch = prepare_one(busy, "email", CONTENT)

    with pytest.raises(TransientError):
        dispatch_send(dispatch_id=dispatch.pk)
    dispatch.refresh_from_db()
    assert (dispatch.status, dispatch.attempts, dispatch.error_code) == (DispatchStatus.PENDING, 1, "450")

    smtp_sink.defer.clear()
    sent = dispatch_send(dispatch_id=dispatch.pk)
    assert (sent.status, sent.attempts) == (DispatchStatus.SENT, 2)
    assert len(smtp_sink.messages) == 1


def test_an_smtp_server_that_is_down_is_a_temporary_failure(workspace: Workspace) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_config(workspace, "smtp", settings={"host": "127.0.0.1", "port": port, "timeout": 2})
    jane = make_profile(workspace, email="jane@example.com")
    dispatch = prepare_one(jane, "email", CONTENT)

    with pytest.raises(TransientError) as raised:
        dispatch_send(dispatch_id=dispatch.pk)
    assert raised.value.code == "connect_failed"
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.PENDING


def test_without_a_workspace_provider_the_deployment_backend_sends(workspace: Workspace, mailoutbox: Any) -> None:
    jane = make_profile(workspace, email="jane@example.com")
    dispatch = prepare_one(jane, "email", CONTENT)
    assert dispatch.provider == ""

    sent = dispatch_send(dispatch_id=dispatch.pk)

    assert sent.status == DispatchStatus.SENT
    [message] = mail.outbox
    assert message.to == ["jane@example.com"]
    assert message.metadata == {  # type: ignore[union-attr]
        "dispatch_id": str(dispatch.pk),
        "campaign_id": "7",
        "variant": "A",
        "send_id": "send-1",
    }


def test_a_deactivated_provider_fails_the_send_instead_of_switching_backend(
    workspace: Workspace, smtp_sink: SmtpSink, mailoutbox: Any
) -> None:
    config = smtp_config(workspace, smtp_sink)
    jane = make_profile(workspace, email="jane@example.com")
    dispatch = prepare_one(jane, "email", CONTENT)
    config.is_active = False
    config.save()

    failed = dispatch_send(dispatch_id=dispatch.pk)

    assert (failed.status, failed.error_code) == (DispatchStatus.FAILED, "not_configured")
    assert mail.outbox == [] and smtp_sink.messages == []


# --- an ESP through django-anymail ----------------------------------------------------------------


class FakePostmark(FakeHttpServer):
    """Postmark's /email endpoint, as anymail's Postmark backend calls it."""

    name = "postmark"

    def __init__(self) -> None:
        super().__init__()
        self.inactive: set[str] = set()

    def respond(self, received: Received) -> Response:
        if received.headers.get("x-postmark-server-token") != "pm-server-token":
            return Response.json(401, {"ErrorCode": 10, "Message": "No Account or Server API tokens were supplied."})
        payload = received.json()
        received.info["payload"] = payload
        to = payload["To"]
        if to in self.inactive:
            return Response.json(
                422,
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to recipient(s) that have been marked as inactive.\n"
                    f" Found inactive addresses: {to}.\n Inactive recipients are ones that have generated a hard"
                    " bounce or a spam complaint. ",
                },
            )
        return Response.json(
            200,
            {
                "To": to,
                "SubmittedAt": "2024-06-01T10:00:00Z",
                "MessageID": "b7bc2f4a-e38e-4336-af7d",
                "ErrorCode": 0,
                "Message": "OK",
            },
        )


@pytest.fixture
def postmark() -> Any:
    with FakePostmark() as fake:
        yield fake
    close_shared_clients()


def postmark_config(workspace: Workspace, fake: FakePostmark) -> Any:
    return make_config(
        workspace,
        "anymail",
        settings={"esp": "postmark", "options": {"api_url": fake.url + "/"}, "from_email": "news@acme.example"},
        secrets={"server_token": "pm-server-token"},
    )


def test_an_esp_send_carries_the_dispatch_metadata(workspace: Workspace, postmark: FakePostmark) -> None:
    postmark_config(workspace, postmark)
    jane = make_profile(workspace, email="jane@example.com")
    dispatch = prepare_one(jane, "email", CONTENT)
    assert dispatch.provider == "anymail"

    sent = dispatch_send(dispatch_id=dispatch.pk)

    assert sent.status == DispatchStatus.SENT
    assert sent.provider_message_id == "b7bc2f4a-e38e-4336-af7d"
    payload = postmark.requests[0].info["payload"]
    assert payload["Metadata"] == {
        "dispatch_id": str(dispatch.pk),
        "campaign_id": "7",
        "variant": "A",
        "send_id": "send-1",
    }
    headers = {header["Name"]: header["Value"] for header in payload["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert json.dumps(payload).count("tok123") == 1


def test_an_esp_rejecting_the_recipient_is_permanent(workspace: Workspace, postmark: FakePostmark) -> None:
    postmark_config(workspace, postmark)
    postmark.inactive.add("gone@example.com")
    gone = make_profile(workspace, email="gone@example.com")

    failed = dispatch_send(dispatch_id=prepare_one(gone, "email", CONTENT).pk)

    assert (failed.status, failed.error_code, failed.permanent_failure) == (DispatchStatus.FAILED, "rejected", True)
    assert engagement_names(gone) == [MESSAGE_BOUNCED]


def test_an_esp_outage_is_retried(workspace: Workspace, postmark: FakePostmark) -> None:
    postmark_config(workspace, postmark)
    postmark.fail_next(Response.json(503, {"ErrorCode": 500, "Message": "Service unavailable"}))
    jane = make_profile(workspace, email="jane@example.com")
    dispatch = prepare_one(jane, "email", CONTENT)

    with pytest.raises(TransientError):
        dispatch_send(dispatch_id=dispatch.pk)
    assert dispatch_send(dispatch_id=dispatch.pk).status == DispatchStatus.SENT
