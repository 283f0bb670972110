"""Personalisation: Liquid in every text field of a message, rendered for one person.

Templates use Shopify Liquid (``python-liquid``) with Braze's spellings accepted as well::

    Hi {{ first_name | default: 'there' }}            Hi {{${first_name} | default: 'there'}}
    {{ custom_attributes.plan }}                      {{custom_attribute.${plan}}}
    {{ event_properties.product }}                    {{event_properties.${product}}}
    {{ api_trigger_properties.coupon }}               {{api_trigger_properties.${coupon}}}
    {{ campaign.name }}  {{ unsubscribe_url }}  {{ preferences_url }}
    {% if custom_attributes.balance == blank %}{% abort_message 'no balance' %}{% endif %}

``${name}`` inside Liquid markup is rewritten to ``name`` before parsing (``.${favorite color}``
to ``["favorite color"]``). The ``default`` filter also replaces whitespace-only text, as Braze's
does. ``{% abort_message %}`` / ``{% abort_message 'reason' %}`` / ``{% abort_message('reason') %}``
cancels the message for that person: ``render_content`` returns ``Aborted(reason)``.

The environment is a sandbox: no loader (``include``/``render`` are not tags here, so templates
never touch the file system), bounded loops, output and local variables. A template that does not
parse is refused when it is saved (``validate_template``); one that fails for a person returns a
``RenderFailed`` naming the field, which the caller records as that person's failed send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TextIO

from liquid import BoundTemplate, Environment, Node, RenderContext, Tag, TokenStream, is_undefined
from liquid.builtin.filters.misc import default as liquid_default
from liquid.exceptions import LiquidError, LiquidSyntaxError
from liquid.token import TOKEN_EXPRESSION, TOKEN_TAG

from profiles.models import Profile

from .content import content_check_rendered, content_validate, map_liquid_fields
from .models import Channel
from .services.preferences import preferences_url, unsubscribe_url

# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aborted:
    """The template cancelled the message for this person (``{% abort_message %}``)."""

    reason: str


@dataclass(frozen=True)
class RenderFailed:
    """The template could not be rendered for this person (a filter error, a limit reached)."""

    field: str
    message: str

    @property
    def reason(self) -> str:
        return f"{self.field}: {self.message}"


RenderResult = dict[str, Any] | Aborted | RenderFailed


# --- the sandboxed environment ------------------------------------------------------------------


class _AbortMessage(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_ABORT_ARGUMENT_RE = re.compile(r"""^\s*\(?\s*(?:'([^']*)'|"([^"]*)")?\s*\)?\s*$""")


class AbortMessageNode(Node):
    __slots__ = ("reason",)

    def __init__(self, token: Any, reason: str) -> None:
        super().__init__(token)
        self.reason = reason
        self.blank = False

    def __str__(self) -> str:
        return f"{{% abort_message {self.reason!r} %}}"

    def render_to_output(self, context: RenderContext, buffer: TextIO) -> int:
        raise _AbortMessage(self.reason)


class AbortMessageTag(Tag):
    """``{% abort_message %}``, ``{% abort_message 'reason' %}`` or Braze's ``abort_message('reason')``."""

    name = "abort_message"
    block = False

    def parse(self, stream: TokenStream) -> Node:
        token = stream.expect(TOKEN_TAG, value=self.name)
        reason = ""
        if stream.peek.kind == TOKEN_EXPRESSION:
            next(stream)  # the parser steps over the expression token after this returns
            match = _ABORT_ARGUMENT_RE.match(stream.current.value)
            if match is None:
                raise LiquidSyntaxError(
                    "abort_message takes an optional quoted reason: {% abort_message 'reason' %}",
                    token=stream.current,
                )
            reason = match.group(1) if match.group(1) is not None else (match.group(2) or "")
        return AbortMessageNode(token, reason)


def _default(obj: Any, default_: object = "", *, allow_false: bool = False) -> Any:
    """Liquid's ``default``, also for whitespace-only text (Braze: "blank or missing")."""
    if isinstance(obj, str) and not obj.strip():
        return default_
    return liquid_default(obj, default_, allow_false=allow_false)


