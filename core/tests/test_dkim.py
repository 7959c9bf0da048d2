"""DKIM signing (core/services/mail/dkim.py), judged by two verifiers.

Every message is laid out by the send path's own MIME code, signed, and
verified by dkimpy and by OpenDKIM (opendkim-testmsg, which looks the key
up in a real DNS server, core/tests/opendkim.py); a changed byte, an added
From or another domain's record fails both.
"""

import base64
import functools
import random
from email.utils import formataddr

import dkim
import pytest

from core.keys import (
    dkim_ed25519_key_new,
    dkim_key_new,
    dkim_public_key,
    dkim_record,
)
from core.services.mail import dkim as signer
from core.services.mail.mime import Outgoing

DOMAIN = "shop.example"
SELECTOR = "m2026"


@functools.lru_cache(maxsize=1)
def key() -> signer.DkimKey:
    return signer.DkimKey.from_pem(domain=DOMAIN, selector=SELECTOR, pem=dkim_key_new())


@functools.lru_cache(maxsize=1)
def ed25519_key() -> signer.DkimKey:
    """The second key (RFC 8463), under a selector of its own."""
    return signer.DkimKey.from_pem(
        domain=DOMAIN, selector=f"{SELECTOR}e", pem=dkim_ed25519_key_new()
    )


def record_of(k: signer.DkimKey) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = k.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    kind = "ed25519" if k.algorithm.startswith("ed25519") else "rsa"
    return dkim_record(dkim_public_key(pem), kind=kind)


def published(*keys):
    """A resolver holding the keys' TXT records, as dkimpy asks for them."""
    records = {
        f"{k.selector}._domainkey.{k.domain}.".encode(): record_of(k).encode()
        for k in keys
    }

    def dnsfunc(name, timeout=5):
        return records.get(name)

    return dnsfunc


def message(*, subject="Новости недели", text="Здравствуйте!\n", html="", **extra):
    headers = {
        "Message-ID": "<a1b2.c3@mail.example>",
        "Date": "Wed, 02 Dec 2026 07:30:00 +0000",
        "List-Id": "Новости <7.3.mailing.mail.example>",
        "List-Unsubscribe": "<https://mail.example/unsubscribe/abc/>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    headers.update(extra)
    return Outgoing(
        subject=subject,
        text=text,
        html=html,
        from_email=formataddr(("Цветочная лавка", f"news@{DOMAIN}")),
        to=formataddr(("Анна Иванова", "anna@example.org")),
        reply_to=(f"hello@{DOMAIN}",),
        headers=headers,
        address="anna@example.org",
    ).as_bytes()


def verified(data: bytes, *keys) -> bool:
    return dkim.verify(data, dnsfunc=published(*(keys or (key(),))))


def zone(*keys) -> dict:
    """The keys' records as a DNS server publishes them."""
    return {f"{k.selector}._domainkey.{k.domain}": [record_of(k)] for k in keys}


@pytest.fixture
def judges(opendkim):
    """Both verifiers, dkimpy and OpenDKIM, against the key's published record:
    `judges(data)` is (dkimpy's verdict, OpenDKIM's)."""
    opendkim.publish(zone(key()))

    def judge(data: bytes) -> tuple[bool, bool]:
        return verified(data), opendkim.verify(data)[0]

    judge.opendkim = opendkim
    return judge


BOTH = (True, True)
NEITHER = (False, False)


def test_a_signed_message_verifies(judges):
    data = signer.dkim_sign(message(), key())
    assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert judges(data) == BOTH


@pytest.mark.parametrize(
    "parts",
    [
        {"text": "Plain ASCII body.\n\nSecond paragraph.\n"},
        {"text": "Привет, " * 200 + "\n", "html": "<p>" + "Ёлка " * 400 + "</p>"},
        # A line too long for 8bit: quoted-printable.
        {"text": "Длинная строка " * 90 + "\n"},
        # Trailing spaces, tabs, blank lines at the end, a leading dot.
        {"text": "a  \t b \n\n.dot first\n   \n\n\n"},
        # A long Subject folds over several lines, as does a long name.
        {"subject": "Осенняя распродажа: скидки на все букеты и горшечные " * 3},
        {"text": ""},
    ],
)
def test_signatures_verify_for_every_kind_of_message(parts, judges):
    assert judges(signer.dkim_sign(message(**parts), key())) == BOTH


def test_random_messages_verify(judges):
    rng = random.Random(20261202)
    letters = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя ABCxyz.,;:!?\t  \n\n—«»"
    for _ in range(40):
        text = "".join(rng.choice(letters) for _ in range(rng.randrange(0, 3000)))
        subject = "".join(
            rng.choice(letters.replace("\n", "")) for _ in range(rng.randrange(1, 120))
        )
        data = signer.dkim_sign(message(subject=subject, text=text), key())
        assert judges(data) == BOTH, (subject, text)


def test_relaxed_forms_are_dkimpys_for_any_whitespace():
    """The canonical forms skip work where a search says it is not needed;
    dkimpy's own relaxed canonicalization judges them on bodies and headers
    of nothing but the awkward cases: runs, tabs, spaces before CRLF, folds,
    blank lines at the end."""
    from dkim.canonicalization import Relaxed

    rng = random.Random(20261203)
    pieces = [
        b" ",
        b"  ",
        b"\t",
        b" \t ",
        b"\r\n",
        b" \r\n",
        b"\t\r\n",
        b"a",
        b"\xd1\x91",
    ]
    for _ in range(500):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40)))
        body = body if body.endswith(b"\r\n") or not body else body + b"\r\n"
        assert signer.body_canonical(body) == Relaxed.canonicalize_body(body), body
        value = b"".join(
            rng.choice([b" ", b"  ", b"\t", b"\r\n ", b"\r\n\t", b"x", b"\xd1\x91"])
            for _ in range(rng.randrange(1, 20))
        )
        name = rng.choice([b"Subject", b"subject ", b"List-Id\t"])
        field = name + b":" + value + b"\r\n"
        parsed = signer._headers(field)
        ((raw, raw_value),) = parsed[name.strip().lower()]
        expected = Relaxed.canonicalize_headers([(raw, raw_value + b"\r\n")])[0]
        assert signer.header_canonical(raw, raw_value) + b"\r\n" == b":".join(
            expected
        ), field


