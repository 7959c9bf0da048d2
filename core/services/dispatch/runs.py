"""Runs: the occurrences of mailings, their attempts, and their counters.

A tick locks due mailings (`SKIP LOCKED`), gives the latest due occurrence a
run, records older missed ones as skipped runs and moves `next_run_at` on
(the calendar: core/models/scheduling.py). A run's audience becomes its
attempts in one INSERT … SELECT. `run_counts_add` is the only writer of a
run's counters.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.models import Attempt, Client, Mailing, MailingRun, Segment
from core.models.clients import subscribed_q
from core.models.scheduling import due_now
from core.services.planner import statistics_refresh
from core.services.tracking import run_tracking_freeze

from .outcome import DELETED, SUPPRESSED, UNCONFIRMED, UNSUBSCRIBED, Summary

COUNTERS = ("total", "sent", "failed", "skipped", "unknown")


def run_counts_add(*, run_id: int, also: dict | None = None, **counts) -> None:
    """Add `counts` (total, sent, failed, skipped, unknown; negative to take
    back) to a run's counters, with any other field updates, in one UPDATE."""
    values = {
        f"{name}_count": F(f"{name}_count") + count
        for name, count in counts.items()
        if count
    }
    unknown = set(counts) - set(COUNTERS)
    if unknown:
        raise ValueError(f"not a run counter: {', '.join(sorted(unknown))}")
    values.update(also or {})
    if values:
        MailingRun.objects.filter(pk=run_id).update(**values)


def runs_finish(*, run_ids, now) -> None:
    """Mark runs with nothing left to send as finished."""
    if not run_ids:
        return
    # EXISTS stops at the first open attempt; reading them all (as a DISTINCT
    # under Attempt's default ordering did) made each batch cost O(queue).
    still_open = Attempt.objects.filter(
        run=OuterRef("pk"),
        status__in=[Attempt.Status.QUEUED, Attempt.Status.SENDING],
    )
    MailingRun.objects.filter(pk__in=list(run_ids)).exclude(
        status__in=[MailingRun.Status.FINISHED, MailingRun.Status.SKIPPED]
    ).filter(~Exists(still_open)).update(
        status=MailingRun.Status.FINISHED, finished_at=now
    )


# --- opening runs --------------------------------------------------------


def runs_open_due(*, now) -> Summary:
    """Give every due mailing its run; one mailing per short transaction."""
    summary = Summary()
    while True:
        with transaction.atomic():
            mailing = (
                Mailing.objects.due(now)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("next_run_at")
                .first()
            )
            if mailing is None:
                return summary
            summary.add(_open_scheduled_run(mailing, now=now))


def _open_scheduled_run(mailing, *, now) -> Summary:
    summary = Summary()
    due = due_now(mailing=mailing, now=now)
    if due.occurrence is not None:
        MailingRun.objects.bulk_create(
            [
                MailingRun(
                    mailing=mailing,
                    owner_id=mailing.owner_id,
                    scheduled_for=moment,
                    status=MailingRun.Status.SKIPPED,
                    finished_at=now,
                )
                for moment in due.missed
            ],
            ignore_conflicts=True,
        )
        summary.skipped_runs = len(due.missed)
        run, created = MailingRun.objects.get_or_create(
            mailing=mailing,
            scheduled_for=due.occurrence,
            defaults={"owner_id": mailing.owner_id},
        )
        if created:
            run_enqueue(run=run, now=now)
            summary.runs = 1
        mailing.last_run_at = due.occurrence
    mailing.next_run_at = due.next_run_at
    mailing.save(update_fields=["last_run_at", "next_run_at"])
    return summary


class NotSendable(Exception):
    """A mailing a manager switched off, whose owner is blocked or suspended,
    or whose message may not be sent."""


def run_open_now(*, mailing_id: int, now=None) -> MailingRun:
    """An extra run of a mailing, now, whatever its schedule ("send now").

    A one-off mailing that has not gone out yet is done by it. Refused
    (NotSendable) for a mailing that nothing of may be sent: its run would
    wait, queued, for as long as the switch stays off; and for one deleted
    since "send now" was asked.
    """
    now = now or timezone.now()
    with transaction.atomic():
        mailing = (
            Mailing.objects.select_for_update(of=("self",))
            .select_related("owner")
            .filter(pk=mailing_id)
            .first()
        )
        if mailing is None:
            raise NotSendable(_("The mailing no longer exists."))
        if not mailing.is_enabled:
            raise NotSendable(_("The mailing is switched off by a manager."))
        if refusal := mailing.owner.sending_refusal():
            raise NotSendable(refusal)
        if problem := mailing.message.sending_problem():
            raise NotSendable(
                _("The message cannot be sent: %(problem)s") % {"problem": problem}
            )
        run = MailingRun.objects.create(
            mailing=mailing, owner_id=mailing.owner_id, scheduled_for=now
        )
        run_enqueue(run=run, now=now)
        fields = ["last_run_at"]
        mailing.last_run_at = max(filter(None, [mailing.last_run_at, now]))
        if mailing.periodicity == Mailing.Periodicity.ONCE:
            mailing.next_run_at = None
            fields.append("next_run_at")
        mailing.save(update_fields=fields)
    return run


# --- attempts ----------------------------------------------------------


