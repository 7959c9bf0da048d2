"""A client's own SMTP relay: their mail goes through it instead of the
service's (the host, port, TLS mode and login of their provider).

The password is stored only encrypted (core/keys.py). Connection counts
and the rate limit are kept per relay, as for the service's: providers'
caps differ, and one client's relay never slows another's mail.
"""

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import DomainNameValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.keys import SecretUnavailable, secret_decrypt, secret_encrypt
from core.network import host_refusal, port_refusal

from .base import OwnedModel
from .senders import domain_normalize


class SmtpRelay(OwnedModel):
    """The relay one client's mail goes through."""

    class Security(models.TextChoices):
        STARTTLS = "starttls", _("STARTTLS (usually port 587)")
        SSL = "ssl", _("TLS from the start (usually port 465)")
        NONE = "none", _("none (only inside a trusted network)")

    # One relay per client: all their mailings go through it while it is on.
    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="smtp_relay",
        editable=False,
    )
    host = models.CharField(
        _("host"), max_length=253, help_text=_("e.g. smtp.yandex.ru")
    )
    port = models.PositiveIntegerField(_("port"), default=587)
    security = models.CharField(
        _("encryption"), max_length=8, choices=Security, default=Security.STARTTLS
    )
    username = models.CharField(_("login"), max_length=254, blank=True)
    password = models.TextField(_("password (encrypted)"), blank=True, editable=False)
    max_connections = models.PositiveSmallIntegerField(
        _("connections at most"),
        null=True,
        blank=True,
        help_text=_(
            "Your provider's limit on connections at once; empty for the "
            "service's SMTP_MAX_CONCURRENCY. Fewer are opened if the relay "
            "refuses more."
        ),
    )
    rate_limit = models.CharField(
        _("messages per second or hour"),
        max_length=20,
        blank=True,
        help_text=_("e.g. 5/s or 2000/h, as your provider allows; empty for none."),
    )
    is_active = models.BooleanField(
        _("send through this relay"),
        default=True,
        help_text=_("Unset, your mail goes through the service's relay."),
    )
    checked_at = models.DateTimeField(_("last checked"), null=True, editable=False)
    # What the last connection (a test, or a delivery) said went wrong; "" if
    # it worked.
    problem = models.CharField(_("problem"), max_length=500, blank=True, editable=False)

    class Meta:
        verbose_name = _("SMTP relay")
        verbose_name_plural = _("SMTP relays")
        ordering = ["host"]

    def __str__(self):
        place = f"{self.host}:{self.port}"
        return f"{self.username} @ {place}" if self.username else place

    def password_set(self, value: str) -> None:
        self.password = secret_encrypt(value.encode()) if value else ""

    def password_get(self) -> str:
        """The password as the relay is logged in with; SecretUnavailable if
        no key of ENCRYPTION_KEYS opens it."""
        return secret_decrypt(self.password).decode() if self.password else ""

    def clean(self):
        super().clean()
        self.host = (self.host or "").strip().rstrip(".").lower()
        if not _is_ip(self.host):
            try:
                DomainNameValidator(accept_idna=False)(domain_normalize(self.host))
            except ValidationError as error:
                raise ValidationError(
                    {"host": _("Give the relay's host name, e.g. smtp.yandex.ru.")}
                ) from error
        if problem := port_refusal(self.port):
            raise ValidationError({"port": problem})
        if problem := host_refusal(self.host, self.port):
            raise ValidationError({"host": problem})
        if (
            self.security == self.Security.NONE
            and self.password
            and not settings.SMTP_RELAY_ALLOW_PRIVATE
        ):
            raise ValidationError(
                {
                    "security": _(
                        "A password is never sent over the internet unencrypted: "
                        "choose STARTTLS or TLS."
                    )
                }
            )
        try:
            secret_encrypt(b"")  # the key the password would be stored under
        except SecretUnavailable as error:
            raise ValidationError(str(error)) from error


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
