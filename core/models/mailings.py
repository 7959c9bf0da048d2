from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.utils.translation import gettext_lazy as _

from .base import OwnedModel, OwnedQuerySet
from .clients import Client


class Message(OwnedModel):
    """What a mailing sends: a subject and a body, personalised per recipient."""

    subject = models.CharField(_("subject"), max_length=255)
    body = models.TextField(
        _("text"),
        help_text=_(
            "Plain text. You may use {{ client.full_name }}, {{ client.email }}, "
            "{{ mailing.title }} and {{ unsubscribe_url }}."
        ),
    )
    html_body = models.TextField(
        _("HTML version"),
        blank=True,
        help_text=_("Optional. Sent beside the text for mail programs that show HTML."),
    )

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["owner", "-created_at"], name="message_owner_created_idx"
            ),
        ]

    def __str__(self):
        return self.subject

    def clean(self):
        super().clean()
        from core.services.messages import message_template_errors

        errors = message_template_errors(
            subject=self.subject, body=self.body, html_body=self.html_body
        )
        if errors:
            raise ValidationError(errors)


class MailingQuerySet(OwnedQuerySet):
    def with_status(self):
        return self.annotate(
            status_value=Case(
                When(is_enabled=False, then=Value(Mailing.Status.DISABLED)),
                When(next_run_at__isnull=True, then=Value(Mailing.Status.COMPLETED)),
                When(last_run_at__isnull=True, then=Value(Mailing.Status.CREATED)),
                default=Value(Mailing.Status.RUNNING),
                output_field=models.CharField(),
            )
        )

    def active(self):
        """Enabled mailings that still have an occurrence ahead."""
        return self.filter(is_enabled=True, next_run_at__isnull=False)

    def due(self, now):
        """Mailings the scheduler must run now: enabled, owner not blocked."""
        return self.active().filter(next_run_at__lte=now, owner__is_active=True)


class Mailing(OwnedModel):
    """A message sent to chosen recipients once or on a schedule."""

    class Periodicity(models.TextChoices):
        ONCE = "once", _("once")
        DAILY = "daily", _("daily")
        WEEKLY = "weekly", _("weekly")
        MONTHLY = "monthly", _("monthly")

    class Status(models.TextChoices):
        CREATED = "created", _("created")
        RUNNING = "running", _("running")
        COMPLETED = "completed", _("completed")
        DISABLED = "disabled", _("disabled by a manager")

    title = models.CharField(_("title"), max_length=255)
    message = models.ForeignKey(
        Message,
        verbose_name=_("message"),
        on_delete=models.PROTECT,
        related_name="mailings",
    )
    clients = models.ManyToManyField(
        Client, verbose_name=_("recipients"), related_name="mailings", blank=True
    )
    start_at = models.DateTimeField(_("first sending"))
    end_at = models.DateTimeField(
        _("last sending no later than"),
        null=True,
        blank=True,
        help_text=_("Optional. After this moment the mailing is completed."),
    )
    periodicity = models.CharField(
        _("periodicity"),
        max_length=16,
        choices=Periodicity,
        default=Periodicity.ONCE,
    )
    is_enabled = models.BooleanField(
        _("enabled"),
        default=True,
        help_text=_(
            "Switched off by a manager: nothing is sent until a manager switches it on."
        ),
    )
    next_run_at = models.DateTimeField(
        _("next sending"), null=True, blank=True, editable=False
    )
    last_run_at = models.DateTimeField(
        _("last sending"), null=True, blank=True, editable=False
    )

    objects = MailingQuerySet.as_manager()

    class Meta:
        verbose_name = _("mailing")
        verbose_name_plural = _("mailings")
        ordering = ["-created_at"]
        permissions = [
            ("set_schedule_active_status", _("Can disable and enable mailings")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_at__isnull=True) | Q(end_at__gte=F("start_at")),
                name="mailing_end_after_start",
                violation_error_message=_("The end must not be before the start."),
            ),
        ]
        indexes = [
            models.Index(
                fields=["owner", "-created_at"], name="mailing_owner_created_idx"
            ),
            # The scheduler reads only due rows.
            models.Index(
                fields=["next_run_at"],
                name="mailing_due_idx",
                condition=Q(is_enabled=True, next_run_at__isnull=False),
            ),
        ]

    def __str__(self):
        return self.title

    @property
    def status(self):
        value = getattr(self, "status_value", None)
        if value is None:
            if not self.is_enabled:
                value = self.Status.DISABLED
            elif self.next_run_at is None:
                value = self.Status.COMPLETED
            elif self.last_run_at is None:
                value = self.Status.CREATED
            else:
                value = self.Status.RUNNING
        return self.Status(value)

    def clean(self):
        super().clean()
        if self.end_at and self.start_at and self.end_at < self.start_at:
            raise ValidationError(
                {"end_at": _("The end must not be before the start.")}
            )
        if self.message_id and self.owner_id and self.message.owner_id != self.owner_id:
            # Forms offer only the owner's messages; this catches forged input.
            raise ValidationError({"message": _("Choose one of your own messages.")})


