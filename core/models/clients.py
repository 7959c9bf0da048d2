from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from .base import OwnedModel, OwnedQuerySet


class ClientQuerySet(OwnedQuerySet):
    def subscribed(self):
        return self.filter(unsubscribed_at__isnull=True)

    def unsubscribed(self):
        return self.filter(unsubscribed_at__isnull=False)


class Client(OwnedModel):
    """A recipient of mailings, in one owner's list."""

    email = models.EmailField(_("e-mail"), max_length=254)
    full_name = models.CharField(_("full name"), max_length=255, blank=True)
    comment = models.TextField(_("comment"), blank=True)
    unsubscribed_at = models.DateTimeField(
        _("unsubscribed at"),
        null=True,
        blank=True,
        help_text=_("Set when the recipient unsubscribes; no mailing reaches them."),
    )

    objects = ClientQuerySet.as_manager()

    class Meta:
        verbose_name = _("recipient")
        verbose_name_plural = _("recipients")
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(
                "owner",
                Lower("email"),
                name="client_owner_email_ci_unique",
                violation_error_message=_(
                    "You already have a recipient with this e-mail."
                ),
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "email"], name="client_owner_email_idx"),
            models.Index(
                fields=["owner", "-created_at"], name="client_owner_created_idx"
            ),
        ]

    def __str__(self):
        return f"{self.full_name} <{self.email}>" if self.full_name else self.email

    def clean(self):
        super().clean()
        self.email = (self.email or "").strip().lower()
