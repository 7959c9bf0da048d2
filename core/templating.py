"""The message template language: bounded, and checked when a message is saved.

DESIGN.md (Message template language) describes what a message may use:
the listed variables, the `default` filter and `{% if %}`. It is Django's
template syntax with Django's lexer, parser and renderer (and a short cut
for plain parts, below), in an engine of its own whose only tag is `if` and
whose only filter is `default`: it loads no
files, no tag libraries and no other builtins, so a message can neither loop
nor allocate beyond its own length, and reaches nothing but the plain strings
it is given when it is rendered (`core.services.mail.templates`).

Before Django's lexer sees a text it is checked in one pass for what would
make the lexer or the parser slow or deep: its length, a tag opened and not
closed on its line (the lexer's pattern would rescan the rest of the line for
each), long tags, and `{% if %}` nested too deep (the parser recurses).

Two strengths of check. Saving refuses anything outside the language,
unknown variables included, with the line. Sending refuses only what is
unsafe: a message saved before the check whose only fault is a variable the
language lacks still goes out with that variable empty, as it always did.

Rendering (`template_render`): a part that is text and the language's
variables, with or without `default`, as most are, is rendered once per
recipient by joining its text with each variable looked up and escaped,
as Django's renderer does it at a quarter of the cost; a part with
`{% if %}`, or a context not shaped as expected, goes through Django's
renderer, which the tests hold the short cut to.

This module imports nothing of the project, so models use its validator and
the mail layer its compiler without either importing the other.
"""

import functools
import re

from django.core.exceptions import ValidationError
from django.template import Context, Engine, Library, TemplateSyntaxError
from django.template.base import Lexer, TextNode, TokenType, Variable, VariableNode
from django.template.defaultfilters import default
from django.template.defaulttags import IfNode, TemplateLiteral, do_if
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

# Bounds of a message part's source and of what one tag may hold.
MAX_SOURCE = 200_000
MAX_TAG = 300
MAX_IF_DEPTH = 10
MAX_CONDITION_WORDS = 25
# Variables a part may use: with the longest values (escaped in HTML) a part
# renders to a few MB at most before MAX_RENDERED turns it down.
MAX_VARIABLES = 2_000
# A part rendered for one recipient is never longer than this.
MAX_RENDERED = 1_000_000

VARIABLES = (
    "client.full_name",
    "client.email",
    "client.attributes.<key>",
    "mailing.title",
    "unsubscribe_url",
    "preferences_url",
)
_FIXED = {tuple(name.split(".")) for name in VARIABLES if "<" not in name}
_KEY = re.compile(r"^[a-z0-9_-]{1,50}$")
_BLOCK_WORDS = {"if", "elif", "else", "endif"}
_CLOSERS = {"{%": "%}", "{{": "}}", "{#": "#}"}
_OPENER = re.compile(r"\{[%{#]")

register = Library()
register.tag("if", do_if)
register.filter("default", default)


class MessageEngine(Engine):
    """Django's engine with none of its builtins: only this module's library."""

    default_builtins = []


# No loaders (no {% include %} of files on disk), no libraries to {% load %},
# missing variables render empty.
ENGINE = MessageEngine(
    loaders=[], libraries={}, builtins=[__name__], string_if_invalid=""
)


class TemplateRefused(TemplateSyntaxError):
    """A text outside the message language; its message names the line."""


def _at(line: int, text: str) -> str:
    return _("Line %(line)s: %(error)s") % {"line": line, "error": text}


def _scan(source: str, *, slack: int = 0) -> None:
    """Refuse what would make lexing or parsing slow or deep, in one pass."""
    if len(source) > MAX_SOURCE + slack:
        raise TemplateRefused(
            _("The text is longer than %(max)s characters.") % {"max": MAX_SOURCE}
        )
    position, newline = 0, -1
    while match := _OPENER.search(source, position):
        opener = match.group()
        start = match.start()
        end = source.find(_CLOSERS[opener], start + 2)
        if newline < start:  # once per line, not per tag
            newline = source.find("\n", start)
            newline = len(source) if newline == -1 else newline
        if end == -1 or newline < end:
            line = source.count("\n", 0, start) + 1
            raise TemplateRefused(
                _at(line, _("“%(tag)s” is not closed on its line.") % {"tag": opener})
            )
        position = end + 2
    opened = []  # the lines of the {% if %} still open
    variables = 0
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.TEXT:
            continue
        if token.token_type == TokenType.VAR:
            variables += 1
            if variables > MAX_VARIABLES:
                raise TemplateRefused(
                    _at(
                        token.lineno,
                        _("a part may use at most %(max)s variables.")
                        % {"max": MAX_VARIABLES},
                    )
                )
        if len(token.contents) > MAX_TAG:
            raise TemplateRefused(
                _at(
                    token.lineno,
                    _("a tag may hold at most %(max)s characters.") % {"max": MAX_TAG},
                )
            )
        if token.token_type != TokenType.BLOCK:
            continue
        words = token.split_contents()
        command = words[0] if words else ""
        if command not in _BLOCK_WORDS:
            raise TemplateRefused(
                _at(
                    token.lineno,
                    _(
                        "“{%% %(tag)s %%}” is not part of the message language. "
                        "Messages may use variables, the default filter and "
                        "{%% if %%}."
                    )
                    % {"tag": command},
                )
            )
        if len(words) > MAX_CONDITION_WORDS:
            raise TemplateRefused(
                _at(
                    token.lineno,
                    _("a condition may have at most %(max)s words.")
                    % {"max": MAX_CONDITION_WORDS},
                )
            )
        if command == "if":
            opened.append(token.lineno)
            if len(opened) > MAX_IF_DEPTH:
                raise TemplateRefused(
                    _at(
                        token.lineno,
                        _("{%% if %%} may be nested at most %(max)s deep.")
                        % {"max": MAX_IF_DEPTH},
                    )
                )
        elif not opened:
            raise TemplateRefused(
                _at(
                    token.lineno,
                    _("“{%% %(tag)s %%}” has no {%% if %%} before it.")
                    % {"tag": command},
                )
            )
        elif command == "endif":
            opened.pop()
    if opened:
        raise TemplateRefused(
            _at(opened[-1], _("{% if %} is not closed with {% endif %}."))
        )


