"""Delivery: workers claim queued attempts, send them, and record the answers.

Guarantees (DESIGN.md, Dispatch 3-5):

- At most once. An attempt is claimed in the database (status "sending",
  a claim token) before anything is sent, under `SELECT … FOR UPDATE SKIP
  LOCKED`, so no two workers hold it. A worker stops sending from a claim
  when half its lease has passed, so recovery never races a live worker.
- No silent loss. Before each message a worker appends "in flight" to the
  claim's journal, a small append-only file, and after it the server's
  answer. Results reach the database in bulk, once per batch. When a worker
  dies, recovery reads the journal: answered attempts are recorded as
  answered, the one in flight on each connection becomes "unknown" (never
  resent), and attempts never started go back to the queue. Without a
  journal (wiped, or another machine's) every held attempt becomes
  "unknown": a copy lost to doubt, never a copy sent twice.
- Few queries: two to claim a batch and a handful to record it, whatever
  the batch size (DISPATCH_BATCH_SIZE).
"""

import hashlib
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from core.models import Attempt, MailingRun

from . import transport as transports
from .emails import email_prepare

logger = logging.getLogger(__name__)

Status = Attempt.Status
# Claim tokens start with the machine's tag, so recovery knows whose journal
# it can read. Stable across processes (unlike hash()).
HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
# Claims of another machine are left to it for this many leases before they
# are written off as unknown: only it has their journals.
FOREIGN_GRACE_LEASES = 3


@dataclass
class Summary:
    runs: int = 0
    skipped_runs: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    retried: int = 0

    COUNTS = ("runs", "skipped_runs", "sent", "failed", "skipped", "unknown", "retried")

    def add(self, other: "Summary") -> "Summary":
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


# --- the journal ----------------------------------------------------------


