"""Subscription forms: the public page `/subscribe/<slug>/` and its
embeddable snippet, which grow an owner's list by double opt-in
(DESIGN.md, SubscriptionForm; the service is core/services/subscriptions.py).
"""

import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from .audience import Field, Tag
from .base import OwnedModel
from .mailings import Message

TEXT_MAX_LENGTH = 5000
# Addresses the site's own pages or consent sources use.
RESERVED_SLUGS = frozenset({"confirm", "sent", "import", "admin", "preferences"})


class SubscriptionForm(OwnedModel):
    """What a form asks, the consents it records, and what follows."""

    title = models.CharField(_("title"), max_length=200)
    slug = models.SlugField(
        _("address"),
        max_length=60,
        unique=True,
        blank=True,
        help_text=_(
            "The form's page is /subscribe/<address>/. Left empty, one is made "
            "from the title."
        ),
    )
    intro = models.TextField(
        _("introduction"),
        blank=True,
        max_length=TEXT_MAX_LENGTH,
        help_text=_("Shown above the form: what people subscribe to."),
    )
    ask_name = models.BooleanField(_("ask for the name"), default=True)
    fields = models.ManyToManyField(
        Field,
        verbose_name=_("custom fields asked"),
        related_name="+",
        blank=True,
    )
    required_fields = models.ManyToManyField(
        Field,
        verbose_name=_("custom fields required"),
        related_name="+",
        blank=True,
        help_text=_("Of the fields asked, those a subscriber must fill."),
    )
    tags = models.ManyToManyField(
        Tag,
        verbose_name=_("tags added"),
        related_name="+",
        blank=True,
        help_text=_("Given to everyone who confirms their subscription."),
    )
    personal_data_text = models.TextField(
        _("consent to the processing of personal data"),
        max_length=TEXT_MAX_LENGTH,
        help_text=_(
            "The text a subscriber agrees to by ticking its box (always asked; "
            "Federal Law 152-FZ). Each version agreed to is kept."
        ),
    )
    ask_marketing = models.BooleanField(
        _("ask for consent to advertising"),
        default=True,
        help_text=_(
            "A second, separate box for consent to advertising mailings "
            "(Federal Law 38-FZ)."
        ),
    )
    marketing_text = models.TextField(
        _("consent to advertising mailings"),
        blank=True,
        max_length=TEXT_MAX_LENGTH,
    )
    success_message = models.TextField(
        _("message after confirmation"),
        blank=True,
        max_length=TEXT_MAX_LENGTH,
        help_text=_("Shown when the subscriber confirms. Empty: a standard one."),
    )
    redirect_url = models.URLField(
        _("or go to this page"),
        blank=True,
        help_text=_("After confirmation, send the subscriber to this address instead."),
    )
    welcome_message = models.ForeignKey(
        Message,
        verbose_name=_("welcome message"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Optional: sent to each subscriber once they confirm."),
    )
    is_published = models.BooleanField(
        _("published"),
        default=True,
        help_text=_("Unpublished, the page and the snippet accept nothing."),
    )

    class Meta:
        verbose_name = _("subscription form")
        verbose_name_plural = _("subscription forms")
        ordering = ["title"]

    def __str__(self):
        return self.title

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = self._free_slug()
        super().save(*args, **kwargs)

    def get_absolute_url(self):
        return reverse("subscribe", kwargs={"slug": self.slug})

    def clean(self):
        super().clean()
        if self.slug in RESERVED_SLUGS:
            raise ValidationError({"slug": _("This address is taken. Choose another.")})
        if self.ask_marketing and not (self.marketing_text or "").strip():
            raise ValidationError(
                {
                    "marketing_text": _(
                        "Write the text of the consent to advertising, or "
                        "do not ask for it."
                    )
                }
            )

    def _free_slug(self) -> str:
        base = slugify(self.title)[:40] or "form"
        slug = base
        while (
            slug in RESERVED_SLUGS
            or SubscriptionForm.objects.filter(slug=slug).exists()
        ):
            slug = f"{base}-{secrets.token_hex(3)}"
        return slug
