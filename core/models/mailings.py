from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils.translation import gettext_lazy as _

from core.templating import template_error, template_unsafe, validate_template

from .audience import Tag
from .base import OwnedModel, OwnedQuerySet
from .clients import Client
from .scheduling import next_run_for, validate_schedule_moment
from .senders import SenderDomain, domain_normalize
from .users import TRACK_RECIPIENTS_HELP, sending_allowed_q

# The fields a mailing's schedule is made of; `next_run_at` follows them.
SCHEDULE_FIELDS = ("start_at", "end_at", "periodicity")


class MailingStatus(models.TextChoices):
    """Where a mailing stands, as the database computes it (Mailing.status)."""

    CREATED = "created", _("created")
    RUNNING = "running", _("running")
    COMPLETED = "completed", _("completed")
    DISABLED = "disabled", _("disabled by a manager")


# The statuses of a mailing that still sends.
ACTIVE_STATUSES = (MailingStatus.CREATED, MailingStatus.RUNNING)


def active_q() -> Q:
    """Mailings still to send: `active()`, and what counts them."""
    return Q(status__in=ACTIVE_STATUSES)


class Message(OwnedModel):
    """What a mailing sends: a subject and a body, personalised per recipient."""

    subject = models.CharField(
        _("subject"), max_length=255, validators=[validate_template]
    )
    body = models.TextField(
        _("text"),
        validators=[validate_template],
        help_text=_(
            "Plain text. You may use {{ client.full_name }}, {{ client.email }}, "
            "{{ client.attributes.<key> }}, {{ mailing.title }}, "
            "{{ unsubscribe_url }} and {{ preferences_url }}; the default filter "
            '({{ client.full_name|default:"friend" }}); and {% if %} … '
            "{% else %} … {% endif %} on those variables. Nothing else."
        ),
    )
    html_body = models.TextField(
        _("HTML version"),
        blank=True,
        validators=[validate_template],
        help_text=_("Optional. Sent beside the text for mail programs that show HTML."),
    )
    from_name = models.CharField(
        _("sender's name"),
        max_length=100,
        blank=True,
        help_text=_("Shown as who the mail is from, e.g. your shop's name."),
    )
    from_email = models.EmailField(
        _("sender's address"),
        blank=True,
        help_text=_(
            "An address on one of your verified sender domains (its mail is "
            "DKIM-signed); empty: the service's own address."
        ),
    )
    reply_to = models.EmailField(
        _("replies go to"),
        blank=True,
        help_text=_("Where readers' replies go; empty: to the sender's address."),
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
        if self.from_email and self.owner_id and not self.sender_domain():
            raise ValidationError(
                {
                    "from_email": _(
                        "Mail may go out from a domain you have verified only: "
                        "add %(domain)s under Sender domains and publish its "
                        "records first."
                    )
                    % {"domain": self.from_email.rpartition("@")[2]}
                }
            )

    def sender_domain(self):
        """The owner's verified domain the sender's address is on, or None."""
        if not self.from_email:
            return None
        domain = domain_normalize(self.from_email.rpartition("@")[2])
        return SenderDomain.objects.filter(
            owner_id=self.owner_id, domain=domain, verified_at__isnull=False
        ).first()

    def _parts(self):
        return (
            (_("subject"), self.subject),
            (_("text"), self.body),
            (_("HTML version"), self.html_body),
        )

    def template_problem(self) -> str:
        """Why the message could not be saved as it stands ("" if it could):
        messages saved before the language was bounded may hold such text."""
        for label, source in self._parts():
            if error := template_error(source):
                return f"{label}: {error}"
        return ""

    def sending_problem(self) -> str:
        """Why the message may not be sent ("" if it may): text outside the
        language beyond an unknown variable (which renders empty)."""
        for label, source in self._parts():
            if error := template_unsafe(source):
                return f"{label}: {error}"
        return ""


class MailingQuerySet(OwnedQuerySet):
    def update(self, **kwargs):
        """`QuerySet.update`; one that changes start, end or periodicity
        moves `next_run_at` of the rows it changed too, as a save does."""
        if not set(SCHEDULE_FIELDS) & set(kwargs) or "next_run_at" in kwargs:
            # No schedule change, or one whose next sending the caller names.
            return super().update(**kwargs)
        with transaction.atomic(using=self.db):
            ids = list(self.values_list("pk", flat=True))
            count = super().update(**kwargs)
            mailings = list(self.model._base_manager.filter(pk__in=ids))
            for mailing in mailings:
                mailing.schedule_derive()
            self.model._base_manager.bulk_update(mailings, ["next_run_at"])
        return count

    def active(self):
        """Enabled mailings that still have an occurrence ahead."""
        return self.filter(active_q())

    def due(self, now):
        """Mailings the scheduler must run now: enabled, their owner neither
        blocked nor suspended."""
        return self.active().filter(sending_allowed_q("owner__"), next_run_at__lte=now)


class Mailing(OwnedModel):
    """A message sent to chosen recipients once or on a schedule."""

    class Periodicity(models.TextChoices):
        ONCE = "once", _("once")
        DAILY = "daily", _("daily")
        WEEKLY = "weekly", _("weekly")
        MONTHLY = "monthly", _("monthly")

    Status = MailingStatus

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
    tags = models.ManyToManyField(
        Tag,
        verbose_name=_("tags"),
        related_name="mailings",
        blank=True,
        help_text=_("Everyone who carries one of these tags, besides the recipients."),
    )
    segments = models.ManyToManyField(
        "core.Segment",
        verbose_name=_("segments"),
        related_name="mailings",
        blank=True,
        help_text=_("Everyone the segment's rules select when the mailing is sent."),
    )
    start_at = models.DateTimeField(
        _("first sending"), validators=[validate_schedule_moment]
    )
    end_at = models.DateTimeField(
        _("last sending no later than"),
        validators=[validate_schedule_moment],
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
    track_opens = models.BooleanField(
        _("track opens"),
        default=True,
        help_text=_(
            "An invisible image in the HTML part tells when a message is opened. "
            "Text-only messages cannot be tracked."
        ),
    )
    track_clicks = models.BooleanField(
        _("track clicks"),
        default=True,
        help_text=_(
            "Links go through the service, which counts the click and sends the "
            "reader on. Links built from variables are left as they are."
        ),
    )
    track_recipients = models.BooleanField(
        _("tie opens and clicks to recipients"),
        default=True,
        help_text=TRACK_RECIPIENTS_HELP,
    )
    next_run_at = models.DateTimeField(
        _("next sending"), null=True, blank=True, editable=False
    )
    last_run_at = models.DateTimeField(
        _("last sending"), null=True, blank=True, editable=False
    )
    # Computed by the database from the fields above, whatever wrote them.
    status = models.GeneratedField(
        expression=Case(
            When(is_enabled=False, then=Value(Status.DISABLED.value)),
            When(next_run_at__isnull=True, then=Value(Status.COMPLETED.value)),
            When(last_run_at__isnull=True, then=Value(Status.CREATED.value)),
            default=Value(Status.RUNNING.value),
        ),
        output_field=models.CharField(max_length=16, choices=Status),
        db_persist=True,
        verbose_name=_("status"),
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
                condition=Q(status__in=ACTIVE_STATUSES),
            ),
        ]

    def __str__(self):
        return self.title

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._stored_schedule = {}
        instance._remember_schedule(SCHEDULE_FIELDS)
        return instance

    def save(self, *args, **kwargs):
        adding = self._state.adding
        update_fields = kwargs.get("update_fields")
        saves_schedule = update_fields is None or set(SCHEDULE_FIELDS) & set(
            update_fields
        )
        if saves_schedule and self.schedule_changed():
            # Set before Django picks what to write: a partly loaded row then
            # writes `next_run_at` among its loaded fields, and a schedule
            # saved alone brings it along.
            self.schedule_derive()
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "next_run_at"}
        super().save(*args, **kwargs)
        self._stored_schedule = {}
        self._remember_schedule(SCHEDULE_FIELDS)
        if not adding:
            # The database computed the status anew; read it when asked.
            self.__dict__.pop("status", None)

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        # What was just read is what the database holds; other fields keep
        # what was known of them, so a change not yet saved stays a change.
        self._remember_schedule(SCHEDULE_FIELDS if fields is None else fields)

    def schedule(self) -> tuple:
        return tuple(getattr(self, name) for name in SCHEDULE_FIELDS)

    def _remember_schedule(self, names) -> None:
        stored = self.__dict__.setdefault("_stored_schedule", {})
        for name in names:
            if name in SCHEDULE_FIELDS and name in self.__dict__:
                stored[name] = self.__dict__[name]

    def schedule_changed(self) -> bool:
        """Whether start, end or periodicity differ from what the database
        holds (always, for a row about to be inserted or not loaded from it)."""
        stored = self.__dict__.get("_stored_schedule")
        if self._state.adding or stored is None:
            return True
        return any(
            name in self.__dict__
            and (name not in stored or stored[name] != self.__dict__[name])
            for name in SCHEDULE_FIELDS
        )

    def schedule_derive(self, *, now=None) -> None:
        """Set `next_run_at` from the schedule and the last run (not saved).

        `save` calls this whenever the schedule changed; the `pre_save`
        receiver in core/signals.py does for `loaddata`, which skips save.
        """
        self.next_run_at = next_run_for(mailing=self, now=now)

    def clean(self):
        super().clean()
        # The constraint says the same; this names the field in the form.
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
    # What the run tracks, as its mailing said when it was queued, and the
    # links a click may lead to: a click names one by its place here (from 1).
    track_opens = models.BooleanField(_("opens tracked"), default=False)
    track_clicks = models.BooleanField(_("clicks tracked"), default=False)
    track_recipients = models.BooleanField(_("tracked per recipient"), default=False)
    links = models.JSONField(_("tracked links"), default=list, blank=True)
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

    # A run queues one row per recipient in one statement, so every index
    # and foreign-key check here is paid once per recipient. The run's index
    # is the unique (run, client) one below.
    run = models.ForeignKey(
        MailingRun,
        verbose_name=_("run"),
        on_delete=models.CASCADE,
        related_name="attempts",
        db_index=False,
    )
    # The run's owner, copied so reports filter on one index (the two
    # owner-first indexes below). The run's own foreign key holds it, and
    # Django still deletes an owner's attempts with the owner, so the
    # database does not check it a second time per row.
    owner = models.ForeignKey(
        "core.User",
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="+",
        editable=False,
        db_index=False,
        db_constraint=False,
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
    # The day (TIME_ZONE) the claim counted it on against the owner's sending
    # quota (core/services/quotas.py): what returns unsent is given back there.
    quota_day = models.DateField(null=True, blank=True, editable=False)
    # What followed a sent message, the first time of each: segments select
    # on them (DESIGN.md, Segment: opened, clicked).
    opened_at = models.DateTimeField(_("opened"), null=True, blank=True, editable=False)
    clicked_at = models.DateTimeField(
        _("clicked"), null=True, blank=True, editable=False
    )
    bounced_at = models.DateTimeField(
        _("bounced"), null=True, blank=True, editable=False
    )
    complained_at = models.DateTimeField(
        _("complained"), null=True, blank=True, editable=False
    )
    unsubscribed_at = models.DateTimeField(
        _("unsubscribed"), null=True, blank=True, editable=False
    )
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
            # A run's bounces and complaints are counted after every batch
            # of reports: from these, not from all of its attempts. Empty
            # when a run is queued, so they cost the enqueue nothing.
            models.Index(
                fields=["run"],
                name="attempt_bounced_idx",
                condition=Q(bounced_at__isnull=False),
            ),
            models.Index(
                fields=["run"],
                name="attempt_complained_idx",
                condition=Q(complained_at__isnull=False),
            ),
            # The same for people's opens and clicks and for unsubscribes,
            # counted by the reports.
            models.Index(
                fields=["run"],
                name="attempt_opened_idx",
                condition=Q(opened_at__isnull=False),
            ),
            models.Index(
                fields=["run"],
                name="attempt_clicked_idx",
                condition=Q(clicked_at__isnull=False),
            ),
            models.Index(
                fields=["run"],
                name="attempt_unsubscribed_idx",
                condition=Q(unsubscribed_at__isnull=False),
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
