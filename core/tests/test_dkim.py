"""DKIM signing (core/services/mail/dkim.py), judged by dkimpy's verifier.

Every message is laid out by the send path's own MIME code, signed, and
verified by dkimpy against the key's published record; a changed byte, an
added From or another domain's record fails.
"""

import functools
import random
from email.utils import formataddr

import dkim
import pytest

from core.keys import dkim_key_new, dkim_public_key, dkim_record
from core.services.mail import dkim as signer
from core.services.mail.mime import Outgoing

DOMAIN = "shop.example"
SELECTOR = "m2026"


@functools.lru_cache(maxsize=1)
def key() -> signer.DkimKey:
    return signer.DkimKey.from_pem(domain=DOMAIN, selector=SELECTOR, pem=dkim_key_new())


def record_of(k: signer.DkimKey) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = k.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return dkim_record(dkim_public_key(pem))


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


def test_a_signed_message_verifies():
    data = signer.dkim_sign(message(), key())
    assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert verified(data)


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
def test_signatures_verify_for_every_kind_of_message(parts):
    assert verified(signer.dkim_sign(message(**parts), key()))


def test_random_messages_verify():
    rng = random.Random(20261202)
    letters = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя ABCxyz.,;:!?\t  \n\n—«»"
    for _ in range(40):
        text = "".join(rng.choice(letters) for _ in range(rng.randrange(0, 3000)))
        subject = "".join(
            rng.choice(letters.replace("\n", "")) for _ in range(rng.randrange(1, 120))
        )
        assert verified(signer.dkim_sign(message(subject=subject, text=text), key()))


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


def test_a_changed_byte_fails():
    data = signer.dkim_sign(message(text="Скидка 10% на всё.\n"), key())
    assert verified(data)
    body_changed = data.replace(b"10%", b"90%")
    assert body_changed != data and not verified(body_changed)
    subject_changed = data.replace(b"\r\nSubject: ", b"\r\nSubject: X")
    assert subject_changed != data and not verified(subject_changed)
    to_changed = data.replace(b"anna@example.org", b"anne@example.org")
    assert not verified(to_changed)


def test_an_added_from_fails():
    data = signer.dkim_sign(message(), key())
    forged = data.replace(b"\r\nFrom: ", b"\r\nFrom: boss@bank.example\r\nFrom: ", 1)
    assert not verified(forged)


def test_another_domains_record_does_not_verify_it():
    data = signer.dkim_sign(message(), key())
    other = signer.DkimKey.from_pem(
        domain=DOMAIN, selector=SELECTOR, pem=dkim_key_new()
    )
    assert not verified(data, other)


def test_the_record_to_publish_names_the_public_key():
    record = record_of(key())
    assert record.startswith("v=DKIM1; k=rsa; p=MII")
    assert "PRIVATE" not in record and len(record) > 380  # 2048 bits


def test_only_an_rsa_key_is_taken():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError):
        signer.DkimKey.from_pem(domain=DOMAIN, selector=SELECTOR, pem=pem)
