"""The admin as marketers and staff use it: tenancy, keys, the profile page, search and the
cost of the big lists."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from profiles.admin.mixins import EstimatedCountPaginator
from profiles.models import (
    AnonymousId,
    ApiKey,
    ApiScope,
    App,
    Device,
    Event,
    EventType,
    Platform,
    Profile,
    ProfileMerge,
    PushProvider,
    SubscriptionState,
    Workspace,
)
from profiles.services.keys import api_key_authenticate, api_key_create
from profiles.tests.factories import AppFactory, ProfileFactory, WorkspaceFactory

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _staff(username: str, *workspaces: Workspace) -> User:
    user = User.objects.create_user(username=username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="profiles"))
    for workspace in workspaces:
        workspace.members.add(user)
    return user


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _event(profile: Profile, n: int, *, app: App | None = None, **properties: Any) -> Event:
    return Event.objects.create(
        workspace=profile.workspace,
        profile=profile,
        app=app,
        type=EventType.TRACK,
        name=f"Event {n}",
        properties=properties or {"n": n},
        message_id=f"msg-{profile.pk}-{n}",
        timestamp=T0 + timedelta(minutes=n),
        received_at=T0 + timedelta(minutes=n),
    )


def _messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def acme(workspace: Workspace) -> Workspace:
    return workspace


@pytest.fixture
def globex(db: None) -> Workspace:
    return WorkspaceFactory(name="Globex", slug="globex")


@pytest.fixture
def marketer(acme: Workspace) -> User:
    return _staff("marketer", acme)


@pytest.fixture
def client_a(marketer: User) -> Client:
    return _client(marketer)


# --- tenancy ------------------------------------------------------------------------------------


def test_staff_member_sees_only_their_workspace(client_a: Client, acme: Workspace, globex: Workspace) -> None:
    ours = ProfileFactory(workspace=acme, external_id="ada", email="ada@acme.test")
    theirs = ProfileFactory(workspace=globex, external_id="bob", email="bob@globex.test")

    listing = client_a.get(reverse("admin:profiles_profile_changelist"))
    assert listing.status_code == 200
    assert "ada@acme.test" in listing.content.decode()
    assert "bob@globex.test" not in listing.content.decode()
    # Even asking for the other workspace explicitly shows nothing of it.
    forced = client_a.get(reverse("admin:profiles_profile_changelist") + f"?workspace={globex.pk}")
    assert "bob@globex.test" not in forced.content.decode()

    assert client_a.get(reverse("admin:profiles_profile_change", args=[ours.pk])).status_code == 200
    assert client_a.get(reverse("admin:profiles_profile_change", args=[theirs.pk])).status_code == 404

    workspaces = client_a.get(reverse("admin:profiles_workspace_changelist")).content.decode()
    assert "Acme" in workspaces
    assert "Globex" not in workspaces
    assert client_a.get(reverse("admin:profiles_workspace_change", args=[globex.pk])).status_code == 404


def test_other_workspaces_apps_keys_and_events_are_out_of_reach(
    client_a: Client, acme: Workspace, globex: Workspace
) -> None:
    their_app = AppFactory(workspace=globex, name="Globex Android")
    their_key, _ = api_key_create(workspace=globex, name="Globex billing", scopes=[ApiScope.PROFILES_READ])
    their_event = _event(ProfileFactory(workspace=globex), 1)

    assert client_a.get(reverse("admin:profiles_app_change", args=[their_app.pk])).status_code == 404
    assert client_a.get(reverse("admin:profiles_apikey_change", args=[their_key.pk])).status_code == 404
    assert client_a.get(reverse("admin:profiles_event_change", args=[their_event.pk])).status_code == 404
    assert "Globex Android" not in client_a.get(reverse("admin:profiles_app_changelist")).content.decode()
    assert "Globex billing" not in client_a.get(reverse("admin:profiles_apikey_changelist")).content.decode()


def test_a_key_cannot_be_created_in_someone_elses_workspace(client_a: Client, globex: Workspace) -> None:
    form_page = client_a.get(reverse("admin:profiles_apikey_add"))
    assert "Globex" not in form_page.content.decode()

    response = client_a.post(
        reverse("admin:profiles_apikey_add"),
        {"workspace": globex.pk, "name": "Sneaky", "scopes": [ApiScope.PROFILES_READ]},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not ApiKey.objects.filter(name="Sneaky").exists()


def test_superuser_switches_between_workspaces(acme: Workspace, globex: Workspace) -> None:
    admin = User.objects.create_superuser(username="root", password="pw")
    client = _client(admin)
    ProfileFactory(workspace=acme, email="ada@acme.test")
    ProfileFactory(workspace=globex, email="bob@globex.test")

    # One workspace at a time, the first by name until another is picked.
    first = client.get(reverse("admin:profiles_profile_changelist")).content.decode()
    assert "ada@acme.test" in first
    assert "bob@globex.test" not in first
    assert "Globex" in first  # offered in the switcher
    other = client.get(reverse("admin:profiles_profile_changelist") + f"?workspace={globex.pk}").content.decode()
    assert "bob@globex.test" in other
    assert "ada@acme.test" not in other


# --- API keys and write keys ----------------------------------------------------------------------


def test_api_key_is_shown_once_and_only_its_hash_is_stored(client_a: Client, acme: Workspace) -> None:
    response = client_a.post(
        reverse("admin:profiles_apikey_add"),
        {
            "workspace": acme.pk,
            "name": "Billing service",
            "scopes": [ApiScope.PROFILES_READ, ApiScope.PROFILES_WRITE],
        },
        follow=True,
    )
    assert response.status_code == 200
    shown = [m for m in _messages(response) if "copy it now" in m]
    assert len(shown) == 1
    raw_key = re.search(r"sk_[0-9a-f]+\.[A-Za-z0-9_\-]+", shown[0])
    assert raw_key is not None
    raw = raw_key.group(0)

    key = ApiKey.objects.get(name="Billing service")
    assert key.workspace == acme
    assert sorted(key.scopes) == [ApiScope.PROFILES_READ, ApiScope.PROFILES_WRITE]
    assert key.created_by is not None and key.created_by.username == "marketer"
    secret = raw.partition(".")[2]
    assert secret not in key.hashed_secret and len(key.hashed_secret) == 64
    authenticated = api_key_authenticate(raw_key=raw)
    assert authenticated is not None and authenticated.pk == key.pk

    # Never again: not on the key's page, not on the list.
    change_page = client_a.get(reverse("admin:profiles_apikey_change", args=[key.pk])).content.decode()
    assert secret not in change_page
    assert key.prefix in change_page
    assert "Read profiles" in change_page
    assert secret not in client_a.get(reverse("admin:profiles_apikey_changelist")).content.decode()


def test_revoking_a_key_stops_it_authenticating(client_a: Client, acme: Workspace) -> None:
    key, raw = api_key_create(workspace=acme, name="Old", scopes=[ApiScope.PROFILES_READ])
    response = client_a.post(
        reverse("admin:profiles_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk], "index": 0},
        follow=True,
    )
    assert any("Revoked 1 API key" in m for m in _messages(response))
    assert api_key_authenticate(raw_key=raw) is None
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "Revoked" in client_a.get(reverse("admin:profiles_apikey_changelist")).content.decode()


def test_rotate_write_key_asks_first_then_shows_the_new_key(client_a: Client, app: App) -> None:
    old_key = app.write_key
    url = reverse("admin:profiles_app_changelist")

    confirm = client_a.post(url, {"action": "rotate_write_key", "_selected_action": [app.pk], "index": 0})
    assert confirm.status_code == 200
    assert "stops working immediately" in confirm.content.decode()
    app.refresh_from_db()
    assert app.write_key == old_key  # nothing happens until confirmed

    done = client_a.post(url, {"action": "rotate_write_key", "_selected_action": [app.pk], "post": "yes"}, follow=True)
    app.refresh_from_db()
    assert app.write_key != old_key
    assert any(app.write_key in m for m in _messages(done))


def test_rotate_write_key_from_the_app_page(client_a: Client, app: App, globex: Workspace) -> None:
    url = reverse("admin:profiles_app_rotate_write_key", args=[app.pk])
    assert url in client_a.get(reverse("admin:profiles_app_change", args=[app.pk])).content.decode()
    assert "Yes, rotate the key" in client_a.get(url).content.decode()
    old_key = app.write_key

    response = client_a.post(url, follow=True)
    app.refresh_from_db()
    assert app.write_key != old_key
    assert any(app.write_key in m for m in _messages(response))

    foreign = AppFactory(workspace=globex)
    assert client_a.post(reverse("admin:profiles_app_rotate_write_key", args=[foreign.pk])).status_code == 404


# --- the profile page -----------------------------------------------------------------------------


@pytest.fixture
def ada(acme: Workspace, app: App) -> Profile:
    profile = ProfileFactory(
        workspace=acme,
        external_id="ada-42",
        first_name="Ada",
        last_name="Lovelace",
        email="ada@example.com",
        phone="+14155550100",
        country="GB",
        city="London",
        utm_source="newsletter",
        platform=Platform.IOS,
        last_seen=T0,
        session_count=7,
        custom_attributes={"plan": "pro", "favourite_colours": ["teal", "red"], "address": {"zip": "N1"}},
    )
    AnonymousId.objects.create(workspace=acme, profile=profile, anonymous_id="anon-device-1")
    Device.objects.create(
        workspace=acme,
        profile=profile,
        app=app,
        device_id="dev-1",
        platform=Platform.IOS,
        manufacturer="Apple",
        model="iPhone15,2",
        os_name="iOS",
        os_version="17.4",
        app_version="3.2.1",
        push_provider=PushProvider.APNS,
        push_enabled=True,
        first_seen=T0,
        last_seen=T0,
    )
    return profile


def test_profile_page_shows_attributes_devices_and_merges(client_a: Client, ada: Profile) -> None:
    ProfileMerge.objects.create(
        workspace=ada.workspace,
        into_profile=ada,
        merged_profile_id=999,
        merged_snapshot={"email": "old@example.com"},
        reason=ProfileMerge.Reason.IDENTIFY,
        actor="app:Acme iOS",
        moved={"events": 3},
    )
    page = client_a.get(reverse("admin:profiles_profile_change", args=[ada.pk])).content.decode()

    assert "Ada Lovelace" in page
    for text in ("ada-42", "ada@example.com", "+14155550100", "London", "newsletter", "anon-device-1"):
        assert text in page
    # Custom attributes read as key / value, objects as indented JSON.
    assert "<code>plan</code></th><td>pro</td>" in page
    assert "teal" in page and "red" in page
    assert "&quot;zip&quot;: &quot;N1&quot;" in page
    # The device, read-only.
    assert "Apple iPhone15,2" in page
    assert "iOS 17.4" in page
    assert "3.2.1" in page
    # Merge history.
    assert "#999" in page
    assert "old@example.com" in page


def test_profile_timeline_pages_back_through_older_events(client_a: Client, ada: Profile, app: App) -> None:
    for n in range(60):
        _event(ada, n, app=app, sku=f"sku-{n}")
    url = reverse("admin:profiles_profile_change", args=[ada.pk])

    first = client_a.get(url)
    body = first.content.decode()
    names = [row["event"].name for row in first.context["timeline"]]
    assert names[0] == "Event 59" and names[-1] == "Event 10" and len(names) == 50
    assert "Event 9<" not in body
    assert "{&quot;sku&quot;:&quot;sku-59&quot;}" in body  # compact JSON
    assert "Acme iOS" in body

    older_url = first.context["timeline_older_url"]
    second = client_a.get(url + older_url.split("#")[0])
    names = [row["event"].name for row in second.context["timeline"]]
    assert names == [f"Event {n}" for n in range(9, -1, -1)]
    assert second.context["timeline_older_url"] is None

    # And back to the newer page.
    newer_url = second.context["timeline_newer_url"]
    back = client_a.get(url + newer_url.split("#")[0])
    assert back.context["timeline"][0]["event"].name == "Event 59"


def test_timeline_reads_by_keyset_not_offset(client_a: Client, ada: Profile) -> None:
    for n in range(55):
        _event(ada, n)
    url = reverse("admin:profiles_profile_change", args=[ada.pk])
    older_url = client_a.get(url).context["timeline_older_url"]
    with CaptureQueriesContext(connection) as queries:
        client_a.get(url + older_url.split("#")[0])
    event_queries = [q["sql"] for q in queries.captured_queries if 'FROM "profiles_event"' in q["sql"]]
    assert event_queries
    assert not any("OFFSET" in sql or "COUNT(" in sql for sql in event_queries)


@time_machine.travel(T0 + timedelta(days=1), tick=False)
def test_editing_a_profile_normalises_and_stamps_subscription_changes(client_a: Client, ada: Profile) -> None:
    url = reverse("admin:profiles_profile_change", args=[ada.pk])
    page = client_a.get(url)
    data = _form_data(page)
    data.update({"email": "Ada.Lovelace@Example.COM", "email_subscription": SubscriptionState.UNSUBSCRIBED})

    response = client_a.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    ada.refresh_from_db()
    assert ada.email == "ada.lovelace@example.com"
    assert ada.email_subscription == SubscriptionState.UNSUBSCRIBED
    assert ada.email_subscription_changed_at == T0 + timedelta(days=1)
    assert ada.push_subscription_changed_at is None
    assert ada.session_count == 7  # untouched


def test_invalid_attribute_is_refused_with_the_rule(client_a: Client, ada: Profile) -> None:
    url = reverse("admin:profiles_profile_change", args=[ada.pk])
    data = _form_data(client_a.get(url))
    data["phone"] = "call me"
    response = client_a.post(url, data)
    assert response.status_code == 200
    assert "E.164" in response.content.decode()


def _form_data(page: Any) -> dict[str, Any]:
    """What a browser would post back from the change page, unchanged."""
    data: dict[str, Any] = {}
    form = page.context["adminform"].form
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        data[name] = "" if value is None else value
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management.initial.get(name, "")
    return data


# --- search and the cost of the list ---------------------------------------------------------------


@pytest.mark.parametrize(
    "term",
    ["ada-42", "ADA@Example.com", "+1 (415) 555-0100", "00 1 415 555 0100", "anon-device-1"],
)
def test_search_finds_a_person_by_exact_identifier(client_a: Client, ada: Profile, term: str) -> None:
    ProfileFactory(workspace=ada.workspace, external_id="someone-else", email="else@example.com")
    with CaptureQueriesContext(connection) as queries:
        response = client_a.get(reverse("admin:profiles_profile_changelist"), {"q": term})
    results = list(response.context["cl"].result_list)
    assert [profile.pk for profile in results] == [ada.pk]
    assert not any("LIKE" in q["sql"].upper() for q in queries.captured_queries)


def test_search_by_a_partial_value_finds_nothing(client_a: Client, ada: Profile) -> None:
    response = client_a.get(reverse("admin:profiles_profile_changelist"), {"q": "ada"})
    assert list(response.context["cl"].result_list) == []


def test_profile_list_never_counts_the_whole_table(client_a: Client, acme: Workspace) -> None:
    for n in range(3):
        ProfileFactory(workspace=acme, last_seen=T0 + timedelta(hours=n))
    with CaptureQueriesContext(connection) as queries:
        response = client_a.get(reverse("admin:profiles_profile_changelist"))
    assert response.status_code == 200
    counts = [
        q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper() and "profiles_profile" in q["sql"]
    ]
    # Counts, if any, are bounded (COUNT over a LIMITed subquery), never the table.
    assert all("LIMIT" in sql.upper() for sql in counts), counts
    assert "3 profiles" in response.content.decode()


def test_a_big_list_shows_an_estimate_and_next_previous_pages(
    client_a: Client, acme: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 5)
    for n in range(60):
        ProfileFactory(workspace=acme, email=f"p{n}@acme.test", last_seen=T0 + timedelta(minutes=n))
    url = reverse("admin:profiles_profile_changelist")

    first = client_a.get(url)
    body = first.content.decode()
    assert first.context["cl"].count_is_estimated
    assert "about" in body
    assert ">p59@acme.test<" in body and ">p10@acme.test<" in body  # newest first, 50 a page
    assert ">p9@acme.test<" not in body
    assert "?p=2" in body

    second = client_a.get(url, {"p": 2}).content.decode()
    assert ">p9@acme.test<" in second and ">p0@acme.test<" in second and ">p59@acme.test<" not in second


def test_event_list_is_read_only_and_searchable_by_message_id(client_a: Client, ada: Profile) -> None:
    event = _event(ada, 1)
    _event(ada, 2)
    listing = client_a.get(reverse("admin:profiles_event_changelist"), {"q": event.message_id})
    assert [e.pk for e in listing.context["cl"].result_list] == [event.pk]
    assert client_a.get(reverse("admin:profiles_event_add")).status_code == 403
    detail = client_a.get(reverse("admin:profiles_event_change", args=[event.pk])).content.decode()
    assert "&quot;n&quot;: 1" in detail
    assert 'name="_save"' not in detail


def test_big_lists_offer_no_facet_counts_or_show_all(client_a: Client, ada: Profile) -> None:
    body = client_a.get(reverse("admin:profiles_profile_changelist")).content.decode()
    assert "_facets" not in body
    assert "all=" not in body  # no "Show all" (everything on one page) link


# --- permissions and workspaces ------------------------------------------------------------------


def test_staff_without_model_permissions_cannot_see_profiles(acme: Workspace, ada: Profile) -> None:
    member = User.objects.create_user(username="intern", password="pw", is_staff=True)
    acme.members.add(member)
    client = _client(member)
    assert client.get(reverse("admin:profiles_profile_changelist")).status_code == 403
    assert client.get(reverse("admin:profiles_profile_change", args=[ada.pk])).status_code == 403


def test_staff_member_who_creates_a_workspace_can_see_it(client_a: Client, marketer: User) -> None:
    response = client_a.post(
        reverse("admin:profiles_workspace_add"),
        {
            "name": "Initech",
            "slug": "initech",
            "default_time_zone": "Europe/Paris",
            "apps-TOTAL_FORMS": 0,
            "apps-INITIAL_FORMS": 0,
            "api_keys-TOTAL_FORMS": 0,
            "api_keys-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace = Workspace.objects.get(slug="initech")
    assert workspace.default_time_zone == "Europe/Paris"
    assert marketer in workspace.members.all()
    assert client_a.get(reverse("admin:profiles_workspace_change", args=[workspace.pk])).status_code == 200


def test_the_only_workspace_is_preselected_on_new_keys(client_a: Client, acme: Workspace) -> None:
    form = client_a.get(reverse("admin:profiles_apikey_add")).context["adminform"].form
    assert form.initial["workspace"] == str(acme.pk)


def test_device_page_lets_support_switch_push_off_and_nothing_else(client_a: Client, ada: Profile) -> None:
    device = Device.objects.get(profile=ada)
    url = reverse("admin:profiles_device_change", args=[device.pk])
    form = client_a.get(url).context["adminform"].form
    assert set(form.fields) == {"push_enabled", "push_disabled_reason"}

    response = client_a.post(url, {"push_disabled_reason": "shared test phone"})  # unchecked box: off
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.push_enabled is False
    assert device.push_disabled_reason == "shared test phone"
    assert device.model == "iPhone15,2"


def test_deleting_a_person_erases_and_suppresses_them(client_a: Client, ada: Profile) -> None:
    _event(ada, 1)
    url = reverse("admin:profiles_profile_delete", args=[ada.pk])
    assert url in client_a.get(reverse("admin:profiles_profile_change", args=[ada.pk])).content.decode()
    assert "cannot be undone" in client_a.get(url).content.decode()

    response = client_a.post(url, {"post": "yes"}, follow=True)
    assert not Profile.objects.filter(pk=ada.pk).exists()
    assert not Event.objects.filter(profile_id=ada.pk).exists()
    assert any("1 events" in m and "suppressed" in m for m in _messages(response))

    # Support can check that the person stays suppressed, by what they know about them.
    found = client_a.get(reverse("admin:profiles_suppression_changelist"), {"q": "ADA@example.com"})
    assert [s.kind for s in found.context["cl"].result_list] == ["email"]


def test_deleting_needs_the_delete_permission(acme: Workspace, ada: Profile) -> None:
    viewer = User.objects.create_user(username="viewer", password="pw", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_profile", "change_profile"]))
    acme.members.add(viewer)
    client = _client(viewer)
    assert client.post(reverse("admin:profiles_profile_delete", args=[ada.pk]), {"post": "yes"}).status_code == 403
    assert Profile.objects.filter(pk=ada.pk).exists()


def test_one_persons_events_list_newest_first(client_a: Client, ada: Profile) -> None:
    for n in range(3):
        _event(ada, n)
    _event(ProfileFactory(workspace=ada.workspace), 9)
    response = client_a.get(reverse("admin:profiles_event_changelist"), {"profile__id__exact": ada.pk})
    assert [e.name for e in response.context["cl"].result_list] == ["Event 2", "Event 1", "Event 0"]
