"""Recovery: the claims of a dead worker are settled at the next tick.

A holder is known dead as soon as its journal's lock is free (same machine:
its process is gone), or when its heartbeat has lapsed for a lease (any
machine). Its claims are then settled from its journal: answered attempts
keep the answer, the one in flight on each connection becomes "unknown"
(never sent again), and attempts it never started go back to the queue.
Without a journal (another machine's, or wiped) every held attempt becomes
"unknown": a copy lost to doubt, never a copy sent twice.
"""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.models import Attempt

from .claims import claims_lapsed
from .journal import (
    BUILDING,
    IN_FLIGHT,
    journal_holder_gone,
    journal_read,
    journal_remove,
    journals_sweep,
)
from .outcome import Outcome, Result, Summary
from .recording import results_record

Status = Attempt.Status
NOT_RESENT = "worker stopped while sending; not resent"
NOT_BUILT = "not sent: the worker stopped while building this message"


def attempts_recover(*, now=None) -> Summary:
    """Settle the attempts whose worker died while holding them."""
    now = now or timezone.now()
    held = Attempt.objects.filter(status=Status.SENDING)
    journals_sweep(
        older_than=2 * settings.DISPATCH_LEASE_SECONDS,
        held=lambda token: held.filter(claim_token=token).exists(),
    )
    tokens = set(held.order_by().values_list("claim_token", flat=True).distinct())
    if not tokens:
        return Summary()
    lapsed = set(claims_lapsed().order_by().values_list("claim_token", flat=True))
    summary = Summary()
    for token in tokens:
        gone = journal_holder_gone(token)
        if gone is False or (gone is None and token not in lapsed):
            continue  # a live worker, or one that may still renew its claim
        states = journal_read(token) if gone else None
        summary.add(_settle(token, states, now=now))
        journal_remove(token)
    return summary


def _settle(token: str, states: dict | None, *, now) -> Summary:
    with transaction.atomic():
        attempts = list(
            Attempt.objects.select_for_update().filter(
                status=Status.SENDING, claim_token=token
            )
        )
        results = []
        for attempt in attempts:
            state = states.get(attempt.pk) if states is not None else (IN_FLIGHT, "")
            if state is None:
                results.append(Result(attempt, Outcome.RELEASED))
            elif state[0] == BUILDING:
                results.append(Result(attempt, Outcome.FAILED, NOT_BUILT))
            elif state[0] == IN_FLIGHT:
                results.append(Result(attempt, Outcome.UNKNOWN, NOT_RESENT))
            else:
                results.append(Result(attempt, state[0], state[1], tried=True))
        return results_record(results, now=now) if results else Summary()
