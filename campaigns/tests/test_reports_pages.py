"""The report pages, their numbers checked against the hand-counted scenario in reports_data.py
(every expected number below is counted from the comment there)."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse

from campaigns.reports.funnels import kth_smallest
from campaigns.reports.members import segment_members, segment_refresh, segment_source, segments_due_for_refresh
from campaigns.reports.models import (
    ReportFunnel,
    ReportFunnelDay,
    ReportFunnelGroupDay,
    ReportSegmentDay,
    ReportSegmentMembers,
    ReportSend,
)
from campaigns.reports.rollups import members_filter, reports_refresh, reports_rollup
from campaigns.reports.tasks import (
    reports_funnel_compute_task,
    reports_funnels_refresh_task,
    reports_segments_refresh_task,
)
from profiles.models import Profile, Workspace
from profiles.tests.factories import WorkspaceFactory
from segments.models import Segment

from .reports_data import NOW, at, build_scenario, event, person


@pytest.fixture
def frozen() -> Iterator[None]:
    """The pages are read on Monday 4 March 2030, 12:00 UTC (retention periods end relative to it)."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def scenario(frozen: None, workspace: Workspace) -> dict[str, Any]:
    data = build_scenario(workspace)
    reports_rollup()
    reports_refresh(now=NOW)
    return data


@pytest.fixture
def analyst(workspace: Workspace) -> User:
    user = User.objects.create_user("analyst")  # no password: hashing one takes a second
    workspace.members.add(user)
    return user


@pytest.fixture
def reader(frozen: None, client: Client, analyst: User) -> Client:
    client.force_login(analyst)
    return client


def rows(response: Any, table_id: str) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content[:500]
    table = response.context["page"].table(table_id)
    assert table is not None, f"no table {table_id!r}"
    return [{header: cell.value for header, cell in zip(table.headers, row, strict=True)} for row in table.rows]


def by(rows_: list[dict[str, Any]], column: str) -> dict[Any, dict[str, Any]]:
    return {row[column]: row for row in rows_}


def url(name: str, workspace: Workspace, *args: Any, **query: Any) -> str:
    from urllib.parse import urlencode

    return reverse(f"reports:{name}", args=[workspace.slug, *args]) + ("?" + urlencode(query) if query else "")


FEB_MAR = {"start": "2030-02-01", "end": "2030-03-04"}


# --- access ----------------------------------------------------------------------------------------


def test_pages_need_a_login(client: Client, workspace: Workspace) -> None:
    response = client.get(url("overview", workspace))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("reports:login"))


def test_a_member_logs_in_through_the_reports_login(client: Client, workspace: Workspace, analyst: User) -> None:
    analyst.set_password("pw-analyst-1")
    analyst.save()
    response = client.post(reverse("reports:login"), {"username": "analyst", "password": "pw-analyst-1"}, follow=True)
    assert response.redirect_chain[-1][0] == url("overview", workspace)