def test_every_header_receivers_judge_by_is_signed_and_from_twice():
    data = signer.dkim_sign(message(), key())
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    signed = header.split(" h=", 1)[1].split(";", 1)[0].split(":")
    assert signed == [
        "From",
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ]


def test_a_changed_byte_fails(judges):
    data = signer.dkim_sign(message(text="Скидка 10% на всё.\n"), key())
    assert judges(data) == BOTH
    body_changed = data.replace(b"10%", b"90%")
    assert body_changed != data and judges(body_changed) == NEITHER
    subject_changed = data.replace(b"\r\nSubject: ", b"\r\nSubject: X")
    assert subject_changed != data and judges(subject_changed) == NEITHER
    to_changed = data.replace(b"anna@example.org", b"anne@example.org")
    assert judges(to_changed) == NEITHER


def test_an_added_from_fails(judges):
    data = signer.dkim_sign(message(), key())
    forged = data.replace(b"\r\nFrom: ", b"\r\nFrom: boss@bank.example\r\nFrom: ", 1)
    assert judges(forged) == NEITHER


def test_another_domains_record_does_not_verify_it(judges):
    data = signer.dkim_sign(message(), key())
    other = signer.DkimKey.from_pem(
        domain=DOMAIN, selector=SELECTOR, pem=dkim_key_new()
    )
    assert not verified(data, other)
    judges.opendkim.publish(zone(other))
    assert judges.opendkim.verify(data) == (
        False,
        "opendkim-testmsg: dkim_eom(): Bad signature",
    )


def test_the_record_to_publish_names_the_public_key():
    record = record_of(key())
    assert record.startswith("v=DKIM1; k=rsa; p=MII")
    assert "PRIVATE" not in record and len(record) > 380  # 2048 bits


def test_only_an_rsa_or_an_ed25519_key_is_taken():
    """Ed25519 signs beside RSA now (RFC 8463); any other kind is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError):
        signer.DkimKey.from_pem(domain=DOMAIN, selector=SELECTOR, pem=pem)
    assert ed25519_key().algorithm == "ed25519-sha256"


# --- a second signature with Ed25519 (RFC 8463) -----------------------------


def verified_each(data: bytes, *keys) -> list[bool]:
    """dkimpy's verdict on each signature of the message, first to last."""
    count = data.count(b"DKIM-Signature:")
    checker = dkim.DKIM(data)
    return [
        checker.verify(idx=index, dnsfunc=published(*keys)) for index in range(count)
    ]


def test_an_ed25519_signature_alone_verifies_with_both(opendkim):
    opendkim.publish(zone(ed25519_key()))
    data = signer.dkim_sign(message(), ed25519_key())
    assert b"a=ed25519-sha256;" in data
    assert verified(data, ed25519_key())
    assert opendkim.verify(data) == (True, "")
    changed = data.replace("Здравствуйте".encode(), "Здравствуй".encode())
    changed = changed if changed != data else data[:-6] + b"X" + data[-5:]
    assert not verified(changed, ed25519_key())
    assert not opendkim.verify(changed)[0]


def test_rsa_and_ed25519_side_by_side_each_verify(opendkim):
    opendkim.publish(zone(key(), ed25519_key()))
    data = signer.dkim_sign(message(html="<p>Привет</p>"), key(), ed25519_key())
    assert data.count(b"DKIM-Signature:") == 2
    # One body hash for both.
    hashes = {line for line in data.split(b"\r\n") if line.startswith(b"\tbh=")}
    assert len(hashes) == 1
    assert verified_each(data, key(), ed25519_key()) == [True, True]
    assert opendkim.verify(data)[0]
    # A receiver that knows only RSA still has a good signature to check.
    assert verified_each(data, key()) == [True, False]


def test_the_ed25519_record_is_its_raw_public_key():
    record = record_of(ed25519_key())
    assert record.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(record.rpartition("p=")[2])) == 32
