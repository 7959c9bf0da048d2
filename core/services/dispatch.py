"""The one send path. The django-q2 schedule, `send_scheduled_emails` and the
admin's "send now" all call `dispatch_tick`.

1. Due mailings are locked (`SKIP LOCKED`), the latest due occurrence gets a
   run, older missed occurrences are recorded as skipped runs, and
   `next_run_at` moves on (scheduling.py does the calendar).
2. The run's attempts are inserted as queued in one statement; unsubscribed
   recipients are recorded as skipped.
3. Workers deliver them (delivery.py), in several processes when the queue
   is long enough and the database allows it (parallel.py).
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from core.models import Attempt, Client, Mailing, MailingRun

from .delivery import Summary, attempts_recover, runs_finish
from .parallel import deliver_spread
from .scheduling import occurrence_after, occurrence_latest_due

# A mailing down for years records at most this many skipped runs.
MAX_SKIPPED_RUNS = 400


@dataclass
class Plan:
    """What a tick would send, for --dry-run."""

    mailing: Mailing
    occurrence: datetime
    recipients: int
    unsubscribed: int
    missed: int


# --- step 1: runs ---------------------------------------------------------


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


def _missed_occurrences(mailing, latest) -> list:
    missed, moment = [], mailing.next_run_at
    while moment is not None and moment < latest and len(missed) < MAX_SKIPPED_RUNS:
        missed.append(moment)
        moment = occurrence_after(mailing=mailing, moment=moment)
    return missed


def _open_scheduled_run(mailing, *, now) -> Summary:
    summary = Summary()
    latest = occurrence_latest_due(mailing=mailing, now=now)
    if latest is None or (mailing.last_run_at and latest <= mailing.last_run_at):
        # Nothing new is due (the end passed, or this occurrence already
        # ran): move on without sending.
        mailing.next_run_at = occurrence_after(
            mailing=mailing, moment=max(filter(None, [now, mailing.last_run_at]))
        )
        mailing.save(update_fields=["next_run_at"])
        return summary
    missed = _missed_occurrences(mailing, latest)
    MailingRun.objects.bulk_create(
        [
            MailingRun(
                mailing=mailing,
                owner_id=mailing.owner_id,
                scheduled_for=moment,
                status=MailingRun.Status.SKIPPED,
                finished_at=now,
            )
            for moment in missed
        ],
        ignore_conflicts=True,
    )
    summary.skipped_runs = len(missed)
    run, created = MailingRun.objects.get_or_create(
        mailing=mailing,
        scheduled_for=latest,
        defaults={"owner_id": mailing.owner_id},
    )
    if created:
        run_enqueue(run=run, now=now)
        summary.runs = 1
    mailing.last_run_at = latest
    mailing.next_run_at = occurrence_after(mailing=mailing, moment=latest)
    mailing.save(update_fields=["last_run_at", "next_run_at"])
    return summary


def run_open_now(*, mailing, now=None) -> MailingRun:
    """An extra run of a mailing, now, whatever its schedule ("send now").

    A one-off mailing that has not gone out yet is done by it.
    """
    now = now or timezone.now()
    with transaction.atomic():
        mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
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


# --- step 2: attempts -----------------------------------------------------


def run_enqueue(*, run, now) -> None:
    """Insert the run's attempts in one statement; unsubscribed are skipped."""
    attempt_table = Attempt._meta.db_table
    client_table = Client._meta.db_table
    through_table = Mailing.clients.through._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {attempt_table}
                (run_id, owner_id, client_id, email, status, tries,
                 server_response, next_try_at, created_at, claim_token)
            SELECT %s, %s, c.id, c.email,
                   CASE WHEN c.unsubscribed_at IS NULL THEN %s ELSE %s END,
                   0,
                   CASE WHEN c.unsubscribed_at IS NULL THEN '' ELSE %s END,
                   %s, %s, ''
            FROM {client_table} c
            JOIN {through_table} mc ON mc.client_id = c.id
            WHERE mc.mailing_id = %s AND c.owner_id = %s
            """,
            [
                run.pk,
                run.owner_id,
                Attempt.Status.QUEUED,
                Attempt.Status.SKIPPED,
                "unsubscribed",
                now,
                now,
                run.mailing_id,
                run.owner_id,
            ],
        )
    counts = dict(
        Attempt.objects.filter(run=run)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    run.total_count = sum(counts.values())
    run.skipped_count = counts.get(Attempt.Status.SKIPPED, 0)
    run.save(update_fields=["total_count", "skipped_count"])
    if run.total_count == run.skipped_count:
        runs_finish(run_ids=[run.pk], now=now)


def run_retry_failed(*, run, now=None) -> int:
    """Queue a new try for the run's failed recipients; return how many."""
    now = now or timezone.now()
    with transaction.atomic():
        run = MailingRun.objects.select_for_update().get(pk=run.pk)
        retried = Attempt.objects.filter(run=run, status=Attempt.Status.FAILED).update(
            status=Attempt.Status.QUEUED, next_try_at=now, tries=0
        )
        if retried:
            run.failed_count = max(run.failed_count - retried, 0)
            run.status = MailingRun.Status.RUNNING
            run.finished_at = None
            run.consecutive_failures = 0
            run.paused_until = None
            run.save(
                update_fields=[
                    "failed_count",
                    "status",
                    "finished_at",
                    "consecutive_failures",
                    "paused_until",
                ]
            )
    return retried


# --- the tick -------------------------------------------------------------


def dispatch_plan(*, now=None, mailing_id=None) -> list[Plan]:
    """What a tick would send now, without sending or writing anything."""
    now = now or timezone.now()
    if mailing_id is not None:
        mailings = Mailing.objects.filter(pk=mailing_id)
    else:
        mailings = Mailing.objects.due(now)
    plans = []
    for mailing in mailings.select_related("owner"):
        occurrence = (
            now if mailing_id else occurrence_latest_due(mailing=mailing, now=now)
        )
        if occurrence is None:
            continue
        clients = Client.objects.filter(mailings=mailing, owner_id=mailing.owner_id)
        missed = 0 if mailing_id else len(_missed_occurrences(mailing, occurrence))
        plans.append(
            Plan(
                mailing=mailing,
                occurrence=occurrence,
                recipients=clients.count(),
                unsubscribed=clients.filter(unsubscribed_at__isnull=False).count(),
                missed=missed,
            )
        )
    return plans


def dispatch_tick(
    *, now=None, mailing_id=None, time_budget: float | None = None, progress=None
) -> Summary:
    """One pass of the pipeline: recover, open due runs, deliver."""
    now = now or timezone.now()
    summary = attempts_recover(now=now)
    run_ids = None
    if mailing_id is not None:
        mailing = Mailing.objects.get(pk=mailing_id)
        run = run_open_now(mailing=mailing, now=now)
        summary.runs += 1
        run_ids = [run.pk]
    else:
        summary.add(runs_open_due(now=now))
    budget = time_budget if time_budget is not None else settings.DISPATCH_TICK_SECONDS
    summary.add(deliver_spread(time_budget=budget, run_ids=run_ids, progress=progress))
    return summary


def dispatch_deliver(*, time_budget: float | None = None, progress=None) -> Summary:
    """Deliver what is queued, without opening new runs (for "send now")."""
    budget = time_budget if time_budget is not None else settings.DISPATCH_TICK_SECONDS
    summary = attempts_recover()
    return summary.add(deliver_spread(time_budget=budget, progress=progress))
