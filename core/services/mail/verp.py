"""The return path we can read: every message names its attempt (VERP).

A mailing's message goes out with the envelope sender
`bounces+<token>@<domain>` (from BOUNCE_ADDRESS) and a Message-ID that
carries the same token. A bounce comes back to that address, and a
complaint quotes the Message-ID, so either names the attempt it is about.

The token is the attempt's id in base 36, a dash, and 40 bits of an HMAC of
it under SECRET_KEY in base 32: short, and lower case only, since some
servers lower-case the local part on the way back. A bounce whose token
does not verify matches nothing, so a forged bounce naming a real
recipient suppresses nobody.
"""

import base64
import functools
import hashlib
import hmac
import re
from email.utils import make_msgid

from django.conf import settings
from django.utils.crypto import constant_time_compare

SALT = "core.mail.verp"
MAC_LENGTH = 8  # base-32 characters: 40 bits
TOKEN = re.compile(rf"\b([0-9a-z]{{1,13}})-([a-z2-7]{{{MAC_LENGTH}}})\b")
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int) -> str:
    digits = []
    while True:
        number, remainder = divmod(number, 36)
        digits.append(DIGITS[remainder])
        if not number:
            return "".join(reversed(digits))


@functools.lru_cache(maxsize=4)
def _hmac_key(secret: str) -> bytes:
    # As Django's salted_hmac derives it; kept, since it is the same for
    # every message (it cost two thirds of a token).
    return hashlib.sha256((SALT + secret).encode()).digest()


def _mac(key: str) -> str:
    digest = hmac.digest(_hmac_key(settings.SECRET_KEY), key.encode(), "sha256")
    return base64.b32encode(digest[:5]).decode().lower()


def verp_token(attempt_id: int) -> str:
    key = _base36(attempt_id)
    return f"{key}-{_mac(key)}"


def token_attempt(key: str, mac: str) -> int | None:
    """The attempt a token's two halves name, or None if it does not verify."""
    if len(key) > 13 or not constant_time_compare(_mac(key), mac):
        return None
    return int(key, 36)


def verp_address(attempt_id: int, token: str = "", *, domain: str = "") -> str:
    """The envelope sender of one attempt's message: at BOUNCE_ADDRESS's
    domain, or at `domain` (a client's return path, which leads to the same
    bounce mailbox)."""
    local, _, bounce_domain = settings.BOUNCE_ADDRESS.rpartition("@")
    return f"{local}+{token or verp_token(attempt_id)}@{domain or bounce_domain}"


def verp_message_id(attempt_id: int, domain: str, token: str = "") -> str:
    """A Message-ID of its own for each message, carrying the token."""
    return make_msgid(idstring=token or verp_token(attempt_id), domain=domain)


def attempts_named(text: str, *, tries: int = 20) -> list[int]:
    """The attempts whose verified tokens `text` holds, in order, each once.

    A token is looked for wherever our address or Message-ID may be quoted:
    the headers a bounce was delivered with, the returned headers, the
    report's fields.
    """
    found = []
    for number, match in enumerate(TOKEN.finditer(text.lower())):
        if number >= tries:  # a report quotes ours a few times, not thousands
            break
        attempt_id = token_attempt(match[1], match[2])
        if attempt_id is not None and attempt_id not in found:
            found.append(attempt_id)
    return found
