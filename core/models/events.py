"""What followed a sent message (DESIGN.md, Event), and the bounce mailbox's
leftovers.

An `Event` is one thing that happened to a sent attempt: a bounce or a
complaint read from the bounce mailbox (or said by the server at send time),
an unsubscribe, a preference change; later opens and clicks. The first of
each kind is also stamped on the attempt (`bounced_at`, `complained_at`,
`unsubscribed_at`), so reports and segments count attempts on one table.

An event that comes from a message carries that message's `fingerprint`:
the same DSN read twice (a mailbox that could not delete it, a provider
that sends it again) is recorded once.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .base import OwnedQuerySet


class Event(models.Model):
    class Kind(models.TextChoices):
        OPEN = "open", _("opened")
        CLICK = "click", _("clicked")
        BOUNCE = "bounce", _("bounced")
        COMPLAINT = "complaint", _("complained")
        UNSUBSCRIBE = "unsubscribe", _("unsubscribed")
        PREFERENCES = "preferences", _("preferences changed")

    class Severity(models.TextChoices):
        """What a bounce says of the address (by its enhanced status code)."""

        HARD = "hard", _("hard: the address does not exist")
        SOFT = "soft", _("soft: temporary (mailbox full, server down)")
        POLICY = "policy", _("policy: refused as the sender's fault, not the address's")
        CONTENT = "content", _("content: the message was refused")

    # Denormalised like the attempt's: reports filter per owner and per run
    # on one index each, without joining the attempts.
    owner = models.ForeignKey(
        "core.User",
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="+",
        editable=False,
        db_index=False,
        db_constraint=False,
    )
    run = models.ForeignKey(
        "core.MailingRun",
        verbose_name=_("run"),
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
    )
    attempt = models.ForeignKey(
        "core.Attempt",
        verbose_name=_("attempt"),
        on_delete=models.CASCADE,
        related_name="events",
        null=True,
        blank=True,
    )
    kind = models.CharField(_("event"), max_length=16, choices=Kind)
    at = models.DateTimeField(_("time"), default=timezone.now)
    severity = models.CharField(
        _("bounce type"), max_length=8, choices=Severity, blank=True
    )
    status = models.CharField(
        _("status code"),
        max_length=16,
        blank=True,
        help_text=_("The enhanced status code of a bounce, e.g. 5.1.1."),
    )
    detail = models.CharField(
        _("detail"),
        max_length=500,
        blank=True,
        help_text=_("What the server or the provider said."),
    )
    url = models.URLField(_("clicked link"), max_length=2000, blank=True)
    is_machine = models.BooleanField(
        _("by a machine"),
        default=False,
        help_text=_("A prefetcher, a link scanner or a proxy, not a person."),
    )
    source = models.CharField(
        _("source"),
        max_length=32,
        blank=True,
        help_text=_("Where it was learned: the mailbox, the SMTP answer, a provider."),
    )
    fingerprint = models.CharField(max_length=64, blank=True, editable=False)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["-at"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                name="event_fingerprint_unique",
                condition=~Q(fingerprint=""),
            ),
        ]
        indexes = [
            models.Index(fields=["run", "kind", "at"], name="event_run_kind_idx"),
            models.Index(fields=["owner", "kind", "at"], name="event_owner_kind_idx"),
            # The hours counted into EventCount are read by time alone.
            models.Index(fields=["at"], name="event_at_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} · {self.at:%Y-%m-%d %H:%M}"


class UnreadBounce(models.Model):
    """A message in the bounce mailbox that is neither a bounce nor a
    complaint we can match: it stays in the mailbox, and managers see it
    here. Read again, it is only counted again."""

    mailbox = models.CharField(_("mailbox"), max_length=300)
    key = models.CharField(_("key in the mailbox"), max_length=300)
    sender = models.CharField(_("sender"), max_length=300, blank=True)
    subject = models.CharField(_("subject"), max_length=300, blank=True)
    size = models.PositiveIntegerField(_("size, bytes"), default=0)
    reason = models.CharField(_("why it was left"), max_length=300)
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now)
    times_seen = models.PositiveIntegerField(_("times seen"), default=1)

    class Meta:
        verbose_name = _("unread bounce")
        verbose_name_plural = _("unread bounces")
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "key"], name="unread_bounce_key_unique"
            ),
        ]

    def __str__(self):
        return self.subject or self.key


class EventCount(models.Model):
    """Opens and clicks of a run counted per hour, once the hour is over
    (core.services.events, `events_count_hours`): reports read these and
    the events of the hours since, not every event a run ever had."""

    run = models.ForeignKey(
        "core.MailingRun",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    hour = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=Event.Kind)
    is_machine = models.BooleanField(default=False)
    url = models.URLField(max_length=2000, blank=True)
    count = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["run", "hour"], name="event_count_run_idx")]

    def __str__(self):
        return f"{self.run_id} {self.hour:%Y-%m-%d %H}:00 {self.kind} {self.count}"


class EventCountsUntil(models.Model):
    """Where `EventCount` ends: one row, the first hour not counted yet."""

    until = models.DateTimeField(null=True)

    def __str__(self):
        return f"{self.until}"
