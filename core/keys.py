"""Key material: secrets kept encrypted at rest, and DKIM key pairs.

What the database must hold but never in the clear (a sender domain's DKIM
private key, a client's relay password) is a Fernet token (cryptography):
AES-128-CBC with an HMAC-SHA256, under the keys of ENCRYPTION_KEYS. The
first key encrypts; every key listed decrypts. A key is rotated by putting
a new one first, running `manage.py encryption_rotate` (every secret is
encrypted again under it), and then dropping the old one.

In development a key is derived from SECRET_KEY when ENCRYPTION_KEYS is not
set, so `make run` needs nothing more; production has none unless it is set,
and then nothing can be encrypted: adding a sender domain says so.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.conf import settings
from django.utils.translation import gettext as _

DKIM_KEY_BITS = 2048


class SecretUnavailable(Exception):
    """A secret cannot be encrypted or read here; the message says why."""


def encryption_keys() -> list[bytes]:
    """The Fernet keys, the encrypting one first."""
    keys = [key.encode() for key in settings.ENCRYPTION_KEYS if key]
    if not keys and settings.DEBUG:
        digest = hashlib.sha256(f"encryption:{settings.SECRET_KEY}".encode()).digest()
        keys = [base64.urlsafe_b64encode(digest)]
    return keys


def _fernet() -> MultiFernet:
    keys = encryption_keys()
    if not keys:
        raise SecretUnavailable(
            _(
                "No encryption key is set (ENCRYPTION_KEYS), so secrets cannot "
                "be stored: ask the administrator to set one."
            )
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as error:
        raise SecretUnavailable(
            _("ENCRYPTION_KEYS holds a key that is not a Fernet key: %(error)s")
            % {"error": error}
        ) from error


def secret_encrypt(value: bytes) -> str:
    """`value` as a token to store."""
    return _fernet().encrypt(value).decode()


def secret_decrypt(token: str) -> bytes:
    """The value a stored token holds; SecretUnavailable if no key opens it."""
    try:
        return _fernet().decrypt(token.encode())
    except InvalidToken as error:
        raise SecretUnavailable(_unreadable()) from error


def secret_rotate(token: str) -> str:
    """The same secret under the first key (unchanged if it is already)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as error:
        raise SecretUnavailable(_unreadable()) from error


def _unreadable() -> str:
    return _(
        "A stored secret cannot be decrypted with the keys of ENCRYPTION_KEYS: "
        "the key it was encrypted with was removed or changed. Put that key "
        "back (after the new one) and run `manage.py encryption_rotate`."
    )


def dkim_key_new() -> bytes:
    """A new RSA key for DKIM signatures, as unencrypted PKCS#8 PEM: encrypt
    it (secret_encrypt) before it is stored."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=DKIM_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def dkim_ed25519_key_new() -> bytes:
    """A new Ed25519 key for a second DKIM signature (RFC 8463), as
    unencrypted PKCS#8 PEM: encrypt it before it is stored."""
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def dkim_public_key(pem: bytes) -> str:
    """The `p=` value of a private key's DKIM record, base64: an RSA key's
    public half as DER, an Ed25519 key's as its 32 raw bytes (RFC 8463)."""
    key = serialization.load_pem_private_key(pem, password=None).public_key()
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def dkim_record(public_key: str, *, kind: str = "rsa") -> str:
    """The TXT record that publishes a DKIM public key (`kind` rsa or ed25519)."""
    return f"v=DKIM1; k={kind}; p={public_key}"
