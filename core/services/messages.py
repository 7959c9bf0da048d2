"""Message templates: checked when saved, rendered per recipient when sent.

Templates run in their own engine: it loads no files and no tag libraries,
and the context holds plain strings only, so a message can reach nothing of
the database but what is handed to it.
"""

import functools

from django.template import Context, Engine, TemplateSyntaxError
from django.template.loader_tags import BlockNode, ExtendsNode, IncludeNode
from django.utils.translation import gettext as _

# One engine for all messages: no loaders (no {% include %} of files on disk),
# no libraries to {% load %}, missing variables render empty. The checking
# engine keeps debug information to name the line of an error.
ENGINE = Engine(loaders=[], libraries={}, string_if_invalid="", debug=False)
CHECKING_ENGINE = Engine(loaders=[], libraries={}, string_if_invalid="", debug=True)

FORBIDDEN_NODES = (ExtendsNode, IncludeNode, BlockNode)


# Compiled once per text, not once per recipient: a Template renders safely
# from many threads (its per-render state lives in the context).
@functools.lru_cache(maxsize=256)
def _compile(source: str, engine=ENGINE):
    template = engine.from_string(source)
    for node_type in FORBIDDEN_NODES:
        if template.nodelist.get_nodes_by_type(node_type):
            raise TemplateSyntaxError(
                _("Tags that read other templates or files are not allowed.")
            )
    return template


def message_template_errors(*, subject: str, body: str, html_body: str) -> dict:
    """Field name → message for every part that does not compile."""
    errors = {}
    for field, source in (
        ("subject", subject),
        ("body", body),
        ("html_body", html_body),
    ):
        if not source:
            continue
        try:
            _compile(source, CHECKING_ENGINE)
        except TemplateSyntaxError as error:
            line = getattr(error, "template_debug", {}).get("line")
            if line:
                errors[field] = _("Line %(line)s: %(error)s") % {
                    "line": line,
                    "error": error,
                }
            else:
                errors[field] = str(error)
    return errors


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
    subject = _compile(message.subject).render(Context(context, autoescape=False))
    # A subject is one header line: no line breaks from a recipient's name.
    subject = " ".join(subject.split())
    text = _compile(message.body).render(Context(context, autoescape=False))
    html = ""
    if message.html_body:
        html = _compile(message.html_body).render(Context(context, autoescape=True))
    return subject, text, html
