from __future__ import annotations

from datetime import UTC, datetime

import pytest

from profiles.models import App, Device, Profile
from profiles.services.ingest import ingest_batch
from profiles.services.subscriptions import device_disable_push, profile_set_subscription
from profiles.tests.intake_helpers import msg

pytestmark = pytest.mark.django_db

DEVICE = {"device": {"id": "d1", "token": "tok-1", "type": "android"}}


def test_subscription_change_is_timestamped_once(app: App) -> None:
    ingest_batch(app=app, messages=[msg("identify", userId="u1", traits={"email": "a@b.co"})])
    profile = Profile.objects.get()
    when = datetime(2026, 11, 1, tzinfo=UTC)
    assert profile_set_subscription(profile_id=profile.pk, channel="email", state="unsubscribed", at=when)
    assert not profile_set_subscription(profile_id=profile.pk, channel="email", state="unsubscribed")
    profile.refresh_from_db()
    assert (profile.email_subscription, profile.email_subscription_changed_at) == ("unsubscribed", when)


def test_unknown_channel_or_state_is_refused(app: App) -> None:
    with pytest.raises(ValueError, match="channel must be one of email, push, sms"):
        profile_set_subscription(profile_id=1, channel="fax", state="subscribed")
    with pytest.raises(ValueError, match="state must be one of"):
        profile_set_subscription(profile_id=1, channel="email", state="maybe")


def test_refused_token_stays_off_until_the_app_registers_a_new_one(app: App) -> None:
    ingest_batch(app=app, messages=[msg("track", userId="u1", event="A", context=DEVICE)])
    device = Device.objects.get()
    assert device_disable_push(device_id=device.pk, reason="UNREGISTERED")
    # The SDK keeps sending the same (dead) token with every call: it stays off.
    ingest_batch(app=app, messages=[msg("track", userId="u1", event="B", context=DEVICE)])
    device.refresh_from_db()
    assert (device.push_enabled, device.push_disabled_reason) == (False, "UNREGISTERED")
    # A reinstall brings a new token: push is back on.
    new_token = {"device": {"id": "d1", "token": "tok-2", "type": "android"}}
    ingest_batch(app=app, messages=[msg("track", userId="u1", event="C", context=new_token)])
    device.refresh_from_db()
    assert (device.push_enabled, device.push_token, device.push_disabled_reason) == (True, "tok-2", "")
