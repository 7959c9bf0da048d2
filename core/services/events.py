"""Unsubscribes and preference changes as events of the message they came
from, so a run's report counts them (DESIGN.md, Event).

The unsubscribe and preference links of a mailing's message carry that
message's signed token (`?m=`, the token of its return path). A link
without one (a message sent before links carried it, or a welcome mail) is
counted for the recipient's latest message. A token that does not verify,
or names another recipient's message, is treated as absent.
"""

import hashlib

from django.db.models import Count, Q
from django.utils import timezone

from core.models import Attempt, Event
from core.services.mail.verp import token_attempt

# The query parameter the links carry the token in.
MESSAGE_PARAMETER = "m"


def link_with_message(url: str, message: str) -> str:
    return f"{url}?{MESSAGE_PARAMETER}={message}" if message else url


def attempt_of_link(*, client_id: int, message: str = "") -> dict | None:
    """The message (attempt) a recipient's link came from, or None."""
    attempts = Attempt.objects.filter(client_id=client_id).values(
        "pk", "owner_id", "run_id"
    )
    key, _, mac = (message or "").strip().lower().partition("-")
    attempt_id = token_attempt(key, mac) if key and mac else None
    if attempt_id is not None:
        attempt = attempts.filter(pk=attempt_id).first()
        if attempt is not None:
            return attempt
    return attempts.filter(status=Attempt.Status.SENT).order_by("-pk").first()


def link_event_record(*, client_id: int, kind: str, message: str = "", now=None):
    """Record an unsubscribe or a preference change; the attempt or None.

    An unsubscribe counts once per message and stamps its `unsubscribed_at`;
    each preference change is an event of its own.
    """
    attempt = attempt_of_link(client_id=client_id, message=message)
    if attempt is None:
        return None
    now = now or timezone.now()
    fingerprint = ""
    if kind == Event.Kind.UNSUBSCRIBE:
        basis = f"{kind}:{attempt['pk']}".encode()
        fingerprint = hashlib.sha256(basis).hexdigest()
        Attempt.objects.filter(pk=attempt["pk"], unsubscribed_at__isnull=True).update(
            unsubscribed_at=now
        )
    Event.objects.bulk_create(
        [
            Event(
                owner_id=attempt["owner_id"],
                run_id=attempt["run_id"],
                attempt_id=attempt["pk"],
                kind=kind,
                at=now,
                source="link",
                fingerprint=fingerprint,
            )
        ],
        ignore_conflicts=True,
    )
    return attempt


def run_followed(*, run) -> dict:
    """What followed a run's messages, as its report shows it: delivered
    (sent less bounced), bounced by severity, complaints, unsubscribes."""
    counts = Attempt.objects.filter(run_id=run.pk).aggregate(
        bounced=Count("pk", filter=Q(bounced_at__isnull=False)),
        # Refused at send time, a bounce was never among the sent.
        bounced_later=Count(
            "pk", filter=Q(bounced_at__isnull=False, status=Attempt.Status.SENT)
        ),
        complained=Count("pk", filter=Q(complained_at__isnull=False)),
        unsubscribed=Count("pk", filter=Q(unsubscribed_at__isnull=False)),
    )
    severities = dict(
        Event.objects.filter(run_id=run.pk, kind=Event.Kind.BOUNCE)
        .order_by()
        .values_list("severity")
        .annotate(n=Count("attempt_id", distinct=True))
    )
    bounced_later = counts.pop("bounced_later")
    return {
        **counts,
        "delivered": max(run.sent_count - bounced_later, 0),
        "severities": severities,
    }
