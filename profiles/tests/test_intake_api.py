"""The intake's HTTP contract, as Segment-compatible SDKs and browsers rely on it."""

from __future__ import annotations

import gzip
import json

import pytest
from django.core.cache import cache
from django.test import Client

from profiles.models import App, Event, Profile
from profiles.tests.intake_helpers import basic_auth, batch, msg, post_json

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_counters() -> None:
    cache.clear()


def test_batch_success_is_exactly_200_with_success_true(client: Client, app: App) -> None:
    response = batch(client, app, msg("track", userId="u1", event="Signed Up"))
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert Event.objects.get().name == "Signed Up"


def test_unknown_write_key_is_401_with_code_and_message(client: Client, app: App) -> None:
    response = client.post(
        "/v1/batch",
        data=json.dumps({"batch": [msg("track", userId="u", event="x")]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth("wk_nope"),
    )
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert "write key" in response.json()["message"]
    assert not Event.objects.exists()


def test_missing_write_key_is_401(client: Client, app: App) -> None:
    response = post_json(client, "/v1/batch", {"batch": [msg("track", userId="u", event="x")]})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_inactive_app_is_refused(client: Client, app: App) -> None:
    App.objects.filter(pk=app.pk).update(is_active=False)
    response = batch(client, app, msg("track", userId="u", event="x"))
    assert response.status_code == 401


def test_a_disabled_key_stops_working_within_the_cache_window(
    client: Client, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from profiles.api import intake

    assert batch(client, app, msg("track", userId="u", event="x")).status_code == 200
    App.objects.filter(pk=app.pk).update(is_active=False)
    # Within the window the web process still knows the key; past it, the key is refused.
    assert batch(client, app, msg("track", userId="u", event="x")).status_code == 200
    clock = intake.time.monotonic() + intake.WRITE_KEY_CACHE_SECONDS + 1
    monkeypatch.setattr(intake.time, "monotonic", lambda: clock)
    assert batch(client, app, msg("track", userId="u", event="x")).status_code == 401


def test_write_key_in_body_with_text_plain_like_analytics_js(client: Client, app: App) -> None:
    body = {"writeKey": app.write_key, **msg("track", anonymousId="a1", event="Clicked")}
    response = post_json(client, "/v1/t", body, content_type="text/plain")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert Event.objects.get().type == "track"


def test_cors_preflight(client: Client) -> None:
    response = client.options(
        "/v1/batch", HTTP_ORIGIN="https://shop.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Content-Type" in response["Access-Control-Allow-Headers"]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/identify", "identify"),
        ("/v1/i", "identify"),
        ("/v1/track", "track"),
        ("/v1/page", "page"),
        ("/v1/p", "page"),
        ("/v1/screen", "screen"),
        ("/v1/s", "screen"),
        ("/v1/group", "group"),
        ("/v1/g", "group"),
    ],
)
def test_single_call_endpoints(client: Client, app: App, path: str, kind: str) -> None:
    body = {"userId": "u1", "event": "E", "name": "Home", "groupId": "g1", "traits": {"plan": "pro"}}
    response = post_json(client, path, body, app=app)
    assert response.status_code == 200, response.content
    assert Event.objects.exclude(name="$session_started").get().type == kind


def test_alias_endpoint(client: Client, app: App) -> None:
    post_json(client, "/v1/track", {"anonymousId": "anon-9", "event": "Viewed"}, app=app)
    response = post_json(client, "/v1/a", {"userId": "u9", "previousId": "anon-9"}, app=app)
    assert response.status_code == 200
    profile = Profile.objects.get()
    assert profile.external_id == "u9"
    assert profile.events.count() == 2


def test_gzip_body_is_accepted(client: Client, app: App) -> None:
    response = post_json(
        client, "/v1/batch", {"batch": [msg("track", userId="u", event="Zipped")]}, app=app, gzipped=True
    )
    assert response.status_code == 200
    assert Event.objects.get().name == "Zipped"


def test_gzip_bomb_is_refused_without_inflating_it_all(client: Client, app: App, settings: object) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
    response = client.post(
        "/v1/batch",
        data=bomb,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=basic_auth(app.write_key),
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_batch_over_500_kb_is_413(client: Client, app: App) -> None:
    messages = [msg("track", userId="u", event="x", properties={"pad": "x" * 20_000}) for _ in range(30)]
    response = batch(client, app, *messages)
    assert response.status_code == 413
    assert "500 KB" in response.json()["message"]
    assert not Event.objects.exists()


def test_message_over_32_kb_is_rejected_alone(client: Client, app: App) -> None:
    big = msg("track", userId="u", event="Big", properties={"pad": "x" * 40_000})
    response = batch(client, app, msg("track", userId="u", event="Small"), big)
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {"index": 1, "code": "message_too_large", "message": "message is larger than 32 KB"}
    ]
    assert list(Event.objects.values_list("name", flat=True)) == ["Small"]


def test_single_message_over_32_kb_is_413(client: Client, app: App) -> None:
    response = post_json(
        client, "/v1/track", {"userId": "u", "event": "Big", "properties": {"pad": "x" * 40_000}}, app=app
    )
    assert response.status_code == 413


def test_bad_message_in_batch_is_rejected_alone_with_index_and_reason(client: Client, app: App) -> None:
    response = batch(
        client,
        app,
        msg("track", userId="u1", event="Good"),
        msg("track", userId="u1"),
        msg("identify", userId="u1", traits={"email": "not-an-email"}),
        msg("track", userId="u1", event="Also good"),
    )
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "rejected": [
            {"index": 1, "code": "missing_field", "message": "event: is required (a non-empty string)"},
            {
                "index": 2,
                "code": "invalid_trait",
                "message": "traits.email: must be an email address, e.g. ada@example.com",
            },
        ],
    }
    assert sorted(Event.objects.values_list("name", flat=True)) == ["Also good", "Good"]


def test_batch_where_every_message_is_bad_is_400(client: Client, app: App) -> None:
    response = batch(client, app, msg("track", userId="u1"))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_batch"
    assert body["rejected"][0]["index"] == 0


def test_single_call_with_bad_message_is_400_naming_the_field(client: Client, app: App) -> None:
    response = post_json(client, "/v1/track", {"userId": "u1"}, app=app)
    assert response.status_code == 400
    assert response.json() == {"code": "missing_field", "message": "event: is required (a non-empty string)"}


def test_malformed_json_is_400(client: Client, app: App) -> None:
    response = post_json(client, "/v1/batch", None, app=app, raw=b"{not json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert "not valid JSON" in response.json()["message"]


def test_batch_must_be_an_array(client: Client, app: App) -> None:
    response = post_json(client, "/v1/batch", {"batch": {"type": "track"}}, app=app)
    assert response.status_code == 400
    assert response.json()["message"] == "batch: must be an array of messages"


def test_resent_batch_is_stored_once(client: Client, app: App) -> None:
    messages = [msg("track", userId="u1", event="Application Opened"), msg("screen", userId="u1", name="Home")]
    assert batch(client, app, *messages).status_code == 200
    assert batch(client, app, *messages).status_code == 200
    assert Event.objects.exclude(name="$session_started").count() == 2
    assert Event.objects.filter(name="$session_started").count() == 1
    assert Profile.objects.get().session_count == 1


def test_throttled_write_key_gets_429_with_retry_after(client: Client, app: App) -> None:
    App.objects.filter(pk=app.pk).update(rate_limit_per_second=2)
    app.refresh_from_db()
    statuses = [batch(client, app, msg("track", userId="u", event="x")).status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    response = batch(client, app, msg("track", userId="u", event="x"))
    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "throttled"


def test_batch_level_context_applies_to_each_message(client: Client, app: App) -> None:
    response = batch(
        client, app, msg("track", userId="u1", event="x"), context={"locale": "de-DE", "timezone": "Europe/Berlin"}
    )
    assert response.status_code == 200
    profile = Profile.objects.get()
    assert (profile.language, profile.country, profile.time_zone) == ("de", "DE", "Europe/Berlin")


def test_schema_documents_the_intake(client: Client) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/v1/batch" in response.content.decode()
