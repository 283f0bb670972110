"""The segments REST API: create, read, change and delete segments, their size, their members, and
"is this person in segment S?".

Authenticated like the rest of the REST API (a secret API key of one workspace; ``segments.read``
to read, ``segments.write`` to change); a segment of another workspace answers 404. Views parse,
call a service or selector and render; an invalid definition is a 400 whose message names the
broken condition by its path (``definition: all[1].any[0]: age: ...``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api.errors import Conflict
from profiles.api.server import ApiKeyView
from profiles.api.server_serializers import ErrorSerializer
from profiles.models import ApiScope, Profile

from ..evaluator import profile_in_segment
from ..models import Segment
from ..selectors import MAX_PAGE, definition_size, segment_member_rows
from ..services import segment_create, segment_delete, segment_update
from .serializers import (
    CheckRequestSerializer,
    CheckResultSerializer,
    MemberPageSerializer,
    SegmentSerializer,
    SegmentSizeSerializer,
    SegmentWriteSerializer,
)

TAG = "segments"
MEMBERS_PAGE = 1000
DEFAULT_MAX_AGE = 30
MAX_MAX_AGE = 3600

ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The segment's id.")
EXAMPLE_SEGMENT = {
    "name": "Lapsed social",
    "description": "Lapsed users who came from social ads",
    "definition": {
        "all": [
            {"type": "lifecycle_stage", "op": "eq", "value": "lapsed"},
            {"type": "acquisition", "field": "medium", "op": "one_of", "value": ["social", "paid_social"]},
        ]
    },
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    described = {
        400: "Invalid input: `message` names the field and rule; for a definition, the condition's path "
        "(e.g. `definition: all[1].any[0]: age: 'value' must be ...`), and `errors` lists every problem.",
        401: "No API key, or one that is unknown, revoked or expired.",
        403: "The API key lacks the scope this endpoint needs.",
        404: "No such segment (or profile) in the key's workspace.",
        409: "The segment is used by another segment (`segment_in_use`).",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described[code]) for code in codes}


def _render(segment: Segment) -> dict[str, Any]:
    return dict(SegmentSerializer(segment).data)


class SegmentCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000


class SegmentObjectMixin(ApiKeyView):
    def get_segment(self, id: int) -> Segment:
        segment = Segment.objects.filter(workspace=self.workspace, pk=id).first()
        if segment is None:
            raise Http404(f"No segment {id} in this workspace.")
        return segment


class SegmentListView(ApiKeyView, ListAPIView[Segment]):
    serializer_class = SegmentSerializer
    pagination_class = SegmentCursorPagination
    filter_backends: list[Any] = []
    required_scopes = {"GET": ApiScope.SEGMENTS_READ, "POST": ApiScope.SEGMENTS_WRITE}

    def get_queryset(self) -> QuerySet[Segment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no key
            return Segment.objects.none()
        return Segment.objects.filter(workspace=self.workspace)

    @extend_schema(
        tags=[TAG],
        operation_id="segments_list",
        summary="List segments",
        description="The key's workspace's segments in id order, a cursor page at a time (`limit` up to 1000).",
        responses={200: SegmentSerializer(many=True), **_errors(401, 403)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=[TAG],
        operation_id="segments_create",
        summary="Create a segment",
        description="Validates the definition (every problem is named by the condition's path) and refuses "
        "references to segments that do not exist or would make a cycle. Names are unique per workspace.",
        request=SegmentWriteSerializer,
        responses={201: SegmentSerializer, **_errors(400, 401, 403)},
        examples=[OpenApiExample("Lapsed users from social ads", request_only=True, value=EXAMPLE_SEGMENT)],
    )
    def post(self, request: Request) -> Response:
        serializer = SegmentWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        segment = segment_create(
            workspace=self.workspace,
            name=data["name"],
            description=data.get("description", ""),
            definition=data["definition"],
        )
        return Response(_render(segment), status=status.HTTP_201_CREATED)


_CHANGE_DESCRIPTION = (
    "Changes what the body names (PUT needs name and definition; PATCH any subset). The definition is "
    "validated as a whole; membership follows the new definition at once."
)


class SegmentDetailView(SegmentObjectMixin):
    serializer_class = SegmentSerializer
    required_scopes = {
        "GET": ApiScope.SEGMENTS_READ,
        "PUT": ApiScope.SEGMENTS_WRITE,
        "PATCH": ApiScope.SEGMENTS_WRITE,
        "DELETE": ApiScope.SEGMENTS_WRITE,
    }

    @extend_schema(
        tags=[TAG],
        operation_id="segments_retrieve",
        summary="Get a segment",
        parameters=[ID_PARAMETER],
        responses={200: SegmentSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, id: int) -> Response:
        return Response(_render(self.get_segment(id)))

    def _change(self, request: Request, id: int, *, partial: bool) -> Response:
        segment = self.get_segment(id)
        serializer = SegmentWriteSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        segment = segment_update(
            segment=segment,
            name=data.get("name"),
            description=data.get("description"),
            definition=data.get("definition"),
        )
        return Response(_render(segment))

    @extend_schema(
        tags=[TAG],
        operation_id="segments_update",
        summary="Replace a segment's name, description and definition",
        description=_CHANGE_DESCRIPTION,
        parameters=[ID_PARAMETER],
        request=SegmentWriteSerializer,
        responses={200: SegmentSerializer, **_errors(400, 401, 403, 404)},
    )
    def put(self, request: Request, id: int) -> Response:
        return self._change(request, id, partial=False)

    @extend_schema(
        tags=[TAG],
        operation_id="segments_partial_update",
        summary="Change a segment",
        description=_CHANGE_DESCRIPTION,
        parameters=[ID_PARAMETER],
        request=SegmentWriteSerializer,
        responses={200: SegmentSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, id: int) -> Response:
        return self._change(request, id, partial=True)

    @extend_schema(
        tags=[TAG],
        operation_id="segments_destroy",
        summary="Delete a segment",
        description="Deletes a segment no other segment refers to (409 `segment_in_use` otherwise).",
        parameters=[ID_PARAMETER],
        responses={204: OpenApiResponse(description="Deleted."), **_errors(401, 403, 404, 409)},
    )
    def delete(self, request: Request, id: int) -> Response:
        segment = self.get_segment(id)
        try:
            segment_delete(segment=segment)
        except DjangoValidationError as error:
            raise Conflict("; ".join(error.messages), code="segment_in_use") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentSizeView(SegmentObjectMixin):
    serializer_class = SegmentSizeSerializer
    required_scopes = {"GET": ApiScope.SEGMENTS_READ}

    @extend_schema(
        tags=[TAG],
        operation_id="segments_size",
        summary="Count a segment's members",
        description="How many profiles are in the segment, counted from the data as it stands. A count made "
        "in the last `max_age` seconds (default 30) for the same definition is reused; `computed_at` and "
        "`age_seconds` say how old the answer is. `max_age=0` always counts now.",
        parameters=[
            ID_PARAMETER,
            OpenApiParameter(
                "max_age",
                int,
                OpenApiParameter.QUERY,
                required=False,
                description=f"Seconds (0-{MAX_MAX_AGE}) a previous count may be reused; default {DEFAULT_MAX_AGE}.",
            ),
        ],
        responses={200: SegmentSizeSerializer, **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, id: int) -> Response:
        segment = self.get_segment(id)
        max_age = _int_param(request, "max_age", DEFAULT_MAX_AGE, minimum=0, maximum=MAX_MAX_AGE)
        estimate = definition_size(
            workspace_id=segment.workspace_id, definition=segment.definition, segment_id=segment.pk, max_age=max_age
        )
        return Response(
            {
                "segment_id": segment.pk,
                "size": estimate.size,
                "computed_at": estimate.computed_at,
                "age_seconds": round(estimate.age_seconds(), 3),
            }
        )


class SegmentMembersView(SegmentObjectMixin):
    serializer_class = MemberPageSerializer
    required_scopes = {"GET": ApiScope.SEGMENTS_READ}

    @extend_schema(
        tags=[TAG],
        operation_id="segments_members",
        summary="List a segment's members",
        description="Members in profile id order, a page at a time: follow `next` until it is null. Membership "
        "is evaluated as each page is asked for, so someone who joins or leaves between pages is seen or not "
        "depending on their id; pages never repeat or skip a person who stays a member.",
        parameters=[
            ID_PARAMETER,
            OpenApiParameter(
                "after", int, OpenApiParameter.QUERY, required=False, description="The last id of the previous page."
            ),
            OpenApiParameter(
                "limit",
                int,
                OpenApiParameter.QUERY,
                required=False,
                description=f"Members per page, 1-{MAX_PAGE}; default {MEMBERS_PAGE}.",
            ),
        ],
        responses={200: MemberPageSerializer, **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, id: int) -> Response:
        segment = self.get_segment(id)
        after = _int_param(request, "after", 0, minimum=0, maximum=2**63 - 1)
        limit = _int_param(request, "limit", MEMBERS_PAGE, minimum=1, maximum=MAX_PAGE)
        rows = segment_member_rows(segment=segment, columns=("id", "external_id"), after_id=after, limit=limit)
        next_url = None
        if len(rows) == limit:
            query = request.query_params.copy()
            query["after"] = str(rows[-1][0])
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response(
            {"results": [{"id": pk, "external_id": external_id} for pk, external_id in rows], "next": next_url}
        )


class SegmentCheckView(SegmentObjectMixin):
    serializer_class = CheckRequestSerializer
    required_scopes = {"POST": ApiScope.SEGMENTS_READ}

    @extend_schema(
        tags=[TAG],
        operation_id="segments_check",
        summary="Is this person in the segment?",
        description="Evaluates the segment for one person (by external id or profile id) as the data stands now.",
        parameters=[ID_PARAMETER],
        request=CheckRequestSerializer,
        responses={200: CheckResultSerializer, **_errors(400, 401, 403, 404)},
        examples=[OpenApiExample("By external id", request_only=True, value={"external_id": "user-1"})],
    )
    def post(self, request: Request, id: int) -> Response:
        segment = self.get_segment(id)
        serializer = CheckRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        profiles = Profile.objects.filter(workspace=self.workspace)
        if "external_id" in data:
            found = profiles.filter(external_id=data["external_id"]).values_list("pk", "external_id").first()
            missing = f"No profile with external id {data['external_id']!r} in this workspace."
        else:
            found = profiles.filter(pk=data["profile_id"]).values_list("pk", "external_id").first()
            missing = f"No profile {data['profile_id']} in this workspace."
        if found is None:
            raise Http404(missing)
        profile_id, external_id = found
        now = timezone.now()
        return Response(
            {
                "in_segment": profile_in_segment(profile_id=profile_id, segment=segment, now=now),
                "profile_id": profile_id,
                "external_id": external_id,
                "checked_at": now,
            }
        )


def _int_param(request: Request, name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise exceptions.ValidationError({name: [f"must be a whole number from {minimum} to {maximum}"]})
    return value
