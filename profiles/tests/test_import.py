"""Bulk CSV import: upload through the API, the background run, progress, errors, re-runs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from config.celery import app as celery_app
from profiles.models import Profile, ProfileImport, Workspace
from profiles.services import imports
from profiles.services.imports import profile_import_create, profile_import_retry, profile_import_run, typed_value
from profiles.services.privacy import suppression_add
from profiles.tasks import profile_import_task
from profiles.tests.api_helpers import api_client_for
from profiles.tests.factories import ProfileFactory, WorkspaceFactory

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def api(workspace: Workspace) -> APIClient:
    """A client with a key of the ``workspace`` fixture holding every profiles scope."""
    return api_client_for(workspace)


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def csv_file(text: str, name: str = "people.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def upload(workspace: Workspace, text: str) -> ProfileImport:
    return profile_import_create(workspace=workspace, file=csv_file(text))


def run(profile_import: ProfileImport) -> ProfileImport:
    profile_import_task.apply(args=(profile_import.pk,))
    profile_import.refresh_from_db()
    return profile_import


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("FALSE", False),
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        ("007", "007"),
        ("1.5", 1.5),
        ("1.50", "1.50"),
        ("1.10", "1.10"),
        ("1234567890123456", "1234567890123456"),
        ("2025-06-01", "2025-06-01"),
        ("1e3", "1e3"),
        ("pro", "pro"),
    ],
)
def test_cells_are_typed_only_when_the_value_reads_back_the_same(text: str, value: Any) -> None:
    assert typed_value(text) == value
    assert type(typed_value(text)) is type(value)


def test_the_api_accepts_a_csv_and_reports_progress(
    api: APIClient, workspace: Workspace, django_capture_on_commit_callbacks: Any
) -> None:
    text = "external_id,email,first_name,plan\nada,ADA@example.com,Ada,pro\ngrace,not-an-email,Grace,free\n"
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post("/api/v1/profiles/imports", {"file": csv_file(text)}, format="multipart")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert body["status_url"] == f"http://testserver/api/v1/profiles/imports/{body['id']}"
    assert len(callbacks) == 1  # the task is queued on commit

    run(ProfileImport.objects.get(pk=body["id"]))

    status = api.get(body["status_url"]).json()
    assert status["status"] == "done"
    assert (status["total_rows"], status["processed_rows"], status["imported_rows"], status["error_rows"]) == (
        2,
        2,
        1,
        1,
    )
    assert status["percent"] == 100.0
    assert status["errors"] == [
        {"row": 3, "field": "email", "message": "must be an email address, e.g. ada@example.com"}
    ]
    ada = Profile.objects.get(workspace=workspace, external_id="ada")
    assert (ada.email, ada.first_name, ada.custom_attributes) == ("ada@example.com", "Ada", {"plan": "pro"})
    assert not Profile.objects.filter(external_id="grace").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file is empty"),
        (" \n\n", "the file is empty; the first row must name the columns"),
        ("email,first_name\na@example.com,A\n", "an external_id column is required"),
        ("external_id,session_count\nada,3\n", "'session_count' is maintained by the platform"),
        ("external_id,email,email_address\nada,a@b.co,a@b.co\n", "'email' and 'email_address' set the same attribute"),
        ("external_id,,plan\n", "column 2 has no name"),
    ],
)
def test_a_header_that_cannot_be_imported_is_refused_at_upload(
    api: APIClient, workspace: Workspace, text: str, message: str
) -> None:
    response = api.post("/api/v1/profiles/imports", {"file": csv_file(text)}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert any(message in m for m in response.json()["errors"]["file"]), response.json()
    assert not ProfileImport.objects.exists()


def test_a_file_that_is_not_utf8_is_refused(api: APIClient) -> None:
    upload_ = SimpleUploadedFile("x.csv", "external_id,city\nada,Zürich\n".encode("latin-1"))
    # The header is ASCII; the bad byte is in a row, so the upload is accepted and the run fails.
    response = api.post("/api/v1/profiles/imports", {"file": upload_}, format="multipart")
    assert response.status_code == 202
    profile_import = run(ProfileImport.objects.get(pk=response.json()["id"]))
    assert profile_import.status == ProfileImport.Status.FAILED
    assert "not UTF-8" in profile_import.failure
    assert not Profile.objects.exists()  # the whole file is checked before any row is imported

    bad_header = SimpleUploadedFile("y.csv", "external_id,Stra\xdfe\n".encode("latin-1"))
    response = api.post("/api/v1/profiles/imports", {"file": bad_header}, format="multipart")
    assert response.status_code == 400
    assert "not UTF-8" in response.json()["message"]


def test_the_upload_must_be_multipart_with_a_file(api: APIClient) -> None:
    assert api.post("/api/v1/profiles/imports", {}, format="multipart").json()["errors"] == {
        "file": ["No file was submitted."]
    }
    assert api.post("/api/v1/profiles/imports", {"file": "x"}, format="json").status_code == 415


def test_import_status_of_another_workspace_is_404(api: APIClient, workspace: Workspace) -> None:
    other = upload(WorkspaceFactory(), "external_id\nada\n")
    assert api.get(f"/api/v1/profiles/imports/{other.pk}").status_code == 404


def test_standard_subscription_and_custom_columns(workspace: Workspace) -> None:
    existing = ProfileFactory(
        workspace=workspace,
        external_id="ada",
        first_name="Ada",
        last_name="Lovelace",
        email_subscription="opted_in",
        custom_attributes={"plan": "free", "keep": 1},
    )
    text = (
        "External ID,Email Address,last_name,dob,Country,home_city,email_subscribe,push_subscription,"
        "plan,age,vip,since\n"
        "ada,ada@example.com,,1815-12-10,gb,London,opted_in,unsubscribed,pro,36,true,2024-01-01\n"
        "grace,grace@example.com,Hopper,,US,,unsubscribed,,free,85,false,\n"
    )
    with time_machine.travel(T0, tick=False):
        profile_import = run(upload(workspace, text))
    assert (profile_import.status, profile_import.imported_rows, profile_import.error_rows) == ("done", 2, 0)

    ada = Profile.objects.get(pk=existing.pk)
    assert ada.email == "ada@example.com"
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")  # blank cells leave values alone
    assert str(ada.date_of_birth) == "1815-12-10"
    assert (ada.country, ada.city) == ("GB", "London")
    assert ada.custom_attributes == {"plan": "pro", "keep": 1, "age": 36, "vip": True, "since": "2024-01-01"}
    # Unchanged state: no new change time; a changed one is stamped.
    assert ada.email_subscription == "opted_in" and ada.email_subscription_changed_at is None
    assert ada.push_subscription == "unsubscribed" and ada.push_subscription_changed_at == T0

    grace = Profile.objects.get(workspace=workspace, external_id="grace")
    assert (grace.last_name, grace.country, grace.email_subscription) == ("Hopper", "US", "unsubscribed")
    assert grace.email_subscription_changed_at == T0
    assert grace.push_subscription == "subscribed" and grace.push_subscription_changed_at is None
    assert grace.custom_attributes == {"plan": "free", "age": 85, "vip": False}
    assert 0 <= grace.random_bucket <= 9999


def test_row_errors_are_reported_and_the_rest_imported(workspace: Workspace) -> None:
    text = (
        "external_id,email,gender,plan\n"
        "ada,ada@example.com,f,pro\n"
        ",nobody@example.com,,\n"
        "\n"
        "bad,bad-email,alien,x\n"
        "wide,w@example.com,m,x,extra\n"
        f"{'x' * 300},long@example.com,,\n"
    )
    profile_import = run(upload(workspace, text))
    assert (profile_import.total_rows, profile_import.imported_rows, profile_import.error_rows) == (5, 1, 4)
    assert profile_import.errors == [
        {"row": 3, "field": "external_id", "message": "is required"},
        {"row": 5, "field": "email", "message": "must be an email address, e.g. ada@example.com"},
        {
            "row": 5,
            "field": "gender",
            "message": "must be one of male, female, other, not_applicable, prefer_not_to_say",
        },
        {"row": 6, "field": "row", "message": "has 5 cells; the header names 4 columns"},
        {"row": 7, "field": "external_id", "message": "must be at most 255 characters"},
    ]
    assert list(Profile.objects.values_list("external_id", flat=True)) == ["ada"]


def test_a_deleted_person_is_not_imported_again(workspace: Workspace) -> None:
    suppression_add(workspace=workspace, identifiers=[("external_id", "gone")])
    profile_import = run(upload(workspace, "external_id,plan\nalive,pro\ngone,pro\n"))
    assert (profile_import.imported_rows, profile_import.error_rows) == (1, 1)
    assert profile_import.errors[0]["row"] == 3
    assert profile_import.errors[0]["message"].startswith("deleted person")
    assert not Profile.objects.filter(external_id="gone").exists()


def test_the_same_person_twice_in_a_file_is_applied_in_order(workspace: Workspace) -> None:
    profile_import = run(upload(workspace, "external_id,plan,city\nada,free,Paris\nada,pro,\n"))
    assert profile_import.imported_rows == 2
    ada = Profile.objects.get(external_id="ada")
    assert (ada.custom_attributes, ada.city) == ({"plan": "pro"}, "Paris")


def test_batches_advance_the_progress_and_a_rerun_changes_nothing(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "BATCH_SIZE", 3)
    rows = "".join(f"p{n},{'bad' if n == 4 else f'p{n}@example.com'}\n" for n in range(8))
    profile_import = upload(workspace, "external_id,email\n" + rows)

    assert profile_import_run(import_id=profile_import.pk, max_batches=1) is True
    profile_import.refresh_from_db()
    assert (profile_import.status, profile_import.total_rows, profile_import.processed_rows) == ("running", 8, 3)
    assert Profile.objects.count() == 3

    # A redelivered task resumes after the last committed batch.
    assert profile_import_run(import_id=profile_import.pk, max_batches=1) is True
    profile_import.refresh_from_db()
    assert (profile_import.processed_rows, profile_import.imported_rows, profile_import.error_rows) == (6, 5, 1)

    assert profile_import_run(import_id=profile_import.pk) is False
    profile_import.refresh_from_db()
    assert (profile_import.status, profile_import.processed_rows, profile_import.imported_rows) == ("done", 8, 7)
    assert [e["row"] for e in profile_import.errors] == [6]
    assert profile_import.finished_at is not None

    # Running a finished import again is a no-op.
    assert profile_import_run(import_id=profile_import.pk) is False
    assert ProfileImport.objects.get(pk=profile_import.pk).imported_rows == 7
    assert Profile.objects.count() == 7


def test_a_run_that_lost_the_race_for_a_batch_rolls_it_back(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile_import = upload(workspace, "external_id,plan\nada,pro\n")
    real_prepare = imports._prepare

    def prepare_while_another_run_commits(*args: Any) -> Any:
        prepared = real_prepare(*args)
        # Another run commits this same batch after this one read the import.
        ProfileImport.objects.filter(pk=profile_import.pk).update(processed_rows=1)
        return prepared

    monkeypatch.setattr(imports, "_prepare", prepare_while_another_run_commits)
    assert profile_import_run(import_id=profile_import.pk) is False
    profile_import.refresh_from_db()
    assert (profile_import.processed_rows, profile_import.imported_rows) == (1, 0)
    assert not Profile.objects.exists()  # this run's batch was rolled back


def test_the_task_queues_the_next_run_while_rows_remain(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "BATCH_SIZE", 2)
    monkeypatch.setattr(imports, "BATCHES_PER_RUN", 1)
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    profile_import = upload(workspace, "external_id\n" + "".join(f"p{n}\n" for n in range(5)))
    profile_import = run(profile_import)
    assert (profile_import.status, profile_import.processed_rows, profile_import.imported_rows) == ("done", 5, 5)


def test_errors_reported_are_capped_but_all_counted(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_REPORTED_ERRORS", 3)
    monkeypatch.setattr(imports, "BATCH_SIZE", 2)
    profile_import = run(upload(workspace, "external_id,email\n" + "x,bad\n" * 5))
    assert profile_import.error_rows == 5
    assert [e["row"] for e in profile_import.errors] == [2, 3, 4]


def test_a_failed_import_can_be_retried(workspace: Workspace, django_capture_on_commit_callbacks: Any) -> None:
    profile_import = upload(workspace, "external_id\nada\n")
    ProfileImport.objects.filter(pk=profile_import.pk).update(status="failed", failure="worker lost")
    with django_capture_on_commit_callbacks() as callbacks:
        assert profile_import_retry(profile_import=profile_import) is True
    assert len(callbacks) == 1
    assert run(profile_import).status == "done"
    assert profile_import_retry(profile_import=profile_import) is False


def test_an_unexpected_error_fails_the_import_with_the_reason(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile_import = upload(workspace, "external_id\nada\n")

    def broken(workspace_id: int, records: list[dict[str, Any]]) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(imports, "_upsert", broken)
    with pytest.raises(RuntimeError):
        profile_import_run(import_id=profile_import.pk)
    profile_import.refresh_from_db()
    assert profile_import.status == "failed"
    assert profile_import.failure == "unexpected error: RuntimeError: disk on fire"


def test_quoted_cells_with_commas_and_newlines(workspace: Workspace) -> None:
    text = '\ufeffexternal_id,bio\r\nada,"Poet, mathematician\r\nand more"\r\ngrace,"said ""hi"""\r\n'
    profile_import = run(upload(workspace, text))
    assert (profile_import.imported_rows, profile_import.error_rows) == (2, 0)
    assert Profile.objects.get(external_id="ada").custom_attributes == {"bio": "Poet, mathematician\r\nand more"}
    assert Profile.objects.get(external_id="grace").custom_attributes == {"bio": 'said "hi"'}


