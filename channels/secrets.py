"""Provider secrets (API keys, auth tokens, private keys), encrypted at rest.

``ProviderConfig.secrets_encrypted`` holds one Fernet token (AES-128-CBC + HMAC-SHA256, from
``cryptography``) of a JSON object of the config's secrets. The key:

* ``ENGAGE_SECRETS_KEY`` when set: one or more Fernet keys, comma-separated (generate one with
  ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``).
  The first encrypts; every one decrypts, so a key can be rotated by putting the new key first
  and re-saving the configs.
* otherwise a key derived from Django's ``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS`` for
  decryption). That is fine for the embedded run, but it ties the secrets to ``SECRET_KEY``:
  rotating it without keeping the old one in ``SECRET_KEY_FALLBACKS`` makes every stored secret
  unreadable (they must then be entered again). ``manage.py check --deploy`` warns about it
  (``channels.W001``).

Secrets are never logged and never shown back in full: the admin shows ``mask(value)`` (the last
four characters) and its inputs are write-only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks

from .models import ProviderConfig

SECRETS_KEY_ENV = "ENGAGE_SECRETS_KEY"
_DERIVATION_SALT = b"engage.channels.provider-secrets:"


class SecretsUnreadableError(Exception):
    """The stored secrets cannot be decrypted with the current keys."""


def _derived_key(secret_key: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(_DERIVATION_SALT + secret_key.encode()).digest())


def _fernet() -> MultiFernet:
    configured = [part.strip() for part in os.environ.get(SECRETS_KEY_ENV, "").split(",") if part.strip()]
    if configured:
        try:
            return MultiFernet([Fernet(key) for key in configured])
        except ValueError as error:
            raise SecretsUnreadableError(
                f"{SECRETS_KEY_ENV} must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
            ) from error
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([Fernet(_derived_key(key)) for key in keys])


def encrypt_secrets(values: dict[str, str]) -> str:
    """One token for ``values`` (an empty dict encrypts to the empty string)."""
    if not values:
        return ""
    return _fernet().encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def decrypt_secrets(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        data: Any = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise SecretsUnreadableError(
            f"the provider secrets cannot be decrypted with the current {SECRETS_KEY_ENV} / SECRET_KEY "
            "(was the key changed?); enter them again in admin"
        ) from None
    if not isinstance(data, dict):  # pragma: no cover - only this module writes the token
        raise SecretsUnreadableError("the stored provider secrets are not an object")
    return {str(key): str(value) for key, value in data.items()}


def provider_config_secrets(config: ProviderConfig) -> dict[str, str]:
    """The decrypted secrets of ``config`` (for transports; never log or render them)."""
    return decrypt_secrets(config.secrets_encrypted)


def provider_config_set_secrets(config: ProviderConfig, /, **values: str | None) -> ProviderConfig:
    """Merge ``values`` into ``config``'s secrets and save them encrypted.

    A string sets a secret, ``None`` removes it; secrets not named are kept (so a form can leave a
    stored secret alone by not sending it). Returns ``config``, saved.
    """
    current = provider_config_secrets(config) if config.secrets_encrypted else {}
    for name, value in values.items():
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value
    config.secrets_encrypted = encrypt_secrets(current)
    if config.pk is None:
        config.save()
    else:
        config.save(update_fields=["secrets_encrypted", "updated_at"])
    return config


def mask(value: str) -> str:
    """How a stored secret is shown: its last four characters at most (none of a short one)."""
    if not value:
        return ""
    visible = value[-4:] if len(value) >= 12 else ""
    return f"••••{visible}"


def masked_secrets(config: ProviderConfig) -> dict[str, str]:
    """Secret name → masked value, for display. Unreadable secrets show as such, not as an error."""
    try:
        return {name: mask(value) for name, value in sorted(provider_config_secrets(config).items())}
    except SecretsUnreadableError:
        return {"(all)": "unreadable: enter the secrets again"}


@checks.register(checks.Tags.security, deploy=True)
def check_secrets_key(**kwargs: Any) -> list[checks.CheckMessage]:
    raw = os.environ.get(SECRETS_KEY_ENV, "")
    if not raw.strip():
        return [
            checks.Warning(
                f"{SECRETS_KEY_ENV} is not set: provider secrets are encrypted with a key derived from SECRET_KEY.",
                hint=(
                    f"Set {SECRETS_KEY_ENV} to a Fernet key so rotating SECRET_KEY does not make stored provider "
                    "secrets unreadable (see channels/secrets.py)."
                ),
                id="channels.W001",
            )
        ]
    try:
        _fernet()
    except SecretsUnreadableError as error:
        return [checks.Error(str(error), id="channels.E001")]
    return []
