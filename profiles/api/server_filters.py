"""Filters and pagination of ``GET /api/v1/profiles``.

Every filter is an equality or a range on a profile column, so each is one ``WHERE`` term; values
are normalised the way profiles store them (emails lower-case, phones E.164, countries upper-case)
so ``?email=Ada@Example.com`` finds ``ada@example.com``. ``attr.<name>=<value>`` filters on a custom
attribute, matching the value as sent or as the JSON number/boolean it spells.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination

from ..models import Gender, Platform, Profile, SubscriptionState
from ..services.imports import typed_value
from ..traits import MAX_KEY_LENGTH, normalize_phone

ATTRIBUTE_PREFIX = "attr."
MAX_ATTRIBUTE_FILTERS = 20


class ProfileCursorPagination(CursorPagination):
    """Cursor pages in id order: stable while profiles are being added, and never a full count."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000


class ProfileFilter(filters.FilterSet):
    external_id = filters.CharFilter()
    email = filters.CharFilter(method="filter_email", help_text="Case-insensitive exact email.")
    phone = filters.CharFilter(method="filter_phone", help_text="Phone number; normalised to E.164 before matching.")
    country = filters.CharFilter(method="filter_upper", help_text="ISO 3166-1 alpha-2, e.g. US.")
    language = filters.CharFilter(method="filter_lower", help_text="ISO 639-1, e.g. en.")
    platform = filters.ChoiceFilter(choices=Platform.choices)
    gender = filters.ChoiceFilter(choices=Gender.choices)
    email_subscription = filters.ChoiceFilter(choices=SubscriptionState.choices)
    push_subscription = filters.ChoiceFilter(choices=SubscriptionState.choices)
    sms_subscription = filters.ChoiceFilter(choices=SubscriptionState.choices)
    last_seen_after = filters.IsoDateTimeFilter(field_name="last_seen", lookup_expr="gte")
    last_seen_before = filters.IsoDateTimeFilter(field_name="last_seen", lookup_expr="lt")
    first_seen_after = filters.IsoDateTimeFilter(field_name="first_seen", lookup_expr="gte")
    first_seen_before = filters.IsoDateTimeFilter(field_name="first_seen", lookup_expr="lt")
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    session_count_min = filters.NumberFilter(field_name="session_count", lookup_expr="gte")
    session_count_max = filters.NumberFilter(field_name="session_count", lookup_expr="lte")
    # A choice rather than a BooleanFilter, which ignores values it cannot read ("yes") silently.
    anonymous = filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_anonymous",
        help_text="true: only anonymous profiles; false: only known ones.",
    )

    class Meta:
        model = Profile
        fields: list[str] = []

    def filter_email(self, queryset: QuerySet[Profile], name: str, value: str) -> QuerySet[Profile]:
        return queryset.filter(email=value.strip().lower())

    def filter_phone(self, queryset: QuerySet[Profile], name: str, value: str) -> QuerySet[Profile]:
        return queryset.filter(phone=normalize_phone(value) or value.strip())

    def filter_upper(self, queryset: QuerySet[Profile], name: str, value: str) -> QuerySet[Profile]:
        return queryset.filter(**{name: value.strip().upper()})

    def filter_lower(self, queryset: QuerySet[Profile], name: str, value: str) -> QuerySet[Profile]:
        return queryset.filter(**{name: value.strip().lower()})

    def filter_anonymous(self, queryset: QuerySet[Profile], name: str, value: str) -> QuerySet[Profile]:
        return queryset.filter(external_id__isnull=value == "true")

    def filter_queryset(self, queryset: QuerySet[Profile]) -> QuerySet[Profile]:
        queryset = super().filter_queryset(queryset)
        attribute_filters = [(key, self.data.getlist(key)) for key in self.data if key.startswith(ATTRIBUTE_PREFIX)]
        if len(attribute_filters) > MAX_ATTRIBUTE_FILTERS:
            raise ValidationError({"attr": [f"at most {MAX_ATTRIBUTE_FILTERS} custom attribute filters"]})
        for key, values in attribute_filters:
            name = key[len(ATTRIBUTE_PREFIX) :]
            if not name or len(name) > MAX_KEY_LENGTH:
                raise ValidationError({key: [f"the attribute name must be 1-{MAX_KEY_LENGTH} characters"]})
            for text in values:
                queryset = queryset.filter(_attribute_equals(name, text))
        return queryset


def _attribute_equals(name: str, text: str) -> Q:
    # JSONB containment (@>) is exact about types: "5" and 5 differ, so match both spellings.
    condition = Q(custom_attributes__contains={name: text})
    typed: Any = typed_value(text)
    if typed != text or not isinstance(typed, str):
        condition |= Q(custom_attributes__contains={name: typed})
    return condition
