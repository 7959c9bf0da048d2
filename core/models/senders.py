"""Sender domains: a client's own domain, which mail may go out `From:`
once the DNS shows the client controls it (DESIGN.md, SenderDomain).

Adding one makes its DKIM key pair: the private key is stored only
encrypted (core/keys.py), the public key is what the owner publishes. The
DNS check (core/services/senders.py) sets `verified_at` when the published
DKIM record is this domain's key, and clears it when it stops being so.
Another client may add the same domain: each gets a selector and a key of
their own, and only the one whose record the domain's DNS publishes is
verified. The DNS record is the proof of ownership, not who added it first.
"""

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import DomainNameValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.keys import (
    SecretUnavailable,
    dkim_ed25519_key_new,
    dkim_key_new,
    dkim_public_key,
    dkim_record,
    secret_encrypt,
)

from .base import OwnedModel

# What a receiver is asked for: a DMARC policy that only reports at first.
DMARC_SUGGESTED = "v=DMARC1; p=none; adkim=r; aspf=r"
# The subdomain a client points at RETURN_PATH_HOST for their return path.
RETURN_PATH_LABEL = "bounces"


def domain_normalize(value: str) -> str:
    """A domain as DNS and DKIM name it: lowercase, ASCII (an internationalized
    name such as цветы.рф in its xn-- form), no trailing dot."""
    value = (value or "").strip().rstrip(".").lower()
    try:
        return value.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise ValidationError(
            _("“%(domain)s” is not a domain name."), params={"domain": value}
        ) from error


def spf_mechanism() -> str:
    """What the service's relay is named by in a client's SPF record."""
    if settings.SENDER_SPF:
        return settings.SENDER_SPF
    host = settings.EMAIL_HOST or "localhost"
    if host.replace(".", "").isdigit():
        return f"ip4:{host}"
    if ":" in host:
        return f"ip6:{host}"
    return f"a:{host}"


