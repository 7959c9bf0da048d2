from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import connection, models
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .audience import Field, Tag, attributes_clean
from .base import OwnedModel, OwnedQuerySet
from .suppressions import Suppression, suppressed_q, suppression_keys
from .users import email_normalize

COMMENT_MAX_LENGTH = 2000


def subscribed_q(prefix: str = "") -> Q:
    """The one rule for a recipient whom mailings may reach: confirmed, not
    unsubscribed and not suppressed. `prefix` reads it through a relation
    (``subscribed_q("client__")``)."""
    return (
        Q(**{f"{prefix}confirmed_at__isnull": False})
        & Q(**{f"{prefix}unsubscribed_at__isnull": True})
        & ~suppressed_q(owner=f"{prefix}owner_id", email=f"{prefix}email")
    )


class ClientQuerySet(OwnedQuerySet):
    def audience_of(self, mailing, *, segments=()):
        """Recipients a mailing is for, each once: chosen for it, carrying one
        of its tags, or members of one of its `segments` (whose rules the
        caller has loaded). `mailing` is an id or an expression (OuterRef)."""
        through = self.model.mailings.through.objects.filter(mailing_id=mailing)
        tagged = self.model.tags.through.objects.filter(tag__mailings=mailing)
        return self._audience(
            chosen=through.values("client_id"),
            tagged=tagged.values("client_id"),
            segments=segments,
        )

    def audience(self, *, clients, tags, segments=()):
        """The same for a mailing being edited: the recipients `clients`,
        everyone carrying one of `tags` and the members of `segments`."""
        tagged = self.model.tags.through.objects.filter(tag_id__in=tags)
        return self._audience(
            chosen=clients, tagged=tagged.values("client_id"), segments=segments
        )

    def _audience(self, *, chosen, tagged, segments):
        # The one rule of who a mailing reaches, whichever asks.
        who = Q(pk__in=chosen) | Q(pk__in=tagged)
        for segment in segments:
            who |= segment.members_q()
        return self.filter(who)

    def with_email(self, email: str):
        """Recipients with this address, however it is spelled: by the
        lower-cased address the unique index (owner, lower(email)) holds, so
        a lookup in a 100,000-row list is an index probe, not the scan of
        `iexact`'s UPPER() (about 100 ms on PostgreSQL)."""
        return self.alias(email_key=Lower("email")).filter(
            email_key=email_normalize(email)
        )

    def subscribed(self):
        return self.filter(subscribed_q())

    def unconfirmed(self):
        return self.filter(confirmed_at__isnull=True)

    def attribute_remove(self, key: str) -> int:
        """Drop one custom field's values from these recipients (the field is
        gone); how many changed. One statement, not a row at a time."""
        rows = self.filter(attributes__has_key=key)
        if connection.vendor == "postgresql":
            value = RawSQL("attributes - %s", [key])
        else:
            value = RawSQL("json_remove(attributes, %s)", [f'$."{key}"'])
        return rows.update(attributes=value)

    def unsubscribed(self):
        return self.exclude(subscribed_q())


class Client(OwnedModel):
    """A recipient of mailings, in one owner's list."""

    class Source(models.TextChoices):
        ADMIN = "admin", _("added by the owner")
        IMPORT = "import", _("imported")
        FORM = "form", _("subscription form")

    email = models.EmailField(_("e-mail"), max_length=254)
    full_name = models.CharField(_("full name"), max_length=255, blank=True)
    comment = models.TextField(
        _("comment"),
        blank=True,
        max_length=COMMENT_MAX_LENGTH,
        validators=[MaxLengthValidator(COMMENT_MAX_LENGTH)],
    )
    tags = models.ManyToManyField(
        Tag, verbose_name=_("tags"), related_name="clients", blank=True
    )
    attributes = models.JSONField(
        _("custom fields"),
        default=dict,
        blank=True,
        help_text=_("Values of your custom fields, by key."),
    )
    source = models.CharField(
        _("source"),
        max_length=16,
        choices=Source,
        default=Source.ADMIN,
        editable=False,
    )
    # A recipient the owner adds or imports is confirmed at once (the owner
    # vouches for consent); one who subscribes through a form is confirmed
    # by the link mailed to them (double opt-in).
    confirmed_at = models.DateTimeField(
        _("confirmed at"),
        null=True,
        blank=True,
        default=timezone.now,
        help_text=_(
            "Empty until the recipient confirms their subscription; no "
            "mailing reaches them before."
        ),
    )
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

    def save(self, *args, **kwargs):
        """An unsubscribe sticks, whatever path saves the row: an address
        suppressed for the owner stays unsubscribed, and setting the date
        writes the suppression (imports, which bypass save, do the same in
        bulk)."""
        fields = kwargs.get("update_fields")
        touched = fields is None or {"email", "unsubscribed_at"} & set(fields)
        derived = False
        if touched and self.unsubscribed_at is None:
            self.unsubscribed_at = self.suppressed_since()
            # Suppressed already (an erasure keeps only a digest: no plain
            # address is written next to it).
            derived = self.unsubscribed_at is not None
        super().save(*args, **kwargs)
        if touched and self.unsubscribed_at is not None and not derived:
            self.suppress()

    def clean(self):
        super().clean()
        self.email = email_normalize(self.email)
        if self.owner_id is not None:
            try:
                self.attributes = attributes_clean(
                    fields=Field.objects.filter(owner_id=self.owner_id),
                    values=self.attributes,
                )
            except ValidationError as error:
                raise ValidationError({"attributes": error.messages}) from None

    def suppressed_since(self):
        """When the address was first suppressed for this owner, or None."""
        return (
            Suppression.objects.applying_to(owner_id=self.owner_id)
            .filter(email__in=suppression_keys(self.email))
            .order_by("created_at")
            .values_list("created_at", flat=True)
            .first()
        )

    def suppress(self, *, detail: str = "") -> None:
        """Record this recipient's unsubscribe for good."""
        Suppression.objects.record(
            owner_id=self.owner_id,
            emails=[self.email],
            reason=Suppression.Reason.UNSUBSCRIBED,
            detail=detail,
            at=self.unsubscribed_at,
        )
