"""Input and output shapes of the campaigns REST API (validation only: no ``save()`` here)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..services.api_trigger import MAX_RECIPIENTS

MAX_PROPERTIES_BYTES = 50_000


def _check_properties(value: dict[str, Any]) -> dict[str, Any]:
    import json

    if len(json.dumps(value)) > MAX_PROPERTIES_BYTES:
        raise serializers.ValidationError(f"must be at most {MAX_PROPERTIES_BYTES // 1000} KB of JSON")
    return value


class RecipientSerializer(serializers.Serializer[Any]):
    external_id = serializers.CharField(max_length=255, help_text="The person's external id (the app's user id).")
    trigger_properties = serializers.DictField(
        required=False,
        default=dict,
        help_text="This person's own properties, merged over the call's (theirs win).",
    )

    def validate_trigger_properties(self, value: dict[str, Any]) -> dict[str, Any]:
        return _check_properties(value)


class TriggerRequestSerializer(serializers.Serializer[Any]):
    recipients = serializers.ListField(
        child=RecipientSerializer(),
        required=False,
        min_length=1,
        max_length=MAX_RECIPIENTS,
        help_text=f"Up to {MAX_RECIPIENTS} people by external id. Give this or segment_id.",
    )
    segment_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Send to a segment's members instead (enrolled in the background)."
    )
    trigger_properties = serializers.DictField(
        required=False, default=dict, help_text="Available in the message as {{ api_trigger_properties.<name> }}."
    )
    idempotency_key = serializers.CharField(
        required=False,
        max_length=200,
        help_text="A repeated key answers the first call's result and sends nothing new "
        "(the Idempotency-Key header works too).",
    )

    def validate_trigger_properties(self, value: dict[str, Any]) -> dict[str, Any]:
        return _check_properties(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("recipients" in attrs) == ("segment_id" in attrs):
            raise serializers.ValidationError(
                {"recipients": ["give either recipients (up to 50 external ids) or segment_id, not both or neither"]}
            )
        return attrs


class RecipientResultSerializer(serializers.Serializer[Any]):
    external_id = serializers.CharField()
    status = serializers.CharField(
        help_text="scheduled, control (held out in the control group), unknown_external_id, not_in_audience, "
        "not_eligible (received it before and not re-eligible, or one is pending), duplicate, skipped, cancelled."
    )


class TriggerResultSerializer(serializers.Serializer[Any]):
    campaign_id = serializers.IntegerField()
    idempotency_key = serializers.CharField(help_text="The call's key (generated when none was given).")
    status = serializers.CharField(help_text="done; for a segment: queued, then done (or stopped) as pages go.")
    counts = serializers.DictField(child=serializers.IntegerField(), required=False, help_text="Recipients per status.")
    recipients = RecipientResultSerializer(many=True, required=False)
    segment_id = serializers.IntegerField(required=False)
