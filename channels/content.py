"""What a message is made of, per channel: the fields of its content, which of them take Liquid,
and the rules a template (before personalisation) and a rendered message (after) must follow.

A campaign's channel message stores a *template* in this shape; ``channels.rendering`` renders
every Liquid field for one person into the same shape, which becomes ``Dispatch.content`` and is
what the transports read. Pure functions, no database.

Errors are ``(field, message)`` pairs whose field is a path into the content (``subject``,
``buttons[1].url``, ``extras.category``) so an editor or an API answer can point at it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_datetime

from .models import Channel

# Kinds of field.
TEXT = "text"  # a string; Liquid allowed
URL = "url"  # a string; Liquid allowed; checked as a URL once rendered
CHOICE = "choice"  # one of ``choices``; literal
INT = "int"  # an integer; literal
BOOL = "bool"  # true/false; literal
MAP = "map"  # a flat object of string keys to string values; Liquid in the values
DATETIME = "datetime"  # an ISO 8601 date-time with offset; literal
BUTTONS = "buttons"  # in-app buttons (see BUTTON_FIELDS)
ACTION = "action"  # an on-click action object (see ACTION_FIELDS)
PRIORITY = "priority"  # an integer, or high/medium/low


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    required: bool = False
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    help: str = ""

    @property
    def liquid(self) -> bool:
        return self.kind in {TEXT, URL, MAP}


IN_APP_LAYOUTS = ("slideup", "modal", "fullscreen")
CARD_TYPES = ("classic", "captioned_image", "image_only")
BUTTON_ACTIONS = ("open_url", "deep_link", "close", "log_event", "request_push_permission")
WEBHOOK_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PRIORITY_NAMES = {"low": 0, "medium": 50, "high": 100}
MAX_BUTTONS = 2
# Braze's limit: a card over 2 KB once rendered (title, body, URLs, key-values) is not sent.
MAX_CARD_BYTES = 2048
DEFAULT_INBOX_TTL = timedelta(days=30)
MAX_INBOX_TTL_SECONDS = 365 * 24 * 3600
SESSION_START_TRIGGER = "$session_start"

ACTION_FIELDS: tuple[Field, ...] = (
    Field("action", CHOICE, required=True, choices=BUTTON_ACTIONS),
    Field("url", URL, help="For open_url and deep_link."),
    Field("event_name", TEXT, max_length=255, help="For log_event: the event the app logs."),
)
BUTTON_FIELDS: tuple[Field, ...] = (Field("text", TEXT, required=True, max_length=100), *ACTION_FIELDS)

_EXPIRY_FIELDS: tuple[Field, ...] = (
    Field("expires_at", DATETIME, help="When it stops showing (ISO 8601 with offset)."),
    Field(
        "expires_in",
        INT,
        minimum=60,
        maximum=MAX_INBOX_TTL_SECONDS,
        help="Seconds after sending; 30 days when neither this nor expires_at is set.",
    ),
)

SCHEMAS: dict[str, tuple[Field, ...]] = {
    Channel.EMAIL: (
        Field("subject", TEXT, required=True, max_length=998),
        Field("html", TEXT, help="The HTML body; Liquid output in it is HTML-escaped."),
        Field("text", TEXT, help="The plain-text body."),
        Field("preheader", TEXT, max_length=255),
        Field("from_email", TEXT, max_length=254),
        Field("from_name", TEXT, max_length=255),
        Field("reply_to", TEXT, max_length=254),
    ),
    Channel.PUSH: (
        Field("title", TEXT, max_length=255),
        Field("body", TEXT, required=True, max_length=4000),
        Field("image_url", URL),
        Field("deep_link", URL),
        Field("badge", INT, minimum=0, maximum=99999),
        Field("sound", TEXT, max_length=255),
        Field("data", MAP, help="Custom key-values delivered to the app."),
        Field("collapse_key", TEXT, max_length=64),
        Field("thread_id", TEXT, max_length=64),
        Field("ttl", INT, minimum=0, maximum=28 * 24 * 3600),
    ),
    Channel.WEBPUSH: (
        Field("title", TEXT, required=True, max_length=255),
        Field("body", TEXT, max_length=4000),
        Field("icon", URL),
        Field("image", URL),
        Field("url", URL, help="Opened when the notification is clicked."),
        Field("tag", TEXT, max_length=64),
        Field("data", MAP),
        Field("require_interaction", BOOL),
        Field("ttl", INT, minimum=0, maximum=28 * 24 * 3600),
    ),
    Channel.SMS: (
        Field("body", TEXT, required=True, max_length=1600),
        Field("media_url", URL),
    ),
    Channel.WEBHOOK: (
        Field("url", URL, required=True),
        Field("method", CHOICE, choices=WEBHOOK_METHODS),
        Field("headers", MAP),
        Field("body", TEXT),
    ),
    Channel.IN_APP: (
        Field("layout", CHOICE, required=True, choices=IN_APP_LAYOUTS),
        Field("header", TEXT, max_length=255),
        Field("body", TEXT, max_length=2000),
        Field("image_url", URL),
        Field("buttons", BUTTONS),
        Field("on_click", ACTION, help="What a tap on the message itself does."),
        Field("slide_from", CHOICE, choices=("top", "bottom")),
        Field("dismiss_after", INT, minimum=1, maximum=3600, help="Seconds; empty waits for the user."),
        Field("trigger", TEXT, max_length=255, help="'$session_start' (default) or an event name."),
        Field("priority", PRIORITY),
        Field("extras", MAP),
        *_EXPIRY_FIELDS,
    ),
    Channel.CONTENT_CARD: (
        Field("type", CHOICE, required=True, choices=CARD_TYPES),
        Field("title", TEXT, max_length=255),
        Field("body", TEXT, max_length=2000),
        Field("image_url", URL),
        Field("url", URL, help="Web URL or deep link opened by a tap."),
        Field("link_text", TEXT, max_length=100),
        Field("extras", MAP),
        Field("pinned", BOOL),
        *_EXPIRY_FIELDS,
    ),
}

# The in-app trigger is matched by the app against event names; it is never personalised.
_LITERAL_TEXT_FIELDS = {(Channel.IN_APP.value, "trigger")}

Errors = list[tuple[str, str]]


def schema_for(channel: str) -> tuple[Field, ...]:
    try:
        return SCHEMAS[channel]
    except KeyError:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(SCHEMAS)}") from None


def map_liquid_fields(channel: str, content: Mapping[str, Any], render: Callable[[str, str], str]) -> dict[str, Any]:
    """A copy of ``content`` with ``render(path, value)`` applied to every Liquid string in it.

    Only fields the schema knows are visited; values of the wrong type are copied unchanged (the
    validators report them). Unknown keys are copied as they are.
    """
    out: dict[str, Any] = dict(content)
    for field in schema_for(channel):
        if field.name not in content:
            continue
        value = content[field.name]
        if (channel, field.name) in _LITERAL_TEXT_FIELDS:
            continue
        out[field.name] = _map_field(field, field.name, value, render)
    return out


def _map_field(field: Field, path: str, value: Any, render: Callable[[str, str], str]) -> Any:
    if field.kind in {TEXT, URL} and isinstance(value, str):
        return render(path, value)
    if field.kind == MAP and isinstance(value, dict):
        return {key: render(f"{path}.{key}", item) if isinstance(item, str) else item for key, item in value.items()}
    if field.kind == BUTTONS and isinstance(value, list):
        return [
            _map_object(BUTTON_FIELDS, f"{path}[{index}]", item, render) if isinstance(item, dict) else item
            for index, item in enumerate(value)
        ]
    if field.kind == ACTION and isinstance(value, dict):
        return _map_object(ACTION_FIELDS, path, value, render)
    return value


def _map_object(
    fields: tuple[Field, ...], path: str, value: dict[str, Any], render: Callable[[str, str], str]
) -> dict[str, Any]:
    out = dict(value)
    for field in fields:
        if field.name in value:
            out[field.name] = _map_field(field, f"{path}.{field.name}", value[field.name], render)
    return out


def liquid_fields(channel: str, content: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every ``(path, source)`` of the Liquid strings in ``content``."""
    found: list[tuple[str, str]] = []

    def collect(path: str, value: str) -> str:
        found.append((path, value))
        return value

    map_liquid_fields(channel, content, collect)
    return iter(found)