def _install_blank_semantics() -> None:
    """Make a missing or null value equal ``blank``, as in Braze (Liquid on Rails, where
    ``nil.blank?`` is true): ``{% if custom_attribute.${plan} == blank %}{% abort_message %}`` is
    the common way to skip people without a value. python-liquid compares undefined to ``blank``
    as false; its equality helper is module-level, so it is wrapped once at import (this process
    renders Liquid nowhere else)."""
    from liquid.builtin.expressions import logical
    from liquid.builtin.expressions.primitive import Blank

    original = logical._eq
    if getattr(original, "_engage_blank", False):
        return

    def _eq(left: object, right: object) -> bool:
        if isinstance(right, Blank) and (left is None or is_undefined(left)):
            return True
        if isinstance(left, Blank) and (right is None or is_undefined(right)):
            return True
        return bool(original(left, right))

    _eq._engage_blank = True  # type: ignore[attr-defined]
    logical._eq = _eq


_install_blank_semantics()


class SandboxEnvironment(Environment):
    # Bounds on what one person's render may cost: a template from the editor runs for every
    # recipient of a send, inside a worker.
    loop_iteration_limit = 10_000
    output_stream_limit = 1_000_000  # bytes per field; an HTML email stays well below
    local_namespace_limit = 1_000_000
    context_depth_limit = 20

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=False)
        # No partials: there is no loader and templates must never read files.
        for tag in ("include", "render"):
            self.tags.pop(tag, None)
        self.add_tag(AbortMessageTag)
        self.add_filter("default", _default)


_TEXT_ENV = SandboxEnvironment()
# HTML bodies escape what they print, so a name like "<a href=...>" cannot inject markup into an
# email; the template's own markup is left as written.
_HTML_ENV = SandboxEnvironment(autoescape=True)

# Braze's ${name} references, inside {{ ... }} and {% ... %} only (literal text may contain "${").
_MARKUP_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_BRAZE_REF_RE = re.compile(r"(\.?)\$\{\s*([^}]*?)\s*\}")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][\w-]*$")


def _braze_ref(match: re.Match[str]) -> str:
    dot, name = match.group(1), match.group(2)
    if _IDENTIFIER_RE.match(name):
        return f"{dot}{name}"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'["{quoted}"]'


def preprocess(source: str) -> str:
    """Rewrite Braze's ``${name}`` references into plain Liquid names."""
    if "${" not in source:
        return source
    return _MARKUP_RE.sub(lambda markup: _BRAZE_REF_RE.sub(_braze_ref, markup.group(0)), source)


@lru_cache(maxsize=1024)
def _parse(source: str, html: bool) -> BoundTemplate:
    """Parsed once per process and reused for every recipient (a BoundTemplate keeps no render state)."""
    return (_HTML_ENV if html else _TEXT_ENV).from_string(preprocess(source))


def _is_html(channel: str, path: str) -> bool:
    return channel == Channel.EMAIL and path == "html"


def _error_text(error: Exception) -> str:
    if isinstance(error, LiquidError):
        message = str(error.message or type(error).__name__)
        token = error.token
        if token is not None and token.start_index >= 0 and token.source:
            line = token.source.count("\n", 0, token.start_index) + 1
            return f"{message} (line {line})"
        return message
    return f"{type(error).__name__}: {error}"


# --- the variables ------------------------------------------------------------------------------


def profile_variables(profile: Profile) -> dict[str, Any]:
    """What a template sees of a person, by the names a marketer types (ours and Braze's)."""
    dob = profile.date_of_birth.isoformat() if profile.date_of_birth else ""
    custom = dict(profile.custom_attributes or {})
    return {
        "user_id": profile.external_id or "",
        "external_id": profile.external_id or "",
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "email": profile.email,
        "email_address": profile.email,
        "phone": profile.phone,
        "phone_number": profile.phone,
        "gender": profile.gender,
        "date_of_birth": dob,
        "language": profile.language,
        "locale": profile.locale,
        "most_recent_locale": profile.locale,
        "country": profile.country,
        "region": profile.region,
        "city": profile.city,
        "time_zone": profile.time_zone,
        "random_bucket": profile.random_bucket,
        "random_bucket_number": profile.random_bucket,
        "subscribed_state": {
            "email_global": profile.email_subscription,
            "push_global": profile.push_subscription,
            "sms_global": profile.sms_subscription,
        },
        "custom_attributes": custom,
        "custom_attribute": custom,  # Braze's spelling
    }


