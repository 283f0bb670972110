"""seed_demo: the demo a new user finds on the first ``./run``, built through the intake, loaded once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from profiles.management.commands.seed_demo import BATCH_SIZE, MESSAGE_ID_PREFIX, DemoGenerator, batches
from profiles.models import Device, Event, Platform, Profile, ProfileMerge, Purchase, Workspace

PEOPLE = 30


def _seed(tmp_path: Path) -> tuple[dict[str, object], str]:
    out = StringIO()
    call_command(
        "seed_demo",
        people=PEOPLE,
        summary_file=tmp_path / "demo.json",
        password_file=tmp_path / "admin-password",
        stdout=out,
    )
    return json.loads((tmp_path / "demo.json").read_text()), out.getvalue()


def test_the_demo_is_the_same_every_time() -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)

    first = [m.body for m in DemoGenerator(people=PEOPLE, now=now).messages()]
    second = [m.body for m in DemoGenerator(people=PEOPLE, now=now).messages()]

    assert first == second
    ids = [body["messageId"] for body in first]
    assert len(ids) == len(set(ids))
    assert all(body["timestamp"] < "2025-03-01T12" for body in first)
    plan = batches(DemoGenerator(people=PEOPLE, now=now).messages(), now=now)
    assert all(0 < len(batch) <= BATCH_SIZE for _, batch in plan)
    assert sum(len(batch) for _, batch in plan) == len(first)


@pytest.mark.django_db
def test_seed_demo_creates_the_login_the_workspace_and_realistic_people(tmp_path: Path) -> None:
    summary, _ = _seed(tmp_path)

    admin = User.objects.get(username=summary["username"])
    assert admin.is_superuser
    assert isinstance(summary["password"], str)
    assert admin.check_password(summary["password"])
    assert (tmp_path / "admin-password").read_text().strip() == summary["password"]
    workspace = Workspace.objects.get(slug="demo")
    assert list(workspace.members.all()) == [admin]
    assert sorted(workspace.apps.values_list("platform", flat=True)) == sorted(Platform.values)
    assert {key["write_key"] for key in summary["write_keys"]} == set(  # type: ignore[union-attr]
        workspace.apps.values_list("write_key", flat=True)
    )

    people = Profile.objects.filter(workspace=workspace)
    assert people.filter(external_id__isnull=True).exists(), "some visitors never sign up"
    known = people.exclude(external_id=None).exclude(email="").exclude(date_of_birth=None).exclude(time_zone="")
    assert known.filter(custom_attributes__has_key="loyalty_tier").exists()
    assert people.exclude(utm_source="").exists()
    assert people.filter(session_count__gt=1).exists()
    assert ProfileMerge.objects.filter(workspace=workspace).exists(), "browsers that log in merge"
    assert Purchase.objects.filter(workspace=workspace).exists()
    assert Device.objects.filter(workspace=workspace, push_enabled=True).exclude(push_token="").exists()


@pytest.mark.django_db
def test_seed_demo_loads_once_and_keeps_the_login(tmp_path: Path) -> None:
    summary, _ = _seed(tmp_path)
    events = Event.objects.count()

    again, output = _seed(tmp_path)

    assert "already loaded" in output
    assert again == summary
    assert Event.objects.count() == events
    assert User.objects.filter(is_superuser=True).count() == 1


@pytest.mark.django_db
def test_seed_demo_completes_an_interrupted_load_without_storing_anything_twice(tmp_path: Path) -> None:
    _seed(tmp_path)
    demo_events = Event.objects.filter(message_id__startswith=MESSAGE_ID_PREFIX)
    events = demo_events.count()
    Event.objects.filter(pk__in=list(demo_events.order_by("-pk").values_list("pk", flat=True)[:5])).delete()

    # Hours later (the generator's draws depend on its clock): the same messages, the same ids.
    with time_machine.travel(timezone.now() + timedelta(hours=5, minutes=17), tick=False):
        _, output = _seed(tmp_path)

    assert f"5 messages stored ({events - 5} were already there)" in output
    assert demo_events.count() == events


@pytest.mark.django_db
def test_seed_demo_leaves_an_existing_superuser_alone(tmp_path: Path) -> None:
    User.objects.create_superuser(username="owner", email="owner@example.com", password="their own")

    summary, _ = _seed(tmp_path)

    assert summary["username"] == "owner"
    assert summary["password"] is None
    assert not User.objects.filter(username="admin").exists()
    assert not (tmp_path / "admin-password").exists()
