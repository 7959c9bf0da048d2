"""Rendering a message for one recipient (the language: core/templating.py).

The context holds plain strings only, so a message can reach nothing of the
database but what is handed to it.
"""

from django.template import Context

from core.templating import template_compile


def message_context(*, client=None, mailing=None, unsubscribe_url: str = "") -> dict:
    """The only names a message may use; every value is a plain string."""
    return {
        "client": {
            "full_name": getattr(client, "full_name", "") or "",
            "email": getattr(client, "email", "") or "",
        },
        "mailing": {"title": getattr(mailing, "title", "") or ""},
        "unsubscribe_url": unsubscribe_url,
    }


def message_render(*, message, context: dict) -> tuple[str, str, str]:
    """Return (subject, text, html) for one recipient; html may be empty."""
    subject = template_compile(message.subject).render(
        Context(context, autoescape=False)
    )
    # A subject is one header line: no line breaks from a recipient's name.
    subject = " ".join(subject.split())
    text = template_compile(message.body).render(Context(context, autoescape=False))
    html = ""
    if message.html_body:
        html = template_compile(message.html_body).render(
            Context(context, autoescape=True)
        )
    return subject, text, html
