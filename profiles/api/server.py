"""The server-side REST API: profiles, privacy (delete, export) and CSV imports.

Every endpoint authenticates a secret API key (``Authorization: Bearer sk_...``), needs the scope
named in ``required_scopes`` for the method, and sees only the key's workspace. Views parse, call
one service and render; errors are shaped by ``profiles.api.errors``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404, StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from ..models import ApiKey, ApiScope, Profile, ProfileImport, Workspace
from ..services.imports import profile_import_create
from ..services.privacy import SuppressedIdentifierError, profile_delete, profile_export, profile_export_json
from ..services.profiles import profile_get, profile_list, profile_upsert
from .auth import ApiKeyAuthentication, HasApiScope
from .errors import Conflict
from .server_filters import ProfileCursorPagination, ProfileFilter
from .server_serializers import (
    ErrorSerializer,
    ProfileDeletionSerializer,
    ProfileDetailSerializer,
    ProfileExportSerializer,
    ProfileImportSerializer,
    ProfileImportUploadSerializer,
    ProfileSerializer,
    ProfileWriteSerializer,
)

TAG = "profiles"
EXTERNAL_ID_PARAMETER = OpenApiParameter(
    "external_id",
    str,
    OpenApiParameter.PATH,
    description="The person's external id (the app's user id), URL-encoded.",
)


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    described = {
        400: "Invalid input: `message` names the first field and rule, `errors` all of them.",
        401: "No API key, or one that is unknown, revoked or expired.",
        403: "The API key lacks the scope this endpoint needs.",
        404: "No such profile (or import) in the key's workspace.",
        409: "The external id belongs to a deleted person (suppressed).",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described[code]) for code in codes}


# PUT and PATCH are the same operation; the schema says so once.
_WRITE_SCHEMA = extend_schema(
    tags=[TAG],
    description=(
        "Creates the person if the external id is new, otherwise updates them. Both PUT and PATCH merge: "
        "only what the body names changes. `attributes` takes standard attributes by name or alias and "
        "custom attributes (null removes a custom attribute); `subscriptions` sets channel states (the "
        "change time moves only when a state changes); `devices` are upserted by `device_id`. A deleted "
        "person's external id is refused with 409."
    ),
    parameters=[EXTERNAL_ID_PARAMETER],
    request=ProfileWriteSerializer,
    responses={
        200: OpenApiResponse(ProfileDetailSerializer, description="Updated."),
        201: OpenApiResponse(ProfileDetailSerializer, description="Created."),
        **_errors(400, 401, 403, 409),
    },
    examples=[
        OpenApiExample(
            "Attributes, a subscription and a device",
            request_only=True,
            value={
                "attributes": {"email": "ada@example.com", "first_name": "Ada", "dob": "1990-04-23", "plan": "pro"},
                "subscriptions": {"email": "opted_in"},
                "devices": [{"device_id": "ios-1", "platform": "ios", "push_provider": "apns", "push_token": "ab12"}],
            },
        )
    ],
)


class ApiKeyView(GenericAPIView[Any]):
    """Base of the REST API views: API-key authentication, per-method scopes, JSON only."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiScope]
    parser_classes = [JSONParser]
    required_scopes: dict[str, str] = {}

    @property
    def workspace(self) -> Workspace:
        key = self.request.auth
        assert isinstance(key, ApiKey)  # HasApiScope let the request through
        return key.workspace


