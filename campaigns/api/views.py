"""The campaigns REST API: trigger an API-triggered campaign.

Authenticated like the rest of the REST API (a secret API key; ``campaigns.trigger`` scope); the
view parses, calls ``campaign_api_trigger`` and renders. Errors are ``{code, message}`` naming the
field (``profiles.api.errors``).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api.errors import Conflict
from profiles.api.server import ApiKeyView
from profiles.api.server_serializers import ErrorSerializer
from profiles.models import ApiScope

from ..models import Campaign
from ..services.api_trigger import Recipient, TriggerRefused, campaign_api_trigger
from .serializers import TriggerRequestSerializer, TriggerResultSerializer

TAG = "campaigns"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class CampaignTriggerView(ApiKeyView):
    serializer_class = TriggerRequestSerializer
    required_scopes = {"POST": ApiScope.CAMPAIGNS_TRIGGER}

    @extend_schema(
        tags=[TAG],
        operation_id="campaigns_trigger",
        summary="Trigger an API-triggered campaign",
        description=(
            "Sends the campaign now to up to 50 people named by external id (each with optional trigger "
            "properties of their own, merged over the call's), or to the members of a segment (enrolled in the "
            "background). The content sees the properties as `{{ api_trigger_properties.<name> }}`. The campaign's "
            "audience (if it has one), re-eligibility, control group and delay apply as for any send. "
            "Answers 202 with what happened to each recipient; unknown external ids are reported, not refused. "
            "An idempotency key (body or `Idempotency-Key` header) makes a retry safe: a repeated key answers the "
            "first call's result and sends nothing new."
        ),
        parameters=[
            OpenApiParameter("id", int, OpenApiParameter.PATH, description="The campaign's id."),
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Same as the body's idempotency_key (the body wins when both are given).",
            ),
        ],
        request=TriggerRequestSerializer,
        responses={
            202: TriggerResultSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Invalid input: `message` names the field and rule."),
            401: OpenApiResponse(ErrorSerializer, description="No API key, or one unknown, revoked or expired."),
            403: OpenApiResponse(ErrorSerializer, description="The key lacks the campaigns.trigger scope."),
            404: OpenApiResponse(ErrorSerializer, description="No such campaign (or segment) in the key's workspace."),
            409: OpenApiResponse(
                ErrorSerializer,
                description="The campaign is not API-triggered or not running (`not_api_triggered`, "
                "`campaign_not_running`), or the idempotency key was used with another body "
                "(`idempotency_key_reused`).",
            ),
        },
        examples=[
            OpenApiExample(
                "Two people",
                request_only=True,
                value={
                    "recipients": [
                        {"external_id": "user-1", "trigger_properties": {"order_id": "A-1001"}},
                        {"external_id": "user-2"},
                    ],
                    "trigger_properties": {"coupon": "STORM10"},
                    "idempotency_key": "storm-2024-01-15",
                },
            )
        ],
    )
    def post(self, request: Request, id: int) -> Response:
        serializer = TriggerRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        campaign = Campaign.objects.filter(workspace=self.workspace, pk=id).first()
        if campaign is None:
            raise Http404(f"No campaign {id} in this workspace.")
        key = data.get("idempotency_key") or request.headers.get(IDEMPOTENCY_HEADER) or None
        if key is not None and len(key) > 200:
            raise exceptions.ValidationError({"idempotency_key": ["must be at most 200 characters"]})
        recipients = (
            [Recipient(r["external_id"], r.get("trigger_properties") or {}) for r in data["recipients"]]
            if "recipients" in data
            else None
        )
        try:
            answer = campaign_api_trigger(
                campaign=campaign,
                recipients=recipients,
                segment_id=data.get("segment_id"),
                trigger_properties=data.get("trigger_properties") or {},
                idempotency_key=key,
            )
        except TriggerRefused as refused:
            if refused.code == "unknown_segment":
                raise exceptions.NotFound(refused.message, code=refused.code) from None
            raise Conflict(refused.message, code=refused.code) from None
        response = Response(_public(answer.result), status=status.HTTP_202_ACCEPTED)
        if answer.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


def _public(result: dict[str, Any]) -> dict[str, Any]:
    # The segment job's resume point is bookkeeping, not part of the answer.
    return {key: value for key, value in result.items() if key != "after_id"}