def _parse(source: str, *, slack: int = 0):
    _scan(source, slack=slack)
    try:
        return ENGINE.from_string(source)
    except TemplateRefused:
        raise
    except TemplateSyntaxError as error:
        text = str(error)
        if text.startswith("Invalid filter: "):
            text = _(
                "the filter %(name)s is not part of the message language; "
                "messages may use |default."
            ) % {"name": text.removeprefix("Invalid filter: ")}
        line = getattr(error, "token", None)
        raise TemplateRefused(_at(line.lineno, text) if line else text) from error


def _variables(nodes):
    """(line, Variable) for every variable the template reads."""
    for node in nodes:
        line = node.token.lineno
        if isinstance(node, VariableNode):
            yield from _expression_variables(node.filter_expression, line)
        elif isinstance(node, IfNode):
            for condition, nodelist in node.conditions_nodelists:
                yield from _condition_variables(condition, line)
                yield from _variables(nodelist)


def _condition_variables(condition, line):
    if condition is None:  # {% else %}
        return
    if isinstance(condition, TemplateLiteral):
        yield from _expression_variables(condition.value, line)
        return
    for part in (getattr(condition, "first", None), getattr(condition, "second", None)):
        yield from _condition_variables(part, line)


def _expression_variables(expression, line):
    if isinstance(expression.var, Variable):
        yield line, expression.var
    for _filter, arguments in expression.filters:
        for is_variable, argument in arguments:
            if is_variable:
                yield line, argument


def _known(variable: Variable) -> bool:
    lookups = variable.lookups
    if lookups is None:  # a literal: "text" or 3
        return True
    if lookups in _FIXED:
        return True
    return (
        len(lookups) == 3
        and lookups[:2] == ("client", "attributes")
        and bool(_KEY.match(lookups[2]))
    )


# Compiled once per text, not once per recipient: a Template renders safely
# from many threads (its per-render state lives in the context).
@functools.lru_cache(maxsize=256)
def template_compile(source: str, *, slack: int = 0):
    """The template to render; TemplateRefused if sending it is unsafe.

    `slack`: what the sender may add to a saved part's length (a tracked
    message's pixel and hidden link)."""
    return _parse(source, slack=slack)


def template_error(source: str) -> str:
    """Why `source` may not be saved as a message part, with its line; "" if
    it may."""
    if not source:
        return ""
    try:
        template = template_compile(source)
    except TemplateRefused as error:
        return str(error)
    for line, variable in _variables(template.nodelist):
        if not _known(variable):
            return _at(
                line,
                _(
                    "“{{ %(name)s }}” is not a variable messages may use. "
                    "Use one of: %(known)s."
                )
                % {"name": variable.var, "known": ", ".join(VARIABLES)},
            )
    return ""


def validate_template(source: str) -> None:
    """A field validator: the text must be in the message language."""
    if error := template_error(source):
        raise ValidationError(error, code="template")


def template_unsafe(source: str) -> str:
    """Why `source` may not be sent (outside the language in a way that is not
    just an unknown variable), with its line; "" if it may be sent."""
    if not source:
        return ""
    try:
        template_compile(source)
    except TemplateRefused as error:
        return str(error)
    return ""


def template_render(template, context: dict, *, autoescape: bool) -> str:
    """`template` (from `template_compile`) rendered with `context`, a dict
    of dicts and strings, as `template.render(Context(context, autoescape))`
    renders it."""
    pieces = _plain(template)
    if pieces is not None:
        out = []
        for piece in pieces:
            if type(piece) is str:
                out.append(piece)
                continue
            lookups, fallback = piece
            value = context
            try:
                for bit in lookups:
                    value = value[bit]
            except (KeyError, TypeError):  # not the context's usual shape
                break
            if not isinstance(value, str):
                break
            if fallback is not None and not value:
                value = fallback
            out.append(conditional_escape(value) if autoescape else value)
        else:
            return "".join(out)
    return template.render(Context(context, autoescape=autoescape))


@functools.lru_cache(maxsize=256)
def _plain(template) -> tuple | None:
    """The template's nodes as text and (lookups, the `default` filter's
    literal or None) per variable; None where a node is anything else."""
    pieces = []
    for node in template.nodelist:
        if isinstance(node, TextNode):
            pieces.append(node.s)
            continue
        if not isinstance(node, VariableNode):
            return None  # {% if %}
        expression = node.filter_expression
        variable = expression.var
        if (
            not isinstance(variable, Variable)
            or variable.lookups is None
            or variable.translate
            or not _known(variable)
        ):
            return None
        fallback = None
        if expression.filters:
            if len(expression.filters) != 1:
                return None
            [(function, arguments)] = expression.filters
            if (
                function is not default
                or len(arguments) != 1
                or arguments[0][0]  # a variable, not a literal
                or not isinstance(arguments[0][1], str)
            ):
                return None
            # Marked safe, as Django marks a filter's literal argument.
            fallback = mark_safe(arguments[0][1])
        pieces.append((variable.lookups, fallback))
    return tuple(pieces)