class ProfileListView(ApiKeyView, ListAPIView[Profile]):
    serializer_class = ProfileSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = ProfileFilter
    pagination_class = ProfileCursorPagination
    required_scopes = {"GET": ApiScope.PROFILES_READ}

    def get_queryset(self) -> QuerySet[Profile]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no key
            return Profile.objects.none()
        return profile_list(workspace=self.workspace)

    @extend_schema(
        tags=[TAG],
        summary="List profiles",
        description=(
            "Profiles of the key's workspace in id order, a cursor page at a time (`next` / `previous` links; "
            "`limit` up to 1000). Filters combine with AND. Custom attributes filter as "
            "`attr.<name>=<value>` (e.g. `attr.plan=pro`, `attr.age=42`): the value matches as sent or as the "
            "JSON number or boolean it spells."
        ),
        responses={200: ProfileSerializer(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ProfileDetailView(ApiKeyView):
    serializer_class = ProfileDetailSerializer
    required_scopes = {
        "GET": ApiScope.PROFILES_READ,
        "PUT": ApiScope.PROFILES_WRITE,
        "PATCH": ApiScope.PROFILES_WRITE,
        "DELETE": ApiScope.PROFILES_DELETE,
    }

    def _render(self, external_id: str, *, status_code: int = status.HTTP_200_OK) -> Response:
        profile = profile_get(workspace=self.workspace, external_id=external_id, details=True)
        if profile is None:
            raise Http404(f"No profile with external id {external_id!r} in this workspace.")
        return Response(ProfileDetailSerializer(profile).data, status=status_code)

    @extend_schema(
        tags=[TAG],
        summary="Get a profile",
        description="The person with their attributes, custom attributes, subscription states, devices, "
        "anonymous ids and counts of events and purchases.",
        parameters=[EXTERNAL_ID_PARAMETER],
        responses={200: ProfileDetailSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, external_id: str) -> Response:
        return self._render(external_id)

    def _upsert(self, request: Request, external_id: str) -> Response:
        serializer = ProfileWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            result = profile_upsert(
                workspace=self.workspace,
                external_id=external_id,
                attributes=data.get("attributes"),
                subscriptions=data.get("subscriptions"),
                devices=data.get("devices", ()),
            )
        except SuppressedIdentifierError as exc:
            raise Conflict(str(exc), code="suppressed") from exc
        return self._render(external_id, status_code=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)

    @extend_schema(summary="Create or update a profile")
    @_WRITE_SCHEMA
    def put(self, request: Request, external_id: str) -> Response:
        return self._upsert(request, external_id)

    @extend_schema(summary="Create or update a profile (same as PUT)")
    @_WRITE_SCHEMA
    def patch(self, request: Request, external_id: str) -> Response:
        return self._upsert(request, external_id)

    @extend_schema(
        tags=[TAG],
        summary="Delete a person",
        description=(
            "Erases the profile with its events, purchases, devices, anonymous ids and merge records, and "
            "suppresses the person's identifiers (external id, anonymous ids, email, phone; kept only as salted "
            "hashes): later events with them are dropped, imports skip them, and the API refuses to re-create "
            "them. Irreversible."
        ),
        parameters=[EXTERNAL_ID_PARAMETER],
        responses={200: ProfileDeletionSerializer, **_errors(401, 403, 404)},
    )
    def delete(self, request: Request, external_id: str) -> Response:
        profile = profile_get(workspace=self.workspace, external_id=external_id)
        if profile is None:
            raise Http404(f"No profile with external id {external_id!r} in this workspace.")
        result = profile_delete(profile=profile)
        return Response(ProfileDeletionSerializer({"external_id": external_id, "deleted": result.as_dict()}).data)


class ProfileExportView(ApiKeyView):
    required_scopes = {"GET": ApiScope.PROFILES_EXPORT}

    @extend_schema(
        tags=[TAG],
        summary="Export a person's data",
        description="Everything kept about the person, as one JSON document (streamed): every profile column, "
        "anonymous ids, devices, merges into the profile, all events and purchases, oldest first.",
        parameters=[EXTERNAL_ID_PARAMETER],
        responses={200: ProfileExportSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, external_id: str) -> StreamingHttpResponse:
        profile = profile_get(workspace=self.workspace, external_id=external_id)
        if profile is None:
            raise Http404(f"No profile with external id {external_id!r} in this workspace.")
        response = StreamingHttpResponse(
            profile_export_json(profile_export(profile=profile)), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="profile-{profile.pk}.json"'
        return response


class ProfileImportCreateView(ApiKeyView):
    parser_classes = [MultiPartParser]
    required_scopes = {"POST": ApiScope.PROFILES_WRITE}

    @extend_schema(
        tags=[TAG],
        summary="Import profiles from a CSV file",
        description=(
            "Uploads a UTF-8 CSV whose header names an `external_id` column, standard attributes, "
            "`email_subscription` / `push_subscription` / `sms_subscription`, and custom attributes. The import runs "
            "in the background; poll `status_url`. A header that cannot be imported is refused at once with 400."
        ),
        request={"multipart/form-data": ProfileImportUploadSerializer},
        responses={
            202: OpenApiResponse(ProfileImportSerializer, description="Accepted; poll status_url."),
            **_errors(400, 401, 403),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = ProfileImportUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        profile_import = profile_import_create(workspace=self.workspace, file=serializer.validated_data["file"])
        return Response(
            ProfileImportSerializer(profile_import, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


class ProfileImportDetailView(ApiKeyView):
    required_scopes = {"GET": ApiScope.PROFILES_WRITE}

    @extend_schema(
        tags=[TAG],
        summary="Get an import's progress",
        description="Status, row counts, percentage done and the row errors (row, field, message). "
        "Needs the profiles.write scope, like the upload.",
        responses={200: ProfileImportSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        profile_import = ProfileImport.objects.filter(workspace=self.workspace, pk=pk).first()
        if profile_import is None:
            raise Http404(f"No import {pk} in this workspace.")
        return Response(ProfileImportSerializer(profile_import, context={"request": request}).data)