# --- validation ---------------------------------------------------------------------------------


def content_validate(*, channel: str, content: Any) -> Errors:
    """The structural problems of a template (or rendered content) for ``channel``.

    Liquid is allowed in text and URL fields, so URLs are not checked here (see
    ``content_check_rendered``). Unknown keys are refused, so a typo never silently drops a field.
    """
    if channel not in SCHEMAS:
        return [("channel", f"must be one of {', '.join(SCHEMAS)}")]
    if not isinstance(content, dict):
        return [("content", "must be a JSON object")]
    fields = schema_for(channel)
    errors = _validate_object(fields, "", content)
    errors += _channel_rules(channel, content)
    return errors


def _validate_object(fields: tuple[Field, ...], prefix: str, content: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    known = {field.name for field in fields}
    for key in content:
        if key not in known:
            errors.append((f"{prefix}{key}", f"unknown field; expected one of {', '.join(sorted(known))}"))
    for field in fields:
        path = f"{prefix}{field.name}"
        value = content.get(field.name)
        if value is None or value == "":
            if field.required:
                errors.append((path, "is required"))
            continue
        errors += _validate_value(field, path, value)
    return errors


def _validate_value(field: Field, path: str, value: Any) -> Errors:
    kind = field.kind
    if kind in {TEXT, URL}:
        if not isinstance(value, str):
            return [(path, "must be a string")]
        if field.max_length is not None and len(value) > field.max_length and "{" not in value:
            return [(path, f"must be at most {field.max_length} characters")]
        return []
    if kind == CHOICE:
        if value not in field.choices:
            return [(path, f"must be one of {', '.join(field.choices)}")]
        return []
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            return [(path, "must be an integer")]
        if field.minimum is not None and value < field.minimum:
            return [(path, f"must be at least {field.minimum}")]
        if field.maximum is not None and value > field.maximum:
            return [(path, f"must be at most {field.maximum}")]
        return []
    if kind == BOOL:
        return [] if isinstance(value, bool) else [(path, "must be true or false")]
    if kind == PRIORITY:
        if isinstance(value, str) and value in PRIORITY_NAMES:
            return []
        if isinstance(value, int) and not isinstance(value, bool) and -1000 <= value <= 1000:
            return []
        return [(path, "must be high, medium, low or an integer from -1000 to 1000")]
    if kind == DATETIME:
        if not isinstance(value, str) or parse_iso_datetime(value) is None:
            return [(path, "must be an ISO 8601 date-time with a UTC offset, e.g. 2030-01-31T12:00:00Z")]
        return []
    if kind == MAP:
        if not isinstance(value, dict):
            return [(path, "must be an object of string keys to string values")]
        errors: Errors = []
        for key, item in value.items():
            if not isinstance(item, str):
                errors.append((f"{path}.{key}", "must be a string"))
        return errors
    if kind == BUTTONS:
        if not isinstance(value, list):
            return [(path, "must be a list of buttons")]
        if len(value) > MAX_BUTTONS:
            return [(path, f"must have at most {MAX_BUTTONS} buttons")]
        errors = []
        for index, button in enumerate(value):
            errors += _validate_action_object(BUTTON_FIELDS, f"{path}[{index}]", button)
        return errors
    if kind == ACTION:
        return _validate_action_object(ACTION_FIELDS, path, value)
    raise AssertionError(f"unknown field kind {kind}")  # pragma: no cover


def _validate_action_object(fields: tuple[Field, ...], path: str, value: Any) -> Errors:
    if not isinstance(value, dict):
        return [(path, "must be an object")]
    errors = _validate_object(fields, f"{path}.", value)
    action = value.get("action")
    if action in {"open_url", "deep_link"} and not value.get("url"):
        errors.append((f"{path}.url", f"is required for the {action} action"))
    if action == "log_event" and not value.get("event_name"):
        errors.append((f"{path}.event_name", "is required for the log_event action"))
    return errors


def _channel_rules(channel: str, content: Mapping[str, Any]) -> Errors:
    if channel == Channel.EMAIL and not (content.get("html") or content.get("text")):
        return [("html", "an email needs an html or a text body")]
    if channel == Channel.IN_APP:
        if not (content.get("body") or content.get("image_url")):
            return [("body", "an in-app message needs a body or an image_url")]
        if content.get("slide_from") and content.get("layout") != "slideup":
            return [("slide_from", "applies to the slideup layout only")]
    if channel == Channel.CONTENT_CARD:
        card_type = content.get("type")
        if card_type in {"captioned_image", "image_only"} and not content.get("image_url"):
            return [("image_url", f"is required for a {card_type} card")]
        if card_type in {"classic", "captioned_image"} and not (content.get("title") or content.get("body")):
            return [("title", f"a {card_type} card needs a title or a body")]
    if channel in {Channel.IN_APP, Channel.CONTENT_CARD} and content.get("expires_at") and content.get("expires_in"):
        return [("expires_in", "set expires_at or expires_in, not both")]
    return []


_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_DEEP_LINK_RE = re.compile(r"^[a-z][a-z0-9+.\-]*:\S+$", re.IGNORECASE)


def content_check_rendered(*, channel: str, content: Mapping[str, Any]) -> Errors:
    """The problems of a message once rendered for a person: empty required fields, URLs that are
    not URLs, a content card over Braze's 2 KB. A send with any of these fails for that person."""
    errors = content_validate(channel=channel, content=content)
    if errors:
        return errors
    for path, value in liquid_fields(channel, content):
        leaf = path.rsplit(".", 1)[-1].split("[", 1)[0]
        if not value or not _is_url_field(channel, path):
            continue
        pattern = _DEEP_LINK_RE if leaf in {"deep_link", "url"} and _allows_deep_link(channel, path) else _URL_RE
        if not pattern.match(value):
            errors.append((path, "must be a URL (http:// or https://)" if pattern is _URL_RE else "must be a URL"))
    if channel == Channel.CONTENT_CARD:
        size = len(json.dumps(content, ensure_ascii=False).encode())
        if size > MAX_CARD_BYTES:
            errors.append(("content", f"content card maximum size exceeded ({size} bytes > {MAX_CARD_BYTES})"))
    return errors


def _is_url_field(channel: str, path: str) -> bool:
    fields = schema_for(channel)
    head = path.split(".", 1)[0].split("[", 1)[0]
    field = next((f for f in fields if f.name == head), None)
    if field is None:
        return False
    if field.kind in {BUTTONS, ACTION}:
        return path.endswith(".url")
    return field.kind == URL


def _allows_deep_link(channel: str, path: str) -> bool:
    """App-facing links may use the app's own scheme (myapp://...); email, SMS media, webhooks and
    images need the web."""
    if channel == Channel.PUSH:
        return path == "deep_link"
    if channel in {Channel.IN_APP, Channel.CONTENT_CARD}:
        return not path.endswith("image_url")
    return False


def parse_iso_datetime(value: str) -> datetime | None:
    """An aware date-time from ISO 8601 text (``Z`` or an offset required), or None."""
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed


def inbox_priority(value: Any) -> int:
    """The numeric priority of an in-app message (higher shows first)."""
    if isinstance(value, str):
        return PRIORITY_NAMES.get(value, 0)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0


def inbox_expires_at(content: Mapping[str, Any], *, now: datetime) -> datetime:
    """When an in-app message or card stops showing: ``expires_at``, ``expires_in`` seconds after
    ``now``, or 30 days after ``now``."""
    expires_at = content.get("expires_at")
    if isinstance(expires_at, str):
        parsed = parse_iso_datetime(expires_at)
        if parsed is not None:
            return parsed
    expires_in = content.get("expires_in")
    if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0:
        return now + timedelta(seconds=expires_in)
    return now + DEFAULT_INBOX_TTL
