"""The fast MIME path writes what Django's mail classes write."""

import random
import re
from collections import Counter
from email import message_from_bytes, policy
from email.utils import formataddr

import pytest
from django.core.mail import BadHeaderError

from core.services.mail import mime
from core.services.mail.mime import Outgoing

LIST_HEADERS = {
    "List-Id": '"Новости" <mailing-7.example.com>',
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
LONG_RUSSIAN_LINE = "Съешь же ещё этих мягких французских булок. " * 40
BOUNDARY = re.compile(rb'boundary="([^"]+)"')


def outgoing(n=1, **parts):
    values = {
        "subject": "Иван Петров, новости недели",
        "text": "Здравствуйте, Иван Петров!\n\nНовости.\nОтписаться: http://x/u/1/\n",
        "html": "<p>Здравствуйте, <b>Иван Петров</b>!</p>",
        "from_email": "Сервис рассылок <noreply@example.com>",
        "to": f'"Петров, Иван" <ivan{n}@example.com>',
        "reply_to": ("owner@example.com",),
        "headers": {
            "Message-ID": f"<{n}.1764000000@example.com>",
            "Date": "Thu, 26 Nov 2026 06:00:00 +0000",
            **LIST_HEADERS,
            "List-Unsubscribe": f"<https://example.com/unsubscribe/token-{n}/>",
        },
    }
    values.update(parts)
    return Outgoing(**values)


def django_bytes(message: Outgoing) -> bytes:
    return message.email_message().message().as_bytes(linesep="\r\n")


def same_boundary(fast: bytes, slow: bytes) -> tuple[bytes, bytes]:
    """Both with the slow one's boundary: the only part chosen at random."""
    fast_boundary, slow_boundary = BOUNDARY.search(fast), BOUNDARY.search(slow)
    if fast_boundary is None or slow_boundary is None:
        assert fast_boundary is slow_boundary is None
        return fast, slow
    return fast.replace(fast_boundary.group(1), slow_boundary.group(1)), slow


CASES = {
    "russian text and html": {},
    "ascii only": {
        "subject": "Weekly news",
        "text": "Hello Ivan!\n",
        "html": "<p>Hello</p>",
        "to": "ivan@example.com",
        "from_email": "noreply@example.com",
    },
    "text only": {"html": ""},
    "html only": {"text": ""},
    "a long ascii line is quoted-printable": {"text": "x" * 1500, "html": ""},
    "line endings of every kind": {"text": "один\r\nдва\rтри\nчетыре\n\n"},
    "trailing spaces and a dot line": {"text": "строка  \n.\nFrom here\n"},
    "a subject long enough to fold": {"subject": "Очень длинная тема " * 8},
    "a name with quotes and an at sign": {"to": '"Иван \\"Ваня\\" @ дом" <i@x.ru>'},
    "an internationalised domain": {"to": "Иван <ivan@пример.рф>"},
    "no reply-to and no unsubscribe link": {
        "reply_to": (),
        "headers": {"Message-ID": "<9@example.com>", "Date": "Thu, 1 Jan 2026"},
    },
}


@pytest.mark.parametrize("parts", CASES.values(), ids=CASES.keys())
def test_the_bytes_are_djangos(parts):
    message = outgoing(**parts)
    fast, slow = same_boundary(message.as_bytes(), django_bytes(message))
    assert fast == slow


def parse(data: bytes):
    return message_from_bytes(data.replace(b"\r\n", b"\n"), policy=policy.default)


def leaves(message) -> list:
    """Each part's type, transfer encoding and decoded text."""
    return [
        (part.get_content_type(), part["Content-Transfer-Encoding"], part.get_content())
        for part in message.walk()
        if not part.is_multipart()
    ]


def test_quoted_printable_reads_back_as_djangos():
    """The C encoder may break a line elsewhere; a mail client reads the same."""
    message = outgoing(
        text="Начало\n" + LONG_RUSSIAN_LINE + "\nКонец",
        html="<p>" + LONG_RUSSIAN_LINE + "</p>",
    )
    fast, slow = parse(message.as_bytes()), parse(django_bytes(message))
    assert leaves(fast) == leaves(slow)
    assert [encoding for _, encoding, _ in leaves(fast)] == ["quoted-printable"] * 2
    assert leaves(fast)[0][2] == "Начало\n" + LONG_RUSSIAN_LINE + "\nКонец"
    assert fast.items()[1:] == slow.items()[1:]  # all but the boundary's header
    assert max(map(len, message.as_bytes().split(b"\r\n"))) <= 78


def test_many_recipients_share_one_layout_and_keep_their_own_parts():
    mime.layout_for.cache_clear()
    for n in range(1, 51):
        message = outgoing(n, subject=f"Выпуск {n}", text=f"Номер {n}\n")
        fast, slow = same_boundary(message.as_bytes(), django_bytes(message))
        assert fast == slow
        parsed = parse(fast)
        assert parsed["To"].addresses[0].addr_spec == f"ivan{n}@example.com"
        assert parsed["Subject"] == f"Выпуск {n}"
        assert parsed.get_body(("plain",)).get_content() == f"Номер {n}\n"
    info = mime.layout_for.cache_info()
    assert (info.misses, info.hits) == (1, 49)


def test_random_bodies_read_back_as_written():
    """Whatever a template renders, a mail client reads the same text."""
    rng = random.Random(20261126)
    kinds = Counter()
    for n in range(200):
        # Every other message without line breaks: long lines, quoted-printable.
        alphabet = "abc АБВ ёж=.\t" + "€😀" + " " * 5 + "\r\n" * (n % 2)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 2500)))
        html = "<p>" + "".join(
            rng.choice(alphabet) for _ in range(rng.randrange(0, 2500))
        )
        message = outgoing(text=text, html=html)
        assert leaves(parse(message.as_bytes())) == leaves(parse(django_bytes(message)))
        kinds.update(mime.body_kind(body, "utf-8") for body in (text, html))
    assert kinds[mime.EIGHT_BIT] and kinds[mime.QUOTED_PRINTABLE], kinds


