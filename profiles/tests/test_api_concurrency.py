"""The REST API racing itself and the intake about the same person."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from profiles.models import Profile
from profiles.services.ingest import ingest_batch
from profiles.services.privacy import SuppressedIdentifierError, profile_delete
from profiles.services.profiles import profile_upsert
from profiles.tests.factories import AppFactory
from profiles.tests.intake_helpers import msg

pytestmark = pytest.mark.django_db(transaction=True)


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once, each on its own connection; return their results or exceptions."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        except BaseException as error:  # returned and asserted on by the test
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_simultaneous_creates_of_one_person_make_one_profile() -> None:
    app = AppFactory()
    workspace = app.workspace
    results = race(
        *[
            (lambda n=n: profile_upsert(workspace=workspace, external_id="racer", attributes={f"k{n}": n}))
            for n in range(6)
        ],
        *[(lambda: ingest_batch(app=app, messages=[msg("track", userId="racer", event="Opened")])) for _ in range(4)],
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert Profile.objects.filter(workspace=workspace).count() == 1
    profile = Profile.objects.get(workspace=workspace)
    # Every API write landed on the one profile; exactly one of them created it (or the intake did).
    assert {f"k{n}" for n in range(6)} <= set(profile.custom_attributes)
    assert sum(1 for r in results[:6] if r.created) <= 1
    assert profile.events.count() == 4


def test_a_create_racing_a_delete_never_resurrects_the_person() -> None:
    app = AppFactory()
    workspace = app.workspace
    person = profile_upsert(workspace=workspace, external_id="ada", attributes={"plan": "pro"}).profile
    results = race(
        lambda: profile_delete(profile=person),
        lambda: profile_upsert(workspace=workspace, external_id="ada", attributes={"plan": "max"}),
    )
    deleted, upserted = results
    assert not isinstance(deleted, BaseException), deleted
    assert deleted.profiles == 1
    # Either the delete went first and the write was refused, or the write updated the person and
    # the delete then erased them: never a new profile.
    assert isinstance(upserted, SuppressedIdentifierError) or upserted.created is False, upserted
    assert not Profile.objects.filter(workspace=workspace).exists()
