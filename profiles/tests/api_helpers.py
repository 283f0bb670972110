"""Helpers for tests of the server-side REST API (secret API keys)."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.test import APIClient

from profiles.models import ApiScope, Workspace
from profiles.services.keys import api_key_create

ALL_PROFILE_SCOPES = (
    ApiScope.PROFILES_READ,
    ApiScope.PROFILES_WRITE,
    ApiScope.PROFILES_DELETE,
    ApiScope.PROFILES_EXPORT,
)


def api_client_for(workspace: Workspace, scopes: Iterable[str] = ALL_PROFILE_SCOPES) -> APIClient:
    """An API client that sends a fresh key of ``workspace`` holding ``scopes``."""
    _key, secret = api_key_create(workspace=workspace, name="test key", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client