def test_a_body_holding_the_boundary_is_given_another(monkeypatch):
    sample = outgoing(text="Образец\n")
    layout = mime.layout_of(sample, {"text": mime.EIGHT_BIT, "html": mime.EIGHT_BIT})
    assert layout.multipart
    taken = mime.boundary_new()
    forged = f"--{taken}\nподделка\n"
    # The first boundary drawn is the one the body holds; another is drawn.
    draws = iter([int(taken.strip("=")), 12345])
    monkeypatch.setattr(mime.random, "randrange", lambda stop: next(draws))
    data = outgoing(text=forged).as_bytes()
    assert parse(data).get_body(("plain",)).get_content() == forged
    assert taken.encode() not in BOUNDARY.search(data).group(1)


def test_every_message_of_a_mailing_has_its_own_boundary():
    """One boundary for a whole mailing would mark its messages as one bulk."""
    boundaries = {
        BOUNDARY.search(outgoing(n).as_bytes()).group(1) for n in range(1, 21)
    }
    assert len(boundaries) == 20
    # Drawn as the standard library's generator draws them.
    django_style = re.compile(rb"={15}\d{%d}==" % mime.BOUNDARY_DIGITS)
    assert all(django_style.fullmatch(boundary) for boundary in boundaries)
    assert django_style.fullmatch(BOUNDARY.search(django_bytes(outgoing())).group(1))


def test_a_line_break_in_a_header_is_refused_as_django_refuses_it():
    with pytest.raises(BadHeaderError):
        django_bytes(outgoing(subject="Тема\nBcc: victim@example.com"))
    with pytest.raises(BadHeaderError):
        outgoing(subject="Тема\nBcc: victim@example.com").as_bytes()


def test_messages_without_their_own_date_and_id_do_not_share_them():
    """Django makes them up when absent; a layout must not freeze them."""
    first = parse(outgoing(1, headers={}).as_bytes())
    second = parse(outgoing(2, headers={}).as_bytes())
    assert first["Message-ID"] and first["Date"]
    assert first["Message-ID"] != second["Message-ID"]


def test_headers_written_directly_match_the_generators_folding():
    """The short cut for plain ASCII headers writes what the Header folding
    writes, short, long, with spaces or without."""
    rng = random.Random(20261201)
    alphabet = "abcXYZ019<>@.:/-_=+?&%~" + " \t;,"
    names = ["Message-ID", "Date", "List-Unsubscribe", "List-Id", "To", "X-Note"]
    for _ in range(3000):
        name = rng.choice(names)
        spaced = rng.random() < 0.5
        letters = alphabet if spaced else alphabet[:-4]
        value = "".join(rng.choice(letters) for _ in range(rng.randrange(0, 200)))
        assert mime.header_line(name, value, "utf-8") == mime.header_line_folded(
            name, value, "utf-8"
        ), (name, value)


def test_subjects_and_encoded_names_written_directly_match_django_and_the_generator():
    """A Subject (in any script, ASCII or not) and a To header with an
    encoded name are written as Django's header encoding and the
    generator's folding write them: RFC 2047 words of the same length, the
    same choice of base64 or quoted-printable, the same line breaks."""
    rng = random.Random(20261202)
    cyrillic = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗ"
    alphabets = [
        cyrillic + "abcXYZ019" + " ,.;:!?«»—-_=+()<>@\"'\t" + "😀€ß",
        cyrillic + "  .,",
        "abcdefgh ,;-«»é",  # mostly ASCII: quoted-printable is shorter
        "abcXYZ019<>@.:/-_=+?&%~ ;,\t",
    ]
    for _ in range(6000):
        letters = rng.choice(alphabets)
        value = "".join(rng.choice(letters) for _ in range(rng.randrange(0, 160)))
        assert mime.header_line("Subject", value, "utf-8") == mime.header_line_folded(
            "Subject", value, "utf-8"
        ), value
        name = value.strip()[:60] or "x"
        to = formataddr((name, f"r{rng.randrange(10**6):06d}.tag@example.org"))
        assert mime.header_line("To", to, "utf-8") == mime.header_line_folded(
            "To", to, "utf-8"
        ), to


def test_a_header_the_short_cuts_do_not_know_goes_through_django():
    """A vertical tab breaks a line for the Header machinery; a lone
    surrogate cannot be UTF-8: both take Django's path, and the second is
    refused there as Django refuses it."""
    value = "Новости\x0bнедели"
    assert mime.header_line("Subject", value, "utf-8") == mime.header_line_folded(
        "Subject", value, "utf-8"
    )
    assert mime.header_line("X-Note", "a\x0bb", "utf-8") == mime.header_line_folded(
        "X-Note", "a\x0bb", "utf-8"
    )
    assert mime.encoded_words("\ud800") is None
    with pytest.raises(UnicodeEncodeError):
        mime.header_line("Subject", "Тема \ud800", "utf-8")
