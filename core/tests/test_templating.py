"""The bounded message template language (DESIGN.md, Message template language)."""

import pytest
from django.template.base import Lexer
from django.utils import translation

from core.services.mail.templates import (
    MessageTooLarge,
    message_context,
    message_render,
)
from core.templating import (
    MAX_IF_DEPTH,
    MAX_SOURCE,
    MAX_VARIABLES,
    template_error,
    template_unsafe,
)


@pytest.fixture(autouse=True)
def _english():
    with translation.override("en"):
        yield


class Part:
    def __init__(self, subject="s", body="", html_body=""):
        self.subject, self.body, self.html_body = subject, body, html_body


class Person:
    full_name = "Ольга Смирнова"
    email = "olga@example.com"


def render(body, **context):
    context = message_context(client=Person(), **context)
    return message_render(message=Part(body=body), context=context)[1]


@pytest.mark.parametrize(
    "source",
    [
        "Hello {{ client.full_name }}, {{ client.email }}",
        '{{ client.full_name|default:"friend" }}',
        "{{ client.attributes.city }} {{ mailing.title }}",
        "{{ unsubscribe_url }} {{ preferences_url }}",
        "{% if client.full_name %}a{% elif client.email %}b{% else %}c{% endif %}",
        '{% if not client.full_name or client.email == "x@y.z" %}d{% endif %}',
        "{# a comment #}plain text with { single } braces",
    ],
)
def test_the_language_as_described_is_accepted(source):
    assert template_error(source) == ""


def test_nested_loops_over_a_padded_string_are_refused_with_the_line():
    source = (
        "Hello\n{% for a in 'x'|ljust:'2000' %}{% for b in a %}{% endfor %}{% endfor %}"
    )
    error = template_error(source)
    assert error.startswith("Line 2:") and "{% for %}" in error


def test_a_filter_that_allocates_is_refused_by_name():
    error = template_error("{{ 'x'|ljust:'300000000' }}")
    assert error.startswith("Line 1:") and "ljust" in error
    assert template_unsafe("{{ 'x'|ljust:'300000000' }}")


@pytest.mark.parametrize(
    "tag",
    [
        "load static",
        'include "core/base.html"',
        "extends 'x'",
        "now 'Y'",
        "with a=1",
        "cycle 'a' 'b'",
        "widthratio 1 1 300000000",
        "comment",
    ],
)
def test_every_other_tag_is_refused(tag):
    assert "is not part of the message language" in template_error(f"{{% {tag} %}}")


def test_unknown_variables_are_refused_at_save_but_do_not_stop_sending():
    for source in (
        "{{ client.owner.password }}",
        "{{ settings }}",
        "{{ client.email.upper }}",
        "{% if client.phone %}x{% endif %}",
    ):
        assert "is not a variable messages may use" in template_error(source)
        assert template_unsafe(source) == ""
    assert render("[{{ client.owner.password }}][{{ settings }}]") == "[][]"


def test_a_tag_left_open_on_its_line_never_reaches_the_lexer(monkeypatch):
    """Django's lexer rescans the rest of a line for every unclosed "{%":
    100 KB of them took 20 s, and "{{" 36 s. They are refused before it."""

    def lexer_must_not_run(self):
        raise AssertionError("the lexer saw an unclosed tag")

    monkeypatch.setattr(Lexer, "tokenize", lexer_must_not_run)
    for opener in ("{%", "{{", "{#"):
        error = template_error(opener * 50_000)
        assert error == f"Line 1: “{opener}” is not closed on its line."
    assert template_error("a\nb {% if x\n %}").startswith("Line 2:")


def test_three_thousand_nested_ifs_are_refused_without_recursing():
    error = template_error("{% if client.email %}" * 3000)
    assert error == f"Line 1: {{% if %}} may be nested at most {MAX_IF_DEPTH} deep."
    deep = "{% if client.email %}" * MAX_IF_DEPTH + "x" + "{% endif %}" * MAX_IF_DEPTH
    assert template_error(deep) == ""


def test_a_condition_of_thousands_of_nots_is_refused():
    assert "at most" in template_error("{% if " + "not " * 3000 + "x %}{% endif %}")


def test_an_if_without_its_end_or_an_else_without_an_if_names_the_line():
    assert template_error("a\n{% if client.email %}\nb") == (
        "Line 2: {% if %} is not closed with {% endif %}."
    )
    assert template_error("a\n\n{% else %}") == (
        "Line 3: “{% else %}” has no {% if %} before it."
    )


def test_a_source_past_the_cap_is_refused():
    assert "longer than" in template_error("x" * (MAX_SOURCE + 1))


def test_an_attribute_key_never_reaches_a_dict_method():
    attributes = {"city": "Тверь", "note": "y" * 10_000}
    assert render("{{ client.attributes.items }}", attributes=attributes) == ""
    assert render("{{ client.attributes.city }}", attributes=attributes) == "Тверь"
    assert len(render("{{ client.attributes.note }}", attributes=attributes)) == 500
    assert render('{{ client.attributes.city|default:"Москва" }}') == "Москва"


