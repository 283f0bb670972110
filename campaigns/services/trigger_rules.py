"""The rules of action-based campaigns as data: what a trigger, an exception event, a conversion
event and a delay look like in a campaign's JSON, whether they are valid, and whether an event
matches them. Pure functions, no database: ``campaigns.services.triggers`` applies them to stored
events, the admin builder validates with them, and docs/campaigns-triggers.md describes the shapes.

Shapes (every ``filters`` list is optional)::

    triggers          [{"type": "custom_event", "event": "Product Added", "filters": [...]},
                       {"type": "purchase", "product_id": "sku-1", "filters": [...]},
                       {"type": "session_start"},
                       {"type": "engagement", "campaign_id": 12, "action": "opened", "channel": "email"},
                       {"type": "segment_entry", "segment_id": 5}]
    exception_events  [{"event": "Order Completed", "filters": [...], "match_property": "cart_id"},
                       {"purchase": true}]
    conversion_events [{"event": "Order Completed", "filters": [...]}, {"purchase": true, "product_id": "sku-1"}]
    delay             {} | {"type": "none"} | {"type": "duration", "seconds": 3600}
                      | {"type": "next_weekday", "weekday": "monday", "time": "10:00"}
                      | {"type": "days_at", "days": 2, "time": "10:00"} | {"type": "best_time"}
    a filter          {"property": "cart_value", "op": "gt", "value": 100}

Filter operators: eq, ne, gt, gte, lt, lte, exists, not_exists, one_of, not_one_of, contains,
not_contains. Numbers compare numerically (``"100"`` equals ``100``, ``"9" < 10``); text compares
case-insensitively, like the segment evaluators; ``property`` may be a dotted path into nested
objects (``product.category``). A negative operator (ne, not_one_of, not_contains, not_exists)
matches an event that lacks the property, exactly as "not" would.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from profiles.engagement import (
    CONTROL_GROUP_ENROLLED,
    ENGAGEMENT_EVENTS,
    PROP_CAMPAIGN_ID,
    PROP_CHANNEL,
    SESSION_STARTED,
)
from profiles.spec import PURCHASE_EVENTS

# --- filters --------------------------------------------------------------------------------------

FILTER_OPS = (
    "eq", "ne", "gt", "gte", "lt", "lte", "exists", "not_exists", "one_of", "not_one_of", "contains", "not_contains",
)  # fmt: skip
_NEGATIONS = {"ne": "eq", "not_exists": "exists", "not_one_of": "one_of", "not_contains": "contains"}
_ORDERING = ("gt", "gte", "lt", "lte")
MAX_FILTERS = 20
MISSING = object()


@dataclass(frozen=True)
class PropertyFilter:
    property: str
    op: str
    value: Any = None


def property_value(properties: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` (a key, or a dotted path into nested objects), or ``MISSING``."""
    if path in properties:
        return properties[path]
    node: Any = properties
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    if isinstance(value, str) and value.strip():
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).casefold()


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return _text(actual) == _text(expected)
    a, e = _number(actual), _number(expected)
    if a is not None and e is not None:
        return a == e
    if actual is None or expected is None:
        return actual is None and expected is None
    if isinstance(actual, dict | list) or isinstance(expected, dict | list):
        return bool(actual == expected)
    return _text(actual) == _text(expected)


