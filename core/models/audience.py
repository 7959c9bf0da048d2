"""Who a mailing reaches beyond recipients chosen one by one (DESIGN.md,
Domain model): tags for now; custom fields and segments join them here."""

from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from .base import OwnedModel


class Tag(OwnedModel):
    """A label an owner puts on recipients; a mailing may go to everyone
    who carries it."""

    name = models.CharField(_("name"), max_length=100)
    is_public = models.BooleanField(
        _("public topic"),
        default=False,
        help_text=_(
            "Offered to recipients as a topic they may choose in the preference centre."
        ),
    )

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                "owner",
                Lower("name"),
                name="tag_owner_name_ci_unique",
                violation_error_message=_("You already have a tag with this name."),
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        self.name = " ".join((self.name or "").split())
