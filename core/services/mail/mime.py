"""MIME for bulk sending: lay a mailing's message out once, fill it per recipient.

Serialising a message with Django's mail classes costs about 0.6 ms, most of
it in the standard library's generator folding and encoding headers that are
the same for every recipient. Here Django builds the message once per
mailing, with markers where a recipient's own parts go; each recipient then
costs only the encoding of those parts, done by the same functions the
generator calls (`forbid_multi_line_headers`, the compat32 policy's
`fold_binary`, its line-ending rule), or for the common headers (short
ASCII, a Subject, a To with an encoded name) written directly as those
functions write them (`header_line`; the tests hold the two ways equal on
random headers). The bytes are those
`EmailMultiAlternatives.message().as_bytes()` gives, the boundary aside
(each message draws its own, as the generator does: one boundary shared by
a whole mailing would mark its messages as bulk), except that a
quoted-printable body (a line too long for 8bit) is encoded by the C
encoder, which may break lines elsewhere but decodes to the same text; the
tests compare the two. A layout whose markers cannot be found again goes
through Django whole.
"""

import binascii
import functools
import logging
import random
import re
import secrets
import sys
from dataclasses import dataclass, field
from email import base64mime, policy, quoprimime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import forbid_multi_line_headers

# The generator's own rules (email.generator): every line ending becomes
# CRLF, and 8bit text may not hold a line longer than RFC 5322 allows.
LINESEP = "\r\n"
LINESEP_BYTES = b"\r\n"
POLICY = policy.compat32.clone(linesep=LINESEP)
MAX_LINE_BYTES = 998

logger = logging.getLogger(__name__)

# Headers that differ from one recipient to the next (the last two: the
# metadata Postmark and Brevo report back, core.services.webhooks).
VARYING_HEADERS = (
    "Subject",
    "To",
    "Message-ID",
    "Date",
    "List-Unsubscribe",
    "X-PM-Metadata-m",
    "X-Mailin-custom",
)

# How a body is carried: absent, 7bit (ASCII), 8bit (UTF-8 as it is), or
# quoted-printable when a line is too long for 8bit.
EMPTY, ASCII, EIGHT_BIT, QUOTED_PRINTABLE = "empty", "ascii", "8bit", "qp"
# A sample body of each kind, to lay the message out around.
SAMPLES = {
    ASCII: "",
    EIGHT_BIT: "ж",
    QUOTED_PRINTABLE: "\n" + "y" * (MAX_LINE_BYTES + 2),
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One recipient's message, rendered, before it becomes MIME."""

    subject: str
    text: str
    html: str
    from_email: str
    to: str
    reply_to: tuple = ()
    headers: dict = field(default_factory=dict)
    address: str = ""  # the bare address `to` names, for RCPT TO

    def email_message(self, connection=None) -> EmailMultiAlternatives:
        """As a Django e-mail, for any mail backend; the reference for `as_bytes`."""
        email_message = EmailMultiAlternatives(
            subject=self.subject,
            body=self.text,
            from_email=self.from_email,
            to=[self.to],
            reply_to=list(self.reply_to) or None,
            headers=dict(self.headers),
            connection=connection,
        )
        if self.html:
            email_message.attach_alternative(self.html, "text/html")
        return email_message

    def as_bytes(self) -> bytes:
        """The MIME bytes the Django e-mail would give, built faster (the module
        docstring says where they may differ: boundary, QP line breaks)."""
        return message_bytes(self)


# The compat32 policy leaves a short ASCII header on its own line, moves a
# long one that has nowhere to fold (no space, no ";" or ",") to the next
# line whole, and breaks one of two such words at the space between them (a
# To header: the name, encoded, and the address). Django encodes a non-ASCII
# Subject as RFC 2047 words that the policy then puts one to a line. Written
# directly, those cases cost a microsecond or a few instead of the twenty to
# forty the Header machinery takes; the tests compare both ways.
HEADER_LINE = 78
UNFOLDABLE = re.compile(r"[^\s;,]*\Z")
TWO_WORDS = re.compile(r"([^\s;,]+) ([^\s;,]+)\Z")
# What str.splitlines (and so the Header machinery) breaks a line at.
LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Header's room for an encoded word (email.header's MAXLINELEN, 78): the
# whole first line, the rest after the continuation space, less
# "=?utf-8?b?" and "?=".
WORD_ROOM_FIRST, WORD_ROOM_NEXT = 78 - 12, 77 - 12
# The length of each ASCII character quoted-printable encoded in a header,
# and the bytes that stay one character there.
Q_ASCII = tuple(quoprimime.header_length(bytes([code])) for code in range(128))
Q_SAFE = bytes(
    code for code in range(256) if quoprimime.header_length(bytes([code])) == 1
)
# The bytes a base64 word holds on any line: 64 characters fit both rooms.
B64_WORD_BYTES = min(WORD_ROOM_FIRST, WORD_ROOM_NEXT) // 4 * 3


