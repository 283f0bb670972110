"""Property-based tests: random definitions over random people, against real PostgreSQL.

1. The set evaluator and the single-profile check always agree, on definitions drawn from every
   condition type, nested in random all/any/none trees.
2. For behaviour (event counts in windows cut anywhere, with property filters, first/last times,
   purchases), both agree with a plain Python recount of the raw rows: the rollup and the
   boundary-day recount never change an answer.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.engagement import MESSAGE_OPENED, SESSION_STARTED
from profiles.models import Profile, Workspace
from segments.models import Segment
from segments.tests.conftest import NOW, add_device, buy, make_profile, members_of, track

EVENT_NAMES = ["A", "B", SESSION_STARTED, MESSAGE_OPENED]
PROFILE_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- random people -------------------------------------------------------------------------------

offsets = st.integers(min_value=-40 * 24 * 60, max_value=2 * 60).map(lambda minutes: NOW + timedelta(minutes=minutes))
maybe_time = st.none() | offsets

event_rows = st.tuples(
    st.sampled_from(EVENT_NAMES),
    offsets,
    st.fixed_dictionaries(
        {
            "price": st.integers(0, 200) | st.sampled_from(["12", "150", "free"]),
            "campaign_id": st.sampled_from([1, 2]),
            "channel": st.sampled_from(["email", "push"]),
        }
    ),
)
purchase_rows = st.tuples(
    st.sampled_from(["p1", "p2"]),
    st.sampled_from(["5.00", "20.00", "99.99"]),
    st.integers(1, 3),
    st.sampled_from(["USD", "EUR"]),
    offsets,
)
people = st.lists(
    st.fixed_dictionaries(
        {
            # As every writer stores countries (normalize_traits): upper-case codes. Conditions on them
            # still take the value in any case.
            "country": st.sampled_from(["US", "FR", ""]),
            "region": st.sampled_from(["Mississippi", "Texas", ""]),
            "language": st.sampled_from(["en", "fr", ""]),
            "time_zone": st.sampled_from(["America/Chicago", "Europe/Paris", ""]),
            "platform": st.sampled_from(["ios", "android", "web", ""]),
            "app_version": st.sampled_from(["1.9.2", "1.10.0", "2.0.0-beta.1", "v2", "junk", ""]),
            "session_count": st.integers(0, 12),
            "date_of_birth": st.none() | st.dates(date(1950, 1, 1), date(2025, 12, 31)),
            "first_seen": maybe_time,
            "last_seen": maybe_time,
            "latitude": st.none() | st.floats(40, 50),
            "longitude": st.floats(-5, 10),
            "utm_source": st.sampled_from(["facebook", "google", ""]),
            "email_subscription": st.sampled_from(["subscribed", "opted_in", "unsubscribed"]),
            "random_bucket": st.integers(0, 9999),
            "custom_attributes": st.fixed_dictionaries(
                {},
                optional={
                    "plan": st.sampled_from(["gold", "Free", 3]),
                    "score": st.integers(-5, 50) | st.sampled_from(["7", "x"]),
                    "vip": st.booleans() | st.just("yes"),
                    "tags": st.lists(st.sampled_from(["beta", "ios", "vip"]), max_size=2),
                },
            ),
            "events": st.lists(event_rows, max_size=10),
            "purchases": st.lists(purchase_rows, max_size=3),
            "push": st.booleans(),
        }
    ),
    min_size=3,
    max_size=8,
)


def store(workspace: Workspace, population: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    stored = {}
    for index, person in enumerate(population):
        fields = {key: value for key, value in person.items() if key not in ("events", "purchases", "push")}
        if fields["latitude"] is None:
            fields["longitude"] = None
        profile = make_profile(workspace, f"p{index}", **fields)
        for name, at, properties in person["events"]:
            track(profile, name, at, properties)
        for product, price, quantity, currency, at in person["purchases"]:
            buy(profile, product, price, at, quantity=quantity, currency=currency)
        if person["push"]:
            add_device(profile, f"device-{index}", push_enabled=True)
        stored[profile.pk] = person
    return stored


# --- random definitions --------------------------------------------------------------------------

days = st.integers(0, 45)
windows = st.one_of(
    st.none(),
    st.builds(lambda n: {"last": n, "unit": "minutes"}, st.integers(1, 600)),
    st.builds(lambda n: {"last": n, "unit": "hours"}, st.integers(1, 100)),
    st.builds(lambda n: {"last": n, "unit": "days"}, st.integers(1, 45)),
    st.builds(
        lambda a, b: {"from": str(NOW.date() - timedelta(days=a)), "to": str(NOW.date() - timedelta(days=b))},
        st.integers(10, 45),
        st.integers(-1, 9),
    ),
    st.builds(lambda a: {"from": (NOW - timedelta(minutes=a)).isoformat()}, st.integers(0, 3000)),
)
count_ops = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"])
moments = st.builds(lambda m: (NOW - timedelta(minutes=m)).isoformat(), st.integers(-120, 40 * 24 * 60))
time_ops = st.one_of(
    st.tuples(st.sampled_from(["before", "after"]), moments),
    st.tuples(st.sampled_from(["more_than_days_ago", "less_than_days_ago"]), days),
    st.tuples(st.sampled_from(["exists", "blank"]), st.none()),
)


def with_window(condition: dict[str, Any], window: dict[str, Any] | None) -> dict[str, Any]:
    return {**condition, "window": window} if window else condition


def comparison(op_value: tuple[str, Any]) -> dict[str, Any]:
    op, value = op_value
    return {"op": op} if value is None else {"op": op, "value": value}


price_filters = st.lists(
    st.builds(
        lambda op, value: {"property": "price", "data_type": "number", "op": op, "value": value},
        st.sampled_from(["gt", "lte", "eq"]),
        st.integers(0, 200),
    ),
    max_size=1,
)

behaviour = st.one_of(
    st.builds(
        lambda event, op, n, window, properties: with_window(
            {
                "type": "event",
                "event": event,
                "op": op,
                "value": n,
                **({"properties": properties} if properties else {}),
            },
            window,
        ),
        st.sampled_from(EVENT_NAMES),
        count_ops,
        st.integers(0, 4),
        windows,
        price_filters,
    ),
    st.builds(
        lambda event, window: with_window({"type": "never_performed", "event": event}, window),
        st.sampled_from(EVENT_NAMES),
        windows,
    ),
    st.builds(
        lambda which, event, op: {"type": f"{which}_performed", "event": event, **comparison(op)},
        st.sampled_from(["first", "last"]),
        st.sampled_from(EVENT_NAMES),
        time_ops,
    ),
    st.builds(
        lambda op, n, window, products: with_window(
            {"type": "purchase_count", "op": op, "value": n, **({"products": products} if products else {})}, window
        ),
        count_ops,
        st.integers(0, 3),
        windows,
        st.sampled_from([None, ["p1"], ["p1", "p2"]]),
    ),
    st.builds(
        lambda op, amount, window, currency: with_window(
            {"type": "money_spent", "op": op, "value": amount, **({"currency": currency} if currency else {})}, window
        ),
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        st.sampled_from([0, 5, 20, 60.5, 150]),
        windows,
        st.sampled_from([None, "USD"]),
    ),
    st.builds(
        lambda which, op: {"type": f"{which}_purchase", **comparison(op)}, st.sampled_from(["first", "last"]), time_ops
    ),
    st.builds(lambda op, n: {"type": "attribute", "attribute": "session_count", "op": op, "value": n}, count_ops, days),
    st.builds(
        lambda op, value: {"type": "location", "field": "country", "op": op, "value": value},
        st.sampled_from(["eq", "ne"]),
        st.sampled_from(["US", "fr"]),
    ),
)

profile_only = st.one_of(
    st.builds(lambda n: {"type": "age", "op": "gte", "value": n}, st.integers(0, 80)),
    st.builds(
        lambda a, b: {"type": "age", "op": "between", "value": [a, a + b]}, st.integers(0, 60), st.integers(0, 20)
    ),
    st.builds(lambda n: {"type": "birthday", "op": "within_next_days", "value": n}, st.integers(0, 365)),
    st.builds(lambda m: {"type": "birthday", "op": "in_month", "value": m}, st.integers(1, 12)),
    st.builds(lambda r: {"type": "near", "latitude": 45, "longitude": 2, "radius_km": r}, st.integers(1, 800)),
    st.builds(
        lambda op, v: {"type": "app_version", "op": op, "value": v},
        st.sampled_from(["gt", "lt", "eq", "ne"]),
        st.sampled_from(["1.9.2", "1.10", "2"]),
    ),
    st.builds(lambda v: {"type": "push_enabled", "value": v}, st.booleans()),
    st.builds(
        lambda op, stages: {"type": "lifecycle_stage", "op": op, "value": stages},
        st.sampled_from(["one_of", "not_one_of"]),
        st.lists(st.sampled_from(["new", "active", "lapsed", "churned"]), min_size=1, max_size=2, unique=True),
    ),
    st.builds(
        lambda op, v: {"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": op, "value": v},
        st.sampled_from(["eq", "ne", "contains"]),
        st.sampled_from(["GOLD", "3", "re"]),
    ),
    st.builds(
        lambda op, v: {"type": "custom_attribute", "attribute": "score", "data_type": "number", "op": op, "value": v},
        st.sampled_from(["gt", "lte", "ne"]),
        st.integers(-5, 50),
    ),
    st.builds(
        lambda v: {"type": "custom_attribute", "attribute": "vip", "data_type": "boolean", "op": "eq", "value": v},
        st.booleans(),
    ),
    st.builds(
        lambda op, v: {"type": "custom_attribute", "attribute": "tags", "data_type": "array", "op": op, "value": v},
        st.sampled_from(["includes", "not_includes"]),
        st.sampled_from(["beta", "VIP"]),
    ),
    st.builds(
        lambda op: {"type": "custom_attribute", "attribute": "tags", "data_type": "array", "op": op},
        st.sampled_from(["exists", "blank"]),
    ),
    st.builds(
        lambda action, campaign, window: with_window(
            {"type": "message_engagement", "action": action, "campaign_id": campaign}, window
        ),
        st.sampled_from(["opened", "clicked"]),
        st.sampled_from([1, 2]),
        windows,
    ),
    st.builds(
        lambda v: {"type": "subscription", "channel": "email", "op": "one_of", "value": v},
        st.lists(st.sampled_from(["subscribed", "opted_in", "unsubscribed"]), min_size=1, max_size=2),
    ),
    st.builds(
        lambda v: {"type": "acquisition", "field": "source", "op": "eq", "value": v},
        st.sampled_from(["facebook", "google"]),
    ),
    st.builds(
        lambda a, b: {"type": "random_bucket", "op": "between", "value": [a, a + b]},
        st.integers(0, 9999),
        st.integers(0, 5000),
    ),
    st.builds(
        lambda op, v: {"type": "attribute", "attribute": "last_seen", "op": op, "value": v},
        st.sampled_from(["less_than_days_ago", "more_than_days_ago"]),
        days,
    ),
    st.just({"type": "segment", "segment_id": "HELPER"}),
)


def trees(leaves: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaves,
        lambda children: st.builds(
            lambda kind, items: {kind: items},
            st.sampled_from(["all", "any", "none"]),
            st.lists(children, min_size=1, max_size=3),
        ),
        max_leaves=6,
    ).map(lambda node: node if set(node) & {"all", "any", "none"} else {"all": [node]})


def resolve_helper(node: Any, helper_id: int) -> Any:
    if isinstance(node, dict):
        if node.get("segment_id") == "HELPER":
            return {**node, "segment_id": helper_id}
        return {key: resolve_helper(value, helper_id) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_helper(item, helper_id) for item in node]
    return node


# --- 1. the two evaluators agree -----------------------------------------------------------------


@PROFILE_SETTINGS
@given(population=people, definition=trees(st.one_of(behaviour, profile_only)))
def test_set_evaluator_and_single_profile_check_agree(
    workspace: Workspace, frozen: Any, population: list[dict[str, Any]], definition: dict[str, Any]
) -> None:
    with transaction.atomic():
        store(workspace, population)
        helper = Segment.objects.create(
            workspace=workspace,
            name="helper",
            definition={"any": [{"type": "location", "field": "country", "op": "eq", "value": "US"},
                                {"type": "event", "event": "A", "op": "gte", "value": 2}]},
        )  # fmt: skip
        members_of(workspace, resolve_helper(definition, helper.pk))  # asserts agreement
        transaction.set_rollback(True)


# --- 2. both agree with a recount of the raw rows ------------------------------------------------


def _window_bounds(window: dict[str, Any] | None) -> tuple[datetime | None, datetime | None]:
    if not window:
        return None, None
    if "last" in window:
        unit = {"minutes": 1, "hours": 60, "days": 1440}[window["unit"]]
        return NOW - timedelta(minutes=window["last"] * unit), None
    start = end = None
    if "from" in window:
        start = datetime.fromisoformat(window["from"]) if "T" in window["from"] else _midnight(window["from"])
    if "to" in window:
        end = _midnight(window["to"]) + timedelta(days=1)
    return start, end


def _midnight(text: str) -> datetime:
    day = date.fromisoformat(text)
    return datetime(day.year, day.month, day.day, tzinfo=NOW.tzinfo)


def _in_window(at: datetime, bounds: tuple[datetime | None, datetime | None]) -> bool:
    start, end = bounds
    return (start is None or at >= start) and (end is None or at < end)


def _compare(value: Any, op: str, target: Any) -> bool:
    return {
        "eq": value == target,
        "ne": value != target,
        "gt": value > target,
        "gte": value >= target,
        "lt": value < target,
        "lte": value <= target,
    }[op]


def _price(properties: dict[str, Any]) -> Decimal | None:
    price = properties.get("price")
    if isinstance(price, int) or (isinstance(price, str) and price.isdigit()):
        return Decimal(price)
    return None


def _time_matches(moment: datetime | None, op: str, value: Any) -> bool:
    if op == "exists":
        return moment is not None
    if op == "blank":
        return moment is None
    if moment is None:
        return False
    if op == "before":
        return moment < datetime.fromisoformat(value)
    if op == "after":
        return moment > datetime.fromisoformat(value)
    if op == "more_than_days_ago":
        return moment < NOW - timedelta(days=value)
    return NOW - timedelta(days=value) <= moment <= NOW  # less_than_days_ago


def oracle(node: dict[str, Any], person: dict[str, Any]) -> bool:
    """What a definition drawn from ``behaviour`` means, computed from the raw rows in Python."""
    for kind in ("all", "any", "none"):
        if kind in node:
            results = [oracle(child, person) for child in node[kind]]
            return all(results) if kind == "all" else any(results) if kind == "any" else not any(results)
    type_ = node["type"]
    if type_ == "location":
        equal = person["country"].lower() == node["value"].lower()
        return equal if node["op"] == "eq" else not equal
    if type_ == "attribute":
        return _compare(person["session_count"], node["op"], node["value"])
    bounds = _window_bounds(node.get("window"))
    if type_ in ("event", "never_performed"):
        op, target = (node["op"], node["value"]) if type_ == "event" else ("eq", 0)
        count = 0
        for name, at, properties in person["events"]:
            if name != node["event"] or not _in_window(at, bounds):
                continue
            price_ok = True
            for prop in node.get("properties", []):
                price = _price(properties)
                price_ok = price_ok and price is not None and _compare(price, prop["op"], prop["value"])
            count += price_ok
        return _compare(count, op, target)
    if type_ in ("first_performed", "last_performed"):
        times = [at for name, at, _ in person["events"] if name == node["event"]]
        moment = (min(times) if type_.startswith("first") else max(times)) if times else None
        return _time_matches(moment, node["op"], node.get("value"))
    purchases = [
        row
        for row in person["purchases"]
        if _in_window(row[4], bounds)
        and row[0] in node.get("products", [row[0]])
        and row[3] in node.get("currency", row[3])
    ]
    if type_ == "purchase_count":
        return _compare(len(purchases), node["op"], node["value"])
    if type_ == "money_spent":
        spent = sum((Decimal(price) * quantity for _, price, quantity, _, _ in purchases), Decimal(0))
        return _compare(spent, node["op"], Decimal(str(node["value"])))
    times = [row[4] for row in person["purchases"]]
    moment = (min(times) if type_ == "first_purchase" else max(times)) if times else None
    return _time_matches(moment, node["op"], node.get("value"))


@PROFILE_SETTINGS
@given(population=people, definition=trees(behaviour))
def test_behaviour_matches_a_recount_of_the_raw_rows(
    workspace: Workspace, frozen: Any, population: list[dict[str, Any]], definition: dict[str, Any]
) -> None:
    with transaction.atomic():
        stored = store(workspace, population)
        found = members_of(workspace, definition)
        names = dict(Profile.objects.filter(pk__in=stored).values_list("pk", "external_id"))
        expected = {names[pk] for pk, person in stored.items() if oracle(definition, person)}
        assert found == expected, definition
        transaction.set_rollback(True)
