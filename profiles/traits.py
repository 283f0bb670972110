"""What a trait means: the mapping from the names apps send (Segment's reserved traits, Braze's
attribute names, common spellings) to profile columns, with the validation each column needs.

Pure functions, no database: the intake, the REST API and the CSV import all call
``normalize_traits`` so a value means the same thing whichever way it arrives.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from .models import Gender, SubscriptionState

# Trait name (lower-cased, with "-" and " " folded to "_") -> profile column.
COLUMN_ALIASES: dict[str, str] = {
    "first_name": "first_name",
    "firstname": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "email": "email",
    "email_address": "email",
    "phone": "phone",
    "phone_number": "phone",
    "gender": "gender",
    "birthday": "date_of_birth",
    "date_of_birth": "date_of_birth",
    "dateofbirth": "date_of_birth",
    "dob": "date_of_birth",
    "language": "language",
    "country": "country",
    "region": "region",
    "state": "region",
    "city": "city",
    "home_city": "city",
    "time_zone": "time_zone",
    "timezone": "time_zone",
    "email_subscribe": "email_subscription",
    "email_subscription": "email_subscription",
    "push_subscribe": "push_subscription",
    "push_subscription": "push_subscription",
    "sms_subscribe": "sms_subscription",
    "sms_subscription": "sms_subscription",
}

# Every column a trait may set, for callers that accept column names directly (API, CSV).
TRAIT_COLUMNS = frozenset(COLUMN_ALIASES.values())

SUBSCRIPTION_COLUMNS = ("email_subscription", "push_subscription", "sms_subscription")

_GENDERS: dict[str, str] = {
    "m": Gender.MALE,
    "male": Gender.MALE,
    "man": Gender.MALE,
    "f": Gender.FEMALE,
    "female": Gender.FEMALE,
    "woman": Gender.FEMALE,
    "o": Gender.OTHER,
    "other": Gender.OTHER,
    "non_binary": Gender.OTHER,
    "nonbinary": Gender.OTHER,
    "n": Gender.NOT_APPLICABLE,
    "not_applicable": Gender.NOT_APPLICABLE,
    "p": Gender.PREFER_NOT_TO_SAY,
    "prefer_not_to_say": Gender.PREFER_NOT_TO_SAY,
}

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_STRIP_RE = re.compile(r"[\s().\-]")
_E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}$")
_COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
_LOCALE_RE = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|\d{3}))?")

MAX_KEY_LENGTH = 255
MAX_STRING_LENGTH = 255


@dataclass
class NormalizedTraits:
    """``columns`` go to profile columns; ``custom`` merges into custom attributes (a ``None`` value
    removes that attribute); ``errors`` are ``(field, message)`` pairs naming the rule broken."""

    columns: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_valid_time_zone(value: str) -> bool:
    return value in _time_zones()


def normalize_phone(value: str) -> str | None:
    """E.164 or None. Separators people type ("+1 (415) 555-0100") are dropped; "00" becomes "+"."""
    cleaned = _PHONE_STRIP_RE.sub("", value)
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    return cleaned if _E164_RE.match(cleaned) else None


def parse_locale(value: str) -> tuple[str, str] | None:
    """``en-US`` / ``en_US`` / ``zh-Hant-TW`` -> ("en", "US"); a bare language -> ("en", "")."""
    match = _LOCALE_RE.match(value.strip())
    if not match:
        return None
    language, _script, country = match.groups()
    if country and country.isdigit():
        country = ""  # UN M.49 region codes (es-419) name no single country
    return language.lower(), (country or "").upper()


def parse_date(value: Any) -> date | None:
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


def _normalize_column(column: str, value: Any, name: str, out: NormalizedTraits) -> None:
    if value is None or value == "":
        # An explicit null or empty string clears the column (dates and strings alike).
        if column in SUBSCRIPTION_COLUMNS:
            out.errors.append((name, "a subscription state cannot be empty; use subscribed, opted_in or unsubscribed"))
            return
        out.columns[column] = None if column == "date_of_birth" else ""
        return
    if column == "date_of_birth":
        parsed = parse_date(value)
        if parsed is None:
            out.errors.append((name, "must be a date in ISO 8601 form, e.g. 1990-04-23"))
        else:
            out.columns[column] = parsed
        return
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        out.errors.append((name, "must be a string"))
        return
    text = str(value).strip()
    if column == "email":
        if len(text) > 254 or not _EMAIL_RE.match(text):
            out.errors.append((name, "must be an email address, e.g. ada@example.com"))
            return
        out.columns[column] = text.lower()
    elif column == "phone":
        phone = normalize_phone(text)
        if phone is None:
            out.errors.append((name, "must be a phone number in E.164 form, e.g. +14155550100"))
            return
        out.columns[column] = phone
    elif column == "gender":
        gender = _GENDERS.get(text.lower().replace(" ", "_").replace("-", "_"))
        if gender is None:
            out.errors.append((name, "must be one of male, female, other, not_applicable, prefer_not_to_say"))
            return
        out.columns[column] = str(gender)
    elif column == "language":
        parsed_locale = parse_locale(text)
        if parsed_locale is None or not _LANGUAGE_RE.match(parsed_locale[0]):
            out.errors.append((name, "must be an ISO 639-1 language code, e.g. en"))
            return
        out.columns[column] = parsed_locale[0]
    elif column == "country":
        if not _COUNTRY_RE.match(text):
            out.errors.append((name, "must be an ISO 3166-1 alpha-2 country code, e.g. US"))
            return
        out.columns[column] = text.upper()
    elif column == "time_zone":
        if not is_valid_time_zone(text):
            out.errors.append((name, "must be an IANA time zone, e.g. America/New_York"))
            return
        out.columns[column] = text
    elif column in SUBSCRIPTION_COLUMNS:
        state = text.lower()
        if state not in SubscriptionState.values:
            out.errors.append((name, "must be one of subscribed, opted_in, unsubscribed"))
            return
        out.columns[column] = state
    else:
        if len(text) > MAX_STRING_LENGTH:
            out.errors.append((name, f"must be at most {MAX_STRING_LENGTH} characters"))
            return
        out.columns[column] = text


def column_for(name: str) -> str | None:
    return COLUMN_ALIASES.get(name.strip().lower().replace("-", "_").replace(" ", "_"))


def normalize_traits(traits: dict[str, Any], *, prefix: str = "traits") -> NormalizedTraits:
    """Split traits into profile columns and custom attributes.

    Segment's ``address`` object ({city, country, state, postalCode}) fills the location columns;
    ``name`` fills first and last name when those are not sent. Keys that are not standard
    attributes are custom attributes, kept with the JSON type they arrived with.
    """
    out = NormalizedTraits()
    for key, value in traits.items():
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
            out.errors.append((f"{prefix}", f"attribute names must be 1-{MAX_KEY_LENGTH} characters"))
            continue
        name = f"{prefix}.{key}"
        if key == "address" and isinstance(value, dict):
            for part, address_column in (
                ("city", "city"),
                ("country", "country"),
                ("state", "region"),
                ("region", "region"),
            ):
                if part in value:
                    _normalize_column(address_column, value[part], f"{name}.{part}", out)
            continue
        column = column_for(key)
        if column is not None:
            _normalize_column(column, value, name, out)
            continue
        if key.startswith("$"):
            out.errors.append((name, "custom attribute names may not start with $"))
            continue
        out.custom[key] = value
    name_value = traits.get("name")
    if isinstance(name_value, str) and name_value.strip():
        first, _, last = name_value.strip().partition(" ")
        out.columns.setdefault("first_name", first[:MAX_STRING_LENGTH])
        if last:
            out.columns.setdefault("last_name", last.strip()[:MAX_STRING_LENGTH])
        out.custom.pop("name", None)
    return out
