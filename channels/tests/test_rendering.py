from __future__ import annotations

from typing import Any

import pytest

from channels.rendering import Aborted, RenderFailed, preprocess, preview_content, render_content, validate_template
from profiles.models import Profile, Workspace
from profiles.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def jane(workspace: Workspace) -> Profile:
    profile: Profile = ProfileFactory(
        workspace=workspace,
        external_id="jane-1",
        first_name="Jane",
        email="jane@example.com",
        city="Lyon",
        country="FR",
        custom_attributes={"plan": "gold", "favorite color": "teal", "balance": 12},
    )
    return profile


def test_profile_event_and_campaign_variables_in_every_text_field(jane: Profile) -> None:
    template = {
        "subject": "Hi {{ first_name }}, your {{ event_properties.product }} is waiting",
        "html": "<p>{{ custom_attributes.plan | upcase }} member in {{ city }}</p>",
        "text": "Campaign {{ campaign.name }} ({{ campaign.variant }}) code {{ api_trigger_properties.coupon }}",
        "from_name": "{{ campaign.name }} team",
    }
    rendered = render_content(
        channel="email",
        template=template,
        profile=jane,
        event_properties={"product": "blue shoes"},
        api_trigger_properties={"coupon": "SAVE10"},
        campaign={"id": 7, "name": "Spring", "variant": "A"},
    )
    assert rendered == {
        "subject": "Hi Jane, your blue shoes is waiting",
        "html": "<p>GOLD member in Lyon</p>",
        "text": "Campaign Spring (A) code SAVE10",
        "from_name": "Spring team",
    }


def test_braze_dollar_brace_spellings(jane: Profile) -> None:
    template = {
        "body": (
            "{{${first_name}}} likes {{custom_attribute.${favorite color}}}, "
            "plan {{custom_attribute.${plan}}}, bought {{event_properties.${product}}} ${not_liquid}"
        )
    }
    rendered = render_content(channel="sms", template=template, profile=jane, event_properties={"product": "hat"})
    assert rendered == {"body": "Jane likes teal, plan gold, bought hat ${not_liquid}"}


def test_preprocess_leaves_text_outside_liquid_alone() -> None:
    assert preprocess("cost: ${price} {{${first_name}}}") == "cost: ${price} {{first_name}}"


@pytest.mark.parametrize("first_name", ["", "   "])
def test_default_filter_covers_missing_and_blank_values(workspace: Workspace, first_name: str) -> None:
    profile = ProfileFactory(workspace=workspace, first_name=first_name)
    template = {"body": "Hi {{ first_name | default: 'there' }} {{ nickname | default: 'friend' }}"}
    assert render_content(channel="sms", template=template, profile=profile) == {"body": "Hi there friend"}


def test_missing_values_render_empty(jane: Profile) -> None:
    rendered = render_content(
        channel="sms", template={"body": "[{{ last_name }}{{ custom_attributes.nope }}]"}, profile=jane
    )
    assert rendered == {"body": "[]"}


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("{% abort_message %}", "aborted by the template"),
        ("{% abort_message 'no balance' %}", "no balance"),
        ('{% abort_message "no balance" %}', "no balance"),
        ("{% abort_message('no balance') %}", "no balance"),
        ("{% abort_message() %}", "aborted by the template"),
    ],
)
def test_abort_message_cancels_for_that_person(workspace: Workspace, tag: str, reason: str) -> None:
    template = {
        "body": "{% if custom_attributes.balance == blank %}"
        + tag
        + "{% endif %}Balance {{ custom_attributes.balance }}"
    }
    broke = ProfileFactory(workspace=workspace, custom_attributes={})
    rich = ProfileFactory(workspace=workspace, custom_attributes={"balance": 5})
    assert render_content(channel="sms", template=template, profile=broke) == Aborted(reason)
    assert render_content(channel="sms", template=template, profile=rich) == {"body": "Balance 5"}