def test_progress_in_between(api: APIClient, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "BATCH_SIZE", 2)
    profile_import = upload(workspace, "external_id\n" + "".join(f"p{n}\n" for n in range(8)))
    profile_import_run(import_id=profile_import.pk, max_batches=1)
    status = api.get(f"/api/v1/profiles/imports/{profile_import.pk}").json()
    assert (status["status"], status["processed_rows"], status["total_rows"], status["percent"]) == (
        "running",
        2,
        8,
        25.0,
    )


def test_times_are_untouched_by_the_import(workspace: Workspace) -> None:
    with time_machine.travel(T0, tick=False):
        run(upload(workspace, "external_id\nada\n"))
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        run(upload(workspace, "external_id,plan\nada,pro\n"))
    ada = Profile.objects.get(external_id="ada")
    assert (ada.created_at, ada.updated_at, ada.last_seen) == (T0, T0 + timedelta(days=1), None)


# --- Admin -----------------------------------------------------------------------------------


def staff_client(*workspaces: Workspace, superuser: bool = False) -> Client:
    user = User.objects.create_user(
        username=f"staff-{User.objects.count()}", password="x", is_staff=True, is_superuser=superuser
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="profiles", codename__endswith="import")
    )
    for workspace in workspaces:
        workspace.members.add(user)
    client = Client()
    client.force_login(user)
    return client


