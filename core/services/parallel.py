"""Delivery spread over several processes.

One process sends about a thousand messages a second before its core is
spent (building and writing messages holds Python's lock). When more is
queued than one batch per process, a tick forks helpers: copies of itself
that run the same claim → send → record loop (delivery.attempts_deliver)
with their own database connection, SMTP connections and journal, and hand
their counts back through a pipe. Claims are taken with `SELECT … FOR
UPDATE SKIP LOCKED`, so no two processes hold the same attempt; that needs
PostgreSQL, and on SQLite one process delivers. A helper that dies loses
nothing: its claims are settled from its journal like any worker's.

DISPATCH_PROCESSES caps the processes of one tick, this one included; each
opens SMTP_CONCURRENCY connections.
"""

import json
import logging
import os
import signal
from dataclasses import asdict

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection, connections
from django.utils import timezone

from core.models import Attempt

from . import transport as transports
from .delivery import Summary, attempts_deliver, claimable_runs

logger = logging.getLogger(__name__)


def helpers_wanted(*, run_ids=None, now=None) -> int:
    """How many helper processes the queued work is worth; 0 where not allowed."""
    processes = settings.DISPATCH_PROCESSES
    if (
        processes <= 1
        or not hasattr(os, "fork")
        or not connection.features.has_select_for_update_skip_locked
        # Open transactions (a test's, a caller's) cannot be shared.
        or connection.in_atomic_block
        # Only SMTP gains; other backends may keep their mail in memory.
        or not transports.uses_smtp()
        # A rate limit holds across processes only where the cache counts
        # atomically (Redis); the file, database and memory caches do not.
        or (settings.SMTP_RATE_LIMIT and not isinstance(caches["default"], RedisCache))
    ):
        return 0
    now = now or timezone.now()
    batch = settings.DISPATCH_BATCH_SIZE
    queued = Attempt.objects.filter(
        status=Attempt.Status.QUEUED,
        next_try_at__lte=now,
        run__in=claimable_runs(now=now, run_ids=run_ids),
    )[: batch * processes].count()
    batches = -(-queued // batch)  # rounded up
    return max(0, min(processes, batches) - 1)


def deliver_spread(*, time_budget: float, run_ids=None, progress=None) -> Summary:
    """`attempts_deliver` here and in as many helpers as the queue is worth."""
    helpers = helpers_wanted(run_ids=run_ids)
    if not helpers:
        return attempts_deliver(
            time_budget=time_budget, run_ids=run_ids, progress=progress
        )
    # A child must not share the parent's database sockets: both reconnect.
    connections.close_all()
    children = []
    try:
        for _ in range(helpers):
            children.append(_fork(time_budget=time_budget, run_ids=run_ids))
        summary = attempts_deliver(
            time_budget=time_budget, run_ids=run_ids, progress=progress
        )
    finally:
        # Every helper started is waited for, whatever happened here.
        counts = [_collect(pid, pipe) for pid, pipe in children]
    for helper in counts:
        summary.add(helper)
    return summary


def _fork(*, time_budget, run_ids) -> tuple[int, int]:
    read, write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write)
        return pid, read
    # The helper: deliver, report, and leave without running the parent's
    # exit handlers or flushing its buffers. SIGTERM ends it as it would any
    # process; SIGINT is left as the parent has it (a django-q2 worker
    # ignores it to finish its task, and so do its helpers).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.close(read)
    code = 1
    try:
        summary = attempts_deliver(time_budget=time_budget, run_ids=run_ids)
        os.write(write, json.dumps(asdict(summary)).encode())
        code = 0
    except BaseException:
        logger.exception("Delivery helper %s failed", os.getpid())
    finally:
        try:
            connections.close_all()
        finally:
            os._exit(code)


def _collect(pid: int, pipe: int) -> Summary:
    chunks = []
    while chunk := os.read(pipe, 65536):
        chunks.append(chunk)
    os.close(pipe)
    _, status = os.waitpid(pid, 0)
    if not chunks or os.waitstatus_to_exitcode(status):
        logger.warning(
            "Delivery helper %s ended with status %s; its claims are recovered "
            "by the next tick",
            pid,
            os.waitstatus_to_exitcode(status),
        )
        return Summary()
    return Summary(**json.loads(b"".join(chunks)))
