"""Write keys and secret REST API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from ..models import ApiKey, ApiScope, App, Workspace, new_write_key

API_KEY_PREFIX = "sk_"


def _digest(secret: str) -> str:
    # The secret is 32 random bytes, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(
    *,
    workspace: Workspace,
    name: str,
    scopes: Iterable[str],
    created_by: AbstractBaseUser | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its full secret value, which is never retrievable again.

    The value reads ``sk_<prefix>.<secret>``; only the prefix and a digest of the secret are stored.
    """
    scope_list = sorted(set(scopes))
    unknown = [scope for scope in scope_list if scope not in ApiScope.values]
    if unknown:
        raise ValueError(f"scopes: unknown scope(s) {', '.join(unknown)}; known: {', '.join(ApiScope.values)}")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        workspace=workspace,
        name=name,
        prefix=prefix,
        hashed_secret=_digest(secret),
        scopes=scope_list,
        created_by=created_by if created_by is not None and created_by.pk else None,  # type: ignore[misc]
        expires_at=expires_at,
    )
    return key, f"{API_KEY_PREFIX}{prefix}.{secret}"


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The live key matching ``raw_key``, or None (unknown, malformed, revoked or expired)."""
    if not raw_key.startswith(API_KEY_PREFIX) or "." not in raw_key:
        return None
    prefix, _, secret = raw_key[len(API_KEY_PREFIX) :].partition(".")
    now = timezone.now()
    key = (
        ApiKey.objects.select_related("workspace")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if key is None or not hmac.compare_digest(key.hashed_secret, _digest(secret)):
        return None
    # Last-used is informational; a minute's precision keeps this from writing on every request.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def app_rotate_write_key(*, app: App) -> str:
    """Give the app a new write key; the old one stops working at once."""
    app.write_key = new_write_key()
    App.objects.filter(pk=app.pk).update(write_key=app.write_key)
    return app.write_key
