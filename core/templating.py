"""The message template language: compiled, and checked when a message is saved.

DESIGN.md (Message template language) describes what a message may use. The
language runs in an engine of its own: it loads no files and no tag
libraries, so a message can reach nothing but the plain strings it is given
when it is rendered (`core.services.mail.templates`).

This module imports nothing of the project, so models use its validator and
the mail layer its compiler without either importing the other.
"""

import functools

from django.core.exceptions import ValidationError
from django.template import Engine, TemplateSyntaxError
from django.template.loader_tags import BlockNode, ExtendsNode, IncludeNode
from django.utils.translation import gettext as _

# No loaders (no {% include %} of files on disk), no libraries to {% load %},
# missing variables render empty. The checking engine keeps debug
# information to name the line of an error.
ENGINE = Engine(loaders=[], libraries={}, string_if_invalid="", debug=False)
CHECKING_ENGINE = Engine(loaders=[], libraries={}, string_if_invalid="", debug=True)

FORBIDDEN_NODES = (ExtendsNode, IncludeNode, BlockNode)


# Compiled once per text, not once per recipient: a Template renders safely
# from many threads (its per-render state lives in the context).
@functools.lru_cache(maxsize=256)
def template_compile(source: str, engine=ENGINE):
    template = engine.from_string(source)
    for node_type in FORBIDDEN_NODES:
        if template.nodelist.get_nodes_by_type(node_type):
            raise TemplateSyntaxError(
                _("Tags that read other templates or files are not allowed.")
            )
    return template


def template_error(source: str) -> str:
    """Why `source` does not compile, with its line where known; "" if it does."""
    if not source:
        return ""
    try:
        template_compile(source, CHECKING_ENGINE)
    except TemplateSyntaxError as error:
        line = getattr(error, "template_debug", {}).get("line")
        if line:
            return _("Line %(line)s: %(error)s") % {"line": line, "error": error}
        return str(error)
    return ""


def validate_template(source: str) -> None:
    """A field validator: the text must be a message template that compiles."""
    if error := template_error(source):
        raise ValidationError(error, code="template")
