"""Input and output shapes of the segments REST API (validation only: no ``save()`` here; the
definition itself is validated by ``segments.services``, which names the broken condition)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from profiles.api.server_serializers import StrictSerializer


class SegmentSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    definition = serializers.JSONField(help_text="The condition tree; see docs/segments.md.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SegmentWriteSerializer(StrictSerializer):
    """Create (name and definition required) or change (PATCH: only what is sent; PUT: name and
    definition required) a segment."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    definition = serializers.JSONField(
        help_text='The condition tree, e.g. {"all": [{"type": "location", "field": "country", "op": "eq", '
        '"value": "US"}]}; see docs/segments.md.'
    )


class SegmentSizeSerializer(serializers.Serializer[Any]):
    segment_id = serializers.IntegerField()
    size = serializers.IntegerField(help_text="Profiles in the segment as the data stood at computed_at.")
    computed_at = serializers.DateTimeField(help_text="When the count was made (it may be reused for max_age seconds).")
    age_seconds = serializers.FloatField(help_text="How old the count is.")


class MemberSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(help_text="The profile id.")
    external_id = serializers.CharField(allow_null=True, help_text="The app's user id; null while anonymous.")


class MemberPageSerializer(serializers.Serializer[Any]):
    results = MemberSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="The URL of the next page; null on the last page.")


class CheckRequestSerializer(StrictSerializer):
    external_id = serializers.CharField(required=False, max_length=255)
    profile_id = serializers.IntegerField(required=False, min_value=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("external_id" in attrs) == ("profile_id" in attrs):
            raise serializers.ValidationError({"external_id": ["give either external_id or profile_id (not both)"]})
        return attrs


class CheckResultSerializer(serializers.Serializer[Any]):
    in_segment = serializers.BooleanField()
    profile_id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    checked_at = serializers.DateTimeField()
