"""Parsing and validating definitions: every problem names the node (by path) and the rule broken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from segments.definition import (
    CONDITION_TYPES,
    DefinitionError,
    EventCountCondition,
    Group,
    parse_definition,
    semver_key,
    validate_definition,
)


def problems(definition: Any) -> list[str]:
    return [str(problem) for problem in validate_definition(definition)]


def test_groups_nest_to_any_depth() -> None:
    definition: dict[str, Any] = {"type": "attribute", "attribute": "country", "op": "eq", "value": "US"}
    for depth in range(60):
        definition = {("all", "any", "none")[depth % 3]: [definition]}
    root = parse_definition(definition)
    node: Any = root
    for _ in range(59):
        node = node.children[0]
        assert isinstance(node, Group)
    assert node.children[0].path.count("[0]") == 60


def test_an_empty_group_is_valid() -> None:
    assert parse_definition({"all": []}) == Group(path="", kind="all", children=())


def test_errors_name_the_path_of_the_broken_condition() -> None:
    definition = {
        "all": [
            {"type": "attribute", "attribute": "country", "op": "eq", "value": "US"},
            {"type": "age", "op": "gte", "value": 18},
            {
                "any": [
                    {"type": "event", "event": "Opened", "op": "gte", "value": -1},
                    {"type": "event", "event": "Opened", "window": {"last": 0, "unit": "days"}},
                ]
            },
        ]
    }
    assert problems(definition) == [
        "all[2].any[0]: event: 'value' must be a whole number from 0 to 2147483647; got -1",
        "all[2].any[1]: event: 'window.last' must be a whole number from 1 to 52560000; got 0",
    ]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"type": "colour"}, "unknown condition type 'colour'"),
        ({"type": "attribute", "attribute": "shoe_size", "op": "eq", "value": 1}, "'attribute' must be one of"),
        ({"type": "attribute", "attribute": "country", "op": "gt", "value": "US"}, "'op' must be one of eq, ne"),
        ({"type": "attribute", "attribute": "country", "op": "eq"}, "'value' is required for 'eq'"),
        ({"type": "attribute", "attribute": "country", "op": "exists", "value": "x"}, "'exists' takes no 'value'"),
        ({"type": "attribute", "attribute": "gender", "op": "eq", "value": "robot"}, "'value' must be one of male"),
        ({"type": "attribute", "attribute": "country", "op": "eq", "vaule": "US"}, "unknown key(s) 'vaule'"),
        ({"type": "attribute", "attribute": "session_count", "op": "between", "value": [5, 1]}, "low <= high"),
        ({"type": "attribute", "attribute": "last_seen", "op": "before", "value": "yesterday"}, "must be a date"),
        ({"type": "attribute", "attribute": "date_of_birth", "op": "before", "value": "2020-01-01T10:00:00"},
         "must be a date (YYYY-MM-DD)"),
        ({"type": "custom_attribute", "attribute": "plan", "op": "eq", "value": "x"}, "'data_type' must be one of"),
        ({"type": "birthday", "op": "on", "value": {"month": 2, "day": 30}}, "no day 30 in month 2"),
        ({"type": "near", "latitude": 91, "longitude": 0, "radius_km": 5}, "'latitude' must be within -90..90"),
        ({"type": "app_version", "op": "gt", "value": "latest"}, "must be a version such as 1.10.0"),
        ({"type": "lifecycle_stage", "op": "eq", "value": "zombie"}, "'value' must be one of new, active"),
        ({"type": "event", "op": "gte", "value": 1}, "'event' is required"),
        ({"type": "event", "event": "x", "window": {"from": "2026-02-01", "to": "2026-01-01"}}, "before 'window.to'"),
        ({"type": "event", "event": "x",
          "properties": [{"property": "p", "data_type": "number", "op": "gt", "value": "a"}]},
         "event properties[0]: 'value' must be a number"),
        ({"type": "money_spent", "op": "gt", "value": 10, "currency": "dollars"}, "ISO 4217"),
        ({"type": "message_engagement", "action": "liked"}, "'action' must be one of received"),
        ({"type": "message_engagement", "action": "opened", "channel": "fax"}, "'channel' must be one of email"),
        ({"type": "control_group"}, "'campaign_id' must be a whole number"),
        ({"type": "subscription", "channel": "email", "op": "eq", "value": "maybe"}, "must be one of subscribed"),
        ({"type": "segment", "segment_id": "teens"}, "'segment_id' must be a whole number"),
    ],
)  # fmt: skip
def test_each_problem_says_what_is_wrong(node: dict[str, Any], message: str) -> None:
    found = problems({"any": [node]})
    assert len(found) == 1
    assert found[0].startswith("any[0]: ")
    assert message in found[0]


def test_malformed_groups_are_reported() -> None:
    assert problems([]) == ['definition: a group must be an object with exactly one key, "all", "any" or "none"']
    assert problems({"all": [{"all": [], "any": []}]}) == [
        'all[0]: expected a condition (an object with "type") or a group ("all", "any" or "none")'
    ]
    assert problems({"all": "everyone"}) == ['definition: "all" must be a list of conditions and groups']


def test_every_condition_type_is_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "segments.md").read_text()
    missing = [name for name in CONDITION_TYPES if f'"{name}"' not in text]
    assert not missing


def test_parse_raises_with_every_problem() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition({"all": [{"type": "x"}, {"type": "y"}]})
    assert [problem.path for problem in caught.value.problems] == ["all[0]", "all[1]"]


def test_shortcuts_parse_to_event_counts() -> None:
    root = parse_definition({"all": [{"type": "never_performed", "event": "Order Completed"}]})
    condition = root.children[0]
    assert isinstance(condition, EventCountCondition)
    assert (condition.comparison.op, condition.comparison.value) == ("eq", 0)


def test_semver_key_orders_versions() -> None:
    assert semver_key("1.10.0") > semver_key("1.9.2")  # type: ignore[operator]
    assert semver_key("1.0.0-beta") < semver_key("1.0.0")  # type: ignore[operator]
    assert semver_key("v2") == semver_key("2.0.0") == (2, 0, 0, 0, 1)
    assert semver_key("1.2.3.4+build.7") == (1, 2, 3, 4, 1)
    assert semver_key("nightly") is None
    assert semver_key("1.2 ") is None


@pytest.mark.parametrize(
    "version",
    ["1.10.0", "1.9.2", "v2", "V2.1", "2.0.0-beta.1", "1.0.0+build-7", "1.0.0-rc.1+b", "1.2.3.4", "1.2.3.4.5", "01.2",
     "", ".1", "1.", "1..2", "nightly", "1.2 ", "123456789012345678", "1234567890123456789", "v123456789012345678.1"],
)  # fmt: skip
def test_the_sql_semver_key_matches_the_python_one(db: None, version: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT segments_semver_key(%s)", [version])
        (sql_key,) = cursor.fetchone()
    python_key = semver_key(version)
    assert (tuple(sql_key) if sql_key is not None else None) == python_key
