"""Twilio's webhooks: message status callbacks and inbound messages (STOP/START).

Both are authenticated with ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the account's
auth token, of the full URL Twilio called followed by every POST parameter name and value sorted
by name (https://www.twilio.com/docs/usage/security#validating-requests). The URL must be the
public one: behind a proxy, set ``SECURE_PROXY_SSL_HEADER``/``USE_X_FORWARDED_HOST`` or the
config's ``webhook_base_url``. Like Twilio's own ``RequestValidator``, the URL is tried with and
without an explicit default port.

Views are thin: find the candidate configs, check the signature, hand the parameters to
``channels.services.sms``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..models import ProviderConfig
from ..secrets import SecretsUnreadableError, provider_config_secrets
from ..services.sms import sms_dispatch_for_callback, sms_inbound_record, sms_status_record, twilio_configs

SIGNATURE_HEADER = "HTTP_X_TWILIO_SIGNATURE"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twilio_signature(url: str, params: Mapping[str, Iterable[str]] | Mapping[str, str], auth_token: str) -> str:
    """The ``X-Twilio-Signature`` Twilio computes for a form POST to ``url``."""
    data = url
    for name in sorted(params):
        values = params[name]
        for value in sorted({values} if isinstance(values, str) else set(values)):
            data += name + value
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> set[str]:
    parts = urlsplit(url)
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    without = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    with_port = urlunsplit(
        (parts.scheme, f"{host}:{parts.port or default_port}", parts.path, parts.query, parts.fragment)
    )
    return {url, without, with_port}


def signature_is_valid(
    *, urls: Iterable[str], params: Mapping[str, list[str]], auth_token: str, signature: str
) -> bool:
    if not signature or not auth_token:
        return False
    for url in urls:
        for variant in _url_variants(url):
            if hmac.compare_digest(twilio_signature(variant, params, auth_token), signature):
                return True
    return False


def _candidate_urls(request: HttpRequest, config: ProviderConfig) -> list[str]:
    urls = [request.build_absolute_uri()]
    base = str((config.settings or {}).get("webhook_base_url") or "").rstrip("/")
    if base:
        urls.append(f"{base}{request.get_full_path()}")
    return urls


def authenticated_configs(request: HttpRequest, configs: list[ProviderConfig]) -> list[ProviderConfig]:
    """The configs whose auth token signed this request."""
    params = {key: request.POST.getlist(key) for key in request.POST}
    signature = request.META.get(SIGNATURE_HEADER, "")
    valid = []
    for config in configs:
        try:
            token = provider_config_secrets(config).get("auth_token", "")
        except SecretsUnreadableError:
            continue
        if signature_is_valid(
            urls=_candidate_urls(request, config), params=params, auth_token=token, signature=signature
        ):
            valid.append(config)
    return valid


def _flat(request: HttpRequest) -> dict[str, str]:
    return {key: request.POST.get(key, "") for key in request.POST}


@csrf_exempt
@require_POST
def status_callback(request: HttpRequest) -> HttpResponse:
    """``POST /channels/twilio/status?dispatch=<id>``: a message's status changed."""
    dispatch = sms_dispatch_for_callback(request.GET.get("dispatch", ""))
    if dispatch is None:
        return HttpResponse("unknown dispatch", status=404, content_type="text/plain")
    configs = twilio_configs(account_sid=request.POST.get("AccountSid", ""), workspace_ids=[dispatch.workspace_id])
    if not authenticated_configs(request, configs):
        return HttpResponse("invalid signature", status=403, content_type="text/plain")
    sms_status_record(dispatch=dispatch, params=_flat(request))
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def inbound(request: HttpRequest) -> HttpResponse:
    """``POST /channels/twilio/inbound``: someone texted one of our numbers (STOP, START…)."""
    configs = authenticated_configs(request, twilio_configs(account_sid=request.POST.get("AccountSid", "")))
    if not configs:
        return HttpResponse("invalid signature", status=403, content_type="text/plain")
    sms_inbound_record(configs=configs, params=_flat(request))
    # Twilio itself answers STOP/START/HELP; we add nothing.
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
