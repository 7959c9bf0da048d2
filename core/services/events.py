"""Unsubscribes and preference changes as events of the message they came
from, so a run's report counts them (DESIGN.md, Event).

The unsubscribe and preference links of a mailing's message carry that
message's signed token (`?m=`, the token of its return path). A link
without one (a message sent before links carried it, or a welcome mail) is
counted for the recipient's latest message. A token that does not verify,
or names another recipient's message, is treated as absent.
"""

import hashlib
from datetime import UTC, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncHour
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


def run_engagement(*, run, delivered: int) -> dict:
    """Opens and clicks of a run, people and machines apart.

    `opened` and `clicked` are people, each once (the attempts they
    stamped); `opens` and `clicks` count every event, by people and by
    machines. A run not tracked per recipient has only the events.
    """
    people = Attempt.objects.filter(run_id=run.pk).aggregate(
        opened=Count("pk", filter=Q(opened_at__isnull=False)),
        clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
    )
    counted = {
        (kind, machine): n
        for kind, machine, n in Event.objects.filter(
            run_id=run.pk, kind__in=(Event.Kind.OPEN, Event.Kind.CLICK)
        )
        .order_by()
        .values_list("kind", "is_machine")
        .annotate(n=Count("pk"))
    }
    figures = {
        "tracks_opens": run.track_opens,
        "tracks_clicks": run.track_clicks,
        "per_recipient": run.track_recipients,
        "opens": counted.get((Event.Kind.OPEN, False), 0),
        "opens_by_machines": counted.get((Event.Kind.OPEN, True), 0),
        "clicks": counted.get((Event.Kind.CLICK, False), 0),
        "clicks_by_machines": counted.get((Event.Kind.CLICK, True), 0),
        **people,
    }
    figures["open_rate"] = _rate(people["opened"], delivered)
    figures["click_rate"] = _rate(people["clicked"], delivered)
    return figures


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def run_links(*, run) -> list[dict]:
    """Clicks per tracked link of a run, in the message's order: people's
    clicks, the people who clicked, machines' clicks."""
    counted = {}
    for url, machine, n, people in (
        Event.objects.filter(run_id=run.pk, kind=Event.Kind.CLICK)
        .exclude(url="")
        .order_by()
        .values_list("url", "is_machine")
        .annotate(n=Count("pk"), people=Count("attempt_id", distinct=True))
    ):
        row = counted.setdefault(url, {"clicks": 0, "people": 0, "machines": 0})
        if machine:
            row["machines"] += n
        else:
            row["clicks"] += n
            row["people"] += people
    return [
        {
            "index": index,
            "url": url,
            **counted.get(url, {"clicks": 0, "people": 0, "machines": 0}),
        }
        for index, url in enumerate(run.links or (), start=1)
    ]


TIMELINE_HOURS = 48


def run_timeline(*, run) -> list[dict]:
    """People's opens and clicks per hour over the run's first 48 hours."""
    start = run.started_at or run.created_at
    if start is None:
        return []
    start = start.replace(minute=0, second=0, microsecond=0)
    hours = [
        {"hour": start + timedelta(hours=n), "opens": 0, "clicks": 0}
        for n in range(TIMELINE_HOURS)
    ]
    rows = (
        Event.objects.filter(
            run_id=run.pk,
            kind__in=(Event.Kind.OPEN, Event.Kind.CLICK),
            is_machine=False,
            at__gte=start,
            at__lt=start + timedelta(hours=TIMELINE_HOURS),
        )
        .annotate(hour=TruncHour("at", tzinfo=UTC))
        .order_by()
        .values_list("hour", "kind")
        .annotate(n=Count("pk"))
    )
    for hour, kind, n in rows:
        index = int((hour - start).total_seconds() // 3600)
        if 0 <= index < TIMELINE_HOURS:
            hours[index]["opens" if kind == Event.Kind.OPEN else "clicks"] += n
    return hours
