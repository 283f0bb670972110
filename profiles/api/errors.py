"""One error shape for every API (the intake and the REST API alike).

Every error answers a JSON object ``{"code": "...", "message": "..."}`` with the HTTP status kept;
validation errors add ``"errors": {"field.path": ["rule broken", ...]}`` and name the first broken
rule in ``message``. Segment's SDKs read ``code`` and ``message`` (a body without them makes
RudderStack's client retry a 400 forever), and a person reading a 400 sees which field to fix.

Services raise Django's ``ValidationError`` (they never import DRF); it is answered as a 400 here.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """``{"devices": [{}, {"platform": ["bad"]}]}`` -> ``{"devices[1].platform": ["bad"]}``."""
    out: dict[str, list[str]] = {}

    def add(key: str, message: Any) -> None:
        out.setdefault(key or api_settings.NON_FIELD_ERRORS_KEY, []).append(str(message))

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, int):
                    walk(child, f"{path}[{key}]")
                elif key in {api_settings.NON_FIELD_ERRORS_KEY, "__all__"}:
                    walk(child, path)
                else:
                    walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if isinstance(child, dict | list):
                    if child:
                        walk(child, f"{path}[{index}]")
                else:
                    add(path, child)
        else:
            add(path, node)

    walk(detail, prefix)
    return out


def _code_of(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else exc.default_code


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            detail=exc.message_dict if hasattr(exc, "error_dict") else {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug, not the caller's fault: log it with its traceback and still answer in the shape
        # clients parse (they retry 5xx).
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        set_rollback()
        return Response(
            {"code": "server_error", "message": "Internal server error; the request can be retried."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    assert isinstance(exc, exceptions.APIException)  # what the DRF handler answers, after the mapping above
    body: dict[str, Any]
    if isinstance(exc.detail, dict | list):
        errors = flatten_errors(exc.detail)
        field, messages = next(iter(errors.items()), (api_settings.NON_FIELD_ERRORS_KEY, ["invalid input"]))
        summary = messages[0] if field == api_settings.NON_FIELD_ERRORS_KEY else f"{field}: {messages[0]}"
        code = "invalid" if isinstance(exc, exceptions.ValidationError) else exc.default_code
        body = {"code": code, "message": summary, "errors": errors}
    else:
        body = {"code": _code_of(exc), "message": str(exc.detail)}
    response.data = body
    return response
