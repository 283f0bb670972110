"""The segment definition: what a segment's JSON means, and whether it is valid.

A definition is a tree. Inner nodes are groups, ``{"all": [...]}``, ``{"any": [...]}`` or
``{"none": [...]}``, nestable to any depth; leaves are conditions, ``{"type": ..., ...}``. The root
is a group. docs/segments.md describes every condition type with examples.

``parse_definition`` turns the JSON into typed, frozen nodes, or raises ``DefinitionError`` listing
every problem found, each naming the node by its path (``all[2].any[0]``) and saying what is wrong.
Both evaluators (``segments.compiler``) work from the parsed tree only, so a definition that parses
means the same thing to both. Pure: no database access here (segment references are checked for
existence and cycles by ``segments.services``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, cast

from profiles.engagement import (
    CHANNELS,
    CONTROL_GROUP_ENROLLED,
    ENGAGEMENT_EVENTS,
    PROP_CAMPAIGN_ID,
    PROP_CHANNEL,
    PROP_VARIANT,
    SESSION_STARTED,
)
from profiles.models import CHANNELS_WITH_SUBSCRIPTION, Gender, Platform, SubscriptionState

from .models import LifecycleStage

MAX_DEPTH = 100
MAX_NODES = 1000
MAX_LIST = 1000
MAX_DAYS = 36_500
MAX_STRING = 1000


# --- problems ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or 'definition'}: {self.message}"


class DefinitionError(ValueError):
    """A definition that cannot be used; ``problems`` names each broken node and rule."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))

    @property
    def messages(self) -> list[str]:
        return [str(problem) for problem in self.problems]


# --- values --------------------------------------------------------------------------------------

Kind = Literal["string", "number", "boolean", "date", "datetime", "array", "semver", "count"]

# Operators a user may pick, by the kind of value compared. The negative ones ("ne", "not_one_of",
# "not_contains", "not_includes", "blank") are the exact negation of their positive twin, so a
# person without the value matches them: "country is not US" includes people whose country is
# unknown, just as the same condition inside a "none" group would.
OPERATORS: dict[str, tuple[str, ...]] = {
    "string": ("eq", "ne", "one_of", "not_one_of", "contains", "not_contains", "starts_with", "exists", "blank"),
    "number": ("eq", "ne", "gt", "gte", "lt", "lte", "between", "exists", "blank"),
    "boolean": ("eq", "ne", "exists", "blank"),
    "date": (
        "before", "after", "on", "between", "more_than_days_ago", "less_than_days_ago", "within_next_days",
        "exists", "blank",
    ),
    "array": ("includes", "not_includes", "exists", "blank"),
    "semver": ("eq", "ne", "gt", "gte", "lt", "lte", "between", "exists", "blank"),
    "count": ("eq", "ne", "gt", "gte", "lt", "lte", "between"),
}  # fmt: skip
OPERATORS["datetime"] = OPERATORS["date"]

NEGATIONS = {
    "ne": "eq",
    "not_one_of": "one_of",
    "not_contains": "contains",
    "not_includes": "includes",
    "blank": "exists",
}
DAYS_OPS = ("more_than_days_ago", "less_than_days_ago", "within_next_days")

# Custom attribute types as the builder names them -> the kind of comparison.
CUSTOM_TYPES: dict[str, Kind] = {
    "string": "string",
    "number": "number",
    "boolean": "boolean",
    "time": "datetime",
    "array": "array",
}

_SEMVER_RE = re.compile(
    r"[vV]?([0-9]{1,18})(?:\.([0-9]{1,18}))?(?:\.([0-9]{1,18}))?(?:\.([0-9]{1,18}))?(-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
)


def semver_key(version: str) -> tuple[int, int, int, int, int] | None:
    """``1.10.0`` -> (1, 10, 0, 0, 1): major, minor, patch, build, then 0 for a pre-release (so
    ``1.0.0-beta`` < ``1.0.0``). None when it is not a version. The SQL function
    ``segments_semver_key`` (migration 0003) computes the same key from the profile column."""
    match = _SEMVER_RE.fullmatch(version)
    if match is None:
        return None
    major, minor, patch, build, pre = match.groups()
    return (int(major), int(minor or 0), int(patch or 0), int(build or 0), 0 if pre else 1)