def _holds(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return actual is not MISSING and actual is not None and actual != ""
    if actual is MISSING:
        return False
    if op == "eq":
        return _equal(actual, expected)
    if op == "one_of":
        return any(_equal(actual, item) for item in expected)
    if op == "contains":
        if isinstance(actual, list):
            return any(_equal(item, expected) for item in actual)
        if isinstance(actual, str):
            return _text(expected) in actual.casefold()
        return False
    # gt, gte, lt, lte: numbers numerically; otherwise nothing is ordered (a text "greater than"
    # would silently compare alphabetically, which no marketer means).
    a, e = _number(actual), _number(expected)
    if a is None or e is None:
        return False
    return {"gt": a > e, "gte": a >= e, "lt": a < e, "lte": a <= e}[op]


def filter_holds(flt: PropertyFilter, properties: Mapping[str, Any]) -> bool:
    actual = property_value(properties, flt.property)
    positive = _NEGATIONS.get(flt.op)
    if positive is not None:
        return not _holds(positive, actual, flt.value)
    return _holds(flt.op, actual, flt.value)


def filters_hold(filters: Sequence[PropertyFilter], properties: Mapping[str, Any]) -> bool:
    return all(filter_holds(flt, properties) for flt in filters)


# --- specs ----------------------------------------------------------------------------------------

TRIGGER_TYPES = ("custom_event", "purchase", "session_start", "engagement", "segment_entry")
ENGAGEMENT_ACTIONS: dict[str, str] = {**ENGAGEMENT_EVENTS, "control_group": CONTROL_GROUP_ENROLLED}


@dataclass(frozen=True)
class EventSpec:
    """What an event must be to match a trigger, an exception or a conversion: its name (or any
    purchase), an optional product, property filters, and for engagement triggers the campaign."""

    names: frozenset[str]
    filters: tuple[PropertyFilter, ...] = ()
    product_id: str = ""
    campaign_id: int | None = None
    channel: str = ""

    def matches(self, name: str, properties: Mapping[str, Any]) -> bool:
        if name not in self.names:
            return False
        if self.campaign_id is not None and not _equal(properties.get(PROP_CAMPAIGN_ID), self.campaign_id):
            return False
        if self.channel and not _equal(properties.get(PROP_CHANNEL), self.channel):
            return False
        if self.product_id and self.product_id not in purchased_products(properties):
            return False
        return filters_hold(self.filters, properties)


@dataclass(frozen=True)
class TriggerSpec:
    type: str
    event: EventSpec | None = None  # None for segment entry
    segment_id: int | None = None


@dataclass(frozen=True)
class ExceptionSpec:
    event: EventSpec
    match_property: str = ""


def purchased_products(properties: Mapping[str, Any]) -> set[str]:
    """Product ids of a purchase event's properties (Segment's ``products`` or a single product)."""
    found: set[str] = set()
    products = properties.get("products")
    if isinstance(products, list):
        for product in products:
            if isinstance(product, Mapping):
                value = product.get("product_id", product.get("sku", product.get("id")))
                if value is not None:
                    found.add(str(value))
    for key in ("product_id", "sku"):
        if properties.get(key) is not None:
            found.add(str(properties[key]))
    return found


# --- validation and parsing ----------------------------------------------------------------------


@dataclass
class _Checker:
    problems: list[str] = field(default_factory=list)

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def keys(self, path: str, item: Mapping[str, Any], allowed: Iterable[str]) -> None:
        extra = sorted(set(item) - set(allowed))
        if extra:
            self.fail(path, f"unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}")

    def name(self, path: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value) > 255:
            self.fail(path, "must be a non-empty event name of at most 255 characters")
            return None
        return value

    def filters(self, path: str, raw: Any) -> tuple[PropertyFilter, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or len(raw) > MAX_FILTERS:
            self.fail(path, f"must be a list of at most {MAX_FILTERS} property filters")
            return ()
        out = []
        for index, item in enumerate(raw):
            where = f"{path}[{index}]"
            if not isinstance(item, dict):
                self.fail(where, 'a filter is {"property": ..., "op": ..., "value": ...}')
                continue
            self.keys(where, item, ("property", "op", "value"))
            prop, op, value = item.get("property"), item.get("op"), item.get("value")
            if not isinstance(prop, str) or not prop:
                self.fail(f"{where}.property", "must name an event property")
                continue
            if op not in FILTER_OPS:
                self.fail(f"{where}.op", f"must be one of {', '.join(FILTER_OPS)}; got {op!r}")
                continue
            if op in ("exists", "not_exists"):
                if value is not None:
                    self.fail(f"{where}.value", f"'{op}' takes no value")
                    continue
            elif op in ("one_of", "not_one_of"):
                if not isinstance(value, list) or not value or len(value) > 1000:
                    self.fail(f"{where}.value", f"'{op}' takes a list of 1 to 1000 values")
                    continue
            elif op in _ORDERING:
                if _number(value) is None:
                    self.fail(f"{where}.value", f"'{op}' compares numbers; got {value!r}")
                    continue
            elif value is None or isinstance(value, dict | list):
                self.fail(f"{where}.value", f"'{op}' takes a text, number or boolean value")
                continue
            out.append(PropertyFilter(prop, op, value))
        return tuple(out)

    def integer(self, path: str, value: Any, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.fail(path, f"must be a whole number from {minimum} to {maximum}; got {value!r}")
            return None
        return value


def _list(raw: Any, what: str, maximum: int) -> list[Any] | None:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > maximum:
        return None
    return raw


def _event_or_purchase(c: _Checker, path: str, item: Mapping[str, Any]) -> EventSpec | None:
    """``{"event": name, ...}`` or ``{"purchase": true, "product_id"?: ...}``."""
    filters = c.filters(f"{path}.filters", item.get("filters"))
    if item.get("purchase") is True:
        product = item.get("product_id") or ""
        if not isinstance(product, str):
            c.fail(f"{path}.product_id", "must be text")
            return None
        return EventSpec(names=PURCHASE_EVENTS, filters=filters, product_id=product)
    name = c.name(f"{path}.event", item.get("event"))
    if name is None:
        return None
    return EventSpec(names=frozenset({name}), filters=filters)


def parse_triggers(raw: Any) -> tuple[list[TriggerSpec], list[str]]:
    """The campaign's triggers, and every problem found (each naming its path)."""
    c = _Checker()
    items = _list(raw, "triggers", 20)
    if items is None:
        return [], ["triggers: must be a list of at most 20 triggers"]
    specs: list[TriggerSpec] = []
    for index, item in enumerate(items):
        path = f"triggers[{index}]"
        if not isinstance(item, dict):
            c.fail(path, 'a trigger is an object such as {"type": "custom_event", "event": "..."}')
            continue
        kind = item.get("type")
        if kind not in TRIGGER_TYPES:
            c.fail(f"{path}.type", f"must be one of {', '.join(TRIGGER_TYPES)}; got {kind!r}")
            continue
        if kind == "custom_event":
            c.keys(path, item, ("type", "event", "filters"))
            name = c.name(f"{path}.event", item.get("event"))
            if name is not None and name.startswith("$"):
                c.fail(f"{path}.event", "names starting with $ are the platform's own; use session_start or engagement")
                continue
            filters = c.filters(f"{path}.filters", item.get("filters"))
            if name is not None:
                specs.append(TriggerSpec(kind, EventSpec(frozenset({name}), filters)))
        elif kind == "purchase":
            c.keys(path, item, ("type", "product_id", "filters"))
            spec = _event_or_purchase(c, path, {**item, "purchase": True})
            if spec is not None:
                specs.append(TriggerSpec(kind, spec))
        elif kind == "session_start":
            c.keys(path, item, ("type", "filters"))
            filters = c.filters(f"{path}.filters", item.get("filters"))
            specs.append(TriggerSpec(kind, EventSpec(frozenset({SESSION_STARTED}), filters)))
        elif kind == "engagement":
            c.keys(path, item, ("type", "campaign_id", "action", "channel", "filters"))
            campaign_id = c.integer(f"{path}.campaign_id", item.get("campaign_id"), minimum=1)
            action = item.get("action")
            if action not in ENGAGEMENT_ACTIONS:
                c.fail(f"{path}.action", f"must be one of {', '.join(ENGAGEMENT_ACTIONS)}; got {action!r}")
                continue
            channel = item.get("channel") or ""
            if not isinstance(channel, str):
                c.fail(f"{path}.channel", "must be a channel name")
                continue
            filters = c.filters(f"{path}.filters", item.get("filters"))
            if campaign_id is not None:
                event = EventSpec(
                    frozenset({ENGAGEMENT_ACTIONS[action]}), filters, campaign_id=campaign_id, channel=channel
                )
                specs.append(TriggerSpec(kind, event))
        else:  # segment_entry
            c.keys(path, item, ("type", "segment_id"))
            segment_id = c.integer(f"{path}.segment_id", item.get("segment_id"), minimum=1)
            if segment_id is not None:
                specs.append(TriggerSpec(kind, None, segment_id=segment_id))
    return specs, c.problems


def parse_exceptions(raw: Any, *, triggers: Sequence[TriggerSpec] = ()) -> tuple[list[ExceptionSpec], list[str]]:
    c = _Checker()
    items = _list(raw, "exception_events", 20)
    if items is None:
        return [], ["exception_events: must be a list of at most 20 exception events"]
    specs: list[ExceptionSpec] = []
    for index, item in enumerate(items):
        path = f"exception_events[{index}]"
        if not isinstance(item, dict):
            c.fail(path, 'an exception event is {"event": name, "filters"?: [...], "match_property"?: name}')
            continue
        c.keys(path, item, ("event", "purchase", "product_id", "filters", "match_property"))
        event = _event_or_purchase(c, path, item)
        match_property = item.get("match_property") or ""
        if not isinstance(match_property, str) or len(match_property) > 255:
            c.fail(f"{path}.match_property", "must name a property of the trigger event")
            continue
        if event is not None:
            specs.append(ExceptionSpec(event, match_property))
    if any(spec.event.names == frozenset({SESSION_STARTED}) for spec in specs) and any(
        t.type == "session_start" for t in triggers
    ):
        c.fail("exception_events", "session start cannot be both the trigger and an exception event")
    if len({spec.match_property for spec in specs if spec.match_property}) > 1:
        c.fail("exception_events", "every exception event that matches on a property must use the same property")
    return specs, c.problems


def parse_conversions(raw: Any) -> tuple[list[EventSpec], list[str]]:
    c = _Checker()
    items = _list(raw, "conversion_events", 10)
    if items is None:
        return [], ["conversion_events: must be a list of at most 10 conversion events"]
    specs: list[EventSpec] = []
    for index, item in enumerate(items):
        path = f"conversion_events[{index}]"
        if not isinstance(item, dict):
            c.fail(path, 'a conversion event is {"event": name, "filters"?: [...]} or {"purchase": true}')
            continue
        c.keys(path, item, ("event", "purchase", "product_id", "filters"))
        spec = _event_or_purchase(c, path, item)
        if spec is not None:
            specs.append(spec)
    return specs, c.problems


# --- delays ---------------------------------------------------------------------------------------

DELAY_TYPES = ("none", "duration", "next_weekday", "days_at", "best_time")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_DELAY_SECONDS = 365 * 86400
_TIME_RE = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True)
class Delay:
    type: str = "none"
    seconds: int = 0
    weekday: int = 0  # Monday is 0
    days: int = 0
    at: time = time(0, 0)

    @property
    def is_delayed(self) -> bool:
        return self.type != "none" and not (self.type == "duration" and self.seconds == 0)


def parse_delay(raw: Any) -> tuple[Delay, list[str]]:
    if raw in (None, {}):
        return Delay(), []
    c = _Checker()
    if not isinstance(raw, dict) or raw.get("type") not in DELAY_TYPES:
        return Delay(), [f"delay: must be an object whose type is one of {', '.join(DELAY_TYPES)}"]
    kind = raw["type"]
    if kind == "none":
        c.keys("delay", raw, ("type",))
        return Delay(), c.problems
    if kind == "best_time":
        c.keys("delay", raw, ("type",))
        return Delay("best_time"), c.problems
    if kind == "duration":
        c.keys("delay", raw, ("type", "seconds"))
        seconds = c.integer("delay.seconds", raw.get("seconds"), maximum=MAX_DELAY_SECONDS)
        return Delay("duration", seconds=seconds or 0), c.problems
    at = _time(c, raw.get("time"))
    if kind == "next_weekday":
        c.keys("delay", raw, ("type", "weekday", "time"))
        weekday = raw.get("weekday")
        if isinstance(weekday, str) and weekday.lower() in WEEKDAYS:
            weekday = WEEKDAYS.index(weekday.lower())
        number = c.integer("delay.weekday", weekday, maximum=6) if not isinstance(weekday, str) else None
        if isinstance(weekday, str):
            c.fail("delay.weekday", f"must be a day name ({', '.join(WEEKDAYS)}) or 0-6 from Monday")
        return Delay("next_weekday", weekday=number or 0, at=at), c.problems
    c.keys("delay", raw, ("type", "days", "time"))
    days = c.integer("delay.days", raw.get("days"), maximum=365)
    return Delay("days_at", days=days or 0, at=at), c.problems


def _time(c: _Checker, value: Any) -> time:
    match = _TIME_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        c.fail("delay.time", f"must be a local time such as 10:00; got {value!r}")
        return time(0, 0)
    return time(int(match.group(1)), int(match.group(2)))


def _local(day: date, at: time, tz: zoneinfo.ZoneInfo) -> datetime:
    # A wall time that does not exist (the spring-forward gap) lands just after the gap, as
    # zoneinfo resolves it; one that exists twice (fall back) takes the first.
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def delay_until(delay: Delay, *, base: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """When a send triggered at ``base`` is due, for a person in ``tz`` (best time is resolved by
    the caller, which knows the person's history)."""
    if delay.type == "duration":
        return base + timedelta(seconds=delay.seconds)
    local = base.astimezone(tz)
    if delay.type == "next_weekday":
        # The first such weekday and time after the trigger: Monday 09:00 with "next Monday at
        # 10:00" is an hour later, Monday 11:00 a week later.
        for offset in range(8):
            candidate = _local(local.date() + timedelta(days=offset), delay.at, tz)
            if candidate > base and (local.date() + timedelta(days=offset)).weekday() == delay.weekday:
                return candidate
    if delay.type == "days_at":
        candidate = _local(local.date() + timedelta(days=delay.days), delay.at, tz)
        # "In 0 days at 10:00" triggered at 11:00 means tomorrow at 10:00, never in the past.
        return candidate if candidate >= base else _local(local.date() + timedelta(days=delay.days + 1), delay.at, tz)
    return base


def rules_problems(
    *, triggers: Any = None, delay: Any = None, exception_events: Any = None, conversion_events: Any = None
) -> list[str]:
    """Every problem of a campaign's trigger, delay, exception and conversion JSON, each naming its
    path and rule (``triggers[0].event: ...``); empty when all parse. For the campaign builder's
    validation and the launch check."""
    specs, problems = parse_triggers(triggers)
    problems += parse_exceptions(exception_events, triggers=specs)[1]
    problems += parse_delay(delay)[1]
    problems += parse_conversions(conversion_events)[1]
    return problems