def test_admin_upload_queues_an_import_and_shows_its_report(
    workspace: Workspace, django_capture_on_commit_callbacks: Any
) -> None:
    client = staff_client(workspace)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/admin/profiles/profileimport/add/",
            {"workspace": workspace.pk, "file": csv_file("external_id,email\nada,ada@example.com\nbob,nope\n")},
        )
    assert response.status_code == 302, response.content
    assert len(callbacks) == 1
    profile_import = run(ProfileImport.objects.get())
    assert profile_import.created_by is not None

    changelist = client.get("/admin/profiles/profileimport/").content.decode()
    assert "people" in changelist and 'value="100"' in changelist  # file name and a full progress bar

    page = client.get(f"/admin/profiles/profileimport/{profile_import.pk}/change/").content.decode()
    assert "<td>3</td><td>email</td><td>must be an email address, e.g. ada@example.com</td>" in page


def test_admin_upload_refuses_a_bad_header_on_the_form(workspace: Workspace) -> None:
    client = staff_client(workspace)
    response = client.post(
        "/admin/profiles/profileimport/add/", {"workspace": workspace.pk, "file": csv_file("email\na@b.co\n")}
    )
    assert response.status_code == 200
    assert "an external_id column is required" in response.content.decode()
    assert not ProfileImport.objects.exists()