@dataclass(frozen=True)
class Comparison:
    """One operator applied to one value. ``op`` is always positive; ``negate`` flips the result.

    ``value`` is parsed for its kind: str / tuple[str, ...] (string, array), Decimal or a pair
    (number), int or a pair (count), bool, date or datetime or a pair (date, datetime; an int of
    days for the *_days ops), a semver key or a pair of keys. None for ``exists``.
    """

    kind: str
    op: str
    value: Any
    negate: bool = False


# --- nodes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """When behaviour counts: the last N minutes/hours/days, or from/to (either may be open)."""

    last: timedelta | None = None
    start: datetime | None = None
    end: datetime | None = None  # exclusive

    def bounds(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        if self.last is not None:
            # "In the last 7 days" runs up to now and includes events stamped slightly ahead of
            # the server clock (client clocks drift), so there is no upper bound.
            return now - self.last, None
        return self.start, self.end


ALL_TIME = Window()


GroupKind = Literal["all", "any", "none"]


@dataclass(frozen=True)
class Group:
    path: str
    kind: GroupKind
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AttributeCondition:
    """A profile column compared with a value."""

    path: str
    column: str
    comparison: Comparison


@dataclass(frozen=True)
class CustomAttributeCondition:
    path: str
    key: str
    comparison: Comparison


@dataclass(frozen=True)
class AgeCondition:
    path: str
    comparison: Comparison  # kind "count": whole years


@dataclass(frozen=True)
class BirthdayCondition:
    path: str
    op: Literal["on", "today", "within_next_days", "in_month"]
    month: int = 0
    day: int = 0
    days: int = 0


@dataclass(frozen=True)
class NearCondition:
    path: str
    latitude: float
    longitude: float
    radius_km: float


@dataclass(frozen=True)
class PushEnabledCondition:
    path: str
    enabled: bool


@dataclass(frozen=True)
class LifecycleStageCondition:
    path: str
    stages: tuple[str, ...]
    negate: bool


@dataclass(frozen=True)
class PropertyFilter:
    key: str
    comparison: Comparison


@dataclass(frozen=True)
class EventCountCondition:
    """The person did ``event`` a number of times in a window, counting only the events whose
    properties pass every filter."""

    path: str
    event: str
    comparison: Comparison  # kind "count"
    window: Window = ALL_TIME
    properties: tuple[PropertyFilter, ...] = ()


@dataclass(frozen=True)
class EventTimeCondition:
    path: str
    event: str
    which: Literal["first", "last"]
    comparison: Comparison  # kind "datetime"


@dataclass(frozen=True)
class PurchaseCountCondition:
    path: str
    comparison: Comparison  # kind "count"
    window: Window = ALL_TIME
    products: tuple[str, ...] = ()


@dataclass(frozen=True)
class MoneySpentCondition:
    path: str
    comparison: Comparison  # kind "number"
    window: Window = ALL_TIME
    products: tuple[str, ...] = ()
    currency: str = ""


@dataclass(frozen=True)
class PurchaseTimeCondition:
    path: str
    which: Literal["first", "last"]
    comparison: Comparison  # kind "datetime"


@dataclass(frozen=True)
class SegmentCondition:
    path: str
    segment_id: int


Condition = (
    AttributeCondition
    | CustomAttributeCondition
    | AgeCondition
    | BirthdayCondition
    | NearCondition
    | PushEnabledCondition
    | LifecycleStageCondition
    | EventCountCondition
    | EventTimeCondition
    | PurchaseCountCondition
    | MoneySpentCondition
    | PurchaseTimeCondition
    | SegmentCondition
)
Node = Group | Condition


# --- the standard attributes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    kind: Kind
    label: str
    choices: tuple[str, ...] = ()


def _values(choices: type[Any]) -> tuple[str, ...]:
    return tuple(str(value) for value in choices.values)


STANDARD_ATTRIBUTES: dict[str, Attribute] = {
    "external_id": Attribute("string", "External user id"),
    "first_name": Attribute("string", "First name"),
    "last_name": Attribute("string", "Last name"),
    "email": Attribute("string", "Email"),
    "phone": Attribute("string", "Phone"),
    "gender": Attribute("string", "Gender", _values(Gender)),
    "date_of_birth": Attribute("date", "Date of birth"),
    "language": Attribute("string", "Language"),
    "locale": Attribute("string", "Locale"),
    "country": Attribute("string", "Country"),
    "region": Attribute("string", "Region"),
    "city": Attribute("string", "City"),
    "time_zone": Attribute("string", "Time zone"),
    "latitude": Attribute("number", "Latitude"),
    "longitude": Attribute("number", "Longitude"),
    "first_seen": Attribute("datetime", "First seen"),
    "last_seen": Attribute("datetime", "Last seen"),
    "session_count": Attribute("number", "Session count"),
    "app_version": Attribute("string", "App version (as text; see app_version for version order)"),
    "platform": Attribute("string", "Platform", _values(Platform)),
    "utm_source": Attribute("string", "UTM source"),
    "utm_medium": Attribute("string", "UTM medium"),
    "utm_campaign": Attribute("string", "UTM campaign"),
    "utm_content": Attribute("string", "UTM content"),
    "utm_term": Attribute("string", "UTM term"),
    "email_subscription": Attribute("string", "Email subscription", _values(SubscriptionState)),
    "email_subscription_changed_at": Attribute("datetime", "Email subscription changed"),
    "push_subscription": Attribute("string", "Push subscription", _values(SubscriptionState)),
    "push_subscription_changed_at": Attribute("datetime", "Push subscription changed"),
    "sms_subscription": Attribute("string", "SMS subscription", _values(SubscriptionState)),
    "sms_subscription_changed_at": Attribute("datetime", "SMS subscription changed"),
    "random_bucket": Attribute("number", "Random bucket (0-9999)"),
    "created_at": Attribute("datetime", "Created"),
}

LOCATION_FIELDS = ("country", "region", "city")
ACQUISITION_FIELDS = ("source", "medium", "campaign", "content", "term")
WINDOW_UNITS = {"minutes": 1, "hours": 60, "days": 24 * 60}


# --- parsing -------------------------------------------------------------------------------------


@dataclass
class _Parser:
    problems: list[Problem] = field(default_factory=list)
    nodes: int = 0

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # groups

    def group(self, data: Any, path: str, depth: int) -> Group | None:
        self.nodes += 1
        if depth > MAX_DEPTH:
            self.fail(path, f"groups are nested more than {MAX_DEPTH} deep")
            return None
        if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in ("all", "any", "none"):
            self.fail(path, 'a group must be an object with exactly one key, "all", "any" or "none"')
            return None
        kind, raw_children = next(iter(data.items()))
        if not isinstance(raw_children, list):
            self.fail(path, f'"{kind}" must be a list of conditions and groups')
            return None
        children: list[Node] = []
        prefix = f"{path}." if path else ""
        for index, child in enumerate(raw_children):
            if self.nodes >= MAX_NODES:
                self.fail(path, f"a definition may hold at most {MAX_NODES} conditions and groups")
                return None
            child_path = f"{prefix}{kind}[{index}]"
            node = self.node(child, child_path, depth + 1)
            if node is not None:
                children.append(node)
        return Group(path=path, kind=cast(GroupKind, kind), children=tuple(children))

    def node(self, data: Any, path: str, depth: int) -> Node | None:
        if isinstance(data, dict) and "type" in data:
            self.nodes += 1
            return self.condition(data, path)
        if isinstance(data, dict) and len(data) == 1 and next(iter(data)) in ("all", "any", "none"):
            return self.group(data, path, depth)
        self.fail(path, 'expected a condition (an object with "type") or a group ("all", "any" or "none")')
        return None

    # conditions

    def condition(self, data: dict[str, Any], path: str) -> Condition | None:
        type_ = data["type"]
        parser = _CONDITION_PARSERS.get(type_) if isinstance(type_, str) else None
        if parser is None:
            self.fail(
                path, f"unknown condition type {type_!r}; expected one of {', '.join(sorted(_CONDITION_PARSERS))}"
            )
            return None
        keys, parse = parser
        unknown = sorted(set(data) - set(keys) - {"type"})
        if unknown:
            self.fail(path, f"{type_}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(keys)}")
            return None
        before = len(self.problems)
        condition = parse(self, data, path, _Context(self, path, type_))
        return condition if len(self.problems) == before else None


@dataclass
class _Context:
    """Reports problems for one condition, prefixed with its type so the message reads on its own."""

    parser: _Parser
    path: str
    type: str

    def fail(self, message: str) -> None:
        self.parser.fail(self.path, f"{self.type}: {message}")

    # scalar helpers

    def string(self, data: dict[str, Any], key: str, *, required: bool = True, max_length: int = 255) -> str | None:
        value = data.get(key)
        if value is None or value == "":
            if required:
                self.fail(f"{key!r} is required")
            return None
        if not isinstance(value, str) or len(value) > max_length:
            self.fail(f"{key!r} must be a string of at most {max_length} characters")
            return None
        return value

    def choice(self, data: dict[str, Any], key: str, choices: tuple[str, ...], *, required: bool = True) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if value not in choices:
            self.fail(f"{key!r} must be one of {', '.join(choices)}; got {value!r}")
            return None
        return str(value)

    def integer(self, value: Any, what: str, *, minimum: int, maximum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.fail(f"{what} must be a whole number from {minimum} to {maximum}; got {value!r}")
            return None
        return value

    def number(self, value: Any, what: str) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            self.fail(f"{what} must be a number; got {value!r}")
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite():
            self.fail(f"{what} must be a finite number; got {value!r}")
            return None
        return number

    def moment(self, value: Any, what: str, *, kind: str) -> date | datetime | None:
        """An ISO 8601 date, or (for datetimes) a date-time; a date-time without offset is UTC."""
        if isinstance(value, str):
            text = value.strip()
            try:
                if len(text) == 10:
                    return date.fromisoformat(text)
                if kind == "datetime":
                    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
                    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            except ValueError:
                pass
        expected = "a date (YYYY-MM-DD)" if kind == "date" else "a date (YYYY-MM-DD) or date-time (ISO 8601)"
        self.fail(f"{what} must be {expected}; got {value!r}")
        return None

    # comparisons

    def comparison(self, data: dict[str, Any], kind: str, *, choices: tuple[str, ...] = ()) -> Comparison | None:
        op = data.get("op")
        allowed = OPERATORS[kind]
        if op not in allowed:
            self.fail(f"'op' must be one of {', '.join(allowed)} for a {kind} value; got {op!r}")
            return None
        positive = NEGATIONS.get(op, op)
        negate = op in NEGATIONS
        raw = data.get("value")
        if positive == "exists":
            if raw is not None:
                self.fail(f"{op!r} takes no 'value'")
                return None
            return Comparison(kind, "exists", None, negate)
        if raw is None:
            self.fail(f"'value' is required for {op!r}")
            return None
        value = self._value(kind, positive, raw, choices)
        if value is None:
            return None
        return Comparison(kind, positive, value, negate)

    def _value(self, kind: str, op: str, raw: Any, choices: tuple[str, ...]) -> Any:
        if op == "between":
            if not isinstance(raw, list) or len(raw) != 2:
                self.fail("'between' takes a 'value' of two items, [low, high]")
                return None
            low, high = (self._scalar(kind, op, item, choices) for item in raw)
            if low is None or high is None:
                return None
            if kind in ("date", "datetime") and type(low) is not type(high):
                self.fail("'between' takes two dates or two date-times, not one of each")
                return None
            if low > high:
                self.fail(f"'between' needs low <= high; got {raw!r}")
                return None
            return (low, high)
        if op in ("one_of", "includes"):
            items = raw if isinstance(raw, list) else [raw] if op == "includes" else None
            if items is None or not items or len(items) > MAX_LIST:
                self.fail(f"{op!r} takes a 'value' that is a non-empty list (at most {MAX_LIST} items)")
                return None
            parsed = [self._scalar(kind, op, item, choices) for item in items]
            return None if any(item is None for item in parsed) else tuple(parsed)
        return self._scalar(kind, op, raw, choices)

    def _scalar(self, kind: str, op: str, raw: Any, choices: tuple[str, ...]) -> Any:
        if kind in ("string", "array"):
            if not isinstance(raw, str) or not raw or len(raw) > MAX_STRING:
                self.fail(f"'value' must be a non-empty string of at most {MAX_STRING} characters; got {raw!r}")
                return None
            if choices and op in ("eq", "one_of") and raw.lower() not in choices:
                self.fail(f"'value' must be one of {', '.join(choices)}; got {raw!r}")
                return None
            return raw
        if kind == "number":
            return self.number(raw, "'value'")
        if kind == "count":
            return self.integer(raw, "'value'", minimum=0, maximum=2**31 - 1)
        if kind == "boolean":
            if not isinstance(raw, bool):
                self.fail(f"'value' must be true or false; got {raw!r}")
                return None
            return raw
        if kind == "semver":
            key = semver_key(raw) if isinstance(raw, str) else None
            if key is None:
                self.fail(f"'value' must be a version such as 1.10.0; got {raw!r}")
            return key
        # date / datetime
        if op in DAYS_OPS:
            return self.integer(raw, "'value' (days)", minimum=0, maximum=MAX_DAYS)
        moment = self.moment(raw, "'value'", kind=kind)
        if op == "on" and isinstance(moment, datetime):
            self.fail(f"'on' takes a date (YYYY-MM-DD); got {raw!r}")
            return None
        return moment

    def count(self, data: dict[str, Any]) -> Comparison | None:
        """The "how many times" of a behaviour: "at least once" when neither op nor value is given."""
        if data.get("op") is None and data.get("value") is None:
            return Comparison("count", "gte", 1)
        return self.comparison(data, "count")

    def window(self, data: dict[str, Any]) -> Window | None:
        raw = data.get("window")
        if raw is None:
            return ALL_TIME
        if not isinstance(raw, dict):
            self.fail('\'window\' must be an object: {"last": N, "unit": "days"} or {"from": ..., "to": ...}')
            return None
        if "last" in raw:
            unknown = set(raw) - {"last", "unit"}
            unit = raw.get("unit", "days")
            amount = self.integer(raw["last"], "'window.last'", minimum=1, maximum=MAX_DAYS * 24 * 60)
            if unknown or unit not in WINDOW_UNITS:
                self.fail("'window' with 'last' takes only 'unit', one of minutes, hours, days")
                return None
            if amount is None:
                return None
            return Window(last=timedelta(minutes=amount * WINDOW_UNITS[unit]))
        if set(raw) - {"from", "to"} or not raw:
            self.fail("'window' takes either 'last' and 'unit', or 'from' and/or 'to'")
            return None
        start = end = None
        if raw.get("from") is not None:
            moment = self.moment(raw["from"], "'window.from'", kind="datetime")
            if moment is None:
                return None
            start = _start_of(moment)
        if raw.get("to") is not None:
            moment = self.moment(raw["to"], "'window.to'", kind="datetime")
            if moment is None:
                return None
            # A date includes its whole day; a date-time includes that instant.
            end = _start_of(moment + timedelta(days=1)) if not isinstance(moment, datetime) else moment + _INSTANT
        if start is not None and end is not None and start >= end:
            self.fail("'window.from' must be before 'window.to'")
            return None
        return Window(start=start, end=end)

    def products(self, data: dict[str, Any], *, required: bool) -> tuple[str, ...] | None:
        raw = data.get("products")
        if raw is None and not required:
            return ()
        if (
            not isinstance(raw, list)
            or not raw
            or len(raw) > MAX_LIST
            or not all(isinstance(item, str) and item for item in raw)
        ):
            self.fail("'products' must be a non-empty list of product ids")
            return None
        return tuple(raw)


_INSTANT = timedelta(microseconds=1)


def _start_of(moment: date | datetime) -> datetime:
    if isinstance(moment, datetime):
        return moment
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


# --- one parser per condition type ---------------------------------------------------------------

_Parse = Any  # Callable[[_Parser, dict, str, _Context], Condition | None]; kept loose for the table


def _attribute(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    name = c.choice(d, "attribute", tuple(STANDARD_ATTRIBUTES))
    if name is None:
        return None
    attribute = STANDARD_ATTRIBUTES[name]
    comparison = c.comparison(d, attribute.kind, choices=attribute.choices)
    return AttributeCondition(path, name, comparison) if comparison else None


def _column_shortcut(column: str, *, choices: tuple[str, ...] = ()) -> _Parse:
    def parse(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
        comparison = c.comparison(d, "string", choices=choices)
        return AttributeCondition(path, column, comparison) if comparison else None

    return parse


def _location(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    column = c.choice(d, "field", LOCATION_FIELDS)
    comparison = c.comparison(d, "string")
    return AttributeCondition(path, column, comparison) if column and comparison else None


def _subscription(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    channel = c.choice(d, "channel", CHANNELS_WITH_SUBSCRIPTION)
    comparison = c.comparison(d, "string", choices=_values(SubscriptionState))
    return AttributeCondition(path, f"{channel}_subscription", comparison) if channel and comparison else None


def _acquisition(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    raw = d.get("field")
    if isinstance(raw, str) and raw.startswith("utm_"):
        d = {**d, "field": raw[4:]}
    field_ = c.choice(d, "field", ACQUISITION_FIELDS)
    comparison = c.comparison(d, "string")
    return AttributeCondition(path, f"utm_{field_}", comparison) if field_ and comparison else None


def _random_bucket(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    comparison = c.comparison(d, "number")
    return AttributeCondition(path, "random_bucket", comparison) if comparison else None


def _custom_attribute(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    key = c.string(d, "attribute")
    data_type = c.choice(d, "data_type", tuple(CUSTOM_TYPES))
    if key is None or data_type is None:
        return None
    comparison = c.comparison(d, CUSTOM_TYPES[data_type])
    return CustomAttributeCondition(path, key, comparison) if comparison else None


def _age(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    comparison = c.comparison(d, "count")
    return AgeCondition(path, comparison) if comparison else None


def _birthday(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    op = c.choice(d, "op", ("on", "today", "within_next_days", "in_month"))
    value = d.get("value")
    if op == "today":
        if value is not None:
            c.fail("'today' takes no 'value'")
            return None
        return BirthdayCondition(path, "today")
    if op == "within_next_days":
        days = c.integer(value, "'value' (days)", minimum=0, maximum=365)
        return BirthdayCondition(path, "within_next_days", days=days) if days is not None else None
    if op == "in_month":
        month = c.integer(value, "'value' (month)", minimum=1, maximum=12)
        return BirthdayCondition(path, "in_month", month=month) if month is not None else None
    if op == "on":
        if not isinstance(value, dict) or set(value) != {"month", "day"}:
            c.fail("'on' takes a 'value' of {\"month\": 1-12, \"day\": 1-31}")
            return None
        month = c.integer(value["month"], "'value.month'", minimum=1, maximum=12)
        day = c.integer(value["day"], "'value.day'", minimum=1, maximum=31)
        if month is None or day is None:
            return None
        try:
            date(2000, month, day)  # a leap year, so February 29 is a real birthday
        except ValueError:
            c.fail(f"there is no day {day} in month {month}")
            return None
        return BirthdayCondition(path, "on", month=month, day=day)
    return None


def _near(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    latitude = c.number(d.get("latitude"), "'latitude'")
    longitude = c.number(d.get("longitude"), "'longitude'")
    radius = c.number(d.get("radius_km"), "'radius_km'")
    if latitude is None or longitude is None or radius is None:
        return None
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        c.fail("'latitude' must be within -90..90 and 'longitude' within -180..180")
        return None
    if not 0 < radius <= 20_100:
        c.fail("'radius_km' must be more than 0 and at most 20100 (half the Earth's circumference)")
        return None
    return NearCondition(path, float(latitude), float(longitude), float(radius))


def _app_version(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    comparison = c.comparison(d, "semver")
    return AttributeCondition(path, "app_version", comparison) if comparison else None


def _push_enabled(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    value = d.get("value", True)
    if not isinstance(value, bool):
        c.fail(f"'value' must be true or false; got {value!r}")
        return None
    return PushEnabledCondition(path, value)


def _lifecycle_stage(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    comparison = c.comparison(d, "string", choices=_values(LifecycleStage))
    if comparison is None:
        return None
    if comparison.op not in ("eq", "one_of"):
        c.fail("'op' must be one of eq, ne, one_of, not_one_of")
        return None
    stages = comparison.value if comparison.op == "one_of" else (comparison.value,)
    return LifecycleStageCondition(path, tuple(stage.lower() for stage in stages), comparison.negate)


def _property_filters(c: _Context, raw: Any) -> tuple[PropertyFilter, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 50:
        c.fail("'properties' must be a list of at most 50 property conditions")
        return None
    filters = []
    for index, item in enumerate(raw):
        sub = _Context(c.parser, c.path, f"{c.type} properties[{index}]")
        if not isinstance(item, dict) or set(item) - {"property", "data_type", "op", "value"}:
            sub.fail('a property condition is {"property", "data_type", "op", "value"}')
            return None
        key = sub.string(item, "property")
        data_type = sub.choice(item, "data_type", tuple(CUSTOM_TYPES))
        if key is None or data_type is None:
            return None
        comparison = sub.comparison(item, CUSTOM_TYPES[data_type])
        if comparison is None:
            return None
        filters.append(PropertyFilter(key, comparison))
    return tuple(filters)


def _event(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    event = c.string(d, "event")
    comparison = c.count(d)
    window = c.window(d)
    properties = _property_filters(c, d.get("properties"))
    if event is None or comparison is None or window is None or properties is None:
        return None
    return EventCountCondition(path, event, comparison, window, properties)


def _never_performed(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    event = c.string(d, "event")
    window = c.window(d)
    if event is None or window is None:
        return None
    return EventCountCondition(path, event, Comparison("count", "eq", 0), window)


def _event_time(which: Literal["first", "last"]) -> _Parse:
    def parse(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
        event = c.string(d, "event")
        comparison = c.comparison(d, "datetime")
        return EventTimeCondition(path, event, which, comparison) if event and comparison else None

    return parse


def _sessions(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    comparison = c.comparison(d, "count")
    window = c.window(d)
    if comparison is None or window is None:
        return None
    return EventCountCondition(path, SESSION_STARTED, comparison, window)


def _purchased_product(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    products = c.products(d, required=True)
    window = c.window(d)
    if products is None or window is None:
        return None
    return PurchaseCountCondition(path, Comparison("count", "gte", 1), window, products)


def _purchase_count(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    comparison = c.comparison(d, "count")
    window = c.window(d)
    products = c.products(d, required=False)
    if comparison is None or window is None or products is None:
        return None
    return PurchaseCountCondition(path, comparison, window, products)


def _money_spent(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    comparison = c.comparison(d, "number")
    window = c.window(d)
    products = c.products(d, required=False)
    currency = d.get("currency") or ""
    if not isinstance(currency, str) or (currency and not re.fullmatch(r"[A-Za-z]{3}", currency)):
        c.fail(f"'currency' must be an ISO 4217 code such as USD; got {currency!r}")
        return None
    if comparison is None or window is None or products is None:
        return None
    if comparison.op == "exists":
        c.fail("'op' must compare an amount (eq, ne, gt, gte, lt, lte, between)")
        return None
    return MoneySpentCondition(path, comparison, window, products, currency.upper())


def _purchase_time(which: Literal["first", "last"]) -> _Parse:
    def parse(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
        comparison = c.comparison(d, "datetime")
        return PurchaseTimeCondition(path, which, comparison) if comparison else None

    return parse


def _campaign_id(c: _Context, d: dict[str, Any], *, required: bool) -> int | None:
    if d.get("campaign_id") is None and not required:
        return 0
    return c.integer(d.get("campaign_id"), "'campaign_id'", minimum=1, maximum=2**63 - 1)


def _engagement_filters(campaign_id: int, channel: str | None, variant: str | None) -> tuple[PropertyFilter, ...]:
    filters = []
    if campaign_id:
        filters.append(PropertyFilter(PROP_CAMPAIGN_ID, Comparison("number", "eq", Decimal(campaign_id))))
    if channel:
        filters.append(PropertyFilter(PROP_CHANNEL, Comparison("string", "eq", channel)))
    if variant:
        filters.append(PropertyFilter(PROP_VARIANT, Comparison("string", "eq", variant)))
    return tuple(filters)


def _message_engagement(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    action = c.choice(d, "action", tuple(ENGAGEMENT_EVENTS))
    campaign_id = _campaign_id(c, d, required=False)
    channel = c.choice(d, "channel", CHANNELS, required=False)
    variant = c.string(d, "variant", required=False)
    comparison = c.count(d)
    window = c.window(d)
    if action is None or campaign_id is None or comparison is None or window is None:
        return None
    filters = _engagement_filters(campaign_id, channel, variant)
    return EventCountCondition(path, ENGAGEMENT_EVENTS[action], comparison, window, filters)


def _control_group(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    campaign_id = _campaign_id(c, d, required=True)
    window = c.window(d)
    if not campaign_id or window is None:
        return None
    filters = _engagement_filters(campaign_id, None, None)
    return EventCountCondition(path, CONTROL_GROUP_ENROLLED, Comparison("count", "gte", 1), window, filters)


def _segment(p: _Parser, d: dict[str, Any], path: str, c: _Context) -> Condition | None:
    segment_id = c.integer(d.get("segment_id"), "'segment_id'", minimum=1, maximum=2**63 - 1)
    return SegmentCondition(path, segment_id) if segment_id else None


_COMPARISON_KEYS = ("op", "value")
_CONDITION_PARSERS: dict[str, tuple[tuple[str, ...], _Parse]] = {
    "attribute": (("attribute", *_COMPARISON_KEYS), _attribute),
    "custom_attribute": (("attribute", "data_type", *_COMPARISON_KEYS), _custom_attribute),
    "age": (_COMPARISON_KEYS, _age),
    "birthday": (_COMPARISON_KEYS, _birthday),
    "location": (("field", *_COMPARISON_KEYS), _location),
    "near": (("latitude", "longitude", "radius_km"), _near),
    "language": (_COMPARISON_KEYS, _column_shortcut("language")),
    "time_zone": (_COMPARISON_KEYS, _column_shortcut("time_zone")),
    "platform": (_COMPARISON_KEYS, _column_shortcut("platform", choices=_values(Platform))),
    "app_version": (_COMPARISON_KEYS, _app_version),
    "push_enabled": (("value",), _push_enabled),
    "sessions": (("window", *_COMPARISON_KEYS), _sessions),
    "lifecycle_stage": (_COMPARISON_KEYS, _lifecycle_stage),
    "event": (("event", "window", "properties", *_COMPARISON_KEYS), _event),
    "never_performed": (("event", "window"), _never_performed),
    "first_performed": (("event", *_COMPARISON_KEYS), _event_time("first")),
    "last_performed": (("event", *_COMPARISON_KEYS), _event_time("last")),
    "purchased_product": (("products", "window"), _purchased_product),
    "purchase_count": (("products", "window", *_COMPARISON_KEYS), _purchase_count),
    "money_spent": (("products", "currency", "window", *_COMPARISON_KEYS), _money_spent),
    "first_purchase": (_COMPARISON_KEYS, _purchase_time("first")),
    "last_purchase": (_COMPARISON_KEYS, _purchase_time("last")),
    "message_engagement": (("action", "campaign_id", "channel", "variant", "window", *_COMPARISON_KEYS),
                           _message_engagement),
    "control_group": (("campaign_id", "window"), _control_group),
    "subscription": (("channel", *_COMPARISON_KEYS), _subscription),
    "acquisition": (("field", *_COMPARISON_KEYS), _acquisition),
    "random_bucket": (_COMPARISON_KEYS, _random_bucket),
    "segment": (("segment_id",), _segment),
}  # fmt: skip

CONDITION_TYPES = tuple(sorted(_CONDITION_PARSERS))


# --- public API ----------------------------------------------------------------------------------


def parse_definition(data: Any) -> Group:
    """The typed tree of a definition, or ``DefinitionError`` naming every problem found."""
    parser = _Parser()
    root = parser.group(data, "", 0)
    if parser.problems or root is None:
        raise DefinitionError(parser.problems or [Problem("", "not a valid definition")])
    return root


def validate_definition(data: Any) -> list[Problem]:
    """Every structural problem of a definition; empty when it parses."""
    try:
        parse_definition(data)
    except DefinitionError as error:
        return error.problems
    return []


def iter_conditions(node: Node) -> Iterator[Condition]:
    if isinstance(node, Group):
        for child in node.children:
            yield from iter_conditions(child)
    else:
        yield node


def segment_references(root: Group) -> list[SegmentCondition]:
    """The segment-membership conditions of a parsed tree, in document order."""
    return [condition for condition in iter_conditions(root) if isinstance(condition, SegmentCondition)]


def raw_segment_references(data: Any) -> set[int]:
    """The segment ids a stored definition refers to, read tolerantly (for cycle checks over
    definitions saved earlier, which may predate today's rules)."""
    found: set[int] = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "segment" and isinstance(item.get("segment_id"), int):
                found.add(item["segment_id"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
