from collections import Counter

import pytest

from campaigns.services.variants import CONTROL, Split, assign_variant


def test_assignment_is_stable_per_person() -> None:
    splits = [Split("A", 50), Split("B", 50)]
    first = [assign_variant(campaign_id=7, profile_id=p, control_percent=10, variants=splits) for p in range(500)]
    again = [assign_variant(campaign_id=7, profile_id=p, control_percent=10, variants=splits) for p in range(500)]
    assert first == again


def test_split_follows_the_percentages() -> None:
    splits = [Split("A", 60), Split("B", 30), Split("C", 10)]
    counts = Counter(
        assign_variant(campaign_id=3, profile_id=p, control_percent=20, variants=splits) for p in range(20_000)
    )
    assert abs(counts[CONTROL] / 20_000 - 0.20) < 0.02
    others = 20_000 - counts[CONTROL]
    assert abs(counts["A"] / others - 0.6) < 0.03
    assert abs(counts["B"] / others - 0.3) < 0.03
    assert abs(counts["C"] / others - 0.1) < 0.02


def test_different_campaigns_split_people_independently() -> None:
    splits = [Split("A", 50), Split("B", 50)]
    a = [assign_variant(campaign_id=1, profile_id=p, control_percent=0, variants=splits) for p in range(2000)]
    b = [assign_variant(campaign_id=2, profile_id=p, control_percent=0, variants=splits) for p in range(2000)]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    assert 800 < same < 1200


def test_no_control_and_all_control() -> None:
    splits = [Split("A", 100)]
    assert {assign_variant(campaign_id=1, profile_id=p, control_percent=0, variants=splits) for p in range(300)} == {
        "A"
    }
    assert {assign_variant(campaign_id=1, profile_id=p, control_percent=100, variants=splits) for p in range(300)} == {
        CONTROL
    }


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="control_percent must be between 0 and 100"):
        assign_variant(campaign_id=1, profile_id=1, control_percent=120, variants=[Split("A", 100)])
    with pytest.raises(ValueError, match="at least one variant"):
        assign_variant(campaign_id=1, profile_id=1, control_percent=10, variants=[Split("A", 0)])
