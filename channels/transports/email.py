"""Email: plain SMTP (Django's SMTP backend) or any ESP django-anymail supports.

Provider configs:

* ``smtp`` — settings ``host``, ``port`` (587), ``username``, ``use_tls`` (STARTTLS), ``use_ssl``,
  ``timeout`` (10 s), ``from_email``, ``from_name``, ``unsubscribe_mailto``; secret ``password``.
* ``anymail`` — settings ``esp`` (``postmark``, ``mailgun``, ``amazon_ses``, … any module of
  ``anymail.backends``), ``options`` (non-secret backend options, e.g. ``{"sender_domain": …}``),
  ``from_email``, ``from_name``, ``unsubscribe_mailto``; secrets are the backend's own credential
  names, passed to it as keyword arguments (``api_key``, ``server_token``, ``api_secret``, …).
* no config (``Dispatch.provider`` empty) — the deployment's ``EMAIL_BACKEND`` settings (the
  embedded run's local SMTP).

Every message carries anymail ``metadata`` ``{"dispatch_id": …, **dispatch.metadata}`` (and the
same dispatch id in an ``X-Engage-Dispatch-Id`` header, for SMTP), so provider webhooks find their
dispatch. Marketing email carries RFC 8058 one-click unsubscribe headers (``List-Unsubscribe`` with
the HTTPS link, and a mailto if configured, plus ``List-Unsubscribe-Post``); the link is
``content["unsubscribe_url"]``, else the person's hosted unsubscribe link.
"""

from __future__ import annotations

import importlib.util
import smtplib
import socket
from email.utils import formataddr, make_msgid
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils.html import escape, strip_tags

from ..models import ProviderKind
from ..secrets import provider_config_secrets
from .base import (
    NotConfiguredError,
    OutcomeUnknownError,
    PermanentError,
    ProfileEffect,
    SendResult,
    TransientError,
    require_setting,
)
from .email_wire import send_message

if TYPE_CHECKING:
    from django.core.mail.backends.base import BaseEmailBackend

    from ..models import Dispatch, ProviderConfig

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
DEFAULT_TIMEOUT = 10


def anymail_backend_path(esp: str) -> str:
    """``anymail.backends.<esp>.EmailBackend``, refusing names that are not anymail backends."""
    if not esp.replace("_", "").isalnum() or importlib.util.find_spec(f"anymail.backends.{esp}") is None:
        raise NotConfiguredError(f"{esp!r} is not an ESP django-anymail supports (see anymail.backends)")
    return f"anymail.backends.{esp}.EmailBackend"