def header_line(name: str, value: str, encoding: str) -> bytes:
    """One header as Django stores it and the generator writes it."""
    if value.isascii():
        if LINE_BREAK.search(value) or (
            # forbid_multi_line_headers leaves an ASCII value as it is, but
            # folds a Subject on its own first (78 a line, no name before
            # it): the same, where it fits there or cannot be folded.
            name == "Subject"
            and len(value) > HEADER_LINE
            and not UNFOLDABLE.match(value)
        ):
            return header_line_folded(name, value, encoding)
        if len(name) + 2 + len(value) <= HEADER_LINE:
            return f"{name}: {value}{LINESEP}".encode()
        if UNFOLDABLE.match(value):
            return f"{name}: {LINESEP} {value}{LINESEP}".encode()
        two = TWO_WORDS.match(value)
        if two and len(name) + 2 + len(two[1]) <= HEADER_LINE:
            return f"{name}: {two[1]}{LINESEP} {two[2]}{LINESEP}".encode()
    elif name == "Subject" and encoding == "utf-8" and not LINE_BREAK.search(value):
        words = encoded_words(value)
        if words is not None:
            # A first word too long for the header's line goes to the next.
            lead = f"{LINESEP} " if len(name) + 2 + len(words[0]) > HEADER_LINE else ""
            return f"{name}: {lead}{f'{LINESEP} '.join(words)}{LINESEP}".encode()
    return header_line_folded(name, value, encoding)


def encoded_words(value: str) -> list[str] | None:
    """The RFC 2047 words `Header(value, "utf-8").encode()` writes, in order.

    As the standard library does it (Charset.header_encode_lines): base64 or
    quoted-printable, whichever is shorter for the whole value; then as
    many characters to a word as fit, a character at a time. The lengths
    are summed here instead of re-encoding the word for every character,
    and base64 words, 48 bytes each on any line, are cut from the bytes
    between characters. None for a value UTF-8 cannot carry (a lone
    surrogate).
    """
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    quoted = len(data) + 2 * len(data.translate(None, Q_SAFE))
    if base64mime.header_length(data) < quoted:
        chunks, start = [], 0
        while start < len(data):
            end = start + B64_WORD_BYTES
            # Back to the start of the character the cut would split.
            while end < len(data) and 0x80 <= data[end] < 0xC0:
                end -= 1
            chunks.append(data[start:end])
            start = end
        return [base64mime.header_encode(chunk, charset="utf-8") for chunk in chunks]
    words, start, size, room = [], 0, 0, WORD_ROOM_FIRST
    for index, character in enumerate(value):
        code = ord(character)
        if code < 0x80:
            cost = Q_ASCII[code]
        else:
            cost = 3 * (2 if code < 0x800 else 3 if code < 0x10000 else 4)
        if size + cost > room:
            words.append(value[start:index])
            start, size, room = index, cost, WORD_ROOM_NEXT
        else:
            size += cost
    words.append(value[start:])
    return [
        quoprimime.header_encode(word.encode("utf-8"), charset="utf-8")
        for word in words
    ]


def header_line_folded(name: str, value: str, encoding: str) -> bytes:
    """One header through Django's checks and the generator's folding."""
    name, value = forbid_multi_line_headers(name, value, encoding)
    return POLICY.fold_binary(name, value)


def body_kind(text: str, encoding: str) -> str:
    """How Django carries a body: 7bit, 8bit, or quoted-printable for long lines."""
    if not text:
        return EMPTY
    if len(text) > MAX_LINE_BYTES // 4 and any(  # 4 bytes a character at most
        len(line.encode(encoding, errors="surrogateescape")) > MAX_LINE_BYTES
        for line in text.splitlines()
    ):
        return QUOTED_PRINTABLE
    return ASCII if text.isascii() else EIGHT_BIT


def body_bytes(text: str, kind: str, encoding: str) -> bytes:
    """A body as the generator writes it: CRLF line endings, encoded by kind."""
    data = text.encode(encoding)
    # Every line ending to LF first (a regular expression matching each one
    # cost a fifth of building a message); most bodies hold no CR at all.
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if kind == QUOTED_PRINTABLE:
        # The C encoder; the generator's pure-Python one (quoprimime) makes
        # the same lines, at twenty times the cost.
        data = binascii.b2a_qp(data, istext=True)
    return data.replace(b"\n", LINESEP_BYTES)


# The multipart boundary as the generator draws it (email.generator):
# fifteen "=", a random number padded to the width of sys.maxsize, "==".
# Its length never changes, so the header that names it folds the same way.
BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))
BOUNDARY = "boundary"  # the slot
BODY_SLOTS = ("text", "html", BOUNDARY)


