"""Unsubscribes and preference changes as events of the message they came
from, so a run's report counts them (DESIGN.md, Event).

The unsubscribe and preference links of a mailing's message carry that
message's signed token (`?m=`, the token of its return path). A link
without one (a message sent before links carried it, or a welcome mail) is
counted for the recipient's latest message. A token that does not verify,
or names another recipient's message, is treated as absent.
"""

import hashlib
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.translation import gettext as _

from core.models import Attempt, Event, EventCount, EventCountsUntil, MailingRun
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


# What followed a message, as the attempt's first stamp of each.
STAMPS = {
    "complained": "complained_at",
    "unsubscribed": "unsubscribed_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
}


def _stamped(attempts, *names) -> dict:
    """How many of `attempts` carry each named stamp. Each count runs on its
    own partial index (Attempt.Meta): a run of a million attempts is not
    read whole for the few that complained."""
    return {
        name: attempts.filter(**{f"{STAMPS[name]}__isnull": False}).count()
        for name in names
    }


def _bounced(attempts) -> tuple[int, int]:
    """(bounced, bounced after they were sent) of `attempts`: a refusal at
    send time was never among the sent, so it takes nothing off delivered."""
    counts = attempts.filter(bounced_at__isnull=False).aggregate(
        bounced=Count("pk"),
        later=Count("pk", filter=Q(status=Attempt.Status.SENT)),
    )
    return counts["bounced"], counts["later"]


def run_followed(*, run) -> dict:
    """What followed a run's messages, as its report shows it: delivered
    (sent less bounced), bounced by severity, complaints, unsubscribes."""
    attempts = Attempt.objects.filter(run_id=run.pk)
    bounced, bounced_later = _bounced(attempts)
    severities = dict(
        Event.objects.filter(run_id=run.pk, kind=Event.Kind.BOUNCE)
        .order_by()
        .values_list("severity")
        .annotate(n=Count("attempt_id", distinct=True))
    )
    return {
        "bounced": bounced,
        **_stamped(attempts, "complained", "unsubscribed"),
        "delivered": max(run.sent_count - bounced_later, 0),
        "severities": severities,
    }


# Hours of opens and clicks are counted once over, and this long after: an
# event's time is taken a moment before it is written.
COUNT_MARGIN = timedelta(minutes=5)
ENGAGEMENT = (Event.Kind.OPEN, Event.Kind.CLICK)


def _hour(moment):
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def events_count_hours(*, now=None) -> int:
    """Count the opens and clicks of every hour that is over into
    EventCount, once; the number of rows written. Run by a schedule."""
    now = now or timezone.now()
    end = _hour(now - COUNT_MARGIN)
    EventCountsUntil.objects.get_or_create(pk=1)
    with transaction.atomic():
        state = EventCountsUntil.objects.select_for_update().get(pk=1)
        if state.until is not None and state.until >= end:
            return 0
        events = Event.objects.filter(kind__in=ENGAGEMENT, at__lt=end)
        if state.until is not None:
            events = events.filter(at__gte=state.until)
        rows = EventCount.objects.bulk_create(
            (
                EventCount(
                    run_id=run_id,
                    hour=hour,
                    kind=kind,
                    is_machine=machine,
                    url=url,
                    count=n,
                )
                for run_id, hour, kind, machine, url, n in _by_hour(events)
            ),
            batch_size=2000,
        )
        state.until = end
        state.save(update_fields=["until"])
    return len(rows)


def _by_hour(events):
    return (
        events.annotate(hour=TruncHour("at", tzinfo=UTC))
        .order_by()
        .values_list("run_id", "hour", "kind", "is_machine", "url")
        .annotate(n=Count("pk"))
    )


def _counted(run) -> list[tuple]:
    """(hour, kind, is_machine, url, count) of a run's opens and clicks: the
    hours counted, and the events since, read for each report once."""
    cached = getattr(run, "_engagement_counted", None)
    if cached is not None:
        return cached
    # Before the first pass nothing is counted and every event is read; the
    # same three queries either way.
    until = EventCountsUntil.objects.values_list("until", flat=True).first()
    until = until or datetime.min.replace(tzinfo=UTC)
    rows = list(
        EventCount.objects.filter(run_id=run.pk, hour__lt=until).values_list(
            "hour", "kind", "is_machine", "url", "count"
        )
    )
    live = Event.objects.filter(run_id=run.pk, kind__in=ENGAGEMENT, at__gte=until)
    rows += [row[1:] for row in _by_hour(live)]
    run._engagement_counted = rows
    return rows