class SenderDomain(OwnedModel):
    """One of an owner's domains, its DKIM key and what its DNS says."""

    class Check(models.TextChoices):
        FOUND = "found", _("found")
        MISSING = "missing", _("missing")
        DIFFERENT = "different", _("different")

    domain = models.CharField(
        _("domain"),
        max_length=253,
        help_text=_("The part after @ in the addresses you send from, e.g. shop.ru."),
    )
    dkim_selector = models.CharField(_("DKIM selector"), max_length=63, editable=False)
    dkim_private_key = models.TextField(
        _("DKIM private key (encrypted)"), editable=False
    )
    dkim_public_key = models.TextField(_("DKIM public key"), editable=False)
    # Optional: a second signature with an Ed25519 key (RFC 8463), which
    # receivers that know it check beside the RSA one.
    signs_ed25519 = models.BooleanField(
        _("also sign with Ed25519"),
        default=False,
        help_text=_(
            "A second, shorter DKIM key (RFC 8463), for receivers that check "
            "it; the RSA signature stays, for those that do not. Publish its "
            "record too: it is used once the check finds it."
        ),
    )
    ed25519_private_key = models.TextField(
        _("Ed25519 private key (encrypted)"), blank=True, editable=False
    )
    ed25519_public_key = models.TextField(
        _("Ed25519 public key"), blank=True, editable=False
    )
    verified_at = models.DateTimeField(_("verified"), null=True, editable=False)
    checked_at = models.DateTimeField(_("DNS checked"), null=True, editable=False)
    # Record kind → found, missing or different, as the last check saw it.
    dns_check = models.JSONField(_("DNS check"), default=dict, editable=False)

    class Meta:
        verbose_name = _("sender domain")
        verbose_name_plural = _("sender domains")
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "domain"], name="senderdomain_owner_domain_unique"
            )
        ]

    def __str__(self):
        return self.domain

    @property
    def dkim_name(self) -> str:
        return f"{self.dkim_selector}._domainkey.{self.domain}"

    @property
    def ed25519_selector(self) -> str:
        return f"{self.dkim_selector}e"

    @property
    def ed25519_name(self) -> str:
        return f"{self.ed25519_selector}._domainkey.{self.domain}"

    def ed25519_in_use(self) -> bool:
        """Whether its mail gets the second signature: asked for, and its
        record found by the last check (a signature receivers cannot
        check is only noise)."""
        return (
            self.signs_ed25519
            and bool(self.ed25519_private_key)
            and (self.dns_check or {}).get("dkim-ed25519") == self.Check.FOUND
        )

    @property
    def return_path_name(self) -> str:
        return f"{RETURN_PATH_LABEL}.{self.domain}"

    def return_path_domain(self) -> str:
        """The domain its mail's envelope sender is at: the client's own
        bounce subdomain once the check found it pointing at the service's
        RETURN_PATH_HOST; "" (the service's BOUNCE_ADDRESS) otherwise."""
        if (
            settings.RETURN_PATH_HOST
            and (self.dns_check or {}).get("return-path") == self.Check.FOUND
        ):
            return self.return_path_name
        return ""

    def clean(self):
        super().clean()
        self.domain = domain_normalize(self.domain)
        try:
            DomainNameValidator(accept_idna=False)(self.domain)
        except ValidationError as error:
            raise ValidationError(
                {
                    "domain": _("“%(domain)s” is not a domain name.")
                    % {"domain": self.domain}
                }
            ) from error
        if "." not in self.domain:
            raise ValidationError(
                {"domain": _("A sender domain has a dot in it, e.g. shop.ru.")}
            )
        if self.pk is None:
            try:
                secret_encrypt(b"")  # the key it would be stored under
            except SecretUnavailable as error:
                raise ValidationError(str(error)) from error

    def save(self, *args, **kwargs):
        self.domain = domain_normalize(self.domain)
        if not self.dkim_private_key:
            # Whatever path adds it (the admin, a service, the shell), a
            # domain gets its own key, stored only encrypted.
            pem = dkim_key_new()
            self.dkim_private_key = secret_encrypt(pem)
            self.dkim_public_key = dkim_public_key(pem)
        if self.signs_ed25519 and not self.ed25519_private_key:
            pem = dkim_ed25519_key_new()
            self.ed25519_private_key = secret_encrypt(pem)
            self.ed25519_public_key = dkim_public_key(pem)
        if not self.dkim_selector:
            self.dkim_selector = f"ms{secrets.token_hex(3)}"
        super().save(*args, **kwargs)

    def dns_records(self) -> list[dict]:
        """What the owner publishes in the domain's DNS, as
        {"kind", "name", "type", "value"}: the DKIM key (what verifies the
        domain), suggested SPF and DMARC records, and with RETURN_PATH_HOST
        the CNAME that puts the return path on the client's domain."""
        records = [
            {
                "kind": "dkim",
                "name": self.dkim_name,
                "type": "TXT",
                "value": dkim_record(self.dkim_public_key),
            },
            {
                "kind": "spf",
                "name": self.domain,
                "type": "TXT",
                "value": f"v=spf1 {spf_mechanism()} ~all",
            },
            {
                "kind": "dmarc",
                "name": f"_dmarc.{self.domain}",
                "type": "TXT",
                "value": DMARC_SUGGESTED,
            },
        ]
        if self.signs_ed25519 and self.ed25519_public_key:
            records.insert(
                1,
                {
                    "kind": "dkim-ed25519",
                    "name": self.ed25519_name,
                    "type": "TXT",
                    "value": dkim_record(self.ed25519_public_key, kind="ed25519"),
                },
            )
        if settings.RETURN_PATH_HOST:
            records.append(
                {
                    "kind": "return-path",
                    "name": self.return_path_name,
                    "type": "CNAME",
                    "value": settings.RETURN_PATH_HOST,
                }
            )
        return records