def test_variables_still_to_come_render_empty():
    assert render("[{{ preferences_url }}][{{ client.attributes.city }}]") == "[][]"


def test_a_part_that_grows_past_the_cap_once_personalised_is_refused():
    """The most a part may use, the longest values, escaped six times over
    in HTML: 6 MB at worst, refused past MAX_RENDERED."""
    attributes = {"a": "'" * 500}
    html = "{{ client.attributes.a }}" * MAX_VARIABLES
    assert template_error(html) == ""
    context = message_context(client=Person(), attributes=attributes)
    with pytest.raises(MessageTooLarge):
        message_render(message=Part(html_body=html), context=context)
    assert len(render("{{ client.attributes.a }}" * 100, attributes=attributes)) == (
        50_000
    )


def test_a_part_of_more_variables_than_the_cap_is_refused():
    error = template_error("{{ client.email }}" * (MAX_VARIABLES + 1))
    assert error == f"Line 1: a part may use at most {MAX_VARIABLES} variables."


def test_html_is_escaped_and_text_is_not():
    person = Person()
    person.full_name = "<b>Анна</b>"
    context = message_context(client=person)
    part = Part(
        subject="{{ client.full_name }}",
        body="{{ client.full_name }}",
        html_body="<p>{{ client.full_name }}</p>",
    )
    subject, text, html = message_render(message=part, context=context)
    assert (subject, text) == ("<b>Анна</b>", "<b>Анна</b>")
    assert html == "<p>&lt;b&gt;Анна&lt;/b&gt;</p>"


def test_the_short_cut_renders_what_djangos_renderer_renders():
    """Random parts of the language (text with HTML's specials, variables
    present and absent, `default` with literals, now and then an `{% if %}`,
    which goes through Django), random recipients: the same text, escaped
    and not."""
    import random

    from django.template import Context

    from core.services.mail.templates import _YesNo
    from core.templating import _plain, template_compile, template_render

    rng = random.Random(20261202)
    texts = ["", " ", "<p>", "a & b", '"q"', "'s'", "{ x }", "Привет, ", "\n"]
    variables = [
        "client.full_name",
        "client.email",
        "client.attributes.city",
        "client.attributes.vip",
        "client.attributes.missing",
        "client.attributes.items",
        "mailing.title",
        "unsubscribe_url",
        "preferences_url",
    ]
    values = ["", "Анна", "<b>Анна</b>", "O'Brien & Co", '"x"', "a\nb"]
    plain = 0
    for _ in range(400):
        parts = []
        for _ in range(rng.randrange(8)):
            parts.append(rng.choice(texts))
            variable = rng.choice(variables)
            if rng.random() < 0.3:
                literal = rng.choice(["друг", "<i>friend</i>", "&", ""])
                variable += f'|default:"{literal}"'
            parts.append("{{ " + variable + " }}")
        if rng.random() < 0.1:
            parts.append("{% if client.full_name %}[{{ client.email }}]{% endif %}")
        source = "".join(parts)
        person = Person()
        person.full_name = rng.choice(values)
        attributes = {"city": rng.choice(values), "vip": rng.random() < 0.5}
        if rng.random() < 0.2:
            del attributes["city"]
        context = message_context(
            client=person,
            attributes=attributes,
            unsubscribe_url=rng.choice(values),
            preferences_url=rng.choice(["", "https://x/p/1/?a=1&b=2"]),
        )
        assert isinstance(context["client"]["attributes"]["vip"], _YesNo)
        template = template_compile(source)
        plain += _plain(template) is not None
        for autoescape in (False, True):
            expected = template.render(Context(context, autoescape=autoescape))
            assert template_render(template, context, autoescape=autoescape) == (
                expected
            ), (source, autoescape)
    assert 300 < plain < 400  # both ways were taken


def test_a_plain_part_is_not_rendered_by_django_and_an_if_is(monkeypatch):
    from django.template.base import Template

    from core.templating import template_compile, template_render

    calls = []
    original = Template.render
    monkeypatch.setattr(
        Template,
        "render",
        lambda self, context: calls.append(1) or original(self, context),
    )
    context = message_context(client=Person())
    plain = template_compile('Hi {{ client.full_name|default:"you" }}!')
    assert template_render(plain, context, autoescape=True) == "Hi Ольга Смирнова!"
    assert calls == []
    branch = template_compile("{% if client.email %}{{ client.email }}{% endif %}")
    assert template_render(branch, context, autoescape=True) == "olga@example.com"
    assert calls == [1]
    # A context of another shape is Django's to render.
    assert template_render(plain, {"client": "x"}, autoescape=False) == "Hi you!"
    assert calls == [1, 1]
