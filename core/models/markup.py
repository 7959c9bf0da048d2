"""Article text: Markdown made into safe HTML, and readable addresses.

Pure functions the `Article` model uses when it is saved; they import no
model and no service.
"""

from functools import cache

import nh3
from django.utils.text import slugify

# Russian (and Ukrainian, Belarusian) letters in Latin, close to GOST 7.79-2000
# system B as URLs and passports commonly write it: "щука" → "shchuka".
TRANSLITERATION = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo",
    "ж": "zh", "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m",
    "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u",
    "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch",
    "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
    "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "u",
}  # fmt: skip
SLUG_BASE_MAX_LENGTH = 80
# A title made only of punctuation or emoji leaves nothing to transliterate.
SLUG_FALLBACK = "article"
# Paths under /blog/ that an article must not shadow.
SLUG_RESERVED = frozenset({"feed"})


def transliterate(text: str) -> str:
    return "".join(TRANSLITERATION.get(char, char) for char in text.lower())


def article_slug_base(*, title: str) -> str:
    """A readable ASCII address made from the title, cut at a word boundary."""
    base = slugify(transliterate(title))
    if len(base) > SLUG_BASE_MAX_LENGTH:
        base = base[: SLUG_BASE_MAX_LENGTH + 1]
        base = base.rsplit("-", 1)[0] if "-" in base else base[:SLUG_BASE_MAX_LENGTH]
    return base.strip("-") or SLUG_FALLBACK


# CommonMark with tables, strikethrough and a line break for each newline, by
# markdown-it-py, whose parser stays linear where Python-Markdown's was
# quadratic ("[" * 20000 took a minute; here 0.2 s). A source is at most
# ARTICLE_SOURCE_MAX_LENGTH characters: the slowest input found at that
# length, "![" repeated, renders in under a second.
ARTICLE_SOURCE_MAX_LENGTH = 50_000


@cache
def markdown():
    """The article parser, built on first use: markdown-it-py and its rules
    cost 50 ms of import that processes which never render an article (the
    send command, every worker) need not pay."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"breaks": True, "html": True}).enable(
        ["table", "strikethrough"]
    )


ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
    "strong", "b", "em", "i", "u", "s", "del", "ins", "mark", "small",
    "sub", "sup", "abbr", "blockquote", "q", "cite", "code", "pre", "kbd",
    "ul", "ol", "li", "dl", "dt", "dd", "a", "img", "figure", "figcaption",
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "ol": {"start"},
    "th": {"colspan", "rowspan", "align"},
    "td": {"colspan", "rowspan", "align"},
}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}


def _attribute_filter(tag, attribute, value):
    # Pictures come from this site only: an image from elsewhere would let
    # its host follow every reader, and the site promises no outside assets.
    if tag == "img" and attribute == "src":
        local = value.startswith("/") and not value.startswith("//")
        return value if local else None
    return value


def article_sanitize(*, html_text: str) -> str:
    """HTML with only harmless tags and attributes: no script, style, event
    handler, frame, or link other than http(s) and mailto."""
    return nh3.clean(
        html_text or "",
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        attribute_filter=_attribute_filter,
        link_rel="nofollow noopener noreferrer ugc",
        strip_comments=True,
    )


def article_body_html(*, source: str, html: str = "") -> str:
    """The Markdown `source` as sanitized HTML, or `html` sanitized when there
    is no source (an article written elsewhere as HTML)."""
    if source:
        html = markdown().render(source).rstrip("\n")
    return article_sanitize(html_text=html)
