"""Which key a message's mail is signed with, and the domain its return
path is at, looked up with each claim.

Apart from the DNS checks (core/services/senders.py) so the send path does
not import dnspython: a twentieth of a second of every process start.
"""

from typing import NamedTuple

from django.utils.translation import gettext as _

from core.keys import SecretUnavailable, secret_decrypt
from core.services.mail.dkim import DkimKey

# Decrypted keys by their stored token, so each is decrypted once a process.
_KEYS: dict[str, DkimKey] = {}
KEYS_KEPT = 256


class Signing(NamedTuple):
    key: DkimKey | None
    # Why the mail may not go now; "" when it may.
    problem: str = ""
    # The envelope sender's domain: the client's own return path, or "" for
    # the service's BOUNCE_ADDRESS.
    return_path: str = ""
    # Keys of further signatures beside `key` (the domain's Ed25519 one).
    also: tuple = ()


def message_signing(message) -> Signing:
    """The key to sign a message's mail with: its sender domain's, with the
    domain's return path. No key for mail from the service's own address;
    no key and a problem when its mail may not go now: the domain is no
    longer verified, or its key cannot be decrypted. Such mail waits rather
    than goes out unsigned."""
    if not message.from_email:
        return Signing(None)
    domain = message.sender_domain()
    if domain is None:
        return Signing(
            None,
            _(
                "The sender domain of %(address)s is not verified: publish its "
                "records (Sender domains), or choose another sender."
            )
            % {"address": message.from_email},
        )
    keys = []
    for token, selector in (
        (domain.dkim_private_key, domain.dkim_selector),
        (
            domain.ed25519_private_key if domain.ed25519_in_use() else "",
            domain.ed25519_selector,
        ),
    ):
        if not token:
            continue
        try:
            keys.append(_key(token, domain=domain.domain, selector=selector))
        except SecretUnavailable as error:
            # Either key unreadable: the mail waits, never signed with less.
            return Signing(
                None,
                _("The DKIM key of %(domain)s: %(error)s")
                % {"domain": domain.domain, "error": error},
            )
    return Signing(
        keys[0], return_path=domain.return_path_domain(), also=tuple(keys[1:])
    )


def _key(token: str, *, domain: str, selector: str) -> DkimKey:
    """A stored key, decrypted once a process."""
    key = _KEYS.get(token)
    if key is None:
        pem = secret_decrypt(token)
        key = DkimKey.from_pem(domain=domain, selector=selector, pem=pem, ours=True)
        if len(_KEYS) >= KEYS_KEPT:
            _KEYS.clear()
        _KEYS[token] = key
    return key
