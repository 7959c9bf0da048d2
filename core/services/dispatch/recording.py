"""Recording: a batch's outcomes reach the database in a few statements.

Attempts are written with one UPDATE per thousand rows; each run's counters
and its failures in a row with one more (`run_counts_add`); a run with many
failures in a row pauses instead of burning its list on a broken server.
"""

import logging
from collections import Counter, defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from core.models import Attempt, Event, MailingRun
from core.services.bounces import Finding, findings_record
from core.services.bounces.severity import enhanced_status, severity_of
from core.services.quotas import quota_give_back

from .outcome import FAILURES, Outcome, Summary
from .runs import run_counts_add, runs_finish

logger = logging.getLogger(__name__)
Status = Attempt.Status
# How an outcome leaves the attempt.
STATUS_OF = {
    Outcome.SENT: Status.SENT,
    Outcome.FAILED: Status.FAILED,
    Outcome.SKIPPED: Status.SKIPPED,
    Outcome.UNKNOWN: Status.UNKNOWN,
    Outcome.RETRY: Status.QUEUED,
    Outcome.RELEASED: Status.QUEUED,
    Outcome.PAUSED: Status.QUEUED,
}
# Outcomes of messages handed to the server: the run has started.
HANDED = (Outcome.SENT, Outcome.FAILED, Outcome.RETRY, Outcome.UNKNOWN)
WRITTEN = (
    "status",
    "server_response",
    "tries",
    "attempted_at",
    "next_try_at",
    "claim_token",
    "claimed_at",
)


def _refusals_record(results, *, written, now) -> None:
    """A 5xx at send time is a bounce like one read from the mailbox: a user
    unknown suppresses the address at once. Retries that ran out (4xx) are
    not: greylisting and rate limits say nothing of the address."""
    refused = [
        Finding(
            attempt_id=result.attempt.pk,
            kind=Event.Kind.BOUNCE,
            source="smtp",
            status=enhanced_status(result.response),
            detail=result.response,
            severity=severity_of("", result.response),
            at=now,
        )
        for result in results
        if result.outcome == Outcome.FAILED
        and result.tried
        and result.response[:1] == "5"
        and result.attempt.pk in written
    ]
    if refused:
        findings_record(refused, now=now)


def backoff(tries: int) -> timedelta:
    return timedelta(seconds=settings.SMTP_RETRY_BACKOFF * 2 ** max(tries - 1, 0))


def results_record(results: list, *, now=None) -> Summary:
    """Write a batch's outcomes and the runs' counters; a few queries in all.

    Only attempts still held under the claim they were sent from are
    written and counted: should recovery have settled a claim meanwhile (its
    holder looked dead), what it recorded stands.
    """
    now = now or timezone.now()
    held = {}
    for result in results:
        attempt = result.attempt
        held[attempt.pk] = attempt.claim_token
        attempt.claim_token, attempt.claimed_at = "", None
        if result.tried:
            attempt.tries += 1
            attempt.attempted_at = now
        outcome = result.outcome
        if outcome == Outcome.RETRY and attempt.tries >= settings.SMTP_MAX_RETRIES:
            outcome = result.outcome = Outcome.FAILED
        if outcome == Outcome.UNKNOWN:
            attempt.attempted_at = now
        attempt.status = STATUS_OF[outcome]
        if outcome == Outcome.RETRY:
            attempt.next_try_at = now + backoff(attempt.tries)
        if result.response:
            attempt.server_response = result.response
    with transaction.atomic():
        written = attempts_write(
            [result.attempt for result in results], fields=WRITTEN, held=held
        )
        if len(written) < len(results):
            logger.warning(
                "%d answers not recorded: their claims were settled meanwhile",
                len(results) - len(written),
            )
        per_run = defaultdict(Counter)
        # Failures in a row per run: after a success the trailing count
        # replaces the run's counter, otherwise it adds to it.
        trailing, reset = Counter(), set()
        for result in results:
            if result.attempt.pk not in written:
                continue
            run_id, outcome = result.attempt.run_id, result.outcome
            per_run[run_id][outcome] += 1
            if outcome == Outcome.SENT:
                trailing[run_id] = 0
                reset.add(run_id)
            elif outcome in FAILURES:
                trailing[run_id] += 1
        for run_id, counts in per_run.items():
            _count_run(
                run_id=run_id,
                counts=counts,
                failures=trailing[run_id],
                reset=run_id in reset,
                now=now,
            )
        runs_finish(run_ids=list(per_run), now=now)
        # What was taken but not handed to the relay is not the quota's.
        quota_give_back(
            Counter(
                (result.attempt.owner_id, result.attempt.quota_day)
                for result in results
                if result.attempt.pk in written and not _handed(result)
            )
        )
    _refusals_record(results, written=written, now=now)
    total = Counter()
    for counts in per_run.values():
        total.update(counts)
    return Summary(
        sent=total[Outcome.SENT],
        failed=total[Outcome.FAILED],
        skipped=total[Outcome.SKIPPED],
        unknown=total[Outcome.UNKNOWN],
        retried=total[Outcome.RETRY],
    )


