"""The Segment-compatible intake: ``/v1/batch`` and the single-call endpoints, with the browser
library's short paths (``/v1/t``, ``/v1/b``, ...).

The wire contract is the one unmodified Segment and RudderStack SDKs rely on (see
shared/reference/ecosystem-contracts.md §1): success is exactly HTTP 200 with ``{"success": true}``;
errors are ``{"code", "message"}`` with 400 (bad input, never retried), 401 (bad write key), 413
(too large) or 429 with ``Retry-After`` (throttled; SDKs back off and resend). The view only parses,
authenticates and calls ``ingest_batch``; nothing else happens on the request path.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import zlib
from collections.abc import Mapping
from typing import Any, cast

import orjson
from django.conf import settings
from django.core.cache import cache
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import App
from ..services.ingest import ingest_batch
from ..spec import parse_timestamp

CORS_HEADERS = {
    # Write keys are public identifiers and the intake sets no cookies, so any origin may post.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "request body is too large"


class SegmentParser(BaseParser):
    """JSON in any content type (analytics.js posts ``text/plain`` to skip the CORS preflight),
    optionally gzip-compressed, read with a hard bound so neither a huge body nor a zip bomb is
    ever held in memory."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        request = (parser_context or {})["request"]
        limit = settings.INTAKE_MAX_BATCH_BYTES
        raw = stream.read(limit * 4 + 1) if stream is not None else b""
        encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding == "gzip":
            if len(raw) > limit * 4:
                raise PayloadTooLarge(f"request body is larger than {limit // 1024} KB")
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            try:
                body = inflater.decompress(raw, limit + 1)
            except zlib.error:
                raise exceptions.ParseError("body is not valid gzip data") from None
            if len(body) > limit or inflater.unconsumed_tail:
                raise PayloadTooLarge(f"request body is larger than {limit // 1024} KB once decompressed")
        elif encoding in ("", "identity"):
            body = raw
        else:
            raise exceptions.ParseError(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit // 1024} KB")
        request.intake_body_size = len(body)
        if not body.strip():
            raise exceptions.ParseError("request body is empty; expected a JSON object")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # orjson refuses some valid JSON (integers beyond 64 bits): let json decide
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise exceptions.ParseError(f"body is not valid JSON: {error}") from None


class WriteKeyAuthentication(BaseAuthentication):
    """The app's write key: the user name of HTTP Basic auth (the Segment and Rudder SDKs), or
    ``writeKey`` in the body (analytics.js). Authenticates the request as the App, not a user."""

    def authenticate(self, request: Request) -> tuple[None, App] | None:
        key = self._key_from_header(request)
        if key is None:
            data = request.data
            key = data.get("writeKey") if isinstance(data, dict) else None
            if key is not None and not isinstance(key, str):
                raise exceptions.AuthenticationFailed("writeKey must be a string")
        if not key:
            raise exceptions.NotAuthenticated(
                "a write key is required: HTTP Basic auth with the write key as user name, or writeKey in the body"
            )
        app = _app_for_write_key(key)
        if app is None:
            raise exceptions.AuthenticationFailed("unknown or disabled write key")
        return None, app

    @staticmethod
    def _key_from_header(request: Request) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic" and credentials:
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise exceptions.AuthenticationFailed("Authorization: Basic credentials are not valid base64") from None
            return decoded.partition(":")[0]
        if scheme.lower() == "bearer" and credentials:
            return credentials.strip()
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="intake"'


# Write key -> (app or None, when looked up). Every intake request authenticates, and an SDK posts
# many batches a second with the same key: a short in-process memory saves a query per request. A
# disabled or rotated key keeps working for at most WRITE_KEY_CACHE_SECONDS in each web process.
WRITE_KEY_CACHE_SECONDS = 10.0
_write_keys: dict[str, tuple[App | None, float]] = {}


def _app_for_write_key(key: str) -> App | None:
    now = time.monotonic()
    cached = _write_keys.get(key)
    if cached is not None and now - cached[1] < WRITE_KEY_CACHE_SECONDS:
        return cached[0]
    app = App.objects.select_related("workspace").filter(write_key=key, is_active=True).first()
    if len(_write_keys) > 10_000:  # keys seen are bounded by apps; this only guards memory
        _write_keys.clear()
    _write_keys[key] = (app, now)
    return app


def _check_rate(app: App) -> None:
    """A fixed one-second window per write key, counted in the shared cache. Answering 429 (never
    another 4xx) matters: SDKs keep the data and retry after ``Retry-After``."""
    limit = app.rate_limit_per_second or settings.INTAKE_RATE_LIMIT_PER_SECOND
    if not limit:
        return
    window = int(time.time())
    key = f"intake-rate:{app.pk}:{window}"
    try:
        count = cache.incr(key)  # one round trip in the steady state
    except ValueError:  # the window's first request
        if not cache.add(key, 1, timeout=5):
            cache.incr(key)
        return
    if count > limit:
        raise exceptions.Throttled(wait=1, detail=f"more than {limit} requests per second for this write key")


def _encoded(message: Any) -> bytes:
    try:
        return orjson.dumps(message)
    except TypeError:  # integers beyond 64 bits
        return json.dumps(message, separators=(",", ":")).encode()


SUCCESS_EXAMPLE = OpenApiExample("Accepted", value={"success": True}, response_only=True)


class IntakeView(APIView):
    """One view for every intake path; ``call_type`` is None for batches."""

    call_type: str | None = None
    parser_classes = [SegmentParser]
    authentication_classes = [WriteKeyAuthentication]
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": true}, plus "rejected" if some were'),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="malformed body or every message invalid"),
            401: OpenApiResponse(OpenApiTypes.OBJECT, description="missing or unknown write key"),
            413: OpenApiResponse(OpenApiTypes.OBJECT, description="over 32 KB a message or 500 KB a batch"),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="throttled; retry after Retry-After seconds"),
        },
        examples=[SUCCESS_EXAMPLE],
        tags=["intake"],
        auth=[],
    )
    def post(self, request: Request) -> Response:
        app = cast(App, request.auth)
        _check_rate(app)
        data = request.data
        if not isinstance(data, dict):
            raise exceptions.ParseError("body must be a JSON object")
        if self.call_type is None:
            messages = data.get("batch")
            if not isinstance(messages, list):
                raise exceptions.ParseError("batch: must be an array of messages")
            batch_context = data.get("context") if isinstance(data.get("context"), dict) else None
            try:
                batch_sent_at = parse_timestamp(data.get("sentAt"), "sentAt")
            except ValueError:
                batch_sent_at = None
        else:
            messages, batch_context, batch_sent_at = [data], None, None
        oversized = self._oversized(request, messages)
        result = ingest_batch(
            app=app,
            messages=[None if i in oversized else m for i, m in enumerate(messages)],
            forced_type=self.call_type,
            batch_context=batch_context,
            batch_sent_at=batch_sent_at,
        )
        rejected = sorted(result.rejected, key=lambda r: r.index)
        for rejection in rejected:
            if rejection.index in oversized:
                rejection.code = "message_too_large"
                rejection.message = f"message is larger than {settings.INTAKE_MAX_MESSAGE_BYTES // 1024} KB"
        if rejected and len(rejected) == len(messages):
            first = rejected[0]
            if self.call_type is not None:
                status_code = 413 if first.code == "message_too_large" else 400
                return Response({"code": first.code, "message": first.message}, status=status_code)
            return Response(
                {
                    "code": "invalid_batch",
                    "message": f"every message of the batch was rejected; first: [{first.index}] {first.message}",
                    "rejected": [r.as_dict() for r in rejected],
                },
                status=400,
            )
        body: dict[str, Any] = {"success": True}
        if rejected:
            body["rejected"] = [r.as_dict() for r in rejected]
        return Response(body, status=200)

    @staticmethod
    def _oversized(request: Request, messages: list[Any]) -> set[int]:
        limit = settings.INTAKE_MAX_MESSAGE_BYTES
        if getattr(request, "intake_body_size", 0) <= limit:
            return set()  # no message can be larger than the whole body
        return {i for i, m in enumerate(messages) if len(_encoded(m)) > limit}

    def perform_authentication(self, request: Request) -> None:
        # A CORS preflight carries no credentials; it must answer 200 so the browser sends the POST.
        if request.method != "OPTIONS":
            super().perform_authentication(request)

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        return Response(status=200)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Response:
        for header, value in CORS_HEADERS.items():
            response[header] = value
        return super().finalize_response(request, response, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        # The intake answers in Segment's error shape whatever the project's API handler does.
        if isinstance(exc, exceptions.APIException):
            code = exc.get_codes()
            detail = exc.detail
            response = Response(
                {"code": code if isinstance(code, str) else "error", "message": str(detail)},
                status=exc.status_code,
            )
            wait = getattr(exc, "wait", None)
            if isinstance(exc, exceptions.Throttled) and wait is not None:
                response["Retry-After"] = str(max(1, int(wait)))
            if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
                response.status_code = 401
                response["WWW-Authenticate"] = 'Basic realm="intake"'
            return response
        return super().handle_exception(exc)