def boundary_new(*, avoid: tuple = ()) -> str:
    """A fresh boundary that none of the `avoid` texts holds."""
    while True:
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):0{BOUNDARY_DIGITS}d}=="
        if not any(boundary in text for text in avoid):
            return boundary


@dataclass(frozen=True)
class Layout:
    """A message as bytes between slots: header names, "text", "html" and
    "boundary" (wherever the multipart boundary stands)."""

    pieces: tuple  # bytes, or the name of a slot
    multipart: bool

    def fill(self, slots: dict) -> bytes:
        return b"".join(
            piece if isinstance(piece, bytes) else slots[piece] for piece in self.pieces
        )


@functools.lru_cache(maxsize=64)
def layout_for(static: tuple, varying: tuple, text: str, html: str) -> Layout | None:
    """The layout of every message sharing these static headers and body kinds.

    `static` holds (from_email, reply_to, ((name, value), ...)) with the extra
    headers in order, value None where it differs per recipient; `varying`
    names every header that does (Subject and To among them). None when the
    markers cannot be found again: every such message then goes through
    Django whole.
    """
    encoding = settings.DEFAULT_CHARSET
    from_email, reply_to, fixed = static
    tag = secrets.token_hex(8)
    markers = {name: f"zz{name.lower().replace('-', '')}{tag}zz" for name in varying}
    bodies = {
        slot: "" if kind == EMPTY else f"zz{slot}{tag}zz{SAMPLES[kind]}"
        for slot, kind in (("text", text), ("html", html))
    }
    sample = Outgoing(
        subject=markers["Subject"],
        text=bodies["text"],
        html=bodies["html"],
        from_email=from_email,
        to=markers["To"],
        reply_to=reply_to,
        headers={
            name: markers[name] if value is None else value for name, value in fixed
        },
    )
    message = sample.email_message().message()
    data = message.as_bytes(linesep=LINESEP)
    cuts = []  # (start, end, slot name)
    try:
        for name, marker in markers.items():
            line = POLICY.fold_binary(name, marker)
            start = data.index(line)
            cuts.append((start, start + len(line), name))
        for slot, kind in (("text", text), ("html", html)):
            if kind != EMPTY:
                encoded = body_bytes(bodies[slot], kind, encoding)
                start = data.index(encoded)
                cuts.append((start, start + len(encoded), slot))
    except ValueError:
        logger.warning("No fast layout for %s/%s messages; using Django's", text, html)
        return None
    pieces, position = [], 0
    for start, end, slot in sorted(cuts):
        pieces += [data[position:start], slot]
        position = end
    pieces.append(data[position:])
    multipart = message.is_multipart()
    if multipart:
        pieces = _cut_boundary(pieces, message.get_boundary().encode())
    return Layout(pieces=tuple(pieces), multipart=multipart)


def _cut_boundary(pieces: list, boundary: bytes) -> list:
    """Every occurrence of `boundary` in the fixed bytes becomes its slot."""
    cut = []
    for piece in pieces:
        if not isinstance(piece, bytes):
            cut.append(piece)
            continue
        parts = piece.split(boundary)
        for index, part in enumerate(parts):
            if index:
                cut.append(BOUNDARY)
            cut.append(part)
    return cut


def layout_of(outgoing, kinds: dict) -> Layout | None:
    """The layout a message goes into; None where it must go through Django."""
    headers = outgoing.headers
    if "Date" not in headers or "Message-ID" not in headers:
        # Django would make them up, once, for the layout: every recipient
        # would get the same ones.
        return None
    varying = ("Subject", "To") + tuple(
        name for name in VARYING_HEADERS[2:] if name in headers
    )
    static = (
        outgoing.from_email,
        tuple(outgoing.reply_to),
        tuple(
            (name, None if name in varying else value)
            for name, value in headers.items()
        ),
    )
    return layout_for(static, varying, kinds["text"], kinds["html"])


def message_bytes(outgoing) -> bytes:
    """The message as Django would write it, built the fast way."""
    encoding = settings.DEFAULT_CHARSET
    text, html = outgoing.text, outgoing.html
    kinds = {"text": body_kind(text, encoding), "html": body_kind(html, encoding)}
    layout = layout_of(outgoing, kinds)
    if layout is None:
        return outgoing.email_message().message().as_bytes(linesep=LINESEP)
    values = {"Subject": outgoing.subject, "To": outgoing.to, **outgoing.headers}
    slots = {
        piece: header_line(piece, values[piece], encoding)
        for piece in layout.pieces
        if isinstance(piece, str) and piece not in BODY_SLOTS
    }
    for slot, body in (("text", text), ("html", html)):
        if body:
            slots[slot] = body_bytes(body, kinds[slot], encoding)
    if layout.multipart:
        slots[BOUNDARY] = boundary_new(avoid=(text, html)).encode()
    return layout.fill(slots)
