"""How many processes deliver, and where they come from.

One process sends about a thousand messages a second before its core is
spent (building messages holds Python's lock), so a long queue is delivered
by several at once. Claims use `SELECT … FOR UPDATE SKIP LOCKED`, so no two
processes hold one attempt; that needs PostgreSQL, and on SQLite one process
delivers.

- In the cluster, django-q2's workers are the processes: a tick hands out
  up to DISPATCH_WORKERS delivery tasks (core/tasks.py), on this machine or
  any other that shares the broker.
- In the foreground, `send_scheduled_emails` delivers itself and in as many
  helper processes of a `concurrent.futures` pool as the queue is worth, up
  to DISPATCH_PROCESSES in all.

Each process keeps its share of SMTP_MAX_CONCURRENCY connections.
"""

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from core.services.mail.ratelimit import cache_counts_atomically
from core.services.mail.smtp import relay_name, uses_smtp
from core.services.relays import (
    RelayUnusable,
    relay_of,
    relay_problem_record,
    relays_with_work,
)

from .claims import queued
from .outcome import Summary
from .sending import AHEAD, Sender

logger = logging.getLogger(__name__)


def parallel_allowed() -> bool:
    """Whether several processes may deliver at once here."""
    return connection.features.has_select_for_update_skip_locked and (
        # A rate limit holds across processes only where the cache counts
        # atomically (Redis); the file, database and memory caches do not.
        not settings.SMTP_RATE_LIMIT or cache_counts_atomically()
    )


def batches_queued(*, limit: int, run_ids=None, now=None) -> int:
    """How many batches are queued now, counting up to `limit`."""
    now = now or timezone.now()
    size = settings.DISPATCH_BATCH_SIZE
    count = queued(now=now, run_ids=run_ids)[: size * limit].count()
    return -(-count // size)  # rounded up


def deliveries_wanted(*, now=None) -> int:
    """How many delivery tasks the queue is worth (0 when nothing is queued).

    Each takes AHEAD batches at a time: a queue of two batches is one
    delivery's work, which then has all the connections.
    """
    limit = settings.DISPATCH_WORKERS if parallel_allowed() else 1
    batches = batches_queued(limit=limit * AHEAD, now=now)
    return min(limit, -(-batches // AHEAD))


def helpers_wanted(*, run_ids=None, now=None) -> int:
    """How many helper processes beside this one the foreground command starts."""
    processes = settings.DISPATCH_PROCESSES
    if (
        processes <= 1
        or not parallel_allowed()
        # Open transactions (a test's, a caller's) cannot be shared.
        or connection.in_atomic_block
        # Only SMTP gains; other backends may keep their mail in memory.
        or not uses_smtp()
    ):
        return 0
    batches = batches_queued(limit=processes, run_ids=run_ids, now=now)
    return max(0, min(processes, batches) - 1)


def deliver(*, time_budget: float, run_ids=None, progress=None, share=1) -> Summary:
    """Deliver in this process until nothing is due or the time is up: the
    service's relay here, and each client relay with mail waiting beside it
    (threads of this process where the database lets several work at once;
    one after the other otherwise), so a slow relay delays nobody else."""
    senders = [Sender(time_budget=time_budget, run_ids=run_ids, share=share)]
    rows = relays_with_work(queued(now=timezone.now(), run_ids=run_ids))
    for row in rows:
        try:
            senders.append(
                Sender(
                    time_budget=time_budget,
                    run_ids=run_ids,
                    share=share,
                    relay=relay_of(row),
                    relay_owner=row.owner_id,
                )
            )
        except (RelayUnusable, ValueError) as error:
            # Its mail waits, queued: never sent through another relay.
            relay_problem_record(row, str(error))
    relays = {row.owner_id: row for row in rows}
    if len(senders) == 1:
        return senders[0].run(progress=progress)
    summary = Summary()
    # Threads of one process share its rate limits whatever the cache; they
    # need only claims that skip each other's rows, and no open transaction.
    parallel = (
        connection.features.has_select_for_update_skip_locked
        and not connection.in_atomic_block
    )
    lock = threading.Lock()

    def run(sender):
        row = relays.get(sender.relay_owner) if sender.relay else None
        with relay_turn(row) as mine:
            if not mine:
                return  # another process sends through it, under its rate limit
            done = sender.run(progress=progress)
        if sender.relay is not None:
            row = relays[sender.relay_owner]
            if sender.unreachable or done.sent or done.failed:
                relay_problem_record(row, sender.unreachable)
        with lock:
            summary.add(done)

    def run_apart(sender):
        try:
            run(sender)
        except Exception:  # its claims stay journaled; the next tick settles them
            logger.exception("Delivery through %s stopped", relay_name(sender.relay))
        finally:
            connection.close()  # this thread's own, and its relay's lock

    if not parallel:
        for sender in senders:
            run(sender)
        return summary
    threads = [
        threading.Thread(target=run_apart, args=(sender,), daemon=True)
        for sender in senders[1:]
    ]
    for thread in threads:
        thread.start()
    try:
        run(senders[0])
    finally:
        for thread in threads:
            thread.join()
    return summary


@contextmanager
def relay_turn(row):
    """Whether this process may send through a client's relay (`row`; None:
    the service's) now. With a rate limit on the relay and a cache that does
    not count atomically across processes, one process at a time does: a
    PostgreSQL session lock per relay, let go when its delivery ends (or its
    connection closes, should the process die)."""
    if (
        row is None
        or not row.rate_limit
        or cache_counts_atomically()
        or connection.vendor != "postgresql"  # one process delivers there
    ):
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RELAY_LOCK, row.pk])
        taken = cursor.fetchone()[0]
    try:
        yield taken
    finally:
        if taken:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", [RELAY_LOCK, row.pk]
                )


