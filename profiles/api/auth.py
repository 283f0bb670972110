"""Secret REST API keys: ``Authorization: Bearer sk_<prefix>.<secret>``, with scopes per endpoint.

A request with no key, or a key that is unknown, revoked or expired, is answered 401 with a
``WWW-Authenticate: Bearer`` challenge; a live key without the endpoint's scope gets 403 naming
the scope it lacks. Views read the key (and so the workspace) from ``request.auth``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from ..models import ApiKey
from ..services.keys import API_KEY_PREFIX, api_key_authenticate

KEYWORD = "Bearer"


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates ``Authorization: Bearer sk_...``; ``request.user`` stays None, ``request.auth``
    is the ``ApiKey``."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None  # HasApiScope answers 401 "send your key"
        if header[0].lower() != KEYWORD.lower().encode() or len(header) != 2:
            raise exceptions.AuthenticationFailed(
                f"Send the API key as 'Authorization: {KEYWORD} {API_KEY_PREFIX}...'.", code="authentication_failed"
            )
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The API key is malformed.") from None
        key = api_key_authenticate(raw_key=raw_key)
        if key is None:
            raise exceptions.AuthenticationFailed("The API key is unknown, revoked or expired.")
        return None, key

    def authenticate_header(self, request: Request) -> str:
        # Its presence is what makes DRF answer 401 rather than 403 to unauthenticated requests.
        return f'{KEYWORD} realm="api"'


class HasApiScope(BasePermission):
    """Requires a live API key holding the scope the view names for the request's method.

    Views declare ``required_scopes = {"GET": ApiScope.PROFILES_READ, ...}``; HEAD follows GET. A
    method the view does not list (OPTIONS) needs a valid key and no particular scope.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated(
                f"Send your API key as 'Authorization: {KEYWORD} {API_KEY_PREFIX}...'.", code="not_authenticated"
            )
        scopes: dict[str, str] = getattr(view, "required_scopes", {})
        method = "GET" if request.method == "HEAD" else (request.method or "")
        scope = scopes.get(method)
        if scope is not None and scope not in key.scopes:
            raise exceptions.PermissionDenied(
                f"This API key lacks the {scope} scope, which {method} on this endpoint requires.",
                code="missing_scope",
            )
        return True


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the key in the OpenAPI schema (drf-spectacular finds this subclass by itself)."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": f"{API_KEY_PREFIX}<prefix>.<secret>",
            "description": "A secret REST API key of one workspace, created in the admin; scopes limit what it may do.",
        }
