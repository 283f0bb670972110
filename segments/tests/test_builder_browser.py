"""The segment builder in a real browser (Playwright driving Debian's chromium against the live
server): a marketer builds "opened the app 5+ times this month but never purchased" by clicking,
sees its size and the matching person while editing, saves it, and finds it as built.

The browser fixtures live in this module (not in a conftest), so they neither depend on nor
disturb other apps' browser tests. Skipped where Playwright or chromium is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from profiles.engagement import SESSION_STARTED
from profiles.models import Workspace
from segments.models import Segment
from segments.tests.conftest import buy, make_profile, track_many

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(os.environ.get("SEGMENTS_SCREENSHOTS", "/tmp/segments-builder-screenshots"))


@pytest.fixture(scope="module")
def segments_browser() -> Iterator[Any]:
    # While Playwright's sync API runs, it keeps an event loop in this thread, and Django refuses
    # ORM calls from a thread with a running loop. The test's own ORM calls (and the database flush
    # after each test) are still plain synchronous code, and the live server answers from its own
    # thread; so the guard is lifted for as long as the browser runs, then put back.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def builder_page(segments_browser: Any) -> Iterator[Any]:
    context = segments_browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def log_in(page: Any, live_server: Any, workspace: Workspace) -> None:
    user = User.objects.create_user(username="marketer", password="a long password 1", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="segments")
        | Permission.objects.filter(content_type__app_label="profiles", codename="view_profile")
    )
    workspace.members.add(user)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "marketer")
    page.fill("#id_password", "a long password 1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_marketer_builds_opened_the_app_5_times_but_never_purchased_by_clicking(
    builder_page: Any, live_server: Any, workspace: Workspace
) -> None:
    page = builder_page
    now = timezone.now()
    keen = make_profile(workspace, "keen", first_name="Kim", email="kim@example.com")
    track_many(keen, SESSION_STARTED, [now - timedelta(days=n, hours=1) for n in range(6)])
    buyer = make_profile(workspace, "buyer")
    track_many(buyer, SESSION_STARTED, [now - timedelta(days=n, hours=1) for n in range(6)])
    buy(buyer, "sku-1", "9.99", now - timedelta(days=60))
    casual = make_profile(workspace, "casual")
    track_many(casual, SESSION_STARTED, [now - timedelta(days=n, hours=1) for n in range(2)])
    log_in(page, live_server, workspace)

    page.goto(f"{live_server.url}/admin/segments/segment/add/")
    page.fill("#id_name", "Keen but never bought")
    size = page.locator(".sb-size-value")
    page.wait_for_function("document.querySelector('.sb-size-value').textContent.includes('3 people')")

    # All of: sessions at least 5 times in the last 30 days ...
    page.click(".sb-tree > .sb-group > .sb-group-header .sb-add-condition")
    first = page.locator('[data-path="all[0]"]')
    first.locator("select.sb-type").select_option("sessions")
    first.locator("select.sb-op").select_option("gte")
    first.locator("input.sb-value").fill("5")
    first.locator("select.sb-window-mode").select_option("last")
    assert first.locator("input.sb-window-last").input_value() == "30"
    assert first.locator("select.sb-window-unit").input_value() == "days"
    page.wait_for_function("document.querySelector('.sb-size-value').textContent.includes('2 people')")

    # ... and none of: purchases at least once.
    page.click(".sb-tree > .sb-group > .sb-group-header .sb-add-group")
    group = page.locator('[data-path="all[1]"]')
    group.locator("select.sb-group-kind").first.select_option("none")
    page.locator('[data-path="all[1]"] .sb-add-condition').first.click()
    never = page.locator('[data-path="all[1].none[0]"]')
    never.locator("select.sb-type").select_option("purchase_count")
    never.locator("select.sb-op").select_option("gte")
    never.locator("input.sb-value").fill("1")

    # The size and the preview follow the draft.
    page.wait_for_function("document.querySelector('.sb-size-value').textContent.includes('1 person')")
    assert "computed" in page.locator(".sb-size-age").inner_text()
    preview = page.locator(".sb-preview-table tbody tr")
    expect(preview).to_have_count(1)
    link = preview.first.locator("a")
    assert link.inner_text() == "Kim"
    assert link.get_attribute("href") == f"/admin/profiles/profile/{keen.pk}/change/"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "builder-draft.png"), full_page=True)

    page.click("input[name=_continue]")
    page.wait_for_url("**/change/")
    segment = Segment.objects.get(name="Keen but never bought")
    assert segment.definition == {
        "all": [
            {"type": "sessions", "op": "gte", "value": 5, "window": {"last": 30, "unit": "days"}},
            {"none": [{"type": "purchase_count", "op": "gte", "value": 1}]},
        ]
    }
    # The saved segment opens in the builder as it was built, with its size.
    page.wait_for_function("document.querySelector('.sb-size-value').textContent.includes('1 person')")
    assert size.inner_text() == "1 person"
    assert page.locator('[data-path="all[1]"] select.sb-group-kind').first.input_value() == "none"
    assert page.locator('[data-path="all[0]"] input.sb-value').input_value() == "5"
    page.screenshot(path=str(SCREENSHOTS / "builder-saved.png"), full_page=True)


def test_problems_show_next_to_their_condition_while_editing(
    builder_page: Any, live_server: Any, workspace: Workspace
) -> None:
    page = builder_page
    log_in(page, live_server, workspace)
    page.goto(f"{live_server.url}/admin/segments/segment/add/")
    page.click(".sb-tree > .sb-group > .sb-group-header .sb-add-condition")
    condition = page.locator('[data-path="all[0]"]')
    condition.locator("select.sb-type").select_option("event")
    page.wait_for_function("document.querySelector('.sb-size-value').textContent.includes('Incomplete')")
    assert condition.locator(".sb-problems li").inner_text() == "event: 'event' is required"
    condition.locator("input[data-key=event]").fill("Added to Cart")
    page.wait_for_function("document.querySelector('.sb-size-value').textContent.includes('0 people')")
    assert condition.locator(".sb-problems li").count() == 0