def test_links_are_signed_urls_for_the_person(jane: Profile, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://engage.example.com"
    rendered = render_content(
        channel="email",
        template={"subject": "x", "text": "{{ unsubscribe_url }} | {{ preferences_url }}"},
        profile=jane,
    )
    assert isinstance(rendered, dict)
    unsubscribe, preferences = rendered["text"].split(" | ")
    assert unsubscribe.startswith("https://engage.example.com/unsubscribe/")
    assert preferences.startswith("https://engage.example.com/preferences/")


def test_caller_links_and_extra_variables(jane: Profile) -> None:
    rendered = render_content(
        channel="sms",
        template={"body": "{{ unsubscribe_url }} {{ message.name }} {{ first_name }}"},
        profile=jane,
        links={"unsubscribe_url": "https://x.test/u"},
        extra={"message": {"name": "Welcome"}, "first_name": "not me"},
    )
    assert rendered == {"body": "https://x.test/u Welcome Jane"}


def test_html_body_escapes_values_but_not_the_template(workspace: Workspace) -> None:
    profile = ProfileFactory(workspace=workspace, first_name='<a href="https://evil.test">click</a>')
    rendered = render_content(
        channel="email", template={"subject": "Hi {{ first_name }}", "html": "<b>{{ first_name }}</b>"}, profile=profile
    )
    assert isinstance(rendered, dict)
    assert rendered["html"] == "<b>&lt;a href=&#34;https://evil.test&#34;&gt;click&lt;/a&gt;</b>"
    assert rendered["subject"] == 'Hi <a href="https://evil.test">click</a>'


def test_nested_fields_buttons_and_key_values_are_rendered(jane: Profile) -> None:
    template = {
        "layout": "modal",
        "header": "Hello {{ first_name }}",
        "body": "Your plan: {{ custom_attributes.plan }}",
        "buttons": [
            {"text": "Upgrade {{ first_name }}", "action": "open_url", "url": "https://shop.test/{{ external_id }}"},
            {"text": "Later", "action": "close"},
        ],
        "extras": {"segment": "{{ custom_attributes.plan }}"},
        "trigger": "{{ not rendered }}",
    }
    rendered = render_content(channel="in_app", template=template, profile=jane)
    assert isinstance(rendered, dict)
    assert rendered["buttons"][0] == {"text": "Upgrade Jane", "action": "open_url", "url": "https://shop.test/jane-1"}
    assert rendered["extras"] == {"segment": "gold"}
    assert rendered["trigger"] == "{{ not rendered }}"  # matched against event names, never personalised


def test_a_runtime_error_is_a_failure_naming_the_field(jane: Profile) -> None:
    result = render_content(
        channel="sms", template={"body": "{{ 10 | divided_by: custom_attributes.zero }}"}, profile=jane
    )
    assert isinstance(result, RenderFailed)
    assert result.field == "body"
    assert "divide by 0" in result.reason


def test_loops_are_bounded(jane: Profile) -> None:
    result = render_content(
        channel="sms", template={"body": "{% for i in (1..100000000) %}{{ i }}{% endfor %}"}, profile=jane
    )
    assert isinstance(result, RenderFailed)
    assert "limit" in result.message


def test_no_file_system_access_through_partials() -> None:
    errors = validate_template("sms", {"body": "{% include '/etc/passwd' %}{% render 'x' %}"})
    assert errors and errors[0][0] == "body"
    assert "include" in errors[0][1]


def test_validate_template_names_the_field_of_a_parse_error() -> None:
    errors = validate_template(
        "in_app",
        {
            "layout": "modal",
            "body": "fine {{ first_name }}",
            "buttons": [{"text": "Go", "action": "open_url", "url": "https://x.test/{% if %}"}],
        },
    )
    assert errors == [("buttons[0].url", "missing expression (line 1)")]


def test_validate_template_refuses_unknown_filters_and_bad_abort() -> None:
    errors = validate_template("sms", {"body": "line\n{{ first_name | shout }}"})
    assert errors == [("body", "unknown filter 'shout' (line 2)")]
    errors = validate_template("sms", {"body": "{% abort_message reason %}"})
    assert errors and "abort_message takes an optional quoted reason" in errors[0][1]


def test_validate_template_accepts_good_templates_and_checks_structure() -> None:
    assert validate_template("sms", {"body": "Hi {{ first_name | default: 'there' }}"}) == []
    assert validate_template("email", {"subject": "x"}) == [("html", "an email needs an html or a text body")]
    assert validate_template("fax", {}) == [
        ("channel", "must be one of email, push, webpush, sms, webhook, in_app, content_card")
    ]


def test_preview_renders_for_the_person_and_checks_the_result(jane: Profile) -> None:
    preview = preview_content(
        channel="push",
        template={"title": "Hi {{ first_name }}", "body": "Your {{ event_properties.product }}"},
        profile=jane,
        event_properties={"product": "hat"},
    )
    assert preview.ok
    assert preview.content == {"title": "Hi Jane", "body": "Your hat"}


def test_preview_reports_template_errors_aborts_and_rule_breaks(jane: Profile) -> None:
    assert preview_content(channel="sms", template={"body": "{% if %}"}, profile=jane).errors == (
        ("body", "missing expression (line 1)"),
    )
    aborted = preview_content(channel="sms", template={"body": "{% abort_message 'nope' %}"}, profile=jane)
    assert aborted.aborted == "nope" and aborted.content is None
    # Renders, but the result is empty where the channel needs a value.
    empty = preview_content(channel="sms", template={"body": "{{ custom_attributes.missing }}"}, profile=jane)
    assert not empty.ok
    assert empty.content == {"body": ""}
    assert empty.errors == (("body", "is required"),)


PLAIN_TEMPLATES = [
    "Hi {{ first_name }}",
    "Hi {{first_name|default:'there'}}, from {{ city | default: \"your town\" }}!",
    "{{ custom_attributes.plan }} / {{ custom_attributes.balance }} / {{ custom_attributes.missing.deeper }}",
    "{{ custom_attribute.${favorite color} | default: 'none' }} and {{${first_name}}}",
    "Campaign {{ campaign.name }} #{{ campaign.id }} {{ campaign.tags }}",
    "{{ event_properties.product | default: 'it' }} {{ api_trigger_properties.coupon }}",
    "{{ unsubscribe_url }} {{ preferences_url }}",
    "{{ nil }}{{ true }} {{ empty | default: 'x' }}",
    "{{ first_name.size }} {{ custom_attributes.tags.first }}",
    "{{- first_name -}} {% if city %}in {{ city }}{% endif %} {# note #}",
    "{{ first_name | default: 'x' | upcase }} {{ first_name | upcase }}",
    "Literal }} and { braces {{ last_name | default: 'Doe' }}",
]
PEOPLE = [
    {
        "first_name": "Jane",
        "city": "Lyon",
        "custom_attributes": {"plan": "gold", "balance": 12, "favorite color": "teal"},
    },
    {"first_name": "   ", "city": "", "custom_attributes": {"plan": None, "balance": 1.5, "tags": ["a", "b"]}},
    {"first_name": "", "last_name": "", "custom_attributes": {"balance": True, "missing": {"deeper": "found"}}},
]


@pytest.mark.parametrize("fields", PEOPLE)
def test_plain_templates_render_as_liquid_renders_them(workspace: Workspace, fields: dict[str, Any]) -> None:
    """Plain text-and-output templates skip Liquid; the result must be Liquid's, field by field."""
    from channels import rendering

    person = Profile.objects.create(workspace=workspace, external_id="p", email="p@example.com", **fields)
    context: dict[str, Any] = {
        "profile": person,
        "event_properties": {"product": "shoes"},
        "api_trigger_properties": {"coupon": ""},
        "campaign": {"id": 7, "name": "Sale", "tags": ["a"]},
    }
    for source in PLAIN_TEMPLATES:
        fast = render_content(channel="push", template={"title": source, "body": "x"}, **context)
        liquid = rendering._parse(source, False).render(**rendering.template_variables(**context))
        assert isinstance(fast, dict) and fast["title"] == liquid, source


def test_the_plain_path_takes_plain_templates_only() -> None:
    from channels.rendering import _simple_pieces

    assert _simple_pieces("Hi {{ first_name | default: 'there' }}!") == ("Hi ", (("first_name",), "there"), "!")
    assert _simple_pieces("{{ a.b-c }}") == ((("a", "b-c"), None),)
    liquid_only = ("{% if a %}x{% endif %}", "{{ a | upcase }}", "{{- a }}", "{{ true }}", "{# c #}", "{{ a['b'] }}")
    for liquid in (*liquid_only, "{{ a | default: 'x\\y' }}"):
        assert _simple_pieces(liquid) is None, liquid
