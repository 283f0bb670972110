"""The one small interface every transport implements, and the two ways a send can fail.

A transport hands one ``Dispatch`` (a rendered message for one address) to its provider over the
provider's real protocol and says what happened: a ``SendResult`` when the provider accepted it,
``TransientError`` when trying again later may work (the caller retries with backoff), or
``PermanentError`` when it never will (the caller records it and never retries). A transport does
no database writes: ``channels.services.dispatch`` records the outcome and applies the profile
effect the error names.

A rule every transport follows (see shared/reference/ecosystem-contracts.md §5.2): a failure is
only *transient* when the provider cannot have acted on the request (the connection was refused,
or the provider answered 429/5xx). When the request may have reached the provider and the answer
was lost (a read timeout, a dropped connection), the outcome is unknown and retrying could send
the message twice, so it is an ``OutcomeUnknownError`` (permanent: recorded, not retried). The
webhook channel is the exception: marketers' endpoints get at-least-once delivery with the dispatch
id as an idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..models import Dispatch, ProviderConfig


@dataclass(frozen=True)
class SendResult:
    """The provider accepted the message. ``provider_message_id`` is the provider's own id for it
    (what its webhooks and status callbacks carry); ``raw`` is the provider's answer, kept small."""

    provider_message_id: str
    raw: dict[str, Any] = field(default_factory=dict)


class ProfileEffect:
    """What a permanent failure means for the person (applied by ``dispatch_send``)."""

    NONE = ""
    # The push token or web push subscription is dead: stop pushing to that device.
    DISABLE_DEVICE = "disable_device"
    # The person cannot or will not receive this channel (SMS STOP, invalid number): unsubscribe.
    UNSUBSCRIBE = "unsubscribe"
    # The provider refused the address itself (an email hard reject at send time). Nothing changes
    # on the profile here: the provider's bounce webhook (channels tracking) decides that.
    ADDRESS_REJECTED = "address_rejected"


class TransientError(Exception):
    """Trying again later may work (rate limited, provider down, connection refused).

    ``retry_after`` is the provider's own hint in seconds (``Retry-After``), when it gave one.
    """

    def __init__(self, message: str, *, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code or "transient"
        self.message = message
        self.retry_after = retry_after


class PermanentError(Exception):
    """It will never work for this message and address: never retried.

    ``code`` is the provider's own name for the reason where it has one (``UNREGISTERED``,
    ``BadDeviceToken``, ``21610``) so a person reading a failed send can look it up; ``message``
    says it in words. ``effect`` (a ``ProfileEffect``) is what the failure means for the person.
    """

    def __init__(self, code: str, message: str, *, effect: str = ProfileEffect.NONE) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.effect = effect

    @property
    def address_failed(self) -> bool:
        """Whether the address itself failed (a bounce, in engagement terms), rather than the
        configuration or the message."""
        return self.effect != ProfileEffect.NONE


class OutcomeUnknownError(PermanentError):
    """The request may have reached the provider but its answer was lost. Not retried, so a
    message is never sent twice (at most once; see the module docstring)."""

    def __init__(self, message: str) -> None:
        super().__init__("outcome_unknown", f"{message}; not retried to avoid a double send")


class NotConfiguredError(PermanentError):
    """The workspace has no active provider for this channel (or it lacks a required setting)."""

    def __init__(self, message: str) -> None:
        super().__init__("not_configured", message)


class Transport(Protocol):
    """Sends one dispatch. ``config`` is the workspace's active ``ProviderConfig`` for the
    dispatch's provider, or None when there is none (or the channel needs none)."""

    def send(self, dispatch: Dispatch, config: ProviderConfig | None) -> SendResult: ...


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (only the delta-seconds form; an HTTP date is rare
    from these providers and then the caller's own backoff applies)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def require_setting(config: ProviderConfig, name: str) -> str:
    """A non-empty string setting of ``config``, or ``NotConfiguredError`` naming it."""
    value = config.settings.get(name) if isinstance(config.settings, dict) else None
    if value is None or value == "":
        raise NotConfiguredError(f"the {config.get_kind_display()} provider {config.name!r} has no {name!r} setting")
    return str(value)


def require_secret(config: ProviderConfig, secrets: dict[str, str], name: str) -> str:
    value = secrets.get(name, "")
    if not value:
        raise NotConfiguredError(f"the {config.get_kind_display()} provider {config.name!r} has no {name!r} secret")
    return value
