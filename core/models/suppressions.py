"""Suppressions: addresses no mailing may reach (DESIGN.md, List health).

An unsubscribe, a complaint, a hard bounce or an erasure writes one, and no
import or owner edit removes it: deleting a recipient and adding the
address again, re-importing it, or clearing its unsubscribe date leaves it
suppressed. Only a manager or a superuser lifts a `manual` one; only the
recipient's own confirmed opt-in (a subscription form) lifts their
unsubscribe or erasure; nobody lifts the others.

An erasure keeps the address's sha256 only: every path that adds a recipient
(the admin, imports, forms) looks the address up both ways
(`suppression_keys`). The send path's SQL check (`suppressed_q`) reads plain
addresses: an erased recipient's row is gone, and whatever adds it back has
read the digest and marked it unsubscribed.

A suppression is a record, not a row its owner edits, so it carries no
object permissions: its owner sees it (`visible_to`), managers see all.
"""

import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .base import OwnedQuerySet
from .users import email_normalize


def email_digest(address: str) -> str:
    """What an erasure keeps of an address: its normal form's sha256."""
    return hashlib.sha256(email_normalize(address).encode()).hexdigest()


def suppression_keys(address: str) -> list[str]:
    """How a suppression may name an address: as it is, or erased."""
    return [email_normalize(address), email_digest(address)]


class SuppressionQuerySet(OwnedQuerySet):
    def applying_to(self, *, owner_id):
        """The suppressions that bind one owner: their own and the service's."""
        return self.filter(Q(owner_id=owner_id) | Q(owner__isnull=True))

    def liftable(self):
        return self.filter(reason=Suppression.Reason.MANUAL)

    def record(self, *, owner_id, emails, reason, detail: str = "", at=None) -> None:
        """Suppress `emails` for `owner_id` (None: the whole service); an
        address already suppressed for that reason keeps its first record.
        An erasure keeps only each address's digest."""
        at = at or timezone.now()
        rows = {email_normalize(email) for email in emails} - {""}
        if reason == Suppression.Reason.ERASED:
            rows = {email_digest(email) for email in rows}
        self.bulk_create(
            [
                Suppression(
                    owner_id=owner_id,
                    email=email,
                    reason=reason,
                    detail=detail[:255],
                    created_at=at,
                )
                for email in sorted(rows)
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )


class Suppression(models.Model):
    """An address that no mailing of its owner (or of anyone) may reach."""

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", _("unsubscribed")
        HARD_BOUNCE = "hard_bounce", _("hard bounce")
        SOFT_BOUNCES = "soft_bounces", _("repeated soft bounces")
        COMPLAINT = "complaint", _("complaint")
        ERASED = "erased", _("erased")
        MANUAL = "manual", _("added by hand")

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="+",
        null=True,
        blank=True,
        editable=False,
        help_text=_("Empty: no mailing of anyone may reach the address."),
    )
    email = models.CharField(
        _("e-mail"),
        max_length=254,
        help_text=_("Kept in lower case; matched whatever the case of a recipient."),
    )
    reason = models.CharField(
        _("reason"), max_length=16, choices=Reason.choices, default=Reason.MANUAL
    )
    detail = models.CharField(
        _("detail"),
        max_length=255,
        blank=True,
        help_text=_("Where it came from: the link, an import, a bounce's status."),
    )
    created_at = models.DateTimeField(_("since"), default=timezone.now, editable=False)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        verbose_name = _("suppression")
        verbose_name_plural = _("suppressions")
        ordering = ["-created_at"]
        permissions = [("lift_suppression", _("Can lift a manual suppression"))]
        constraints = [
            models.UniqueConstraint(
                "owner",
                "email",
                "reason",
                name="suppression_owner_email_reason_unique",
                condition=Q(owner__isnull=False),
            ),
            models.UniqueConstraint(
                "email",
                "reason",
                name="suppression_service_email_reason_unique",
                condition=Q(owner__isnull=True),
            ),
            models.CheckConstraint(
                condition=Q(email=Lower("email")), name="suppression_email_lower"
            ),
        ]
        indexes = [
            models.Index(fields=["email", "owner"], name="suppression_email_idx"),
        ]

    def __str__(self):
        return f"{self.email} ({self.get_reason_display()})"

    def save(self, *args, **kwargs):
        self.email = email_normalize(self.email)
        super().save(*args, **kwargs)


def suppressed_q(*, owner="owner_id", email="email") -> Q:
    """Whether the address in the row's `email` column is suppressed for the
    owner in its `owner` column (names relative to the outer query)."""
    return Q(
        Exists(
            Suppression.objects.filter(
                Q(owner_id=OuterRef(owner)) | Q(owner__isnull=True),
                email=Lower(OuterRef(email)),
            )
        )
    )
