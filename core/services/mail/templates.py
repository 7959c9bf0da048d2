"""Rendering a message for one recipient (the language: core/templating.py).

The context holds plain strings only, so a message can reach nothing of the
database but what is handed to it; each part rendered is capped in size.
"""

import functools

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from core.templating import MAX_RENDERED, template_compile, template_render

from .tracking import GROWTH

# A custom field's value as a message shows it, at most this long.
MAX_VALUE = 500


class MessageTooLarge(ValueError):
    """A part of one recipient's message would pass MAX_RENDERED."""


class Attributes(dict):
    """A recipient's custom field values: every key reads as a string, "" when
    absent, so a key never falls through to a dict method."""

    def __missing__(self, key):
        return ""


def message_mentions(message, name: str) -> bool:
    """Whether any part of `message` names the variable `name`: a link that
    costs a signature per recipient is made only for messages that use it."""
    return _mention(name, message.subject, message.body, message.html_body or "")


@functools.lru_cache(maxsize=256)
def _mention(name: str, *sources: str) -> bool:
    return any(name in source for source in sources)


def message_context(
    *,
    client=None,
    mailing=None,
    unsubscribe_url: str = "",
    preferences_url: str = "",
    attributes: dict | None = None,
) -> dict:
    """The only names a message may use; every value is a plain string."""
    return {
        "client": {
            "full_name": getattr(client, "full_name", "") or "",
            "email": getattr(client, "email", "") or "",
            "attributes": Attributes(
                (str(key), _shown(value)[:MAX_VALUE])
                for key, value in (attributes or {}).items()
                if value is not None
            ),
        },
        "mailing": {"title": getattr(mailing, "title", "") or ""},
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }


class _YesNo(str):
    """A yes/no field's value: reads as a word in the service's language,
    and `{% if %}` tests the answer, not the word."""

    def __new__(cls, answer: bool):
        with translation.override(settings.LANGUAGE_CODE):
            word = _("yes") if answer else _("no")
        text = super().__new__(cls, word)
        text.answer = answer
        return text

    def __bool__(self):
        return self.answer

    def __getitem__(self, key):  # a slice keeps the answer
        return self


def _shown(value) -> str:
    """A kept attribute value as the message shows it."""
    if isinstance(value, bool):
        return _YesNo(value)
    return str(value)


def _render(source: str, context: dict, *, autoescape: bool) -> str:
    template = template_compile(source, slack=GROWTH)
    return part_bounded(template_render(template, context, autoescape=autoescape))


def part_bounded(text: str) -> str:
    """`text`, a part as one recipient gets it; MessageTooLarge past the cap."""
    if len(text) > MAX_RENDERED:
        raise MessageTooLarge(
            _("Personalised, a part of this message passes %(max)s characters.")
            % {"max": MAX_RENDERED}
        )
    return text


def message_render(*, message, context: dict) -> tuple[str, str, str]:
    """Return (subject, text, html) for one recipient; html may be empty.

    TemplateRefused for a message outside the language, MessageTooLarge for
    one that grows past the cap.
    """
    # A subject is one header line: no line breaks from a recipient's name.
    subject = " ".join(_render(message.subject, context, autoescape=False).split())
    text = _render(message.body, context, autoescape=False)
    html = ""
    if message.html_body:
        html = _render(message.html_body, context, autoescape=True)
    return subject, text, html