def template_variables(
    *,
    profile: Profile,
    event_properties: Mapping[str, Any] | None = None,
    api_trigger_properties: Mapping[str, Any] | None = None,
    campaign: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return _Variables(
        profile=profile,
        event_properties=event_properties,
        api_trigger_properties=api_trigger_properties,
        campaign=campaign,
        extra=extra,
        links=links,
    ).complete()


class _Variables:
    """A template's variables, with the person's signed links made only when a template asks for
    them (signing is most of the cost of the variables, and many messages use one link or none).
    ``complete()`` is what ``template_variables`` returns: the links, then the caller's ``links``
    over them, then ``extra`` under everything."""

    def __init__(
        self,
        *,
        profile: Profile,
        event_properties: Mapping[str, Any] | None,
        api_trigger_properties: Mapping[str, Any] | None,
        campaign: Mapping[str, Any] | None,
        extra: Mapping[str, Any] | None,
        links: Mapping[str, str] | None,
    ) -> None:
        self.profile = profile
        self.links = dict(links or {})
        values = profile_variables(profile)
        values["event_properties"] = dict(event_properties or {})
        values["api_trigger_properties"] = dict(api_trigger_properties or {})
        values["campaign"] = dict(campaign or {})
        values.update(self.links)
        # Caller-provided names (message metadata, a canvas step...) never hide the person's own.
        for key, value in (extra or {}).items():
            values.setdefault(key, value)
        self.values = values
        # The hosted links still to make (none without a saved person, none the caller gave).
        self.pending = set() if profile.pk is None else {name for name in _HOSTED_LINKS if name not in self.links}

    def _link(self, name: str) -> None:
        self.pending.discard(name)
        if name == "unsubscribe_url":
            self.values[name] = unsubscribe_url(self.profile, "email")
        else:
            self.values[name] = preferences_url(self.profile)

    def complete(self) -> dict[str, Any]:
        for name in sorted(self.pending):
            self._link(name)
        return self.values

    def get(self, name: str) -> Any:
        if name in self.pending:
            self._link(name)
        return self.values.get(name)


_HOSTED_LINKS = frozenset({"unsubscribe_url", "preferences_url"})


# --- plain templates without Liquid ---------------------------------------------------------------

# Most personalisation is literal text and outputs like {{ first_name | default: 'there' }}. Such a
# template is rendered here by string joining, with Liquid's result, at a fraction of Liquid's cost
# per recipient (a context, a render stack, an output stream per field). Anything else (tags, other
# filters, whitespace control, keywords, escapes, values that are not text or whole numbers) goes
# to Liquid. channels/tests/test_rendering.py compares the two.
_SIMPLE_OUTPUT = re.compile(
    r"\{\{\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*)\s*"
    r"(?:\|\s*default\s*:\s*(?:'([^'\\]*)'|\"([^\"\\]*)\")\s*)?\}\}"
)
_LIQUID_WORDS = frozenset({"true", "false", "nil", "null", "empty", "blank"})
_SIMPLE_OUTPUT_LIMIT = SandboxEnvironment.output_stream_limit // 4
_Output = tuple[tuple[str, ...], str | None]  # (path, default)


def _has_markup(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


@lru_cache(maxsize=1024)
def _simple_pieces(source: str) -> tuple[str | _Output, ...] | None:
    """``source`` as literal text and plain outputs, or None when it needs Liquid."""
    text = preprocess(source)
    pieces: list[str | _Output] = []
    position = 0
    for match in _SIMPLE_OUTPUT.finditer(text):
        literal = text[position : match.start()]
        if _has_markup(literal):
            return None
        if literal:
            pieces.append(literal)
        path = tuple(match.group(1).split("."))
        if path[0] in _LIQUID_WORDS:
            return None
        pieces.append((path, match.group(2) if match.group(2) is not None else match.group(3)))
        position = match.end()
    rest = text[position:]
    if _has_markup(rest):
        return None
    if rest:
        pieces.append(rest)
    return tuple(pieces)


def _simple_render(pieces: tuple[str | _Output, ...], variables: _Variables) -> str | None:
    """The pieces rendered as Liquid would, or None when a value needs Liquid's own rules."""
    out: list[str] = []
    size = 0
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            size += len(piece)
            continue
        path, default = piece
        value = variables.get(path[0])
        for key in path[1:]:
            if value is None:
                break
            if not isinstance(value, dict):
                return None  # a list's .size, a string's .first...: Liquid's
            value = value.get(key)
        if isinstance(value, str):
            if default is not None and not value.strip():
                value = default  # our "default" also replaces blank text (Braze)
        elif value is None:
            value = "" if default is None else default
        elif isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        else:
            return None
        out.append(value)
        size += len(value)
    if size > _SIMPLE_OUTPUT_LIMIT:
        return None  # near the output limit: Liquid says whether it is over
    return "".join(out)


# --- rendering ----------------------------------------------------------------------------------


def render_content(
    *,
    channel: str,
    template: Mapping[str, Any],
    profile: Profile,
    event_properties: Mapping[str, Any] | None = None,
    api_trigger_properties: Mapping[str, Any] | None = None,
    campaign: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
) -> RenderResult:
    """Render every Liquid field of ``template`` for ``profile``.

    Returns the rendered content (same shape as the template), ``Aborted(reason)`` when the
    template cancels the message for this person, or ``RenderFailed(field, message)`` when a field
    cannot be rendered (the caller records a failed send with ``.reason``). Never raises for a
    template problem; a template that does not parse (it should have been refused when saved)
    comes back as ``RenderFailed`` too.
    """
    variables = _Variables(
        profile=profile,
        event_properties=event_properties,
        api_trigger_properties=api_trigger_properties,
        campaign=campaign,
        extra=extra,
        links=links,
    )
    failure: list[RenderFailed] = []

    def render(path: str, source: str) -> str:
        if failure or ("{" not in source):
            return source
        html = _is_html(channel, path)
        if not html:  # HTML escapes what it prints: Liquid's
            pieces = _simple_pieces(source)
            if pieces is not None:
                text = _simple_render(pieces, variables)
                if text is not None:
                    return text
        try:
            return _parse(source, html).render(**variables.complete())
        except _AbortMessage:
            raise
        except Exception as error:  # one person's failure is recorded as theirs, not raised
            failure.append(RenderFailed(field=path, message=_error_text(error)))
            return source

    try:
        rendered = map_liquid_fields(channel, template, render)
    except _AbortMessage as abort:
        return Aborted(reason=abort.reason or "aborted by the template")
    if failure:
        return failure[0]
    return rendered


def validate_template(channel: str, template: Any) -> list[tuple[str, str]]:
    """Everything wrong with a template before it is saved: its structure (see
    ``channels.content``) and every Liquid field that does not parse. Empty means it may be saved."""
    errors = content_validate(channel=channel, content=template)
    if not isinstance(template, dict) or any(field == "channel" for field, _ in errors):
        return errors

    def check(path: str, source: str) -> str:
        if "{" in source:
            try:
                parsed = _parse(source, _is_html(channel, path))
            except LiquidError as error:
                errors.append((path, _error_text(error)))
                return source
            # Filters are looked up when they run; a misspelt one would fail every recipient.
            for name, spans in parsed.analyze().filters.items():
                if name not in parsed.env.filters:
                    line = source.count("\n", 0, spans[0].index) + 1 if spans else 1
                    errors.append((path, f"unknown filter {name!r} (line {line})"))
        return source

    map_liquid_fields(channel, template, check)
    return errors


# --- preview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """A message rendered for one real person, for a marketer to look at before sending.

    ``aborted`` is the reason the template cancelled the message for this person. ``errors`` are
    ``(field, message)`` pairs: the template does not parse or a field fails for this person (then
    there is no ``content``), or the rendered ``content`` breaks a channel rule, such as an empty
    required field or a card over 2 KB (then both are set, so the marketer sees what went wrong).
    """

    content: dict[str, Any] | None = None
    aborted: str | None = None
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.content is not None and not self.errors


def preview_content(
    *,
    channel: str,
    template: Any,
    profile: Profile,
    event_properties: Mapping[str, Any] | None = None,
    api_trigger_properties: Mapping[str, Any] | None = None,
    campaign: Mapping[str, Any] | None = None,
) -> Preview:
    """Validate ``template`` and render it for ``profile`` as a send would (same variables, same
    links, same checks on the result). Nothing is sent or stored."""
    errors = validate_template(channel, template)
    if errors:
        return Preview(errors=tuple(errors))
    result = render_content(
        channel=channel,
        template=template,
        profile=profile,
        event_properties=event_properties,
        api_trigger_properties=api_trigger_properties,
        campaign=campaign,
    )
    if isinstance(result, Aborted):
        return Preview(aborted=result.reason)
    if isinstance(result, RenderFailed):
        return Preview(errors=((result.field, result.message),))
    problems = content_check_rendered(channel=channel, content=result)
    return Preview(content=result, errors=tuple(problems))
