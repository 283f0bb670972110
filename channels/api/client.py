"""The client API apps call with their write key: fetch the person's in-app messages and content
cards, report engagement with them, and report push opens.

Authentication is the app's public write key, as for the intake (HTTP Basic user name, or
``writeKey`` in the query string or body); the person is the app's ``userId`` or the SDK's
``anonymousId``. Errors answer ``{"code", "message"}``; a 400 names the field.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from profiles.api.intake import WriteKeyAuthentication
from profiles.api.server_serializers import ErrorSerializer
from profiles.models import AnonymousId, App, Profile

from ..models import InboxItem
from ..services.inbox import InboxEventType, inbox_event_record, inbox_fetch, push_opened_record

CORS_HEADERS = {
    # Write keys are public and these endpoints set no cookies: any origin may call them.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}


class ClientKeyAuthentication(WriteKeyAuthentication):
    """The intake's write-key authentication, also accepting ``?writeKey=`` (a GET has no body)."""

    def authenticate(self, request: Request) -> tuple[None, App] | None:
        if self._key_from_header(request) is None:
            key = request.query_params.get("writeKey")
            if key:
                app = App.objects.select_related("workspace").filter(write_key=key, is_active=True).first()
                if app is None:
                    raise exceptions.AuthenticationFailed("unknown or disabled write key")
                return None, app
        return super().authenticate(request)


def resolve_profile(app: App, *, user_id: str | None, anonymous_id: str | None) -> Profile | None:
    """The person the app means: by ``userId`` (the profile's external id), else ``anonymousId``."""
    if user_id:
        profile = Profile.objects.filter(workspace_id=app.workspace_id, external_id=user_id).first()
        if profile is not None or not anonymous_id:
            return profile
    if anonymous_id:
        row = (
            AnonymousId.objects.select_related("profile")
            .filter(workspace_id=app.workspace_id, anonymous_id=anonymous_id)
            .first()
        )
        return row.profile if row is not None else None
    return None


class PersonSerializer(serializers.Serializer[Any]):
    userId = serializers.CharField(required=False, allow_blank=True, max_length=255)
    anonymousId = serializers.CharField(required=False, allow_blank=True, max_length=255)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("userId") and not attrs.get("anonymousId"):
            raise serializers.ValidationError({"userId": ["userId or anonymousId is required"]})
        return attrs


class InboxEventSerializer(PersonSerializer):
    item_id = serializers.IntegerField(min_value=1)
    type = serializers.ChoiceField(choices=InboxEventType.ALL)
    button_index = serializers.IntegerField(required=False, min_value=0, max_value=1)
    url = serializers.CharField(required=False, allow_blank=True, max_length=2048)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs["type"] == InboxEventType.BUTTON_CLICK and "button_index" not in attrs:
            raise serializers.ValidationError({"button_index": ["is required for a button_click"]})
        return attrs


class PushOpenedSerializer(PersonSerializer):
    dispatch_id = serializers.UUIDField(help_text="The dispatch id delivered in the push payload.")


class RecordedSerializer(serializers.Serializer[Any]):
    success = serializers.BooleanField()
    recorded = serializers.BooleanField(help_text="False when this was already reported (reports are idempotent).")


def _error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    described = {
        400: "a field breaks a rule (named in message)",
        401: "missing or unknown write key",
        404: "no such person, or the item is not theirs",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described[code]) for code in codes}


class ClientView(APIView):
    authentication_classes = [ClientKeyAuthentication]
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []

    def perform_authentication(self, request: Request) -> None:
        # A CORS preflight carries no credentials; it must answer 200 so the browser sends the call.
        if request.method != "OPTIONS":
            super().perform_authentication(request)

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        return Response(status=200)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Response:
        for header, value in CORS_HEADERS.items():
            response[header] = value
        return super().finalize_response(request, response, *args, **kwargs)

    @staticmethod
    def app(request: Request) -> App:
        return cast(App, request.auth)

    def person(self, request: Request, data: dict[str, Any]) -> Profile:
        profile = resolve_profile(
            self.app(request), user_id=data.get("userId") or None, anonymous_id=data.get("anonymousId") or None
        )
        if profile is None:
            raise exceptions.NotFound("no person with this userId or anonymousId")
        return profile


# --- fetch --------------------------------------------------------------------------------------


