"""What the admin's segment builder offers, as data for its script (segments/static/segments/builder.js).

The catalog is derived from the tables in ``segments.definition`` (condition types, operators by
kind of value, standard attributes with their kinds and choices, custom attribute types, windows,
engagement actions, channels), so the builder can only offer what the validator accepts and a new
operator or attribute appears in the builder without touching the script. Pure: no database.
"""

from __future__ import annotations

from typing import Any

from profiles.engagement import CHANNELS, ENGAGEMENT_EVENTS
from profiles.models import CHANNELS_WITH_SUBSCRIPTION, Gender, Platform, SubscriptionState

from .definition import (
    ACQUISITION_FIELDS,
    CUSTOM_TYPES,
    LOCATION_FIELDS,
    OPERATORS,
    STANDARD_ATTRIBUTES,
    WINDOW_UNITS,
    Problem,
)
from .models import LifecycleStage

OPERATOR_LABELS = {
    "eq": "is",
    "ne": "is not",
    "one_of": "is any of",
    "not_one_of": "is none of",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
    "exists": "has a value",
    "blank": "is blank",
    "gt": "more than",
    "gte": "at least",
    "lt": "less than",
    "lte": "at most",
    "between": "between",
    "before": "before",
    "after": "after",
    "on": "on",
    "more_than_days_ago": "more than N days ago",
    "less_than_days_ago": "in the last N days",
    "within_next_days": "in the next N days",
    "includes": "includes any of",
    "not_includes": "includes none of",
}
# Counts read better with their own words ("exactly 3 times").
COUNT_LABELS = {"eq": "exactly", "ne": "not exactly", "gt": "more than", "gte": "at least", "lt": "fewer than"}


def _choices(choices: type[Any]) -> list[dict[str, str]]:
    return [{"value": str(value), "label": str(label)} for value, label in choices.choices]


def _options(values: Any) -> list[dict[str, str]]:
    return [{"value": str(value), "label": str(value).replace("_", " ").capitalize()} for value in values]


def _field(key: str, label: str, widget: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "label": label, "widget": widget, **extra}


def _comparison(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, **extra}


WINDOW = True
COUNT_OPTIONAL = _comparison("count", optional=True)  # no op/value: "at least once"
EVENT = _field("event", "event", "event")
PRODUCTS_OPTIONAL = _field("products", "of products", "products", required=False)
MONTHS = [
    {"value": str(n), "label": name}
    for n, name in enumerate(
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
         "November", "December"],
        start=1,
    )
]  # fmt: skip