class MailingRun(models.Model):
    """One occurrence of a mailing, with the counts of its attempts."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("sending")
        PAUSED = "paused", _("paused after errors")
        FINISHED = "finished", _("finished")
        SKIPPED = "skipped", _("skipped (missed while the service was down)")

    mailing = models.ForeignKey(
        Mailing,
        verbose_name=_("mailing"),
        on_delete=models.CASCADE,
        related_name="runs",
    )
    # Denormalised from the mailing so the owner's reports filter on one index.
    owner = models.ForeignKey(
        "core.User",
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="+",
        editable=False,
    )
    scheduled_for = models.DateTimeField(_("scheduled for"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status, default=Status.QUEUED
    )
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    total_count = models.PositiveIntegerField(_("recipients"), default=0)
    sent_count = models.PositiveIntegerField(_("sent"), default=0)
    failed_count = models.PositiveIntegerField(_("failed"), default=0)
    skipped_count = models.PositiveIntegerField(_("skipped"), default=0)
    unknown_count = models.PositiveIntegerField(_("unknown"), default=0)
    # Failures in a row across all workers; many pause the run instead of
    # burning the list on a broken server.
    consecutive_failures = models.PositiveIntegerField(
        _("failures in a row"), default=0, editable=False
    )
    paused_until = models.DateTimeField(_("paused until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("mailing run")
        verbose_name_plural = _("mailing runs")
        ordering = ["-scheduled_for"]
        constraints = [
            models.UniqueConstraint(
                fields=["mailing", "scheduled_for"],
                name="run_mailing_occurrence_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["owner", "-scheduled_for"], name="run_owner_scheduled_idx"
            ),
            models.Index(fields=["status"], name="run_status_idx"),
        ]

    def __str__(self):
        return f"{self.mailing} · {self.scheduled_for:%Y-%m-%d %H:%M}"


class Attempt(models.Model):
    """The report row: one recipient of one run, and what the server said."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        SKIPPED = "skipped", _("skipped")
        UNKNOWN = "unknown", _("unknown (interrupted while sending)")

    run = models.ForeignKey(
        MailingRun,
        verbose_name=_("run"),
        on_delete=models.CASCADE,
        related_name="attempts",
    )
    owner = models.ForeignKey(
        "core.User",
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="+",
        editable=False,
    )
    client = models.ForeignKey(
        Client,
        verbose_name=_("recipient"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="attempts",
    )
    email = models.EmailField(_("address"), max_length=254)
    status = models.CharField(
        _("status"), max_length=16, choices=Status, default=Status.QUEUED
    )
    tries = models.PositiveSmallIntegerField(_("tries"), default=0)
    server_response = models.TextField(_("server response"), blank=True)
    next_try_at = models.DateTimeField(_("next try"), null=True, blank=True)
    attempted_at = models.DateTimeField(_("time"), null=True, blank=True)
    # Set while a worker holds the attempt (status "sending"); an expired
    # claim tells the recovery which journal to read.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("attempt")
        verbose_name_plural = _("attempts")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "client"], name="attempt_run_client_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["run", "status"], name="attempt_run_status_idx"),
            models.Index(fields=["owner", "-id"], name="attempt_owner_id_idx"),
            models.Index(
                fields=["owner", "status", "attempted_at"],
                name="attempt_owner_status_idx",
            ),
            # Workers claim queued attempts whose back-off has passed.
            models.Index(
                fields=["next_try_at"],
                name="attempt_queued_idx",
                condition=Q(status="queued"),
            ),
            # Recovery looks for claims that outlived their lease.
            models.Index(
                fields=["claimed_at"],
                name="attempt_sending_idx",
                condition=Q(status="sending"),
            ),
        ]

    def __str__(self):
        return f"{self.email} · {self.get_status_display()}"