def _in_app_json(item: InboxItem) -> dict[str, Any]:
    content = item.content if isinstance(item.content, dict) else {}
    return {
        "id": item.pk,
        "layout": content.get("layout", ""),
        "header": content.get("header", ""),
        "body": content.get("body", ""),
        "image_url": content.get("image_url", ""),
        "buttons": content.get("buttons") or [],
        "on_click": content.get("on_click"),
        "slide_from": content.get("slide_from", ""),
        "dismiss_after": content.get("dismiss_after"),
        "extras": content.get("extras") or {},
        "trigger": item.trigger,
        "priority": item.priority,
        "created_at": item.created_at.isoformat(),
        "expires_at": item.expires_at.isoformat() if item.expires_at else None,
    }


def _card_json(item: InboxItem) -> dict[str, Any]:
    content = item.content if isinstance(item.content, dict) else {}
    return {
        "id": item.pk,
        "type": content.get("type", ""),
        "title": content.get("title", ""),
        "body": content.get("body", ""),
        "image_url": content.get("image_url", ""),
        "url": content.get("url", ""),
        "link_text": content.get("link_text", ""),
        "extras": content.get("extras") or {},
        "pinned": item.pinned,
        "viewed": item.first_viewed_at is not None,
        "clicked": item.clicked_at is not None,
        "created_at": item.created_at.isoformat(),
        "expires_at": item.expires_at.isoformat() if item.expires_at else None,
    }


class InboxView(ClientView):
    @extend_schema(
        parameters=[
            OpenApiParameter("userId", str, description="The app's user id (the profile's external id)."),
            OpenApiParameter("anonymousId", str, description="The SDK's anonymous id, when no userId is known."),
            OpenApiParameter("writeKey", str, description="The app's write key, if not sent as HTTP Basic user."),
        ],
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description=(
                    '{"in_app_messages": [...], "content_cards": [...]}: in-app messages not yet shown '
                    "(highest priority, then newest first) and content cards (pinned first, then newest); "
                    "expired items are never returned. An unknown person has an empty inbox."
                ),
            ),
            **_error_responses(400, 401),
        },
        tags=["client"],
        auth=[],
    )
    def get(self, request: Request) -> Response:
        person = PersonSerializer(data=request.query_params.dict())
        person.is_valid(raise_exception=True)
        profile = resolve_profile(
            self.app(request),
            user_id=person.validated_data.get("userId") or None,
            anonymous_id=person.validated_data.get("anonymousId") or None,
        )
        if profile is None:
            # Apps fetch before the person is known to us: nothing waits for them yet.
            return Response({"in_app_messages": [], "content_cards": []})
        in_app, cards = inbox_fetch(profile_id=profile.pk)
        return Response(
            {
                "in_app_messages": [_in_app_json(item) for item in in_app],
                "content_cards": [_card_json(c) for c in cards],
            }
        )


# --- reports ------------------------------------------------------------------------------------


class InboxEventView(ClientView):
    @extend_schema(
        request=InboxEventSerializer,
        responses={200: RecordedSerializer, **_error_responses(400, 401, 404)},
        description=(
            "Report an impression, click, button click or dismissal of an in-app message or content card. "
            "Impressions and clicks are recorded once per item (button clicks once per button); a pinned card "
            "cannot be dismissed."
        ),
        tags=["client"],
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = InboxEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        profile = self.person(request, data)
        try:
            outcome = inbox_event_record(
                profile_id=profile.pk,
                item_id=data["item_id"],
                event_type=data["type"],
                button_index=data.get("button_index"),
                url=data.get("url", ""),
            )
        except ObjectDoesNotExist:
            raise exceptions.NotFound("item_id: no such in-app message or content card for this person") from None
        return Response({"success": True, "recorded": outcome.recorded})


class PushOpenedView(ClientView):
    @extend_schema(
        request=PushOpenedSerializer,
        responses={200: RecordedSerializer, **_error_responses(400, 401, 404)},
        description="The SDK reports that the person opened a push notification (recorded once per push).",
        tags=["client"],
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = PushOpenedSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        profile = self.person(request, data)
        dispatch_id: uuid.UUID = data["dispatch_id"]
        try:
            recorded = push_opened_record(profile_id=profile.pk, dispatch_id=str(dispatch_id))
        except ObjectDoesNotExist:
            raise exceptions.NotFound("dispatch_id: no such push sent to this person") from None
        return Response({"success": True, "recorded": recorded})