def test_admin_staff_see_and_upload_only_in_their_workspaces(workspace: Workspace) -> None:
    other = WorkspaceFactory(name="Globex")
    theirs = upload(other, "external_id\nx\n")
    ours = upload(workspace, "external_id\ny\n")
    client = staff_client(workspace)

    changelist = client.get("/admin/profiles/profileimport/").content.decode()
    assert f"/admin/profiles/profileimport/{ours.pk}/change/" in changelist
    assert f"/admin/profiles/profileimport/{theirs.pk}/change/" not in changelist
    assert client.get(f"/admin/profiles/profileimport/{theirs.pk}/change/").status_code == 404
    add_form = client.get("/admin/profiles/profileimport/add/").content.decode()
    assert "Globex" not in add_form
    response = client.post(
        "/admin/profiles/profileimport/add/", {"workspace": other.pk, "file": csv_file("external_id\nz\n")}
    )
    assert response.status_code == 200  # the form refuses the foreign workspace
    assert ProfileImport.objects.filter(workspace=other).count() == 1

    superuser = staff_client(superuser=True)
    assert (
        f"/admin/profiles/profileimport/{theirs.pk}/change/"
        in superuser.get("/admin/profiles/profileimport/").content.decode()
    )


def test_admin_retry_action_requeues_failed_imports(
    workspace: Workspace, django_capture_on_commit_callbacks: Any
) -> None:
    failed = upload(workspace, "external_id\nada\n")
    ProfileImport.objects.filter(pk=failed.pk).update(status="failed", failure="worker lost")
    done = upload(workspace, "external_id\nbob\n")
    client = staff_client(workspace)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/admin/profiles/profileimport/",
            {"action": "retry_failed", "_selected_action": [failed.pk, done.pk]},
            follow=True,
        )
    assert len(callbacks) == 1
    text = response.content.decode()
    assert "1 import(s) queued again." in text
    assert "1 import(s) had not failed and were left alone." in text
    assert ProfileImport.objects.get(pk=failed.pk).status == "pending"