def journal_dir() -> Path:
    path = Path(settings.DISPATCH_JOURNAL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Journal:
    """An append-only file per claim; each line is one write, never torn."""

    def __init__(self, token: str):
        self.path = journal_dir() / f"{token}.log"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._write("claim")

    def _write(self, line: str) -> None:
        os.write(self.fd, (line.replace("\n", " ") + "\n").encode())

    def in_flight(self, attempt_id: int) -> None:
        self._write(f"i {attempt_id}")

    def answered(self, attempt_id: int, result: str, response: str) -> None:
        self._write(f"r {attempt_id} {result} {response[:500]}")

    def close(self, *, remove: bool) -> None:
        os.close(self.fd)
        if remove:
            self.path.unlink(missing_ok=True)


def journal_read(token: str) -> dict | None:
    """attempt id → ("in_flight", "") or (result, response); None if absent."""
    path = journal_dir() / f"{token}.log"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    states = {}
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "i" and rest.strip().isdigit():
            states[int(rest)] = ("in_flight", "")
        elif kind == "r":
            attempt_id, _, rest = rest.partition(" ")
            result, _, response = rest.partition(" ")
            if attempt_id.isdigit():
                states[int(attempt_id)] = (result, response)
    return states


# --- claiming -------------------------------------------------------------


def new_token() -> str:
    return f"{HOST_TAG}{secrets.token_hex(8)}"


def claimable_runs(*, now, run_ids=None):
    """Runs whose queued attempts a worker may take now."""
    queryset = MailingRun.objects.filter(
        owner__is_active=True, mailing__is_enabled=True
    ).filter(
        Q(status__in=[MailingRun.Status.QUEUED, MailingRun.Status.RUNNING])
        | Q(status=MailingRun.Status.PAUSED, paused_until__lte=now)
    )
    if run_ids is not None:
        queryset = queryset.filter(pk__in=run_ids)
    return queryset


def attempts_claim(*, token: str, limit: int, now=None, run_ids=None) -> list:
    """Take up to `limit` queued attempts for this worker, with what sending needs."""
    now = now or timezone.now()
    with transaction.atomic():
        runs = list(
            claimable_runs(now=now, run_ids=run_ids).values_list("pk", flat=True)
        )
        if not runs:
            return []
        # Choose and lock the batch on core_attempt alone, then load what
        # sending needs. Chosen through the joins of select_related, the
        # planner sorted every queued row together with its message bodies:
        # 140 MB on disk and half a second a claim with 100,000 queued.
        ids = list(
            Attempt.objects.filter(
                status=Status.QUEUED, next_try_at__lte=now, run_id__in=runs
            )
            .select_for_update(skip_locked=True)
            .order_by("next_try_at", "id")
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return []
        Attempt.objects.filter(pk__in=ids).update(
            status=Status.SENDING, claim_token=token, claimed_at=now
        )
        attempts = list(
            Attempt.objects.filter(pk__in=ids)
            .select_related("run__mailing__message", "run__mailing__owner", "client")
            .order_by("next_try_at", "id")
        )
    return attempts


# --- sending --------------------------------------------------------------

SKIPPED, RELEASED, PAUSED = "skipped", "released", "paused"


@dataclass
class Result:
    attempt: Attempt
    outcome: str  # transports.SENT/RETRY/FAILED, SKIPPED, RELEASED or PAUSED
    response: str = ""
    tried: bool = False


class Sender:
    """SMTP_CONCURRENCY connections, each in its own thread, kept across batches."""

    def __init__(self, *, concurrency: int | None = None):
        self.concurrency = max(1, concurrency or settings.SMTP_CONCURRENCY)
        self.transports = [transports.transport_open() for _ in range(self.concurrency)]
        self.limiter = transports.RateLimiter(settings.SMTP_RATE_LIMIT)

    def close(self):
        for transport in self.transports:
            transport.close()

    def send_batch(self, attempts: list, journal: Journal, *, deadline: float) -> list:
        work = queue.SimpleQueue()
        for attempt in attempts:
            work.put(attempt)
        batch = _Batch(journal=journal, deadline=deadline)
        threads = [
            threading.Thread(
                target=self._connection_loop, args=(transport, work, batch), daemon=True
            )
            for transport in self.transports[: min(self.concurrency, len(attempts))]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return batch.results

    def _connection_loop(self, transport, work, batch):
        while True:
            try:
                attempt = work.get_nowait()
            except queue.Empty:
                return
            batch.add(self._handle(transport, attempt, batch))

    def _handle(self, transport, attempt, batch) -> Result:
        if batch.unreachable or time.monotonic() > batch.deadline:
            return Result(attempt, RELEASED, batch.unreachable)
        if batch.paused(attempt.run):
            return Result(attempt, PAUSED)
        if attempt.client is not None and attempt.client.unsubscribed_at:
            return Result(attempt, SKIPPED, "unsubscribed")
        mailing = attempt.run.mailing
        try:
            outgoing = email_prepare(
                mailing=mailing,
                message=mailing.message,
                client_id=attempt.client_id,
                email=attempt.email,
                full_name=attempt.client.full_name if attempt.client else "",
            )
            built = transport.build(outgoing)
        except Exception as error:  # a template that fails only at render time
            logger.warning("Attempt %s: message not built: %s", attempt.pk, error)
            return Result(attempt, transports.FAILED, f"message error: {error}", True)
        try:
            transport.prepare()
        except transports.ConnectionFailed as error:
            batch.unreachable = (
                f"no SMTP session (server down or login refused): {error}"
            )
            return Result(attempt, RELEASED, batch.unreachable)
        self.limiter.acquire()
        batch.journal.in_flight(attempt.pk)
        outcome = transport.send(built)
        batch.journal.answered(attempt.pk, outcome.result, outcome.response)
        return Result(attempt, outcome.result, outcome.response, tried=True)


class _Batch:
    """What the connection threads of one batch share."""

    def __init__(self, *, journal, deadline):
        self.journal, self.deadline = journal, deadline
        self.results, self.unreachable = [], ""
        self.lock = threading.Lock()
        self.streaks = {}  # run id → failures in a row, counting the run's own

    def paused(self, run) -> bool:
        limit = settings.SMTP_MAX_CONSECUTIVE_ERRORS
        with self.lock:
            streak = self.streaks.setdefault(run.pk, run.consecutive_failures)
        return bool(limit) and streak >= limit

    def add(self, result: Result) -> None:
        with self.lock:
            self.results.append(result)
            run_id = result.attempt.run_id
            if result.outcome == transports.SENT:
                self.streaks[run_id] = 0
            elif result.outcome in (transports.FAILED, transports.RETRY):
                self.streaks[run_id] = self.streaks.get(run_id, 0) + 1


# --- recording ------------------------------------------------------------


def backoff(tries: int) -> timedelta:
    return timedelta(seconds=settings.SMTP_RETRY_BACKOFF * 2 ** max(tries - 1, 0))


def results_record(results: list, *, now=None) -> Summary:
    """Write a batch's outcomes and the runs' counters; a few queries in all."""
    now = now or timezone.now()
    summary = Summary()
    per_run = defaultdict(Counter)
    # Failures in a row per run: after a success the trailing count replaces
    # the run's counter, otherwise it adds to it.
    trailing, reset = Counter(), set()
    for result in results:
        attempt = result.attempt
        run_id = attempt.run_id
        counts = per_run[run_id]
        attempt.claim_token, attempt.claimed_at = "", None
        if result.tried:
            attempt.tries += 1
            attempt.attempted_at = now
        outcome = result.outcome
        if outcome == transports.RETRY and attempt.tries >= settings.SMTP_MAX_RETRIES:
            outcome = transports.FAILED
        if outcome == transports.SENT:
            attempt.status = Status.SENT
            counts["sent"] += 1
            trailing[run_id] = 0
            reset.add(run_id)
        elif outcome == transports.FAILED:
            attempt.status = Status.FAILED
            counts["failed"] += 1
            trailing[run_id] += 1
        elif outcome == transports.RETRY:
            attempt.status = Status.QUEUED
            attempt.next_try_at = now + backoff(attempt.tries)
            counts["retried"] += 1
            trailing[run_id] += 1
        elif outcome == SKIPPED:
            attempt.status = Status.SKIPPED
            counts["skipped"] += 1
        else:  # released or paused: never handed to the server
            attempt.status = Status.QUEUED
            if outcome == PAUSED:
                counts["paused"] += 1
        if result.response:
            attempt.server_response = result.response
    summary.sent = sum(c["sent"] for c in per_run.values())
    summary.failed = sum(c["failed"] for c in per_run.values())
    summary.skipped = sum(c["skipped"] for c in per_run.values())
    summary.retried = sum(c["retried"] for c in per_run.values())
    with transaction.atomic():
        attempts_write(
            [result.attempt for result in results],
            fields=[
                "status",
                "server_response",
                "tries",
                "attempted_at",
                "next_try_at",
                "claim_token",
                "claimed_at",
            ],
        )
        for run_id, counts in per_run.items():
            runs_count(
                run_id=run_id,
                counts=counts,
                failures=trailing[run_id],
                reset=run_id in reset,
                now=now,
            )
    runs_finish(run_ids=list(per_run), now=now)
    return summary


def attempts_write(attempts: list, *, fields: list, batch_size: int = 1000) -> None:
    """Save `fields` of many attempts: one UPDATE per `batch_size` rows.

    The same CASE per column that `QuerySet.bulk_update` writes, without its
    cost in Python: it resolves a `When(pk=…)` per row and column, some
    0.6 ms an attempt for these seven columns, as much as building and
    sending the message. A column with one value for every row (the claim
    token, usually the status) is set once.
    """
    meta = Attempt._meta
    quote = connection.ops.quote_name
    pk = quote(meta.pk.column)
    for start in range(0, len(attempts), batch_size):
        chunk = attempts[start : start + batch_size]
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
                f"WHERE {pk} IN ({placeholders})",
                [*params, *ids],
            )


def runs_count(*, run_id: int, counts: Counter, failures: int, reset: bool, now):
    """Add a batch's counts to its run; pause it after too many failures."""
    runs = MailingRun.objects.filter(pk=run_id)
    streak = Value(failures) if reset else F("consecutive_failures") + failures
    values = {
        "sent_count": F("sent_count") + counts["sent"],
        "failed_count": F("failed_count") + counts["failed"],
        "skipped_count": F("skipped_count") + counts["skipped"],
        "consecutive_failures": streak,
        "started_at": Case(
            When(started_at__isnull=True, then=Value(now)), default=F("started_at")
        ),
    }
    if counts["sent"] or counts["failed"] or counts["retried"]:
        values["status"] = Case(
            When(
                status__in=[MailingRun.Status.QUEUED, MailingRun.Status.PAUSED],
                then=Value(MailingRun.Status.RUNNING),
            ),
            default=F("status"),
        )
    runs.update(**values)
    limit = settings.SMTP_MAX_CONSECUTIVE_ERRORS
    if limit and (counts["paused"] or failures):
        runs.filter(
            Q(consecutive_failures__gte=limit)
            | Q(pk__in=[run_id] if counts["paused"] else [])
        ).update(
            status=MailingRun.Status.PAUSED,
            paused_until=now + timedelta(minutes=settings.SMTP_PAUSE_MINUTES),
            consecutive_failures=0,
        )


def runs_finish(*, run_ids: list, now) -> None:
    """Mark runs with nothing left to send as finished."""
    if not run_ids:
        return
    # EXISTS stops at the first open attempt; reading them all (as a DISTINCT
    # under Attempt's default ordering did) made each batch cost O(queue).
    still_open = Attempt.objects.filter(
        run=OuterRef("pk"), status__in=[Status.QUEUED, Status.SENDING]
    )
    MailingRun.objects.filter(pk__in=run_ids).exclude(
        status__in=[MailingRun.Status.FINISHED, MailingRun.Status.SKIPPED]
    ).filter(~Exists(still_open)).update(
        status=MailingRun.Status.FINISHED, finished_at=now
    )


# --- recovery -------------------------------------------------------------


def attempts_recover(*, now=None) -> Summary:
    """Settle attempts whose worker died while holding them."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)
    stale = Attempt.objects.filter(status=Status.SENDING, claimed_at__lt=now - lease)
    tokens = set(stale.order_by().values_list("claim_token", flat=True).distinct())
    summary = Summary()
    for token in tokens:
        states = journal_read(token) if token.startswith(HOST_TAG) else None
        if states is None and not token.startswith(HOST_TAG):
            # Another machine's claim: give it time to settle its own.
            if stale.filter(
                claim_token=token, claimed_at__gte=now - lease * FOREIGN_GRACE_LEASES
            ).exists():
                continue
        summary.add(_settle(token, states, now=now))
        (journal_dir() / f"{token}.log").unlink(missing_ok=True)
    _sweep_journals(now=now, lease=lease)
    return summary


def _settle(token: str, states: dict | None, *, now) -> Summary:
    with transaction.atomic():
        held = list(
            Attempt.objects.select_for_update()
            .filter(status=Status.SENDING, claim_token=token)
            .select_related("run")
        )
        results, unknown = [], []
        for attempt in held:
            state = states.get(attempt.pk) if states is not None else ("in_flight", "")
            if state is None:
                results.append(Result(attempt, RELEASED))
            elif state[0] == "in_flight":
                unknown.append(attempt)
            else:
                results.append(Result(attempt, state[0], state[1], tried=True))
        for attempt in unknown:
            attempt.status = Status.UNKNOWN
            attempt.server_response = "worker stopped while sending; not resent"
            attempt.claim_token, attempt.claimed_at = "", None
            attempt.attempted_at = now
        Attempt.objects.bulk_update(
            unknown,
            ["status", "server_response", "claim_token", "claimed_at", "attempted_at"],
        )
        per_run = Counter(attempt.run_id for attempt in unknown)
        for run_id, count in per_run.items():
            MailingRun.objects.filter(pk=run_id).update(
                unknown_count=F("unknown_count") + count
            )
    summary = results_record(results, now=now) if results else Summary()
    summary.unknown += len(unknown)
    runs_finish(run_ids=list(per_run), now=now)
    return summary


def _sweep_journals(*, now, lease) -> None:
    """Remove journals of claims that were recorded but whose file stayed."""
    cutoff = time.time() - 2 * lease.total_seconds()
    for path in journal_dir().glob(f"{HOST_TAG}*.log"):
        try:
            if (
                path.stat().st_mtime < cutoff
                and not Attempt.objects.filter(
                    status=Status.SENDING, claim_token=path.stem
                ).exists()
            ):
                path.unlink(missing_ok=True)
        except FileNotFoundError:
            continue


# --- the loop -------------------------------------------------------------


def attempts_deliver(*, time_budget: float, run_ids=None, progress=None) -> Summary:
    """Claim and send batches until nothing is due or the time is up."""
    summary = Summary()
    sender = Sender()
    lease = settings.DISPATCH_LEASE_SECONDS
    stop_at = time.monotonic() + time_budget
    try:
        while time.monotonic() < stop_at:
            token = new_token()
            journal = Journal(token)
            attempts = attempts_claim(
                token=token, limit=settings.DISPATCH_BATCH_SIZE, run_ids=run_ids
            )
            if not attempts:
                journal.close(remove=True)
                break
            # Half the lease at most: recovery must never meet a live claim.
            deadline = min(time.monotonic() + lease / 2, stop_at)
            results = sender.send_batch(attempts, journal, deadline=deadline)
            batch = results_record(results)
            journal.close(remove=True)
            summary.add(batch)
            if progress:
                progress(batch)
            if all(result.outcome == RELEASED for result in results):
                break  # the server is unreachable; the next tick tries again
    finally:
        sender.close()
    return summary