class EmailTransport:
    def send(self, dispatch: Dispatch, config: ProviderConfig | None) -> SendResult:
        if dispatch.provider and config is None:
            raise NotConfiguredError(
                f"the workspace has no active {ProviderKind(dispatch.provider).label} provider for email"
            )
        connection, kind = self._connection(config)
        message = self._message(dispatch, config)
        # Opening (SMTP: connect, STARTTLS, login) sends nothing: any failure there but a refused
        # login is worth retrying. Once the message is on its way, a lost answer is not.
        try:
            connection.open()
        except Exception as error:
            raise classify_open_error(error) from error
        try:
            send_message(connection, message)
        except Exception as error:
            raise classify_send_error(error, kind) from error
        finally:
            connection.close()
        return SendResult(provider_message_id=self._message_id(message), raw=self._raw(message))

    # -- building --------------------------------------------------------------------------------

    def _connection(self, config: ProviderConfig | None) -> tuple[BaseEmailBackend, str]:
        if config is None:
            backend = get_connection(fail_silently=False)
            path = f"{type(backend).__module__}.{type(backend).__name__}"
            return backend, "anymail" if path.startswith("anymail.") else "smtp"
        options = config.settings or {}
        secrets = provider_config_secrets(config)
        if config.kind == ProviderKind.SMTP:
            port = int(options.get("port") or 587)
            return (
                get_connection(
                    SMTP_BACKEND,
                    fail_silently=False,
                    host=require_setting(config, "host"),
                    port=port,
                    username=options.get("username") or "",
                    password=secrets.get("password", ""),
                    use_tls=bool(options.get("use_tls", False)),
                    use_ssl=bool(options.get("use_ssl", False)),
                    timeout=int(options.get("timeout") or DEFAULT_TIMEOUT),
                ),
                "smtp",
            )
        if config.kind == ProviderKind.ANYMAIL:
            backend_path = anymail_backend_path(require_setting(config, "esp"))
            extra = options.get("options") or {}
            if not isinstance(extra, dict):
                raise NotConfiguredError("the 'options' setting must be an object of backend options")
            kwargs: dict[str, Any] = {**extra, **secrets}
            return get_connection(backend_path, fail_silently=False, **kwargs), "anymail"
        raise NotConfiguredError(f"a {config.get_kind_display()} provider cannot send email")

    def _message(self, dispatch: Dispatch, config: ProviderConfig | None) -> EmailMultiAlternatives:
        content = dispatch.content or {}
        options = (config.settings if config is not None else {}) or {}
        from_email = content.get("from_email") or options.get("from_email") or settings.DEFAULT_FROM_EMAIL
        from_name = content.get("from_name") or options.get("from_name") or ""
        sender = formataddr((from_name, from_email)) if from_name else from_email
        html = content.get("html") or ""
        text = content.get("text") or (strip_tags(html).strip() if html else "")
        preheader = content.get("preheader") or ""
        if html and preheader:
            html = with_preheader(html, preheader)

        domain = from_email.rsplit("@", 1)[-1].strip("> ") or "localhost"
        headers = {
            # Our own Message-ID: SMTP gives no provider id, so this is the one we keep.
            "Message-ID": make_msgid(idstring=dispatch.pk.hex[:16], domain=domain),
            "X-Engage-Dispatch-Id": str(dispatch.pk),
        }
        headers.update(unsubscribe_headers(dispatch, options))

        message = EmailMultiAlternatives(
            subject=content.get("subject") or "",
            body=text,
            from_email=sender,
            to=[dispatch.address],
            reply_to=[content["reply_to"]] if content.get("reply_to") else None,
            headers=headers,
        )
        if html:
            message.attach_alternative(html, "text/html")
        # anymail: ties the ESP's tracking webhooks back to this dispatch (flat str->str).
        message.metadata = {"dispatch_id": str(dispatch.pk), **(dispatch.metadata or {})}  # type: ignore[attr-defined]
        return message

    def _message_id(self, message: EmailMultiAlternatives) -> str:
        status = getattr(message, "anymail_status", None)
        if status is not None and status.message_id is not None:
            message_id = status.message_id
            if isinstance(message_id, set):  # one recipient: one id
                message_id = sorted(str(item) for item in message_id)[0] if message_id else ""
            return str(message_id)
        return str(message.extra_headers.get("Message-ID", ""))

    def _raw(self, message: EmailMultiAlternatives) -> dict[str, Any]:
        status = getattr(message, "anymail_status", None)
        if status is None:
            return {"message_id": message.extra_headers.get("Message-ID", "")}
        return {"status": sorted(status.status or []), "message_id": str(status.message_id)}


def with_preheader(html: str, preheader: str) -> str:
    """Put the preheader (the inbox preview line) first in the body, hidden when opened."""
    block = (
        '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;'
        f'overflow:hidden;mso-hide:all">{escape(preheader)}</div>'
    )
    lower = html.lower()
    start = lower.find("<body")
    if start != -1:
        end = lower.find(">", start)
        if end != -1:
            return html[: end + 1] + block + html[end + 1 :]
    return block + html


