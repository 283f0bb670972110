"""The report pages opened in a real browser (Chromium through Playwright): an analyst logs in,
goes through every page with the hand-counted scenario of campaigns/tests/reports_data.py, finds
the charts and tables, follows a number to the people behind it, and no page logs a JavaScript
error. Each page is screenshotted into <data dir>/screenshots/reports/ for review.

Playwright drives Debian's ``chromium`` (its own browser download is not used); when it is
missing, the fixture below installs it with apt-get (as root, the way CI runs), else fails with
the command to run. See shared/reference/ecosystem-contracts.md §6.5.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse

from campaigns.reports.rollups import reports_refresh, reports_rollup
from campaigns.tests.reports_data import NOW, build_scenario
from profiles.models import Workspace

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
SCREENSHOTS = Path(settings.DATA_DIR) / "screenshots" / "reports"
PASSWORD = "a-long-test-password-1"


def chromium_path() -> str:
    """Debian's chromium, installed with apt-get first when missing and we are root."""
    found = next((path for path in CHROMIUM_PATHS if os.path.exists(path)), None) or shutil.which("chromium")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(command, check=True, env=env, stdin=subprocess.DEVNULL)
        found = next((path for path in CHROMIUM_PATHS if os.path.exists(path)), None)
        if found:
            return found
    pytest.fail("Chromium is needed for the browser tests: run `apt-get install -y chromium` as root")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module. Playwright's sync API runs an event loop in this
    thread while it is open; the ORM calls the tests make around it are synchronous and safe, but
    Django refuses them in a thread with a running loop unless told otherwise (for this module only:
    the loop stops when the module is done)."""
    path = chromium_path()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with playwright_sync.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=path,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            yield browser
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def scenario(transactional_db: None, workspace: Workspace) -> Iterator[dict[str, Any]]:
    # Time runs on from Monday 4 March 2030 12:00 UTC, in the live server's thread too.
    with time_machine.travel(NOW, tick=True):
        data = build_scenario(workspace)
        reports_rollup()
        reports_refresh(now=NOW)
        user = User.objects.create_user("analyst", password=PASSWORD)
        workspace.members.add(user)
        yield data


@pytest.fixture
def errors(page: Any) -> list[str]:
    """JavaScript errors and console errors of every page the test opens."""
    found: list[str] = []
    page.on("pageerror", lambda error: found.append(f"page error: {error}"))
    page.on("console", lambda message: found.append(message.text) if message.type == "error" else None)
    return found


def log_in(page: Any, live_server: Any, workspace: Workspace) -> None:
    page.goto(live_server.url + reverse("reports:overview", args=[workspace.slug]))
    assert "/reports/login/" in page.url
    page.fill("input[name=username]", "analyst")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{reverse('reports:overview', args=[workspace.slug])}**")


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_every_report_page_renders_in_chromium_without_errors(
    live_server: Any, page: Any, errors: list[str], workspace: Workspace, scenario: dict[str, Any]
) -> None:
    log_in(page, live_server, workspace)
    campaign = scenario["campaign"]
    range_ = "start=2030-02-01&end=2030-03-04"
    steps = "Application+Opened%0AAccount+Created%0AOrder+Completed"
    pages = {
        "overview": (reverse("reports:overview", args=[workspace.slug]) + f"?{range_}", "Workspace overview"),
        "campaigns": (reverse("reports:campaigns", args=[workspace.slug]), "Campaigns"),
        "campaign": (reverse("reports:campaign", args=[workspace.slug, campaign.pk]), "Campaign report: Onboarding"),
        "retention": (
            reverse("reports:retention", args=[workspace.slug]) + f"?{range_}&grain=week&campaign={campaign.pk}",
            "Retention",
        ),
        "funnel": (
            reverse("reports:funnel", args=[workspace.slug]) + f"?{range_}&steps={steps}&split=source",
            "Funnel",
        ),
        "channels": (reverse("reports:channels", args=[workspace.slug]) + f"?{range_}", "Channels and sources"),
    }
    for name, (path, title) in pages.items():
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, name
        assert page.locator("h1").inner_text() == title
        assert page.locator("section.report table").count() >= 1, name
        if name != "campaigns":
            assert page.locator("section.report svg.report-chart").count() >= 1, name
        shoot(page, name)
    assert errors == []


def test_the_campaign_report_in_the_browser(
    live_server: Any, page: Any, errors: list[str], workspace: Workspace, scenario: dict[str, Any]
) -> None:
    log_in(page, live_server, workspace)
    campaign = scenario["campaign"]
    page.goto(live_server.url + reverse("reports:campaign", args=[workspace.slug, campaign.pk]))
    funnel = page.locator("table[data-table=funnel]")
    assert funnel.locator("tr", has_text="Sent (received)").locator("td").nth(1).inner_text() == "3"
    # The chart beside it says the same, in its tooltips (and its text alternative).
    assert page.locator("#funnel svg title", has_text="People, Sent (received): 3").count() == 1
    # From the number to the people behind it.
    funnel.locator("tr", has_text="Converted").locator("td").nth(1).locator("a").click()
    page.wait_for_url("**/people/**")
    assert page.locator("h1").inner_text().startswith("People: Onboarding: converted")
    assert sorted(page.locator("table.people tbody tr td:nth-child(2)").all_inner_texts()) == ["alice", "carol"]
    shoot(page, "people")
    # The filters: iOS only.
    page.goto(live_server.url + reverse("reports:campaign", args=[workspace.slug, campaign.pk]))
    page.select_option("select[name=platform]", "ios")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**platform=ios**")
    targeted = page.locator("table[data-table=funnel] tr", has_text="Targeted").locator("td").nth(1)
    assert targeted.inner_text() == "3"
    assert errors == []
