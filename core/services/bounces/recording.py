"""Acting on bounces and complaints (DESIGN.md, List health).

One batch at a time, in a few statements:

- each becomes an `Event` (the same report twice is recorded once, by its
  fingerprint) and stamps its attempt's `bounced_at` / `complained_at`;
- a hard bounce suppresses the address for its owner at once, soft ones
  once SOFT_BOUNCE_LIMIT of them fell within 30 days; policy and content
  refusals never count against the address;
- a complaint suppresses the address and the owner is told;
- a run whose bounces pass 10 % of at least 100 messages the servers
  answered (sent, or refused at send time), or whose complaints pass
  0.3 %, suspends its owner's sending: the owner and the managers are
  told, and a manager resumes it (Users → resume sending).
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, F
from django.db.models.functions import Lower
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from core.models import Attempt, Event, MailingRun, Suppression
from core.services.accounts import mail_send_templated
from core.services.roles import MANAGERS

from . import severity as sev

logger = logging.getLogger(__name__)

SOFT_WINDOW = timedelta(days=30)
# A run is judged once this many of its messages went out.
RATE_MINIMUM_SENT = 100
BOUNCE_RATE_LIMIT = 0.10
COMPLAINT_RATE_LIMIT = 0.003
# Complaints a run needs besides the rate: any recipient can send a report
# about their own message, and one of them must not stop a small list.
COMPLAINTS_MINIMUM = 3
# What a failure must say to count against the address.
COUNTING = (sev.HARD, sev.SOFT)


@dataclass
class Finding:
    """One bounce or complaint about one attempt, ready to record."""

    attempt_id: int
    kind: str  # Event.Kind.BOUNCE or COMPLAINT
    source: str  # "mailbox", "smtp", or a provider's name
    fingerprint: str = ""
    status: str = ""
    detail: str = ""
    severity: str = ""
    at: object = None


@dataclass
class Recorded:
    bounces: int = 0
    complaints: int = 0
    duplicates: int = 0
    suppressed: int = 0
    unmatched: list = field(default_factory=list)  # findings naming no attempt


def findings_record(findings: list[Finding], *, now=None) -> Recorded:
    now = now or timezone.now()
    recorded = Recorded()
    if not findings:
        return recorded
    attempts = {
        row["pk"]: row
        for row in Attempt.objects.filter(
            pk__in={f.attempt_id for f in findings},
            # "sending": a fast relay's DSN can arrive before the batch
            # that sent it is recorded.
            status__in=[
                Attempt.Status.SENT,
                Attempt.Status.SENDING,
                Attempt.Status.FAILED,
                Attempt.Status.UNKNOWN,
            ],
        ).values("pk", "email", "owner_id", "run_id")
    }
    fingerprints = [f.fingerprint for f in findings if f.fingerprint]
    seen = set(
        Event.objects.filter(fingerprint__in=fingerprints).values_list(
            "fingerprint", flat=True
        )
    )
    events = []
    for finding in findings:
        attempt = attempts.get(finding.attempt_id)
        if attempt is None:
            recorded.unmatched.append(finding)
            continue
        if finding.fingerprint and finding.fingerprint in seen:
            recorded.duplicates += 1
            continue
        seen.add(finding.fingerprint)
        events.append(
            Event(
                owner_id=attempt["owner_id"],
                run_id=attempt["run_id"],
                attempt_id=finding.attempt_id,
                kind=finding.kind,
                at=finding.at or now,
                severity=finding.severity,
                status=finding.status[:16],
                detail=finding.detail[:500],
                source=finding.source[:32],
                fingerprint=finding.fingerprint,
            )
        )
    with transaction.atomic():
        Event.objects.bulk_create(events, ignore_conflicts=True)
        bounced = [e for e in events if e.kind == Event.Kind.BOUNCE]
        complained = [e for e in events if e.kind == Event.Kind.COMPLAINT]
        _stamp(bounced, "bounced_at", now)
        _stamp(complained, "complained_at", now)
        recorded.bounces, recorded.complaints = len(bounced), len(complained)
        recorded.suppressed = _suppress(bounced, complained, attempts, now)
    _complaints_tell(complained, attempts)
    runs_judge(run_ids={e.run_id for e in events}, now=now)
    return recorded


def _stamp(events, column: str, now) -> None:
    ids = [e.attempt_id for e in events]
    if ids:
        Attempt.objects.filter(pk__in=ids, **{f"{column}__isnull": True}).update(
            **{column: now}
        )


def _suppress(bounced, complained, attempts, now) -> int:
    """Suppress what the new events call for; how many addresses."""
    by_reason = defaultdict(lambda: defaultdict(set))  # reason → owner → emails
    for event in bounced:
        if event.severity == sev.HARD:
            attempt = attempts[event.attempt_id]
            by_reason[Suppression.Reason.HARD_BOUNCE][attempt["owner_id"]].add(
                attempt["email"]
            )
    for event in complained:
        attempt = attempts[event.attempt_id]
        by_reason[Suppression.Reason.COMPLAINT][attempt["owner_id"]].add(
            attempt["email"]
        )
    soft = {
        (attempts[e.attempt_id]["owner_id"], attempts[e.attempt_id]["email"].lower())
        for e in bounced
        if e.severity == sev.SOFT
    }
    if soft:
        owners = {owner for owner, _ in soft}
        # Messages that soft-bounced, not reports: two reports of one
        # message are one bounce.
        counted = (
            Event.objects.filter(
                owner_id__in=owners,
                kind=Event.Kind.BOUNCE,
                severity=sev.SOFT,
                at__gte=now - SOFT_WINDOW,
            )
            .annotate(address=Lower("attempt__email"))
            .filter(address__in={email for _, email in soft})
            .values_list("owner_id", "address")
            .annotate(n=Count("attempt_id", distinct=True))
        )
        for owner_id, email, n in counted:
            if (owner_id, email) in soft and n >= settings.SOFT_BOUNCE_LIMIT:
                by_reason[Suppression.Reason.SOFT_BOUNCES][owner_id].add(email)
    total = 0
    for reason, owners in by_reason.items():
        for owner_id, emails in owners.items():
            Suppression.objects.record(
                owner_id=owner_id, emails=emails, reason=reason, at=now
            )
            total += len(emails)
    return total


def _complaints_tell(complained, attempts) -> None:
    """One mail per owner per batch: which addresses complained."""
    by_owner = defaultdict(set)
    for event in complained:
        attempt = attempts[event.attempt_id]
        by_owner[attempt["owner_id"]].add(attempt["email"])
    owners = get_user_model().objects.in_bulk(list(by_owner))
    for owner_id, emails in by_owner.items():
        owner = owners.get(owner_id)
        if owner is None:
            continue
        with translation.override(settings.LANGUAGE_CODE):
            mail_send_templated(
                to=owner.email,
                template="complaint_received",
                context={"emails": sorted(emails), "count": len(emails)},
            )


def runs_judge(*, run_ids, now) -> list[int]:
    """Suspend the owners of runs whose bounce or complaint rate is too high;
    the ids of the owners suspended now."""
    if not run_ids:
        return []
    # The messages the servers answered for: sent, or refused at send time
    # (those refusals are bounces too).
    runs = list(
        MailingRun.objects.annotate(answered=F("sent_count") + F("failed_count"))
        .filter(
            pk__in=run_ids,
            answered__gte=RATE_MINIMUM_SENT,
            owner__sending_suspended_at__isnull=True,
        )
        .select_related("owner", "mailing")
    )
    # Read from the partial indexes of bounced and complained attempts, not
    # from every attempt of the runs.
    ids = [run.pk for run in runs]
    bounced, complained = (
        dict(
            Attempt.objects.filter(run_id__in=ids, **{f"{column}__isnull": False})
            .order_by()
            .values_list("run_id")
            .annotate(n=Count("pk"))
        )
        for column in ("bounced_at", "complained_at")
    )
    for run in runs:
        run.bounced = bounced.get(run.pk, 0)
        run.complained = complained.get(run.pk, 0)
    suspended = []
    for run in runs:
        bounce_rate = run.bounced / run.answered
        complaint_rate = run.complained / run.answered
        too_many_complaints = (
            complaint_rate > COMPLAINT_RATE_LIMIT
            and run.complained >= COMPLAINTS_MINIMUM
        )
        if bounce_rate <= BOUNCE_RATE_LIMIT and not too_many_complaints:
            continue
        if run.owner_id in suspended:
            continue
        with translation.override(settings.LANGUAGE_CODE):
            reason = _(
                "Sending paused automatically: of the %(sent)d messages of "
                "“%(mailing)s” %(bounce).1f%% bounced and %(complaint).2f%% "
                "were reported as spam (limits: %(bounce_limit)d%% and "
                "%(complaint_limit).1f%%). Clean the list, then ask a manager "
                "to resume sending."
            ) % {
                "sent": run.answered,
                "mailing": run.mailing.title,
                "bounce": bounce_rate * 100,
                "complaint": complaint_rate * 100,
                "bounce_limit": BOUNCE_RATE_LIMIT * 100,
                "complaint_limit": COMPLAINT_RATE_LIMIT * 100,
            }
        changed = (
            get_user_model()
            .objects.filter(pk=run.owner_id, sending_suspended_at__isnull=True)
            .update(sending_suspended_at=now, sending_suspended_reason=reason[:500])
        )
        if not changed:
            continue
        suspended.append(run.owner_id)
        logger.warning("Sending of %s suspended: %s", run.owner.email, reason)
        _suspension_tell(owner=run.owner, reason=reason)
    return suspended


def _suspension_tell(*, owner, reason: str) -> None:
    managers = (
        get_user_model()
        .objects.filter(groups__name=MANAGERS, is_active=True)
        .values_list("email", flat=True)
    )
    with translation.override(settings.LANGUAGE_CODE):
        for address in [owner.email, *managers]:
            mail_send_templated(
                to=address,
                template="sending_paused",
                context={"owner_email": owner.email, "reason": reason},
            )
