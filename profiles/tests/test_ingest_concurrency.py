"""Concurrent batches about the same person: no duplicate profiles, no lost events."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from profiles.models import Event, Profile
from profiles.services.ingest import ingest_batch
from profiles.tests.factories import AppFactory
from profiles.tests.intake_helpers import msg

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_threads(batches: list[list[dict[str, Any]]], app: Any) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(batches))

    def worker(messages: list[dict[str, Any]]) -> None:
        try:
            barrier.wait()
            ingest_batch(app=app, messages=messages)
        except BaseException as error:  # collected and asserted on below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_simultaneous_first_events_of_one_user_create_one_profile() -> None:
    app = AppFactory()
    batches = [
        [msg("track", userId="racer", anonymousId=f"anon-{i}", event="Application Opened") for _ in range(5)]
        for i in range(8)
    ]
    assert run_in_threads(batches, app) == []
    assert Profile.objects.count() == 1
    profile = Profile.objects.get()
    assert profile.external_id == "racer"
    assert Event.objects.filter(profile=profile, name="Application Opened").count() == 40
    assert Event.objects.filter(profile=profile, name="$session_started").count() == 40
    assert profile.session_count == 40
    assert profile.anonymous_ids.count() == 8


def test_simultaneous_identifies_of_many_devices_merge_into_one_profile() -> None:
    app = AppFactory()
    # Eight devices, each with anonymous history, all logging in as the same person at once.
    for i in range(8):
        ingest_batch(app=app, messages=[msg("track", anonymousId=f"dev-{i}", event="Browse")])
    batches = [
        [
            msg("identify", anonymousId=f"dev-{i}", userId="same-person"),
            msg("track", anonymousId=f"dev-{i}", event="After"),
        ]
        for i in range(8)
    ]
    assert run_in_threads(batches, app) == []
    assert Profile.objects.count() == 1
    assert Profile.objects.get().events.count() == 24
