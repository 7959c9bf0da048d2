"""Opens and clicks: the signed links a tracked message carries.

A tracked message's links are rewritten once per message layout, not per
recipient: in the message's source, each link the run tracks becomes a
marker and its index, and an HTML part gets a 1×1 pixel and a hidden link
no person clicks (index 0, the honeypot that link scanners follow). Once a
recipient's part is rendered, the markers become their own tracking links
(`tracking_fill`): one `str.replace` a marker, no parsing.

A link is tracked when it is a plain `http(s)` address in the text of the
message, not one built from variables (`https://shop.example/?e={{
client.email }}` goes out as it is, untracked): a click leads only to a
link the run holds, by its index, never to an address taken from the
request.

The token names the run and the attempt (0: tracking not tied to a
recipient) with 40 bits of an HMAC under SECRET_KEY, as the return path's
does. This module imports nothing of the models.
"""

import base64
import functools
import hashlib
import hmac
import html
import re
from dataclasses import dataclass

from django.conf import settings
from django.template.base import tag_re
from django.utils.crypto import constant_time_compare

from .verp import _base36

SALT = "core.mail.tracking"
MAC_LENGTH = 8
TOKEN = re.compile(
    rf"^([0-9a-z]{{1,13}})-([0-9a-z]{{1,13}})-([a-z2-7]{{{MAC_LENGTH}}})$"
)
# Where a recipient's own links go in a rewritten part: a control character
# no message text holds (a part that does is sent untracked), and a letter.
MARK_CHARACTER = "\x1f"
CLICK_MARK = MARK_CHARACTER + "c"
OPEN_MARK = MARK_CHARACTER + "o"
HONEYPOT = 0
# What a part may grow by as it is rewritten: the pixel and the hidden link
# (a link's marker is never longer than the shortest link it replaces).
GROWTH = 200
# At most this many distinct links are tracked a message; the rest go out as
# they are. A link is kept whole up to the length an event stores.
MAX_LINKS = 200
MAX_URL = 2000

_HREF = re.compile(
    r"""(<a(?:rea)?\b[^>]*?(?<![\w-])href\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""",
    re.IGNORECASE,
)
# A character reference in an attribute, as browsers read one there: ended
# by ";" ("&param=2" stays as it is, though "&para" names a character).
_REFERENCE = re.compile(
    r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
)
_PLAIN_URL = re.compile(r"https?://[^\s<>\"'{}]+", re.IGNORECASE)
_TRAILING = ".,;:!?]»"
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)

PIXEL = (
    f'<img src="{OPEN_MARK}" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0">'
)
# SpamAssassin's HTML_IMAGE_ONLY_* rules: an HTML part of at most this
# many characters (its source, as sent) that holds any <img> earns 0.3 to
# 2.1 points by the bucket its length falls in. The open pixel is an image.
IMAGE_ONLY_MAX_CHARS = 3200
_IMAGE = re.compile(r"<img\b", re.IGNORECASE)
HONEYPOT_LINK = (
    f'<a href="{CLICK_MARK}{HONEYPOT}/" style="display:none" '
    'tabindex="-1" aria-hidden="true"></a>'
)


@functools.lru_cache(maxsize=4)
def _hmac_key(secret: str) -> bytes:
    return hashlib.sha256((SALT + secret).encode()).digest()


def _mac(text: str) -> str:
    digest = hmac.digest(_hmac_key(settings.SECRET_KEY), text.encode(), "sha256")
    return base64.b32encode(digest[:5]).decode().lower()


def tracking_token(*, run_id: int, attempt_id: int = 0) -> str:
    """The token of one recipient's tracking links (attempt 0: the run's)."""
    key = f"{_base36(run_id)}-{_base36(attempt_id)}"
    return f"{key}-{_mac(key)}"


def tracking_token_parse(token: str) -> tuple[int, int] | None:
    """(run id, attempt id or 0) that a token names, or None if it does not
    verify."""
    match = TOKEN.match(token or "")
    if match is None:
        return None
    key = f"{match[1]}-{match[2]}"
    if not constant_time_compare(_mac(key), match[3]):
        return None
    return int(match[1], 36), int(match[2], 36)


def _texts(source: str):
    """(is_text, chunk) for a source, text between template tags marked."""
    for number, chunk in enumerate(tag_re.split(source)):
        yield number % 2 == 0, chunk