def test_other_workspaces_are_not_found(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    other = WorkspaceFactory(name="Other", slug="other")
    assert reader.get(url("overview", other)).status_code == 404
    # A campaign of a workspace one belongs to, under another workspace's address: not found either.
    campaign = scenario["campaign"]
    assert reader.get(url("campaign", other, campaign.pk)).status_code == 404


def test_a_superuser_sees_every_workspace(client: Client, workspace: Workspace) -> None:
    other = WorkspaceFactory(name="Other", slug="other")
    client.force_login(User.objects.create_superuser("root", password="pw-root-1"))
    assert client.get(url("overview", other)).status_code == 200
    assert client.get(reverse("reports:index")).status_code == 200


def test_the_admin_link_leads_to_the_campaign_report(reader: Client, scenario: dict[str, Any]) -> None:
    campaign = scenario["campaign"]
    response = reader.get(reverse("reports:campaign-redirect", args=[campaign.pk]))
    assert response["Location"] == url("campaign", campaign.workspace, campaign.pk)


# --- campaign report -------------------------------------------------------------------------------


def test_campaign_funnel(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    campaign = scenario["campaign"]
    response = reader.get(url("campaign", workspace, campaign.pk))
    funnel = by(rows(response, "funnel"), "Stage")
    # Variants only: alice, bob, grace (A), carol, dan (B).
    assert funnel["Targeted"]["People"] == 5
    assert funnel["Sent (received)"]["People"] == 3  # alice, bob, carol
    assert funnel["Delivered"]["People"] == 1  # alice
    assert funnel["Opened"]["People"] == 2  # alice (twice by email, once by push: once), carol
    assert funnel["Clicked"]["People"] == 1
    assert funnel["Converted"]["People"] == 2  # alice, carol (erin is in the control group)
    assert funnel["Bounced"]["People"] == 1
    assert funnel["Converted"]["% of targeted"] == Decimal("0.4") or funnel["Converted"]["% of targeted"] == 0.4
    assert funnel["Revenue"]["People"] == Decimal("17.50")
    assert funnel["Revenue per recipient"]["People"] == Decimal("5.83")


def test_campaign_per_variant_and_control(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    campaign = scenario["campaign"]
    response = reader.get(url("campaign", workspace, campaign.pk))
    variants = by(rows(response, "variant_funnel"), "Variant")
    assert {k: variants["Variant A"][k] for k in ("Targeted", "Sent", "Opened", "Converted", "Bounced")} == {
        "Targeted": 3,
        "Sent": 2,
        "Opened": 1,
        "Converted": 1,
        "Bounced": 1,
    }
    assert variants["Variant A"]["Revenue"] == Decimal("12.50")
    assert {k: variants["Variant B"][k] for k in ("Targeted", "Sent", "Opened", "Converted")} == {
        "Targeted": 2,
        "Sent": 1,
        "Opened": 1,
        "Converted": 1,
    }
    assert variants["Control group"]["Targeted"] == 2
    assert variants["Control group"]["Converted"] == 1
    uplift = by(rows(response, "variants"), "Variant")
    assert uplift["Variant A"]["People compared"] == 2
    assert uplift["Control group"]["People compared"] == 2
    assert uplift["Control group"]["Converted"] == 1
    assert uplift["Variant A"]["Verdict"].startswith("Not enough data yet")


def test_campaign_per_channel(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    campaign = scenario["campaign"]
    channels = by(rows(reader.get(url("campaign", workspace, campaign.pk)), "channels"), "Channel")
    email, push = channels["email"], channels["push"]
    assert (email["Sent"], email["Delivered"], email["Opened"], email["Clicked"], email["Bounced"]) == (2, 1, 1, 1, 1)
    assert (email["Converted"], email["Revenue"]) == (1, Decimal("12.50"))
    # The follow-up push to alice and carol's push; carol converted after her push.
    assert (push["Sent"], push["Opened"], push["Converted"], push["Revenue"]) == (2, 2, 1, Decimal("5.00"))


def test_campaign_time_series_and_outcomes(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    campaign = scenario["campaign"]
    response = reader.get(url("campaign", workspace, campaign.pk))
    series = by(rows(response, "series"), "Hour")  # sends due over one day: hourly
    assert series["2030-02-14 10:00"]["Targeted"] == 2
    assert series["2030-02-14 10:00"]["Converted"] == 1
    assert series["2030-02-15 10:00"]["Targeted"] == 3  # carol, dan, grace
    assert series["2030-02-15 10:00"]["Sent"] == 1
    outcomes = by(rows(response, "outcomes"), "Outcome")
    assert outcomes["Targeted"]["People"] == 7
    assert outcomes["Sent"]["People"] == 3
    assert outcomes["Skipped"]["People"] == 1
    assert outcomes["Control group (held out)"]["People"] == 2
    assert outcomes["Waiting to send"]["People"] == 1


def test_campaign_filtered_by_platform_and_segment(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    campaign = scenario["campaign"]
    funnel = by(rows(reader.get(url("campaign", workspace, campaign.pk, platform="ios")), "funnel"), "Stage")
    assert funnel["Targeted"]["People"] == 3  # alice, bob, grace
    assert funnel["Sent (received)"]["People"] == 2
    google = Segment.objects.create(
        workspace=workspace,
        name="From Google",
        definition={"all": [{"type": "acquisition", "field": "source", "op": "eq", "value": "google"}]},
    )
    response = reader.get(url("campaign", workspace, campaign.pk, segment=google.pk))
    funnel = by(rows(response, "funnel"), "Stage")
    assert [funnel[s]["People"] for s in ("Targeted", "Sent (received)", "Opened", "Converted", "Bounced")] == [
        2,
        2,
        1,
        1,
        1,
    ]
    assert by(rows(response, "variants"), "Variant")["Control group"]["People compared"] == 1  # erin


def test_campaign_numbers_link_to_the_people_behind_them(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    campaign = scenario["campaign"]
    response = reader.get(url("campaign", workspace, campaign.pk))
    table = response.context["page"].table("variant_funnel")
    row = next(r for r in table.rows if r[0].value == "Variant A")
    converted_link = row[table.headers.index("Converted")].link
    people = reader.get(converted_link)
    assert people.status_code == 200
    assert [r[1] for r in people.context["result"].rows] == ["alice"]
    opened = next(r for r in response.context["page"].table("funnel").rows if r[0].value == "Opened")[1].link
    assert sorted(r[1] for r in reader.get(opened).context["result"].rows) == ["alice", "carol"]
    control = next(r for r in table.rows if r[0].value == "Control group")
    control_converted = reader.get(control[table.headers.index("Converted")].link)
    assert [r[1] for r in control_converted.context["result"].rows] == ["erin"]


def test_every_table_exports_to_csv(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    campaign = scenario["campaign"]
    page = reader.get(url("campaign", workspace, campaign.pk)).context["page"]
    for section in page.sections:
        response = reader.get(url("campaign", workspace, campaign.pk, export=section.table.id))
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        lines = list(csv.reader(io.StringIO(response.content.decode())))
        assert lines[0] == section.table.headers
        assert len(lines) == len(section.table.rows) + 1
    funnel = list(
        csv.reader(io.StringIO(reader.get(url("campaign", workspace, campaign.pk, export="funnel")).content.decode()))
    )
    assert funnel[2][:2] == ["Sent (received)", "3"]


def test_people_list_exports_to_csv(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    campaign = scenario["campaign"]
    response = reader.get(
        url("people", workspace, list="campaign", campaign=campaign.pk, metric="sent", export="csv", **FEB_MAR)
    )
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))  # type: ignore[arg-type]
    assert lines[0][:2] == ["id", "external_id"]
    assert sorted(line[1] for line in lines[1:]) == ["alice", "bob", "carol"]


def test_an_unknown_people_list_is_not_found(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    assert reader.get(url("people", workspace, list="nonsense")).status_code == 404
    assert reader.get(url("people", workspace, list="campaign", campaign="x", metric="sent")).status_code == 404


# --- retention -------------------------------------------------------------------------------------


def test_weekly_cohorts(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    response = reader.get(url("retention", workspace, grain="week", **FEB_MAR))
    cohorts = by(rows(response, "cohorts"), "Cohort")
    first = cohorts["2030-02-04"]
    assert first["People"] == 3  # alice, bob, carol
    assert [first[f"Week {n}"] for n in range(5)] == [1.0, 0.3333, 0.3333, 0.3333, 0.0]
    second = cohorts["2030-02-11"]  # dan, erin, frank
    assert [second[f"Week {n}"] for n in range(4)] == [1.0, 0.3333, 0.3333, 0.3333]
    assert second["Week 4"] == ""  # not started yet
    assert [cohorts["2030-02-18"][f"Week {n}"] for n in range(3)] == [1.0, 1.0, 0.0]  # grace


def test_monthly_cohorts(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    cohorts = by(rows(reader.get(url("retention", workspace, grain="month", **FEB_MAR)), "cohorts"), "Cohort")
    february = cohorts["2030-02-01"]
    assert february["People"] == 7
    assert february["Month 1"] == round(4 / 7, 4)  # alice, dan, frank, grace were back in March


def test_a_retention_cell_links_to_its_people(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    response = reader.get(url("retention", workspace, grain="week", **FEB_MAR))
    table = response.context["page"].table("cohorts")
    row = next(r for r in table.rows if r[0].value == "2030-02-04")
    week_one = reader.get(row[table.headers.index("Week 1")].link)
    assert [r[1] for r in week_one.context["result"].rows] == ["alice"]


def test_campaign_retention_against_the_control_group(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    campaign = scenario["campaign"]
    response = reader.get(url("retention", workspace, grain="week", campaign=campaign.pk, period=0, **FEB_MAR))
    groups = by(rows(response, "campaign_retention"), "Group")
    # Recipients alice, bob (from Feb 14) and carol (Feb 15); control erin and frank (Feb 15).
    assert groups["All recipients"]["People"] == 3
    assert [groups["All recipients"][f"Week {n}"] for n in range(3)] == [0.3333, 0.3333, ""]
    assert [groups["Variant A"][f"Week {n}"] for n in range(2)] == [0.0, 0.5]
    assert [groups["Variant B"][f"Week {n}"] for n in range(2)] == [1.0, 0.0]
    assert [groups["Control group"][f"Week {n}"] for n in range(2)] == [0.5, 0.0]
    notice = response.context["page"].notices[0]
    assert "recipients 33.3% (1 of 3) against the control group 50.0% (1 of 2)" in notice
    assert "Not enough data yet" in notice


def test_campaign_retention_filtered_by_segment_reads_the_same_way(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    campaign = scenario["campaign"]
    everyone = Segment.objects.create(workspace=workspace, name="Everyone", definition={"all": []})
    plain = rows(reader.get(url("retention", workspace, grain="week", campaign=campaign.pk)), "campaign_retention")
    live = rows(
        reader.get(url("retention", workspace, grain="week", campaign=campaign.pk, segment=everyone.pk)),
        "campaign_retention",
    )
    assert plain == live


# --- funnel ----------------------------------------------------------------------------------------

STEPS = "Application Opened\nAccount Created\nOrder Completed"


def test_funnel_steps_and_times(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    funnel = by(rows(reader.get(url("funnel", workspace, steps=STEPS, **FEB_MAR)), "funnel"), "Event")
    assert [funnel[e]["People"] for e in STEPS.split("\n")] == [7, 5, 3]
    assert funnel["Account Created"]["Conversion from previous step"] == round(5 / 7, 4)
    assert funnel["Order Completed"]["Overall conversion"] == round(3 / 7, 4)
    # Opened -> created: 30 min (alice, dan), 1 day (bob), 7 days 1 h (frank), 14 days 2 h (carol).
    assert funnel["Account Created"]["Median time from previous step"] == 86400
    # Created -> ordered: alice 7 d 1.5 h, frank 12 d, dan 19 d 1.5 h.
    assert funnel["Order Completed"]["Median time from previous step"] == 12 * 86400


def test_funnel_split_by_source_and_by_campaign(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    by_source = by(
        rows(reader.get(url("funnel", workspace, steps=STEPS, split="source", **FEB_MAR)), "split"),
        "Acquisition source",
    )
    assert [by_source["google"][f"{i}. {s}"] for i, s in enumerate(STEPS.split("\n"), 1)] == [3, 2, 1]
    assert [by_source["facebook"][f"{i}. {s}"] for i, s in enumerate(STEPS.split("\n"), 1)] == [2, 2, 1]
    assert [by_source["(none)"][f"{i}. {s}"] for i, s in enumerate(STEPS.split("\n"), 1)] == [2, 1, 1]
    campaign = scenario["campaign"]
    response = reader.get(url("funnel", workspace, steps=STEPS, split="campaign", campaign=campaign.pk, **FEB_MAR))
    by_campaign = by(rows(response, "split"), "Campaign received")
    assert [by_campaign["received"][f"{i}. {s}"] for i, s in enumerate(STEPS.split("\n"), 1)] == [3, 3, 1]
    assert [by_campaign["control group"][f"{i}. {s}"] for i, s in enumerate(STEPS.split("\n"), 1)] == [2, 1, 1]
    assert [by_campaign["targeted, not sent"][f"{i}. {s}"] for i, s in enumerate(STEPS.split("\n"), 1)] == [2, 1, 1]
    step_three = response.context["page"].table("split")
    row = next(r for r in step_three.rows if r[0].value == "control group")
    people = reader.get(row[3].link)
    assert [r[1] for r in people.context["result"].rows] == ["frank"]


def test_funnel_times_per_group_and_in_total(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    response = reader.get(url("funnel", workspace, steps=STEPS, split="source", **FEB_MAR))
    by_source = by(rows(response, "split"), "Acquisition source")
    medians = {key: [row["Median time to step 2"], row["Median time to step 3"]] for key, row in by_source.items()}
    # Opened -> created: google alice 30 min and bob 1 day (two people: the median is their mean);
    # facebook frank 7 d 1 h and carol 14 d 2 h; (none) dan 30 min. Created -> ordered: alice
    # 7 d 1.5 h (google), frank 12 d (facebook), dan 19 d 1.5 h (none).
    assert medians == {
        "google": [(1800 + 86400) / 2, 7 * 86400 + 5400],
        "facebook": [(7 * 86400 + 3600 + 14 * 86400 + 7200) / 2, 12 * 86400],
        "(none)": [1800, 19 * 86400 + 5400],
    }
    # The total counts everyone once: its median is not one of the groups' medians.
    funnel = by(rows(response, "funnel"), "Event")
    assert funnel["Account Created"]["Median time from previous step"] == 86400
    assert funnel["Account Created"]["Mean time from previous step"] == (1800 * 2 + 86400 + 608400 + 1216800) / 5
    assert funnel["Order Completed"]["Median time from previous step"] == 12 * 86400
    assert funnel["Order Completed"]["Mean time from previous step"] == (610200 + 1036800 + 1647000) / 3
    campaign = scenario["campaign"]
    response = reader.get(url("funnel", workspace, steps=STEPS, split="campaign", campaign=campaign.pk, **FEB_MAR))
    control = by(rows(response, "split"), "Campaign received")["control group"]
    # Frank (control group): created 7 d 1 h after opening, ordered 12 d later.
    assert [control["Median time to step 2"], control["Median time to step 3"]] == [608400, 12 * 86400]
    assert by(rows(response, "funnel"), "Event")["Account Created"]["Median time from previous step"] == 86400


def funnel_counts(response: Any) -> list[int]:
    funnel = by(rows(response, "funnel"), "Event")
    return [funnel[e]["People"] for e in STEPS.split("\n")]


def counted_as_of(response: Any) -> list[str]:
    return [notice for notice in response.context["page"].notices if notice.startswith("Counted as of")]


def test_a_funnel_is_kept_per_day_and_kept_current_by_beat(
    reader: Client, workspace: Workspace, scenario: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    # The first page computes the funnel live, and enqueues the computation of its days.
    with django_capture_on_commit_callbacks() as enqueued:
        first = reader.get(url("funnel", workspace, steps=STEPS, **FEB_MAR))
    assert funnel_counts(first) == [7, 5, 3]
    assert counted_as_of(first) == []
    assert len(enqueued) == 1
    funnel = ReportFunnel.objects.get()
    assert reports_funnel_compute_task(funnel.pk) == {"funnel": funnel.pk, "days": 32}
    # The next pages read the days.
    second = reader.get(url("funnel", workspace, steps=STEPS, **FEB_MAR))
    assert funnel_counts(second) == [7, 5, 3]
    assert len(counted_as_of(second)) == 1 and "12:00:00 UTC" in counted_as_of(second)[0]
    # Heidi opens the app and signs up today; the rollup reads it.
    heidi = person(workspace, first_seen=at(4, 9), source="google")
    event(heidi, "Application Opened", at(4, 9))
    event(heidi, "Account Created", at(4, 10))
    reports_rollup()
    # The page reads what was counted a moment ago...
    assert funnel_counts(reader.get(url("funnel", workspace, steps=STEPS, **FEB_MAR))) == [7, 5, 3]
    # ...until beat counts again the days that may still change: those whose people's 30-day windows
    # are open (2 February to today; 1 February's closed on 4 March at 00:00).
    assert reports_funnels_refresh_task() == {"funnels": 1, "days": 31, "forgotten": 0}
    assert funnel_counts(reader.get(url("funnel", workspace, steps=STEPS, **FEB_MAR))) == [8, 6, 3]
    # The split is another funnel: its first page computes it live, with the same people.
    by_source = by(
        rows(reader.get(url("funnel", workspace, steps=STEPS, split="source", **FEB_MAR)), "split"),
        "Acquisition source",
    )
    assert [by_source["google"][f"{i}. {s}"] for i, s in enumerate(STEPS.split("\n"), 1)] == [4, 3, 1]


@pytest.mark.parametrize("split", ["none", "source", "campaign"])
def test_a_funnel_read_from_its_days_shows_what_the_live_one_did(
    reader: Client, workspace: Workspace, scenario: dict[str, Any], split: str
) -> None:
    query = {"steps": STEPS, "split": split, "campaign": scenario["campaign"].pk, **FEB_MAR}
    live = reader.get(url("funnel", workspace, **query))
    reports_funnel_compute_task(ReportFunnel.objects.get().pk)
    stored = reader.get(url("funnel", workspace, **query))
    assert counted_as_of(live) == [] and len(counted_as_of(stored)) == 1
    # Every count, median (groups of one, two and three people) and mean, per group and in total.
    for table in ("funnel", "split") if split != "none" else ("funnel",):
        assert rows(stored, table) == rows(live, table)


def test_kth_smallest_of_sorted_arrays_is_the_kth_of_them_all() -> None:
    generator = random.Random(7)
    for _ in range(200):
        arrays = [sorted(generator.randrange(0, 50) for _ in range(generator.randrange(0, 6))) for _ in range(4)]
        values = sorted(v for array in arrays for v in array)
        for k in range(1, len(values) + 1):
            assert kth_smallest(arrays, k) == values[k - 1]


def test_a_funnel_page_counts_the_days_beat_left_stale(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    # With a one-day window only yesterday's and today's people can still move on.
    query = {"steps": STEPS, "window": 1, **FEB_MAR}
    # Within a day of opening: alice and dan (30 min), bob (1 day exactly); nobody ordered.
    assert funnel_counts(reader.get(url("funnel", workspace, **query))) == [7, 3, 0]
    reports_funnel_compute_task(ReportFunnel.objects.get().pk)
    heidi = person(workspace, first_seen=at(4, 9))
    event(heidi, "Application Opened", at(4, 9))
    reports_rollup()
    # No beat: after REPORTS_FUNNEL_FRESH_SECONDS (five minutes) the page counts those two days again.
    with time_machine.travel(NOW + timedelta(minutes=6), tick=False):
        response = reader.get(url("funnel", workspace, **query))
    assert funnel_counts(response) == [8, 3, 0]
    assert len(counted_as_of(response)) == 1 and "12:06:00 UTC" in counted_as_of(response)[0]
    # Many stale days (the 30-day funnel's): the page computes the funnel live instead.
    reader.get(url("funnel", workspace, steps=STEPS, **FEB_MAR))
    reports_funnel_compute_task(ReportFunnel.objects.get(window_days=30).pk)
    event(person(workspace, first_seen=at(4, 10)), "Application Opened", at(4, 10))
    reports_rollup()
    with time_machine.travel(NOW + timedelta(minutes=6), tick=False):
        response = reader.get(url("funnel", workspace, steps=STEPS, **FEB_MAR))
    assert funnel_counts(response) == [9, 5, 3]
    assert counted_as_of(response) == []


def test_a_funnel_whose_windows_have_closed_is_final_and_forgotten_when_nobody_looks(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    # Alice, bob and carol entered on 4 and 5 February; with a 7-day window every day of the range
    # closed long before today.
    query = {"steps": STEPS, "window": 7, "start": "2030-02-01", "end": "2030-02-10"}
    # Carol created her account 14 days after opening, alice ordered 7 days 2 hours after: too late.
    assert funnel_counts(reader.get(url("funnel", workspace, **query))) == [3, 2, 0]
    assert reports_funnel_compute_task(ReportFunnel.objects.get().pk)["days"] == 10
    response = reader.get(url("funnel", workspace, **query))
    assert funnel_counts(response) == [3, 2, 0]
    assert counted_as_of(response) == []  # every day is final
    assert reports_funnels_refresh_task() == {"funnels": 1, "days": 0, "forgotten": 0}
    assert ReportFunnelDay.objects.count() == 10
    with time_machine.travel(NOW + timedelta(days=8), tick=False):
        assert reports_funnels_refresh_task() == {"funnels": 0, "days": 0, "forgotten": 1}
    assert not ReportFunnel.objects.exists()
    assert not ReportFunnelDay.objects.exists()
    assert not ReportFunnelGroupDay.objects.exists()


# --- channels and sources --------------------------------------------------------------------------


def test_channels_and_sources(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    response = reader.get(url("channels", workspace, **FEB_MAR))
    channels = by(rows(response, "channels"), "Channel")
    assert (channels["email"]["Sent"], channels["email"]["Converted"]) == (2, 1)
    assert (channels["push"]["Sent"], channels["push"]["Converted"]) == (2, 1)
    assert channels["email"]["Share of conversions"] == 0.5
    sources = by(rows(response, "sources"), "Source (utm_source)")
    # Onboarding defaults to "Account Created", conversion to "Order Completed".
    assert [sources["google"][k] for k in ("New people", "Did Account Created", "Did Order Completed")] == [3, 2, 1]
    assert [sources["facebook"][k] for k in ("New people", "Did Account Created", "Did Order Completed")] == [2, 2, 1]
    assert [sources["(none)"][k] for k in ("New people", "Did Account Created", "Did Order Completed")] == [2, 1, 1]


# --- overview --------------------------------------------------------------------------------------


def test_overview_active_people(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    response = reader.get(url("overview", workspace, **FEB_MAR))
    active = by(rows(response, "active"), "Day")
    assert [active["2030-03-03"][k] for k in ("Daily active", "Weekly active", "Monthly active")] == [2, 3, 7]
    assert [active["2030-03-04"][k] for k in ("Daily active", "Weekly active", "Monthly active")] == [1, 4, 7]
    assert [active["2030-02-12"][k] for k in ("Daily active", "Weekly active", "Monthly active")] == [2, 3, 5]
    growth = by(rows(response, "growth"), "Day")
    assert [growth[d]["New people"] for d in ("2030-02-04", "2030-02-05", "2030-02-12", "2030-02-13")] == [2, 1, 2, 1]
    assert growth["2030-03-03"]["Events"] == 3  # two app opens and dan's order
    messaging = by(rows(response, "messaging"), "Day")
    assert [messaging[d]["Messages received"] for d in ("2030-02-14", "2030-02-15", "2030-02-16")] == [2, 1, 1]
    assert [messaging[d]["Conversions"] for d in ("2030-02-14", "2030-02-15", "2030-02-16")] == [1, 1, 1]
    revenue = by(rows(response, "revenue"), "Day")
    assert revenue["2030-02-11"]["USD"] == Decimal("30.00")
    assert revenue["2030-03-03"]["EUR"] == Decimal("20.00")
    assert revenue["2030-03-04"]["USD"] == Decimal("15.00")


def test_overview_filtered_by_segment_and_platform(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    google = Segment.objects.create(
        workspace=workspace,
        name="From Google",
        definition={"all": [{"type": "acquisition", "field": "source", "op": "eq", "value": "google"}]},
    )
    active = by(rows(reader.get(url("overview", workspace, segment=google.pk, **FEB_MAR)), "active"), "Day")
    assert [active["2030-03-04"][k] for k in ("Daily active", "Weekly active", "Monthly active")] == [0, 1, 3]
    ios = by(rows(reader.get(url("overview", workspace, platform="ios", **FEB_MAR)), "active"), "Day")
    # alice, bob, frank, grace are on iOS; on Mar 4: frank that day, alice/frank/grace that week.
    assert [ios["2030-03-04"][k] for k in ("Daily active", "Weekly active", "Monthly active")] == [1, 3, 4]


def test_overview_daily_active_links_to_people(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    table = reader.get(url("overview", workspace, **FEB_MAR)).context["page"].table("active")
    row = next(r for r in table.rows if r[0].value == "2030-03-03")
    people = reader.get(row[1].link)
    assert sorted(r[1] for r in people.context["result"].rows) == ["alice", "dan"]


def test_every_page_renders_with_no_data_yet(reader: Client, workspace: Workspace) -> None:
    for name in ("overview", "campaigns", "retention", "funnel", "channels"):
        assert reader.get(url(name, workspace)).status_code == 200, name


def test_invalid_filters_are_explained(reader: Client, workspace: Workspace, scenario: dict[str, Any]) -> None:
    response = reader.get(url("overview", workspace, start="2030-03-04", end="2030-02-01"))
    assert response.status_code == 200
    assert "The end of the range is before its start." in response.content.decode()


@pytest.mark.parametrize("path", ["live", "segment aggregates"])
def test_a_segment_of_everyone_gives_the_numbers_of_the_aggregates(
    reader: Client, workspace: Workspace, scenario: dict[str, Any], path: str
) -> None:
    """Filtered by segment, the pages read the aggregates built for the segment's members or,
    before those exist, aggregate the per-person facts of its members live: with a segment of
    everyone, every table must read the same either way."""
    everyone = Segment.objects.create(workspace=workspace, name="Everyone", definition={"all": []})
    if path == "segment aggregates":
        segment_refresh(segment_id=everyone.pk, force=True)
        assert segment_source(segment=everyone).aggregated
    campaign = scenario["campaign"]
    pages = {
        ("overview",): ("active", "growth", "messaging", "revenue"),
        ("campaign", campaign.pk): ("funnel", "variants", "variant_funnel", "channels", "series", "outcomes"),
        ("retention",): ("cohorts",),
        ("channels",): ("channels", "sources"),
    }
    for (name, *args), tables in pages.items():
        query = {**FEB_MAR, "grain": "week"} if name == "retention" else FEB_MAR
        plain = reader.get(url(name, workspace, *args, **query))
        live = reader.get(url(name, workspace, *args, segment=everyone.pk, **query))
        for table in tables:
            assert rows(live, table) == rows(plain, table), (name, table)
    # The campaign's retention against its control group (on the campaign page and on retention).
    query = {"grain": "week", "campaign": campaign.pk}
    plain = reader.get(url("retention", workspace, **query))
    filtered = reader.get(url("retention", workspace, segment=everyone.pk, **query))
    assert rows(filtered, "campaign_retention") == rows(plain, "campaign_retention")
    assert len(rows(plain, "campaign_retention")) > 1


# --- pages filtered by a segment -------------------------------------------------------------------


def google_segment(workspace: Workspace) -> Segment:
    return Segment.objects.create(
        workspace=workspace,
        name="From Google",
        definition={"all": [{"type": "acquisition", "field": "source", "op": "eq", "value": "google"}]},
    )


def test_segment_pages_read_the_segments_aggregates_once_built(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    google = google_segment(workspace)
    query = {"segment": google.pk, **FEB_MAR}
    live = reader.get(url("overview", workspace, **query))
    assert "its 3 members as of" in live.context["page"].notices[0]  # alice, bob, erin
    assert "read live" in live.context["page"].notices[0]
    assert segment_refresh(segment_id=google.pk) is not None
    assert segment_refresh(segment_id=google.pk) is None  # just built: not again
    built = reader.get(url("overview", workspace, **query))
    assert "aggregates built for them" in built.context["page"].notices[0]
    # The hand-counted numbers (as in test_overview_filtered_by_segment_and_platform), from the
    # segment's aggregates now.
    active = by(rows(built, "active"), "Day")
    assert [active["2030-03-04"][k] for k in ("Daily active", "Weekly active", "Monthly active")] == [0, 1, 3]
    for name, table in (("overview", "active"), ("overview", "growth"), ("retention", "cohorts")):
        extra = {"grain": "week"} if name == "retention" else {}
        assert rows(reader.get(url(name, workspace, **query, **extra)), table) == rows(
            live if name == "overview" and table == "active" else reader.get(url(name, workspace, **query, **extra)),
            table,
        )
    campaign = scenario["campaign"]
    funnel = by(rows(reader.get(url("campaign", workspace, campaign.pk, **query)), "funnel"), "Stage")
    assert [funnel[s]["People"] for s in ("Targeted", "Sent (received)", "Opened", "Converted", "Bounced")] == [
        2,
        2,
        1,
        1,
        1,
    ]


def test_a_changed_definition_is_read_live_until_its_aggregates_are_rebuilt(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    segment = google_segment(workspace)
    segment_refresh(segment_id=segment.pk)
    assert segment_source(segment=segment).aggregated
    segment.definition = {"all": [{"type": "acquisition", "field": "source", "op": "eq", "value": "facebook"}]}
    segment.save()
    source = segment_source(segment=segment)
    assert not source.aggregated
    assert source.size == 2  # carol, dan: the new definition's members, not the aggregates' old ones
    sources = by(
        rows(reader.get(url("channels", workspace, segment=segment.pk, **FEB_MAR)), "sources"), "Source (utm_source)"
    )
    assert list(sources) == ["facebook"]
    segment_refresh(segment_id=segment.pk)
    assert segment_source(segment=segment).aggregated
    sources = by(
        rows(reader.get(url("channels", workspace, segment=segment.pk, **FEB_MAR)), "sources"), "Source (utm_source)"
    )
    assert list(sources) == ["facebook"]
    assert sources["facebook"]["New people"] == 2


def test_segment_members_are_reused_while_fresh(workspace: Workspace, scenario: dict[str, Any], frozen: None) -> None:
    google = google_segment(workspace)
    first = segment_members(segment=google)
    assert first.size == 3
    scenario_person = Profile.objects.filter(workspace=workspace, utm_source="facebook").first()
    assert scenario_person is not None
    Profile.objects.filter(pk=scenario_person.pk).update(utm_source="google")
    assert segment_members(segment=google).computed_at == first.computed_at  # reused: 3 still
    assert segment_members(segment=google).size == 3
    assert segment_members(segment=google, max_age=0).size == 4


def test_members_bitmap_holds_exactly_the_members(workspace: Workspace, scenario: dict[str, Any]) -> None:
    """The bitmap's edges: the lowest and highest member, and people between them who are not."""
    google = google_segment(workspace)
    segment_members(segment=google)
    row = ReportSegmentMembers.objects.get(segment_id=google.pk)
    bits = bytes(row.bits)
    ids = {row.bits_base + n for n in range(len(bits) * 8) if bits[n >> 3] >> (n & 7) & 1}
    assert ids == set(Profile.objects.filter(workspace=workspace, utm_source="google").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM profiles_profile WHERE workspace_id = %s {members_filter('id', google.pk)} ORDER BY id",  # noqa: S608
            [workspace.pk],
        )
        assert {r[0] for r in cursor.fetchall()} == ids


def test_segments_viewed_lately_are_due_for_refresh(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    google = google_segment(workspace)
    assert segments_due_for_refresh() == []
    reader.get(url("overview", workspace, segment=google.pk, **FEB_MAR))
    assert segments_due_for_refresh() == [google.pk]
    segment_refresh(segment_id=google.pk)
    assert segments_due_for_refresh() == []
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        assert segments_due_for_refresh() == [google.pk]
    with time_machine.travel(NOW + timedelta(days=2), tick=False):
        assert segments_due_for_refresh() == []  # not viewed for a day: left alone


def test_funnel_split_by_campaign_reuses_the_campaigns_groups_for_a_while(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    campaign = scenario["campaign"]
    query = {"steps": STEPS, "split": "campaign", "campaign": campaign.pk, **FEB_MAR}
    first = reader.get(url("funnel", workspace, **query))
    assert "Who the campaign reached" in first.context["page"].notices[0]
    groups = by(rows(first, "split"), "Campaign received")
    assert groups["control group"][f"1. {STEPS.split(chr(10))[0]}"] == 2  # erin, frank
    # A third control-group member (a send read by the rollup since) is counted once the groups are
    # re-read: reused while fresh, re-read after REPORTS_SEGMENT_MEMBERS_SECONDS.
    ReportSend.objects.filter(campaign_id=campaign.pk, channel="", variant="A").update(variant="control")
    again = by(rows(reader.get(url("funnel", workspace, **query)), "split"), "Campaign received")
    assert again == groups
    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        later = by(rows(reader.get(url("funnel", workspace, **query)), "split"), "Campaign received")
    assert later["control group"][f"1. {STEPS.split(chr(10))[0]}"] > 2
    assert "received" not in later or later["received"] != groups["received"]


def test_beat_builds_the_aggregates_of_segments_viewed_lately_and_forgets_deleted_ones(
    reader: Client, workspace: Workspace, scenario: dict[str, Any]
) -> None:
    google = google_segment(workspace)
    reader.get(url("overview", workspace, segment=google.pk, **FEB_MAR))
    built = reports_segments_refresh_task()["segments"]
    assert isinstance(built, dict) and list(built) == [google.pk]
    assert segment_source(segment=google).aggregated
    assert ReportSegmentDay.objects.filter(segment_id=google.pk).exists()
    segment_id = google.pk
    google.delete()
    assert segment_refresh(segment_id=segment_id, force=True) is None
    assert not ReportSegmentDay.objects.filter(segment_id=segment_id).exists()
    assert not ReportSegmentMembers.objects.filter(segment_id=segment_id).exists()
