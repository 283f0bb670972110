"""The uplift maths against published values, and a known case through the campaign report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from campaigns.models import Delivery, Variant
from campaigns.reports.rollups import reports_rollup
from campaigns.reports.stats import (
    newcombe_interval,
    ratio_interval,
    two_proportion_z_test,
    uplift,
    wilson_interval,
)
from profiles.engagement import (
    CONTROL_GROUP_ENROLLED,
    MESSAGE_CONVERTED,
    MESSAGE_RECEIVED,
    PROP_CAMPAIGN_ID,
    PROP_CHANNEL,
    PROP_SEND_ID,
    PROP_VARIANT,
)
from profiles.models import Profile, Workspace
from profiles.services.engagement import Engagement, engagement_record

from .reports_data import NOW, at, campaign


def close(value: float | None, expected: float, places: int = 4) -> bool:
    return value is not None and round(value, places) == expected


def test_wilson_interval_of_a_textbook_case() -> None:
    # 81 of 263 (Wilson 1927 as reproduced by Newcombe 1998, Statistics in Medicine 17:857).
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "expected"),
    [
        # Newcombe 1998 (Statistics in Medicine 17:873), table II, method 10.
        (56, 70, 48, 80, (0.0524, 0.3339)),
        (9, 10, 3, 10, (0.1705, 0.8090)),
        (6, 7, 2, 7, (0.0582, 0.8062)),
        (5, 56, 0, 29, (-0.0381, 0.1926)),
    ],
)
def test_newcombe_interval_matches_the_published_values(
    x1: int, n1: int, x0: int, n0: int, expected: tuple[float, float]
) -> None:
    low, high = newcombe_interval(x1, n1, x0, n0)
    assert (round(low, 4), round(high, 4)) == expected


def test_z_test_and_ratio_interval() -> None:
    # Pooled p = 104/150; se = sqrt(p(1-p)(1/70 + 1/80)); z = (0.8 - 0.6) / se.
    z, p_value = two_proportion_z_test(56, 70, 48, 80)
    assert round(z, 3) == 2.650
    assert round(p_value, 4) == 0.0080
    low, high = ratio_interval(56, 70, 48, 80) or (0.0, 0.0)
    # RR = 0.8 / 0.6; se(log RR) = sqrt(1/56 - 1/70 + 1/48 - 1/80).
    assert (round(low, 3), round(high, 3)) == (1.077, 1.651)  # 4/3 * exp(-/+ 1.96 * 0.10911)
    assert ratio_interval(0, 70, 48, 80) is None


def test_not_enough_data_yet() -> None:
    small = uplift(variant_successes=3, variant_size=10, control_successes=1, control_size=10)
    assert not small.enough_data
    assert small.verdict == "Not enough data yet (each group needs at least 30 people)"
    assert small.difference is not None  # the numbers are still shown
    rare = uplift(variant_successes=2, variant_size=500, control_successes=1, control_size=500)
    assert not rare.enough_data
    assert "conversions" in rare.reason
    empty = uplift(variant_successes=0, variant_size=0, control_successes=0, control_size=0)
    assert not empty.enough_data and empty.difference is None


def test_a_significant_uplift() -> None:
    result = uplift(variant_successes=56, variant_size=70, control_successes=48, control_size=80)
    assert result.enough_data and result.significant
    assert result.verdict == "Significantly better"
    assert close(result.difference, 0.2)
    assert close(result.relative, 0.3333)
    assert close(result.relative_low, 0.077, 3) and close(result.relative_high, 0.651, 3)
    no_difference = uplift(variant_successes=50, variant_size=100, control_successes=48, control_size=100)
    assert no_difference.verdict == "No significant difference"


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def test_the_campaign_report_shows_the_uplift_of_a_known_case(
    frozen: None, client: Client, workspace: Workspace
) -> None:
    """70 recipients of variant A, 56 of whom converted; 80 in the control group, 48 converted."""
    onboarding = campaign(workspace, variants=("A",))
    variant = Variant.objects.get(campaign=onboarding)
    people = Profile.objects.bulk_create(
        Profile(workspace=workspace, external_id=f"k{n}", platform="ios") for n in range(150)
    )
    due = at(1, 10)
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            workspace=workspace,
            campaign=onboarding,
            profile=profile,
            occurrence="once",
            variant=variant if n < 70 else None,
            status="sent" if n < 70 else "control",
            scheduled_for=due,
            sent_channels=["email"] if n < 70 else [],
        )
        for n, profile in enumerate(people)
    )
    engagements = []
    for n, delivery in enumerate(deliveries):
        props = {
            PROP_CAMPAIGN_ID: onboarding.pk,
            PROP_VARIANT: "A" if n < 70 else "control",
            PROP_SEND_ID: str(delivery.pk),
        }
        if n < 70:
            engagements.append(
                Engagement(delivery.profile_id, MESSAGE_RECEIVED, f"r{n}", {**props, PROP_CHANNEL: "email"}, due)
            )
        else:
            engagements.append(Engagement(delivery.profile_id, CONTROL_GROUP_ENROLLED, f"c{n}", props, due))
        if n < 56 or 70 <= n < 118:
            engagements.append(Engagement(delivery.profile_id, MESSAGE_CONVERTED, f"v{n}", props, at(2, 10)))
    engagement_record(workspace_id=workspace.pk, engagements=engagements)
    reports_rollup()
    user = User.objects.create_user("analyst")
    workspace.members.add(user)
    client.force_login(user)
    response = client.get(reverse("reports:campaign", args=[workspace.slug, onboarding.pk]))
    table = response.context["page"].table("variants")
    row = {h: c for h, c in zip(table.headers, table.rows[0], strict=True)}
    assert row["People compared"].value == 70
    assert row["Converted"].value == 56
    assert row["Conversion rate"].value == 0.8
    assert row["Difference vs control"].text == "+20.0 pp"
    assert row["95% CI (Newcombe)"].text == "+5.2 pp to +33.4 pp"
    assert row["Relative uplift (95% CI)"].text == "+33.3% (+7.7% to +65.1%)"
    assert row["p-value (z-test)"].text == "0.008"
    assert row["Verdict"].text == "Significantly better"
    control = {h: c for h, c in zip(table.headers, table.rows[1], strict=True)}
    assert (control["People compared"].value, control["Converted"].value) == (80, 48)
    assert "+20.0 pp" in response.content.decode()
