"""DKIM signatures (RFC 6376) for bulk messages, at a small cost a message.

A mailing's messages differ per recipient in a few headers and in the body,
so each one is signed on its own: its body is canonicalized (relaxed) and
hashed with a search, a substitution or two and hashlib, the headers named in
`h=` are canonicalized (relaxed) from the message as it is, and the
signature is RSA-SHA256 through the `cryptography` package (OpenSSL). A
pure-Python signer (dkimpy) takes some 7 ms a message; dkimpy stays the
judge in the tests, which verify every signature this module makes.

`From` is signed one time more than it appears (over-signed): a second
From added on the way fails the signature instead of slipping under it.

Nothing here reads a model: the caller gives the key and the message bytes
(keys are made and published by core/keys.py).
"""

import base64
import hashlib
import re
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

# What a mailing's message carries that a receiver judges it by, in the
# order they are listed in `h=` when present.
SIGNED_HEADERS = (
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
)
OVERSIGNED = ("From",)

# Relaxed canonicalization (RFC 6376 3.4.2 and 3.4.4).
# Runs of whitespace become one space; a lone space is one already, and
# matching every word gap of a body would cost most of the signing.
_WSP_RUN = re.compile(rb"\t[ \t]*| [ \t]+")
# Literal patterns: the regular expression engine finds them in a body in
# half the time `in` and bytes.replace take.
_TWO_SPACES = re.compile(rb"  ")
_SPACE_BEFORE_CRLF = re.compile(rb" \r\n")
# A header field: its name, and its value with any continuation lines (each
# CRLF in a value is followed by a space or a tab), without the last CRLF.
_FIELD = re.compile(
    rb"^([^\s:][^:\r\n]*):([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.MULTILINE
)
_WANTED = frozenset(name.lower().encode() for name in SIGNED_HEADERS)


@dataclass(frozen=True)
class DkimKey:
    """A domain's signing key and the selector its public half is under: RSA
    (rsa-sha256), or Ed25519 (ed25519-sha256, RFC 8463) for a second
    signature beside it."""

    domain: str
    selector: str
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @classmethod
    def from_pem(
        cls, *, domain: str, selector: str, pem: bytes, ours: bool = False
    ) -> "DkimKey":
        """`ours`: the PEM is a key core.keys made, read back from its
        authenticated encryption, so OpenSSL's consistency check of an RSA
        key (some 40 ms, before a sending process's first message) is
        skipped: nobody could have changed it."""
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=ours
        )
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise ValueError("A DKIM key here is an RSA or an Ed25519 key.")
        return cls(domain=domain.lower(), selector=selector, private_key=key)

    @property
    def algorithm(self) -> str:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return "ed25519-sha256"
        return "rsa-sha256"

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            # RFC 8463 3: PureEdDSA over the SHA-256 hash of the data.
            return self.private_key.sign(hashlib.sha256(data).digest())
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def body_canonical(body: bytes) -> bytes:
    """The relaxed form of a body whose every line, the last included, ends
    in CRLF (RFC 6376 3.4.4)."""
    # Searched first: most bodies have neither, and a search costs a tenth
    # of a substitution's pass.
    if b"\t" in body or _TWO_SPACES.search(body):
        body = _WSP_RUN.sub(b" ", body)
    # Runs are single spaces now, so one space at most ends a line.
    body = _SPACE_BEFORE_CRLF.sub(b"\r\n", body).rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def header_canonical(name: bytes, value: bytes) -> bytes:
    """One header's relaxed form, without its CRLF (RFC 6376 3.4.2)."""
    # Unfolded: a CRLF in a value always comes before a space or a tab.
    value = value.replace(b"\r\n", b"")
    # Searched first, as in bodies: most values are one line of single spaces.
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    return name.strip(b" \t").lower() + b":" + value.strip(b" \r\n")


def _headers(head: bytes) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Lowercase name → (name, value) of each header `h=` may name, in
    message order."""
    found: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for name, value in _FIELD.findall(head):
        lower = name.rstrip(b" \t").lower()
        if lower in _WANTED:
            found.setdefault(lower, []).append((name, value))
    return found


def dkim_sign(
    message: bytes, key: DkimKey, *more: DkimKey, now: int | None = None
) -> bytes:
    """`message` (CRLF line endings) with a DKIM-Signature header first for
    `key` and for each of `more` (the body hashed once for all)."""
    split = message.find(b"\r\n\r\n")
    if split < 0:
        head, body = message, b""
    else:
        head, body = message[: split + 2], message[split + 4 :]
    if body and not body.endswith(b"\r\n"):
        # The transport ends the last line before the final dot: signed as
        # it is sent, trailing spaces of that line are no question.
        body += b"\r\n"
        message = head + b"\r\n" + body
    body_hash = base64.b64encode(hashlib.sha256(body_canonical(body)).digest())
    present = _headers(head)
    names, canonical = [], []
    for name in SIGNED_HEADERS:
        instances = present.get(name.lower().encode(), [])
        # Bottom-up, as verifiers take repeated headers (RFC 6376 5.4.2).
        for raw_name, value in reversed(instances):
            names.append(name)
            canonical.append(header_canonical(raw_name, value) + b"\r\n")
        if name in OVERSIGNED:
            names.append(name)  # names no header: signs that there is none more
    timestamp = int(time.time()) if now is None else now
    headers = b"".join(canonical)
    signatures = []
    for each in (key, *more):
        tags = (
            f"v=1; a={each.algorithm}; c=relaxed/relaxed; d={each.domain}; "
            f"s={each.selector};\r\n\tt={timestamp}; h={':'.join(names)};\r\n"
            f"\tbh={body_hash.decode()};\r\n\tb="
        )
        signed = headers + header_canonical(b"DKIM-Signature", tags.encode())
        encoded = base64.b64encode(each.sign(signed)).decode()
        folded = "\r\n\t ".join(encoded[i : i + 72] for i in range(0, len(encoded), 72))
        signatures.append(f"DKIM-Signature: {tags}{folded}\r\n".encode())
    return b"".join(signatures) + message