def audience(*, mailing_id: int, owner_id: int):
    """The recipients a run of the mailing is for (subscribed or not): the
    owner's recipients chosen for it, carrying one of its tags or members of
    one of its segments, each once."""
    segments = Segment.objects.filter(owner_id=owner_id, mailings=mailing_id)
    return Client.objects.filter(owner_id=owner_id).audience_of(
        mailing_id, segments=list(segments)
    )


def run_enqueue(*, run, now) -> None:
    """Insert the run's attempts in one statement; the unsubscribed are skipped.

    A message that may not be sent (saved before the template language was
    bounded) fails every attempt it would have queued, with the reason, so
    the owner reads why in the run's report and can retry once it is fixed.
    """
    may_send = subscribed_q()
    queued, reason = Attempt.Status.QUEUED.value, ""
    mailing = Mailing.objects.select_related("message").get(pk=run.mailing_id)
    run_tracking_freeze(run=run, mailing=mailing)
    if problem := mailing.message.sending_problem():
        queued = Attempt.Status.FAILED.value
        reason = _("not sent: %(problem)s") % {"problem": problem}
    rows = (
        audience(mailing_id=run.mailing_id, owner_id=run.owner_id)
        .order_by()
        .values_list(
            Value(run.pk),
            Value(run.owner_id),
            "id",
            "email",
            Case(
                When(may_send, then=Value(queued)),
                default=Value(Attempt.Status.SKIPPED.value),
            ),
            Value(0),
            Case(
                When(may_send, then=Value(reason)),
                When(unsubscribed_at__isnull=False, then=Value(UNSUBSCRIBED)),
                When(confirmed_at__isnull=True, then=Value(UNCONFIRMED)),
                default=Value(SUPPRESSED),
            ),
            Value(now),
            Value(now),
            Value(""),
        )
    )
    select, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Attempt._meta.db_table} "
            "(run_id, owner_id, client_id, email, status, tries, "
            "server_response, next_try_at, created_at, claim_token) " + select,
            params,
        )
    counts = dict(
        Attempt.objects.filter(run=run)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    total = sum(counts.values())
    skipped = counts.get(Attempt.Status.SKIPPED, 0)
    failed = counts.get(Attempt.Status.FAILED, 0)
    run_counts_add(run_id=run.pk, total=total, skipped=skipped, failed=failed)
    if total == skipped + failed:
        runs_finish(run_ids=[run.pk], now=now)
        return
    # Claims follow at once: planned on statistics older than these attempts
    # (and than an import just made), they read whole tables (planner.py).
    added = {Attempt._meta.db_table: total}
    transaction.on_commit(lambda: statistics_refresh([Attempt, Client], added=added))


def run_retry_failed(*, run, now=None) -> int:
    """Queue a new try for the run's failed recipients; return how many."""
    now = now or timezone.now()
    with transaction.atomic():
        run = MailingRun.objects.select_for_update().get(pk=run.pk)
        retried = Attempt.objects.filter(run=run, status=Attempt.Status.FAILED).update(
            status=Attempt.Status.QUEUED, next_try_at=now, tries=0
        )
        if retried:
            run_counts_add(
                run_id=run.pk,
                failed=-retried,
                also={
                    "status": MailingRun.Status.RUNNING,
                    "finished_at": None,
                    "consecutive_failures": 0,
                    "paused_until": None,
                },
            )
    return retried


# The reasons a recipient is left out of a run, as its report names them.
LEFT_OUT_REASONS = {
    UNSUBSCRIBED: gettext_lazy("unsubscribed"),
    SUPPRESSED: gettext_lazy("suppressed"),
    UNCONFIRMED: gettext_lazy("subscription not confirmed"),
    DELETED: gettext_lazy("recipient deleted"),
}


def run_left_out(*, run) -> list[tuple[str, int]]:
    """(reason, how many) of the run's recipients who were not mailed,
    most first: what its report shows beside the skipped count."""
    rows = (
        Attempt.objects.filter(run=run, status=Attempt.Status.SKIPPED)
        .order_by()
        .values_list("server_response")
        .annotate(count=Count("id"))
        .order_by("-count")
    )
    return [
        (str(LEFT_OUT_REASONS.get(reason, reason or _("other"))), count)
        for reason, count in rows
    ]


# --- what a tick would do -------------------------------------------------


@dataclass
class Plan:
    """What a tick would send, for --dry-run."""

    mailing: Mailing
    occurrence: datetime
    recipients: int
    unsubscribed: int
    missed: int


def runs_plan(*, now=None, mailing_id=None) -> list[Plan]:
    """What a tick would send now, decided as the tick decides, writing nothing."""
    now = now or timezone.now()
    if mailing_id is not None:
        mailings = Mailing.objects.filter(pk=mailing_id)
    else:
        mailings = Mailing.objects.due(now)
    plans = []
    for mailing in mailings.select_related("owner"):
        if mailing_id is not None:
            occurrence, missed = now, ()
        else:
            due = due_now(mailing=mailing, now=now)
            occurrence, missed = due.occurrence, due.missed
        if occurrence is None:
            continue
        clients = audience(mailing_id=mailing.pk, owner_id=mailing.owner_id)
        plans.append(
            Plan(
                mailing=mailing,
                occurrence=occurrence,
                recipients=clients.count(),
                unsubscribed=clients.unsubscribed().count(),
                missed=len(missed),
            )
        )
    return plans
