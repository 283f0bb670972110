"""Serializers of the server-side REST API: input shapes validated here, output shapes documented
for the OpenAPI schema. They never save: views hand validated data to the services."""

from __future__ import annotations

import json
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import (
    CHANNELS_WITH_SUBSCRIPTION,
    Device,
    Platform,
    Profile,
    ProfileImport,
    PushProvider,
    SubscriptionState,
)
from ..services.imports import import_percent
from ..services.profiles import MAX_DEVICES_PER_REQUEST


class StrictSerializer(serializers.Serializer[Any]):
    """Refuses keys it does not know, so a typo ("attribute") is a 400 instead of a silent no-op."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"unknown field; known: {', '.join(self.fields)}"] for key in unknown}
                )
        return super().to_internal_value(data)


# --- Output ----------------------------------------------------------------------------------


class ProfileAttributesSerializer(serializers.ModelSerializer[Profile]):
    class Meta:
        model = Profile
        fields = [
            "first_name",
            "last_name",
            "email",
            "phone",
            "gender",
            "date_of_birth",
            "language",
            "locale",
            "country",
            "region",
            "city",
            "time_zone",
            "latitude",
            "longitude",
            "first_seen",
            "last_seen",
            "session_count",
            "app_version",
            "platform",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_content",
            "utm_term",
        ]
        read_only_fields = fields


class SubscriptionStatusSerializer(serializers.Serializer[Any]):
    state = serializers.ChoiceField(choices=SubscriptionState.choices)
    changed_at = serializers.DateTimeField(allow_null=True, help_text="When the state last changed; null if never.")


class SubscriptionsSerializer(serializers.Serializer[Any]):
    email = SubscriptionStatusSerializer()
    push = SubscriptionStatusSerializer()
    sms = SubscriptionStatusSerializer()


class DeviceSerializer(serializers.ModelSerializer[Device]):
    class Meta:
        model = Device
        fields = [
            "device_id",
            "platform",
            "manufacturer",
            "model",
            "os_name",
            "os_version",
            "app_version",
            "locale",
            "push_provider",
            "push_token",
            "push_enabled",
            "push_disabled_reason",
            "first_seen",
            "last_seen",
        ]
        read_only_fields = fields


class ProfileCountsSerializer(serializers.Serializer[Any]):
    events = serializers.IntegerField()
    purchases = serializers.IntegerField()
    devices = serializers.IntegerField()
    anonymous_ids = serializers.IntegerField()


class ProfileSerializer(serializers.ModelSerializer[Profile]):
    anonymous = serializers.SerializerMethodField(help_text="True while the person has no external id.")
    attributes = ProfileAttributesSerializer(source="*", read_only=True)
    custom_attributes = serializers.DictField(read_only=True)
    subscriptions = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = [
            "id",
            "external_id",
            "anonymous",
            "attributes",
            "custom_attributes",
            "subscriptions",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_anonymous(self, profile: Profile) -> bool:
        return profile.external_id is None

    @extend_schema_field(SubscriptionsSerializer)
    def get_subscriptions(self, profile: Profile) -> dict[str, Any]:
        return SubscriptionsSerializer(
            {
                channel: {
                    "state": getattr(profile, f"{channel}_subscription"),
                    "changed_at": getattr(profile, f"{channel}_subscription_changed_at"),
                }
                for channel in CHANNELS_WITH_SUBSCRIPTION
            }
        ).data


class ProfileDetailSerializer(ProfileSerializer):
    """Needs the profile from ``profile_get(details=True)`` (prefetched devices and anonymous ids,
    annotated counts)."""

    devices = DeviceSerializer(many=True, read_only=True)
    anonymous_ids = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()

    class Meta(ProfileSerializer.Meta):
        fields = [*ProfileSerializer.Meta.fields, "devices", "anonymous_ids", "counts"]
        read_only_fields = fields

    def get_anonymous_ids(self, profile: Profile) -> list[str]:
        return [anonymous.anonymous_id for anonymous in profile.anonymous_ids.all()]

    @extend_schema_field(ProfileCountsSerializer)
    def get_counts(self, profile: Profile) -> dict[str, int]:
        return {
            "events": getattr(profile, "event_count", 0),
            "purchases": getattr(profile, "purchase_count", 0),
            "devices": len(profile.devices.all()),
            "anonymous_ids": len(profile.anonymous_ids.all()),
        }


class DeletionCountsSerializer(serializers.Serializer[Any]):
    profiles = serializers.IntegerField()
    events = serializers.IntegerField()
    purchases = serializers.IntegerField()
    devices = serializers.IntegerField()
    anonymous_ids = serializers.IntegerField()
    merges = serializers.IntegerField()
    suppressed_identifiers = serializers.IntegerField(
        help_text="Identifiers (external id, anonymous ids, email, phone) now kept as salted hashes."
    )
    other = serializers.DictField(
        child=serializers.IntegerField(), help_text="Rows of other tables removed with the person, by model."
    )


class ProfileDeletionSerializer(serializers.Serializer[Any]):
    external_id = serializers.CharField()
    deleted = DeletionCountsSerializer()


class ProfileExportSerializer(serializers.Serializer[Any]):
    """The export document (streamed); rows carry every stored column."""

    profile = serializers.DictField(help_text="Every column of the profile, custom attributes included.")
    anonymous_ids = serializers.ListField(child=serializers.CharField())
    devices = serializers.ListField(child=serializers.DictField())
    merges = serializers.ListField(
        child=serializers.DictField(), help_text="Profiles merged into this one, with their snapshots."
    )
    events = serializers.ListField(child=serializers.DictField(), help_text="Oldest first.")
    purchases = serializers.ListField(child=serializers.DictField(), help_text="Oldest first.")


class ImportRowErrorSerializer(serializers.Serializer[Any]):
    row = serializers.IntegerField(help_text="Spreadsheet row: the header is row 1, the first record row 2.")
    field = serializers.CharField(help_text="The CSV column (or external_id).")
    message = serializers.CharField()


class ProfileImportSerializer(serializers.ModelSerializer[ProfileImport]):
    percent = serializers.SerializerMethodField(help_text="Processed rows as a percentage of all rows.")
    # Declared fields are popped from the class, so this does not shadow Serializer.errors.
    errors = ImportRowErrorSerializer(  # type: ignore[assignment]
        many=True, read_only=True, help_text="The first 1000 row errors."
    )
    status_url = serializers.SerializerMethodField()

    class Meta:
        model = ProfileImport
        fields = [
            "id",
            "status",
            "total_rows",
            "processed_rows",
            "imported_rows",
            "error_rows",
            "percent",
            "errors",
            "failure",
            "created_at",
            "finished_at",
            "status_url",
        ]
        read_only_fields = fields

    def get_percent(self, profile_import: ProfileImport) -> float:
        return import_percent(profile_import)

    def get_status_url(self, profile_import: ProfileImport) -> str:
        path = reverse("api-profile-import-detail", kwargs={"pk": profile_import.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


# --- Input -----------------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": {}}],
        "nullable": True,
        "description": "APNs/FCM token, or a Web Push subscription object ({endpoint, keys}).",
    }
)
class PushTokenField(serializers.Field[str, Any, Any, Any]):
    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        if isinstance(data, dict):
            return json.dumps(data, separators=(",", ":"), sort_keys=True)
        raise serializers.ValidationError("must be a string, or a Web Push subscription object")

    def to_representation(self, value: str) -> str:
        return value


class DeviceInputSerializer(StrictSerializer):
    device_id = serializers.CharField(max_length=255, help_text="The SDK's device id; unique in the workspace.")
    platform = serializers.ChoiceField(choices=Platform.choices, required=False, allow_blank=True, allow_null=True)
    manufacturer = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    model = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    os_name = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)
    os_version = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)
    app_version = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)
    locale = serializers.CharField(max_length=35, required=False, allow_blank=True, allow_null=True)
    push_provider = serializers.ChoiceField(
        choices=PushProvider.choices, required=False, allow_blank=True, allow_null=True
    )
    push_token = PushTokenField(required=False, allow_null=True)
    push_enabled = serializers.BooleanField(
        required=False, help_text="Defaults to whether a push token is present when a token is sent."
    )


class SubscriptionsInputSerializer(StrictSerializer):
    email = serializers.ChoiceField(choices=SubscriptionState.choices, required=False)
    push = serializers.ChoiceField(choices=SubscriptionState.choices, required=False)
    sms = serializers.ChoiceField(choices=SubscriptionState.choices, required=False)


class ProfileWriteSerializer(StrictSerializer):
    attributes = serializers.DictField(
        required=False,
        help_text=(
            "Standard attributes by name or alias (first_name, email, phone, gender, dob, country, language, "
            "time_zone, home_city, ...) and custom attributes of any JSON type. A custom attribute set to null "
            'is removed; a standard one set to null or "" is cleared.'
        ),
    )
    subscriptions = SubscriptionsInputSerializer(required=False)
    devices = serializers.ListField(child=DeviceInputSerializer(), required=False, max_length=MAX_DEVICES_PER_REQUEST)


class ProfileImportUploadSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(
        help_text="A UTF-8 CSV file with a header row naming an external_id column; see the REST API docs."
    )


class ErrorSerializer(serializers.Serializer[Any]):
    """The body of every error response."""

    code = serializers.CharField(help_text="Machine-readable, e.g. invalid, not_authenticated, missing_scope.")
    message = serializers.CharField(help_text="For a person; names the field and the rule for a 400.")
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text='Validation errors by field path, e.g. {"attributes.email": ["must be an email address"]}.',
    )