def condition_types() -> list[dict[str, Any]]:
    """Every condition type with the inputs its parameters need, grouped as the menu shows them."""
    subscription_states = _choices(SubscriptionState)
    return [
        # Attributes
        {"type": "attribute", "label": "Profile attribute", "category": "Attributes",
         "fields": [_field("attribute", "attribute", "attribute")], "comparison": {"kind_from": "attribute"}},
        {"type": "custom_attribute", "label": "Custom attribute", "category": "Attributes",
         "fields": [_field("attribute", "name", "custom_attribute"),
                    _field("data_type", "type", "select", options=_options(CUSTOM_TYPES))],
         "comparison": {"kind_from": "data_type"}},
        {"type": "age", "label": "Age (years)", "category": "Attributes", "fields": [],
         "comparison": _comparison("count")},
        {"type": "birthday", "label": "Birthday", "category": "Attributes", "fields": [], "birthday": True},
        # Location
        {"type": "location", "label": "Country, region or city", "category": "Location",
         "fields": [_field("field", "field", "select", options=_options(LOCATION_FIELDS))],
         "comparison": _comparison("string")},
        {"type": "near", "label": "Within a distance of a point", "category": "Location",
         "fields": [_field("radius_km", "km of", "number", min=0.1, step="any", placeholder="25"),
                    _field("latitude", "latitude", "number", min=-90, max=90, step="any", placeholder="48.8566"),
                    _field("longitude", "longitude", "number", min=-180, max=180, step="any",
                           placeholder="2.3522")]},
        {"type": "language", "label": "Language", "category": "Location", "fields": [],
         "comparison": _comparison("string", placeholder="en")},
        {"type": "time_zone", "label": "Time zone", "category": "Location", "fields": [],
         "comparison": _comparison("string", placeholder="Europe/Paris")},
        # App
        {"type": "platform", "label": "Platform", "category": "App", "fields": [],
         "comparison": _comparison("string", choices=_choices(Platform))},
        {"type": "app_version", "label": "App version", "category": "App", "fields": [],
         "comparison": _comparison("semver", placeholder="1.10.0")},
        {"type": "push_enabled", "label": "Has a push-enabled device", "category": "App",
         "fields": [_field("value", "", "boolean", options=[{"value": "true", "label": "yes"},
                                                            {"value": "false", "label": "no"}])]},
        # Lifecycle
        {"type": "sessions", "label": "Sessions (app opens) in a window", "category": "Lifecycle", "fields": [],
         "comparison": _comparison("count"), "window": WINDOW},
        {"type": "lifecycle_stage", "label": "Lifecycle stage", "category": "Lifecycle", "fields": [],
         "comparison": _comparison("string", choices=_choices(LifecycleStage),
                                   ops=["eq", "ne", "one_of", "not_one_of"])},
        # Behaviour
        {"type": "event", "label": "Performed an event", "category": "Behaviour", "fields": [EVENT],
         "comparison": COUNT_OPTIONAL, "window": WINDOW, "properties": True},
        {"type": "never_performed", "label": "Never performed an event", "category": "Behaviour",
         "fields": [EVENT], "window": WINDOW},
        {"type": "first_performed", "label": "First performed an event", "category": "Behaviour",
         "fields": [EVENT], "comparison": _comparison("datetime")},
        {"type": "last_performed", "label": "Last performed an event", "category": "Behaviour",
         "fields": [EVENT], "comparison": _comparison("datetime")},
        # Purchases
        {"type": "purchased_product", "label": "Purchased a product", "category": "Purchases",
         "fields": [_field("products", "products", "products")], "window": WINDOW},
        {"type": "purchase_count", "label": "Number of purchases", "category": "Purchases",
         "fields": [PRODUCTS_OPTIONAL], "comparison": _comparison("count"), "window": WINDOW},
        {"type": "money_spent", "label": "Money spent", "category": "Purchases",
         "fields": [_field("currency", "currency", "text", required=False, placeholder="USD", maxlength=3),
                    PRODUCTS_OPTIONAL],
         "comparison": _comparison("number", ops=["eq", "ne", "gt", "gte", "lt", "lte", "between"]),
         "window": WINDOW},
        {"type": "first_purchase", "label": "First purchase", "category": "Purchases", "fields": [],
         "comparison": _comparison("datetime")},
        {"type": "last_purchase", "label": "Last purchase", "category": "Purchases", "fields": [],
         "comparison": _comparison("datetime")},
        # Messages
        {"type": "message_engagement", "label": "Engaged with a message", "category": "Messages",
         "fields": [_field("action", "action", "select", options=_options(ENGAGEMENT_EVENTS)),
                    _field("channel", "on channel", "select", options=_options(CHANNELS), required=False,
                           empty="any channel"),
                    _field("campaign_id", "campaign id", "integer", required=False, min=1,
                           placeholder="any campaign"),
                    _field("variant", "variant", "text", required=False, placeholder="any variant")],
         "comparison": COUNT_OPTIONAL, "window": WINDOW},
        {"type": "control_group", "label": "In a campaign's control group", "category": "Messages",
         "fields": [_field("campaign_id", "campaign id", "integer", min=1)], "window": WINDOW},
        {"type": "subscription", "label": "Subscription state", "category": "Messages",
         "fields": [_field("channel", "channel", "select", options=_options(CHANNELS_WITH_SUBSCRIPTION))],
         "comparison": _comparison("string", choices=subscription_states)},
        {"type": "acquisition", "label": "Acquisition source (UTM)", "category": "Messages",
         "fields": [_field("field", "UTM", "select", options=_options(ACQUISITION_FIELDS))],
         "comparison": _comparison("string")},
        # Sampling and other segments
        {"type": "random_bucket", "label": "Random bucket (0-9999)", "category": "Other", "fields": [],
         "comparison": _comparison("number")},
        {"type": "segment", "label": "In another segment", "category": "Other",
         "fields": [_field("segment_id", "segment", "segment")]},
    ]  # fmt: skip


def catalog() -> dict[str, Any]:
    """Everything the builder's script needs to draw and check a definition, as JSON."""
    choices_by_attribute = {"gender": _choices(Gender), "platform": _choices(Platform)}
    for channel in CHANNELS_WITH_SUBSCRIPTION:
        choices_by_attribute[f"{channel}_subscription"] = _choices(SubscriptionState)
    return {
        "groups": [
            {"value": "all", "label": "All of"},
            {"value": "any", "label": "Any of"},
            {"value": "none", "label": "None of"},
        ],
        "operators": {
            kind: [
                {"value": op, "label": (COUNT_LABELS if kind == "count" else {}).get(op, OPERATOR_LABELS[op])}
                for op in ops
            ]
            for kind, ops in OPERATORS.items()
        },
        "types": condition_types(),
        "attributes": [
            {
                "value": name,
                "label": attribute.label,
                "kind": attribute.kind,
                "choices": choices_by_attribute.get(name, []),
            }
            for name, attribute in STANDARD_ATTRIBUTES.items()
        ],
        # The kind of comparison behind each custom attribute (and event property) type.
        "custom_kinds": dict(CUSTOM_TYPES),
        "window_units": list(WINDOW_UNITS),
        "months": MONTHS,
    }


def problems_as_json(problems: list[Problem]) -> list[dict[str, str]]:
    """Problems for the builder: the path of the node (``""`` for the whole definition) and the
    message, so the script can show each next to its condition."""
    return [{"path": problem.path, "message": problem.message} for problem in problems]