def run_engagement(*, run, delivered: int) -> dict:
    """Opens and clicks of a run, people and machines apart.

    `opened` and `clicked` are people, each once (the attempts they
    stamped); `opens` and `clicks` count every event, by people and by
    machines. A run not tracked per recipient has only the events.
    """
    people = _stamped(Attempt.objects.filter(run_id=run.pk), "opened", "clicked")
    counted = {}
    for _when, kind, machine, _url, n in _counted(run):
        counted[kind, machine] = counted.get((kind, machine), 0) + n
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
    """Clicks per tracked link of a run, in the message's order: by people
    and by machines."""
    counted = {}
    for _when, kind, machine, url, n in _counted(run):
        if kind == Event.Kind.CLICK and url:
            row = counted.setdefault(url, {"clicks": 0, "machines": 0})
            row["machines" if machine else "clicks"] += n
    return [
        {"index": index, "url": url, **counted.get(url, {"clicks": 0, "machines": 0})}
        for index, url in enumerate(run.links or (), start=1)
    ]


TIMELINE_HOURS = 48


def run_timeline(*, run) -> list[dict]:
    """People's opens and clicks per hour over the run's first 48 hours."""
    start = run.started_at or run.created_at
    if start is None:
        return []
    start = _hour(start)
    hours = [
        {"hour": start + timedelta(hours=n), "opens": 0, "clicks": 0}
        for n in range(TIMELINE_HOURS)
    ]
    for hour, kind, machine, _url, n in _counted(run):
        index = int((hour - start).total_seconds() // 3600)
        if not machine and 0 <= index < TIMELINE_HOURS:
            hours[index]["opens" if kind == Event.Kind.OPEN else "clicks"] += n
    return hours


def run_report_rows(*, run) -> list[tuple[str, object]]:
    """A run's report as (figure, value) rows: its export."""
    followed = run_followed(run=run)
    engagement = run_engagement(run=run, delivered=followed["delivered"])
    rows = [
        (_("recipients"), run.total_count),
        (_("sent"), run.sent_count),
        (_("failed"), run.failed_count),
        (_("skipped"), run.skipped_count),
        (_("delivered"), followed["delivered"]),
        (_("bounced"), followed["bounced"]),
        *(
            (_("bounced: %(type)s") % {"type": severity}, count)
            for severity, count in sorted(followed["severities"].items())
            if severity
        ),
        (_("complaints"), followed["complained"]),
        (_("unsubscribed"), followed["unsubscribed"]),
        (_("opened (people)"), engagement["opened"]),
        (_("clicked (people)"), engagement["clicked"]),
        (_("open rate, %"), engagement["open_rate"]),
        (_("click rate, %"), engagement["click_rate"]),
        (_("opens by people"), engagement["opens"]),
        (_("opens by machines"), engagement["opens_by_machines"]),
        (_("clicks by people"), engagement["clicks"]),
        (_("clicks by machines"), engagement["clicks_by_machines"]),
    ]
    for link in run_links(run=run):
        rows.append(
            (_("clicks by people: %(url)s") % {"url": link["url"]}, link["clicks"])
        )
        rows.append(
            (_("clicks by machines: %(url)s") % {"url": link["url"]}, link["machines"])
        )
    return rows


def mailing_followed(*, mailing) -> dict:
    """A mailing's report over all its runs: what its runs' pages say,
    summed; people counted once per run they opened or clicked."""
    runs = MailingRun.objects.filter(mailing_id=mailing.pk)
    totals = runs.aggregate(runs=Count("pk"), sent=Sum("sent_count"))
    sent = totals["sent"] or 0
    attempts = Attempt.objects.filter(run__mailing_id=mailing.pk)
    bounced, bounced_later = _bounced(attempts)
    figures = {
        "runs": totals["runs"],
        "sent": sent,
        "delivered": max(sent - bounced_later, 0),
        "bounced": bounced,
        **_stamped(attempts, "complained", "unsubscribed", "opened", "clicked"),
    }
    figures["open_rate"] = _rate(figures["opened"], figures["delivered"])
    figures["click_rate"] = _rate(figures["clicked"], figures["delivered"])
    return figures