def unsubscribe_headers(dispatch: Dispatch, options: dict[str, Any]) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers; none for transactional mail without a link.

    Marketing email always has them: without a link of its own it gets the person's hosted
    unsubscribe link, and a marketing email that cannot have one is refused (Gmail and Yahoo
    require one-click unsubscribe for bulk mail).
    """
    content = dispatch.content or {}
    url = content.get("unsubscribe_url") or ""
    if not url and not dispatch.transactional:
        url = _hosted_unsubscribe_url(dispatch)
    if not url:
        return {}
    targets = [f"<{url}>"]
    mailto = options.get("unsubscribe_mailto") or ""
    if mailto:
        targets.append(f"<{mailto if mailto.startswith('mailto:') else 'mailto:' + mailto}>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def _hosted_unsubscribe_url(dispatch: Dispatch) -> str:
    try:
        from ..services.preferences import unsubscribe_url
    except ImportError as error:  # pragma: no cover - the hosted pages ship with the channels app
        raise PermanentError(
            "missing_unsubscribe_url", "marketing email needs an unsubscribe link and none is available"
        ) from error
    return unsubscribe_url(dispatch.profile, "email")


# --- errors -------------------------------------------------------------------------------------


def classify_open_error(error: Exception) -> Exception:
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return PermanentError("auth_failed", f"SMTP login refused: {_smtp_reply(error.smtp_code, error.smtp_error)}")
    if isinstance(error, TransientError | PermanentError):
        return error
    return TransientError(f"cannot connect to the mail server: {type(error).__name__}: {error}", code="connect_failed")


def classify_send_error(error: Exception, kind: str) -> Exception:
    """A transport error (``TransientError``/``PermanentError``) for what the backend raised."""
    if isinstance(error, TransientError | PermanentError):
        return error
    if kind == "anymail" or type(error).__module__.startswith("anymail"):
        return _classify_anymail(error)
    return _classify_smtp(error)


def _smtp_reply(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"{code} {text}".strip()


def _classify_smtp(error: Exception) -> Exception:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()), (550, b"recipient refused"))
        if 400 <= code < 500:
            return TransientError(f"the SMTP server deferred the recipient: {_smtp_reply(code, reply)}", code=str(code))
        return PermanentError(
            str(code),
            f"the SMTP server refused the recipient: {_smtp_reply(code, reply)}",
            effect=ProfileEffect.ADDRESS_REJECTED,
        )
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return PermanentError("auth_failed", f"SMTP login refused: {_smtp_reply(error.smtp_code, error.smtp_error)}")
    if isinstance(error, smtplib.SMTPSenderRefused):
        if 400 <= error.smtp_code < 500:
            return TransientError(f"sender deferred: {_smtp_reply(error.smtp_code, error.smtp_error)}")
        return PermanentError(
            "sender_refused", f"the SMTP server refused the sender: {_smtp_reply(error.smtp_code, error.smtp_error)}"
        )
    if isinstance(error, smtplib.SMTPDataError):
        if 400 <= error.smtp_code < 500:
            return TransientError(f"message deferred: {_smtp_reply(error.smtp_code, error.smtp_error)}")
        return PermanentError(
            str(error.smtp_code),
            f"the SMTP server refused the message: {_smtp_reply(error.smtp_code, error.smtp_error)}",
        )
    if isinstance(error, smtplib.SMTPConnectError | ConnectionRefusedError | socket.gaierror):
        return TransientError(f"cannot connect to the SMTP server: {error}", code="connect_failed")
    if isinstance(error, smtplib.SMTPServerDisconnected | TimeoutError | ConnectionError):
        # The connection may have died after the server took the message.
        return OutcomeUnknownError(f"the SMTP connection failed mid-send ({type(error).__name__}: {error})")
    if isinstance(error, smtplib.SMTPResponseException):
        smtp_code = error.smtp_code
        smtp_reply = _smtp_reply(smtp_code, error.smtp_error)
        if 400 <= smtp_code < 500:
            return TransientError(f"SMTP temporary failure: {smtp_reply}", code=str(smtp_code))
        return PermanentError(str(smtp_code), f"SMTP error: {smtp_reply}")
    if isinstance(error, OSError):
        return TransientError(f"cannot reach the SMTP server: {error}", code="connect_failed")
    return error


def _classify_anymail(error: Exception) -> Exception:
    from anymail.exceptions import (
        AnymailAPIError,
        AnymailError,
        AnymailInvalidAddress,
        AnymailRecipientsRefused,
    )

    if isinstance(error, AnymailRecipientsRefused):
        return PermanentError(
            "rejected", f"the ESP refused the recipient: {error}", effect=ProfileEffect.ADDRESS_REJECTED
        )
    if isinstance(error, AnymailInvalidAddress):
        return PermanentError("invalid_address", str(error), effect=ProfileEffect.ADDRESS_REJECTED)
    if isinstance(error, AnymailAPIError):
        status = error.status_code
        if status is None:
            if _is_connect_failure(error):
                return TransientError(f"cannot reach the ESP: {error}", code="connect_failed")
            return OutcomeUnknownError(f"the ESP call failed without an answer ({error})")
        if status == 429 or status >= 500:
            return TransientError(f"the ESP answered {status}: {error}", code=str(status))
        return PermanentError(str(status), f"the ESP refused the message: {error}")
    if isinstance(error, AnymailError):
        return PermanentError("esp_error", str(error))
    return error


def _is_connect_failure(error: Exception) -> bool:
    """Whether a requests-based failure happened before the request was sent."""
    try:
        import requests
    except ImportError:  # pragma: no cover - anymail depends on requests
        return False
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    connection_error = isinstance(error, requests.exceptions.ConnectionError)
    if connection_error and not isinstance(error, requests.exceptions.ReadTimeout):
        text = repr(error.args)
        return "NewConnectionError" in text or "Connection refused" in text or "Name or service" in text
    return False