def _handed(result) -> bool:
    """Whether a message went to the relay for good (what quotas count): sent,
    refused for good by the relay (its answer is a code), or maybe sent. One
    that could not be built, or whose connection failed before any answer,
    never reached it."""
    return result.outcome in (Outcome.SENT, Outcome.UNKNOWN) or (
        result.outcome == Outcome.FAILED
        and result.tried
        and result.response[:1].isdigit()
    )


def _count_run(*, run_id: int, counts: Counter, failures: int, reset: bool, now):
    """Add a batch's counts to its run; pause it after too many failures."""
    streak = Value(failures) if reset else F("consecutive_failures") + failures
    also = {"consecutive_failures": streak}
    if any(counts[outcome] for outcome in HANDED):
        also["started_at"] = Case(
            When(started_at__isnull=True, then=Value(now)), default=F("started_at")
        )
    if counts[Outcome.SENT] or counts[Outcome.FAILED] or counts[Outcome.RETRY]:
        also["status"] = Case(
            When(
                status__in=[MailingRun.Status.QUEUED, MailingRun.Status.PAUSED],
                then=Value(MailingRun.Status.RUNNING),
            ),
            default=F("status"),
        )
    run_counts_add(
        run_id=run_id,
        also=also,
        sent=counts[Outcome.SENT],
        failed=counts[Outcome.FAILED],
        skipped=counts[Outcome.SKIPPED],
        unknown=counts[Outcome.UNKNOWN],
    )
    limit = settings.SMTP_MAX_CONSECUTIVE_ERRORS
    paused = counts[Outcome.PAUSED]
    # A pause asked for pauses whatever the limit (mail that cannot be
    # signed waits even with SMTP_MAX_CONSECUTIVE_ERRORS=0); failures pause
    # only under a limit.
    if paused or (limit and failures):
        run = MailingRun.objects.filter(pk=run_id)
        if not paused:  # failures alone pause it once they reach the limit
            run = run.filter(consecutive_failures__gte=limit)
        run.update(
            status=MailingRun.Status.PAUSED,
            paused_until=now + timedelta(minutes=settings.SMTP_PAUSE_MINUTES),
            consecutive_failures=0,
        )


def attempts_write(attempts: list, *, fields, held: dict, batch_size: int = 1000):
    """Save `fields` of many attempts, each only while it is still "sending"
    under the claim token `held` names for it; the ids written.

    One UPDATE per claim and `batch_size` rows: the same CASE per column
    that `QuerySet.bulk_update` writes, without its cost in Python (it
    resolves a `When(pk=…)` per row and column, some 0.6 ms an attempt for
    these seven columns, as much as building and sending the message). A
    column with one value for every row (the claim token, usually the
    status) is set once.
    """
    meta = Attempt._meta
    quote = connection.ops.quote_name
    pk = quote(meta.pk.column)
    by_token = defaultdict(list)
    for attempt in attempts:
        by_token[held[attempt.pk]].append(attempt)
    written = set()
    for token, group in by_token.items():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            written |= _write_chunk(chunk, fields, token, meta, quote, pk)
    return written


def _write_chunk(chunk, fields, token, meta, quote, pk) -> set:
    ids = [attempt.pk for attempt in chunk]
    assignments, params = [], []
    for name in fields:
        field = meta.get_field(name)
        column = quote(field.column)
        values = [
            field.get_db_prep_save(getattr(attempt, field.attname), connection)
            for attempt in chunk
        ]
        if all(value == values[0] for value in values):
            assignments.append(f"{column} = %s")
            params.append(values[0])
            continue
        whens = " ".join(["WHEN %s THEN %s"] * len(chunk))
        assignments.append(f"{column} = CASE {pk} {whens} ELSE {column} END")
        for pair in zip(ids, values, strict=True):
            params.extend(pair)
    placeholders = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "
            f"WHERE {pk} IN ({placeholders}) AND {quote('claim_token')} = %s "
            f"AND {quote('status')} = %s RETURNING {pk}",
            [*params, *ids, token, Status.SENDING],
        )
        return {row[0] for row in cursor.fetchall()}