def _text_urls(chunk: str, *, last: bool):
    """The plain links of a text chunk; one that runs into the template tag
    after it (`https://shop.example/?e={{ client.email }}`) is not one."""
    for match in _PLAIN_URL.finditer(chunk):
        if match.end() == len(chunk) and not last:
            continue
        yield match


def _plain_url(match_text: str) -> str:
    """A link in text without the punctuation after it; a ")" closes the
    sentence's bracket unless the link opened one (…/wiki/Foo_(bar))."""
    url = match_text.rstrip(_TRAILING)
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1].rstrip(_TRAILING)
    return url


def _attribute(value: str) -> str:
    """An href's value as the browser follows it."""
    return _REFERENCE.sub(lambda match: html.unescape(match[0]), value)


def links_found(*, text: str, html_body: str) -> list[str]:
    """The links a message holds that can be tracked, each once, in order:
    the HTML part's first, then the text part's."""
    found = []

    def keep(url):
        if len(url) <= MAX_URL and url not in found and len(found) < MAX_LINKS:
            found.append(url)

    for is_text, chunk in _texts(html_body or ""):
        if is_text:
            for match in _HREF.finditer(chunk):
                keep(_attribute(match[3]))
    chunks = list(_texts(text or ""))
    for number, (is_text, chunk) in enumerate(chunks):
        if is_text:
            for match in _text_urls(chunk, last=number == len(chunks) - 1):
                keep(_plain_url(match[0]))
    return found


@dataclass(frozen=True, slots=True)
class Parts:
    """A message's parts as `message_render` reads them."""

    subject: str
    body: str
    html_body: str


def _click(index: int) -> str:
    return f"{CLICK_MARK}{index}/"


@functools.lru_cache(maxsize=64)
def tracked_parts(
    subject: str, body: str, html_body: str, links: tuple, opens: bool
) -> Parts:
    """The message's parts with `links` rewritten to markers and, when
    `opens`, the pixel in the HTML part. With links tracked, the HTML part
    also gets the honeypot link. A part that already holds the marker's
    control character goes out as it is."""
    index = {url: number for number, url in enumerate(links, start=1)}

    def html_link(match):
        number = index.get(_attribute(match[3]))
        if number is None:
            return match[0]
        return f"{match[1]}{match[2]}{_click(number)}{match[2]}"

    def text_chunk(chunk, last):
        pieces, position = [], 0
        for match in _text_urls(chunk, last=last):
            url = _plain_url(match[0])
            number = index.get(url)
            if number is not None:
                pieces += [chunk[position : match.start()], _click(number)]
                position = match.start() + len(url)
        pieces.append(chunk[position:])
        return "".join(pieces)

    new_body = body
    if index and MARK_CHARACTER not in body:
        chunks = list(_texts(body))
        new_body = "".join(
            text_chunk(chunk, number == len(chunks) - 1) if is_text else chunk
            for number, (is_text, chunk) in enumerate(chunks)
        )
    new_html = html_body
    if html_body and MARK_CHARACTER not in html_body:
        new_html = "".join(
            _HREF.sub(html_link, chunk) if is_text else chunk
            for is_text, chunk in _texts(html_body)
        )
        if index:
            new_html = _after_body_open(new_html, HONEYPOT_LINK)
        if opens:
            new_html = _before_body_close(new_html, PIXEL)
    return Parts(subject=subject, body=new_body, html_body=new_html)


def tracking_fill(text: str, *, click_url: str, open_url: str) -> str:
    """A rendered part with one recipient's tracking links in its markers."""
    if MARK_CHARACTER not in text:
        return text
    return text.replace(CLICK_MARK, click_url).replace(OPEN_MARK, open_url)


def _after_body_open(source: str, snippet: str) -> str:
    match = _BODY_OPEN.search(source)
    if match is None:
        return snippet + source
    return source[: match.end()] + snippet + source[match.end() :]


def _before_body_close(source: str, snippet: str) -> str:
    matches = list(_BODY_CLOSE.finditer(source))
    if not matches:
        return source + snippet
    start = matches[-1].start()
    return source[:start] + snippet + source[start:]


def image_only_length(html: str) -> int | None:
    """The length of an HTML part as sent, when SpamAssassin would count it
    as "images with little text": it holds an image (the open pixel is one)
    and is at most IMAGE_ONLY_MAX_CHARS long. None when it would not."""
    if not html or len(html) > IMAGE_ONLY_MAX_CHARS or not _IMAGE.search(html):
        return None
    return len(html)