# The first key of the relays' advisory locks ("relay" in ASCII).
RELAY_LOCK = 0x72656C61


def deliver_foreground(*, time_budget: float, run_ids=None, progress=None) -> Summary:
    """Deliver here and in as many helper processes as the queue is worth."""
    helpers = helpers_wanted(run_ids=run_ids)
    if not helpers:
        return deliver(time_budget=time_budget, run_ids=run_ids, progress=progress)
    share = helpers + 1
    # A child must not share the parent's database sockets: both reconnect.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    reports = context.SimpleQueue()
    with ProcessPoolExecutor(
        max_workers=helpers,
        mp_context=context,
        initializer=_helper_start,
        initargs=(reports,),
    ) as pool:
        futures = [
            pool.submit(_helper_deliver, time_budget, run_ids, share)
            for _ in range(helpers)
        ]
        pump = threading.Thread(target=_pump, args=(reports, progress), daemon=True)
        pump.start()
        summary = Summary()
        try:
            summary.add(
                deliver(
                    time_budget=time_budget,
                    run_ids=run_ids,
                    progress=progress,
                    share=share,
                )
            )
        finally:
            # Every helper is waited for, whatever happened here.
            for future in futures:
                try:
                    summary.add(future.result())
                except Exception as error:  # a helper killed or failed
                    logger.warning(
                        "A delivery helper ended without its counts (%s); the "
                        "next tick settles its claims",
                        error,
                    )
            reports.put(None)
            pump.join()
    return summary


_reports = None


def _helper_start(reports) -> None:
    global _reports
    _reports = reports


def _helper_deliver(time_budget, run_ids, share) -> Summary:
    try:
        return deliver(
            time_budget=time_budget,
            run_ids=run_ids,
            share=share,
            progress=_reports.put if _reports is not None else None,
        )
    finally:
        connections.close_all()


def _pump(reports, progress) -> None:
    """The helpers' per-batch counts, to the caller's progress."""
    while (batch := reports.get()) is not None:
        if progress:
            progress(batch)