# --- A real worker ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_imports_once_even_when_the_task_is_delivered_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The project's Celery app, an embedded worker thread and an in-memory broker: the upload
    queues the task on commit, a duplicate delivery follows, and the file is imported once."""
    workspace = WorkspaceFactory()
    monkeypatch.setattr(imports, "BATCH_SIZE", 2)
    for key, value in {
        "broker_url": "memory://",
        "task_always_eager": False,
        "worker_hijack_root_logger": False,
    }.items():
        monkeypatch.setitem(celery_app.conf, key, value)
    finished: list[str] = []
    both_done = threading.Event()

    def on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        # Only this test's task: a broker shared with other tests may hand the worker theirs too.
        if getattr(sender, "name", None) != profile_import_task.name:
            return
        finished.append(str(task_id))
        if len(finished) == 2:
            both_done.set()

    task_postrun.connect(on_postrun, weak=False)
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            profile_import = upload(workspace, "external_id,plan\n" + "".join(f"p{n},pro\n" for n in range(5)))
            profile_import_task.delay(profile_import.pk)  # a redelivery, as after a lost ack
            assert both_done.wait(timeout=60), finished
    finally:
        task_postrun.disconnect(on_postrun)
        celery_app.close()  # drop the in-memory broker's connection pool

    profile_import.refresh_from_db()
    assert (profile_import.status, profile_import.processed_rows, profile_import.imported_rows) == ("done", 5, 5)
    assert Profile.objects.filter(workspace=workspace, custom_attributes__plan="pro").count() == 5
