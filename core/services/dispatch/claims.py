"""Claims: a worker takes a batch of queued attempts before it sends any.

An attempt is claimed in the database (status "sending", a claim token)
under `SELECT … FOR UPDATE SKIP LOCKED`, so no two workers ever hold it.
While it sends, the worker renews its claims' `claimed_at` (its
heartbeat, on the database's clock); a claim whose heartbeat has lapsed for
DISPATCH_LEASE_SECONDS belongs to a dead worker, on whatever machine. A
worker stops sending from a claim it could not renew for two thirds of the
lease, so recovery never meets a live worker.
"""

import logging
import secrets
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Case, Q, Value, When
from django.db.models.functions import Now

from core.models import Attempt, MailingRun
from core.models.clients import subscribed_q
from core.models.suppressions import suppressed_q
from core.models.users import sending_allowed_q
from core.services.quotas import Period, quota_open_q, quota_take
from core.services.signing import message_signing

from .journal import HOST_TAG

logger = logging.getLogger(__name__)

Status = Attempt.Status


def token_new() -> str:
    return f"{HOST_TAG}{secrets.token_hex(8)}"


def lease() -> timedelta:
    return timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)


# `relay_owner` of the runs whatever relay their mail goes through.
ANY_RELAY = object()


def claimable_runs(*, now, run_ids=None, relay_owner=ANY_RELAY):
    """Runs whose queued attempts a worker may take now: all of them, or
    those whose mail goes through the service's relay (`relay_owner` None),
    or through the own relay of the client `relay_owner` names."""
    queryset = MailingRun.objects.filter(
        sending_allowed_q("owner__"), quota_open_q(now=now), mailing__is_enabled=True
    ).filter(
        Q(status__in=[MailingRun.Status.QUEUED, MailingRun.Status.RUNNING])
        | Q(status=MailingRun.Status.PAUSED, paused_until__lte=now)
    )
    if run_ids is not None:
        queryset = queryset.filter(pk__in=run_ids)
    if relay_owner is None:
        queryset = queryset.exclude(owner__smtp_relay__is_active=True)
    elif relay_owner is not ANY_RELAY:
        queryset = queryset.filter(
            owner_id=relay_owner, owner__smtp_relay__is_active=True
        )
    return queryset


def queued(*, now, run_ids=None, relay_owner=ANY_RELAY):
    """Attempts a worker could claim now (through which relay: claimable_runs)."""
    return Attempt.objects.filter(
        status=Status.QUEUED,
        next_try_at__lte=now,
        run__in=claimable_runs(now=now, run_ids=run_ids, relay_owner=relay_owner),
    )


def attempts_claim(
    *, token: str, limit: int, now, run_ids=None, relay_owner=None
) -> list:
    """Take up to `limit` queued attempts for this worker, with what sending needs.

    Each comes with `may_send`: whether its recipient may still be mailed
    (they may have unsubscribed since the run was queued). `relay_owner`:
    the client whose own relay the worker sends through, or None for the
    service's relay (everyone else's mail).
    """
    with transaction.atomic():
        ids, shared = _choose(
            limit=limit, now=now, run_ids=run_ids, relay_owner=relay_owner
        )
        if not ids:
            return []
        Attempt.objects.filter(pk__in=ids).update(
            status=Status.SENDING,
            claim_token=token,
            claimed_at=Now(),
            # The day quota_take counted them on.
            quota_day=Period.of(now).today,
        )
        attempts = list(
            Attempt.objects.filter(pk__in=ids)
            .select_related("client")
            .annotate(
                # The address as queued is checked too, and a recipient
                # deleted since is not mailed: a removal is a request to stop
                # (and the message would carry no unsubscribe link).
                may_send=Case(
                    When(
                        Q(client__isnull=False)
                        & subscribed_q("client__")
                        & ~suppressed_q(),
                        then=Value(True),
                    ),
                    default=Value(False),
                    output_field=BooleanField(),
                )
            )
            .order_by("next_try_at", "id")
        )
        for run in shared.values():
            # The key its mail is signed with, or why it may not go now.
            signing = message_signing(run.mailing.message)
            run.dkim, run.dkim_problem = signing.key, signing.problem
            run.dkim_also = signing.also
            run.return_path = signing.return_path
            if run.dkim_problem:
                logger.error("Run %s paused: %s", run.pk, run.dkim_problem)
        for attempt in attempts:
            attempt.run = shared[attempt.run_id]
    return attempts


def _choose(*, limit: int, now, run_ids, relay_owner) -> tuple[list, dict]:
    """The ids of the batch, locked, within their owners' quotas; and the
    batch's runs by id (each with its mailing, message and owner)."""
    passed_over = set()  # owners whose quota left nothing
    while True:
        # Chosen and locked on core_attempt alone (the runs a subquery),
        # then what sending needs is loaded. Chosen through the joins of
        # select_related, the planner sorted every queued row together with
        # its message bodies: 140 MB on disk and half a second a claim with
        # 100,000 queued.
        candidates = queued(now=now, run_ids=run_ids, relay_owner=relay_owner)
        if passed_over:
            candidates = candidates.exclude(owner_id__in=passed_over)
        rows = list(
            candidates.select_for_update(skip_locked=True)
            .order_by("next_try_at", "id")
            .values_list("pk", "run_id", "owner_id")[:limit]
        )
        if not rows:
            return [], {}
        # One run, mailing, message and owner object for all the batch's
        # attempts of a run: through select_related each row built its own
        # four, some 90 µs a message.
        runs = MailingRun.objects.filter(
            pk__in={run_id for _, run_id, _ in rows}
        ).select_related("mailing__message", "mailing__owner")
        shared = {run.pk: run for run in runs}
        owners = {run.owner_id: run.mailing.owner for run in shared.values()}
        wanted = Counter(owner_id for _, _, owner_id in rows)
        granted = quota_take(wanted, owners=owners, now=now)
        if granted == wanted:
            return [pk for pk, _, _ in rows], shared
        kept = []
        for pk, run_id, owner_id in rows:
            if granted[owner_id]:
                granted[owner_id] -= 1
                kept.append((pk, run_id))
        if kept:
            return [pk for pk, _ in kept], {
                run_id: shared[run_id] for _, run_id in kept
            }
        # Only clients at their quota were first in line (another worker
        # used it up since this claim began): the others' turn.
        passed_over |= set(wanted)


def claims_renew(*, token: str) -> int:
    """The heartbeat: the worker holding this claim is alive. How many of its
    attempts are still its own (fewer: recovery settled them)."""
    return Attempt.objects.filter(status=Status.SENDING, claim_token=token).update(
        claimed_at=Now()
    )


def claims_lapsed():
    """Claims whose worker stopped renewing them a lease ago. Claims are
    stamped and compared on the database's clock: machines' clocks differ."""
    return Attempt.objects.filter(status=Status.SENDING, claimed_at__lt=Now() - lease())
