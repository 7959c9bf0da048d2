"""The figures on the admin index: a client's own, or the whole service's.

Whatever the number of rows, the figures take a fixed number of aggregate
queries, and they are cached for a minute: the index is everyone's landing
page, and an owner with a million attempts must not pay for counting them on
every visit.
"""

from datetime import datetime, time, timedelta
from itertools import pairwise

from django.core.cache import cache
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Window
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.models import (
    Attempt,
    Client,
    Event,
    Mailing,
    SendingUsage,
    UnreadBounce,
    User,
)
from core.models.base import sees_all
from core.models.mailings import active_q
from core.services.quotas import Period, Usage, quota_from, usage_of, usage_total

DASHBOARD_DAYS = 30
DASHBOARD_TOP_OWNERS = 50
DASHBOARD_CACHE_SECONDS = 60

# Attempts in any other status (queued, sending, skipped, unknown) are
# neither a success nor a failure yet, and are not counted.
SENT, FAILED = Attempt.Status.SENT, Attempt.Status.FAILED
BOUNCE, COMPLAINT = Event.Kind.BOUNCE, Event.Kind.COMPLAINT
OPEN, CLICK = Event.Kind.OPEN, Event.Kind.CLICK
COUNTED_STATUSES = (SENT, FAILED)

# The chart's drawing box, in SVG user units; the page scales it to the card.
CHART_WIDTH = 720
CHART_HEIGHT = 250
CHART_MARGIN = {"top": 12, "right": 8, "bottom": 40, "left": 48}


def dashboard_figures(*, user) -> dict:
    """The dashboard of `user`: their own figures, or the service's if allowed.

    Managers and superusers share one cache entry, as they see the same
    figures; a client's entry is keyed by their id, so nobody ever reads
    figures computed for someone else.
    """
    # Superusers and managers (global `view_mailing`) see the whole service.
    service = sees_all(user, Mailing)
    key = "core:dashboard:v4:" + ("service" if service else f"user:{user.pk}")
    figures = cache.get(key)
    if figures is None:
        figures = _figures_compute(owner=None if service else user)
        cache.set(key, figures, DASHBOARD_CACHE_SECONDS)
    if not service:
        # Fresh, and in the reader's language: what waits for the quota now.
        figures = {**figures, "quota": _quota_figures(usage_of(user))}
    return figures


def _figures_compute(*, owner) -> dict:
    # Days follow the configured TIME_ZONE, not a zone activated for one
    # request, so the cached figures mean the same days for every reader.
    zone = timezone.get_default_timezone()
    today = timezone.localdate(timezone.now(), zone)
    first_day = today - timedelta(days=DASHBOARD_DAYS - 1)
    # Where each local day starts, plus where the window ends (tomorrow).
    bounds = [
        datetime.combine(first_day + timedelta(days=n), time.min, tzinfo=zone)
        for n in range(DASHBOARD_DAYS + 1)
    ]
    dates = [bound.date() for bound in bounds[:-1]]

    mailings = Mailing.objects.all()
    clients = Client.objects.all()
    if owner is None:
        counts = _attempts_per_day_of_service(zone=zone, bounds=bounds)
    else:
        mailings = mailings.filter(owner=owner)
        clients = clients.filter(owner=owner)
        counts = _attempts_per_day_of_owner(owner=owner, bounds=bounds)
    days = [
        {
            "date": day,
            "sent": counts.get((day, SENT), 0),
            "failed": counts.get((day, FAILED), 0),
        }
        for day in dates
    ]
    figures = {
        "scope": "service" if owner is None else "own",
        "first_day": first_day,
        "last_day": today,
        **mailings.aggregate(
            mailings_total=Count("pk"),
            mailings_active=Count("pk", filter=active_q()),
        ),
        "recipients": clients.count(),
        "sent": sum(day["sent"] for day in days),
        "failed": sum(day["failed"] for day in days),
        "chart": _chart(days=days),
        "owners": [],
        "owners_more": 0,
    }
    followed = _followed(owner=owner, since=bounds[0], until=bounds[-1])
    figures.update(
        bounced=sum(n for (_, kind), n in followed.items() if kind == BOUNCE),
        complained=sum(n for (_, kind), n in followed.items() if kind == COMPLAINT),
        opened=sum(n for (_, kind), n in followed.items() if kind == OPEN),
        clicked=sum(n for (_, kind), n in followed.items() if kind == CLICK),
    )
    answered = figures["sent"] + figures["failed"]
    figures["bounce_rate"] = _rate(figures["bounced"], answered)
    figures["complaint_rate"] = _rate(figures["complained"], answered)
    figures["open_rate"] = _rate(figures["opened"], figures["sent"])
    figures["click_rate"] = _rate(figures["clicked"], figures["sent"])
    if owner is None:
        figures["owners"], figures["owners_more"] = _attempts_per_owner(
            since=bounds[0], until=bounds[-1]
        )
        _owners_followed(figures["owners"], followed)
        figures["unread_bounces"] = UnreadBounce.objects.count()
    return figures


def _quota_figures(usage) -> dict:
    """Today's and this month's sending against the quota (None: no limit)."""
    return {
        "today": usage.today,
        "daily": usage.quota.daily,
        "month": usage.month,
        "monthly": usage.quota.monthly,
        "held": usage.explain(),
    }


def _rate(part: int, whole: int) -> float:
    """A percentage, to two places; 0 when nothing was sent."""
    return round(100 * part / whole, 2) if whole else 0.0


def _followed(*, owner, since, until) -> dict:
    """{(owner id, kind): messages} of the bounces, complaints and people's
    opens and clicks that arrived in the window, one per message whatever the
    number of reports or clicks about it; one grouped query for the service's
    figures and its owners' alike. Opens and clicks not tied to recipients
    name no message and are not among them."""
    events = Event.objects.filter(
        kind__in=[BOUNCE, COMPLAINT, OPEN, CLICK],
        at__gte=since,
        at__lt=until,
        is_machine=False,
    )
    if owner is not None:
        events = events.filter(owner=owner)
    # A click is an open too (images are often off), as the run's report
    # counts it: the opened are the messages with either.
    counted = {
        BOUNCE: Q(kind=BOUNCE),
        COMPLAINT: Q(kind=COMPLAINT),
        OPEN: Q(kind__in=[OPEN, CLICK]),
        CLICK: Q(kind=CLICK),
    }
    rows = (
        events.order_by()
        .values("owner_id")
        .annotate(
            **{
                kind: Count("attempt_id", distinct=True, filter=condition)
                for kind, condition in counted.items()
            }
        )
    )
    return {
        (row["owner_id"], kind): row[kind]
        for row in rows
        for kind in counted
        if row[kind]
    }


def _owners_followed(owners: list[dict], followed: dict) -> None:
    """Each listed owner's bounce, complaint, open and click rates in the window."""
    for row in owners:
        answered = row["sent_recent"] + row["failed_recent"]
        row["bounced_recent"] = followed.get((row["id"], BOUNCE), 0)
        row["complained_recent"] = followed.get((row["id"], COMPLAINT), 0)
        row["bounce_rate"] = _rate(row["bounced_recent"], answered)
        row["complaint_rate"] = _rate(row["complained_recent"], answered)
        row["open_rate"] = _rate(followed.get((row["id"], OPEN), 0), row["sent_recent"])
        row["click_rate"] = _rate(
            followed.get((row["id"], CLICK), 0), row["sent_recent"]
        )


def _attempts_per_day_of_service(*, zone, bounds) -> dict:
    """{(local date, status): count} of the whole service's counted attempts.

    No index leads with the time, so the window is read in one grouped pass.
    """
    rows = (
        Attempt.objects.filter(
            status__in=COUNTED_STATUSES,
            attempted_at__gte=bounds[0],
            attempted_at__lt=bounds[-1],
        )
        .annotate(day=TruncDate("attempted_at", tzinfo=zone))
        .values("day", "status")
        # Counting an indexed column, not the key, lets PostgreSQL answer
        # from the index alone.
        .annotate(count=Count("status"))
        .order_by()
    )
    return {(row["day"], row["status"]): row["count"] for row in rows}


def _attempts_per_day_of_owner(*, owner, bounds) -> dict:
    """{(local date, status): count} of one owner's counted attempts.

    Each day and status is one range of the (owner, status, attempted_at)
    index, counted by a subquery of one statement: far cheaper than
    converting a million timestamps to local dates and grouping them (SQLite
    would call a Python function for each row).
    """
    own = Attempt.objects.filter(owner=owner).order_by().values("owner")
    ranges = {}
    for number, (start, end) in enumerate(pairwise(bounds)):
        for status in COUNTED_STATUSES:
            in_range = own.filter(
                status=status, attempted_at__gte=start, attempted_at__lt=end
            )
            ranges[f"{status}_{number}"] = Subquery(
                in_range.annotate(count=Count("status")).values("count"),
                output_field=IntegerField(),
            )
    row = User.objects.filter(pk=owner.pk).values(**ranges).get()
    # A range with no rows has no group, so its subquery answers NULL.
    return {
        (start.date(), status): row[f"{status}_{number}"] or 0
        for number, start in enumerate(bounds[:-1])
        for status in COUNTED_STATUSES
    }


def _usage_subqueries(period) -> dict:
    """Each owner's sending today and this month (SendingUsage), as
    annotations of the per-owner query: no query of their own."""
    rows = SendingUsage.objects.filter(owner=OuterRef("owner_id"))
    return {
        "usage_today": usage_total(rows.filter(day=period.today)),
        "usage_month": usage_total(rows.filter(**period.month_days)),
    }


def _attempts_per_owner(*, since, until) -> tuple[list[dict], int]:
    """The busiest senders, and how many more there are beyond the top ones.

    One grouped pass over the (owner, status, attempted_at) index gives both
    the window's and the all-time counts; a window function counts the groups
    in the same query.
    """
    recent = Q(attempted_at__gte=since, attempted_at__lt=until)
    sent, failed = Q(status=SENT), Q(status=FAILED)
    period = Period.of(timezone.now())
    rows = list(
        Attempt.objects.filter(status__in=COUNTED_STATUSES)
        .values(
            "owner_id", "owner__email", "owner__daily_quota", "owner__monthly_quota"
        )
        .annotate(
            sent_recent=Count("status", filter=sent & recent),
            failed_recent=Count("status", filter=failed & recent),
            recent=Count("status", filter=recent),
            sent_total=Count("status", filter=sent),
            failed_total=Count("status", filter=failed),
            total=Count("status"),
            owners=Window(Count("owner_id")),
            **_usage_subqueries(period),
        )
        .order_by("-recent", "-total", "owner__email")[:DASHBOARD_TOP_OWNERS]
    )
    owners = [
        {
            "id": row["owner_id"],
            "email": row["owner__email"],
            "quota": _quota_figures(
                Usage(
                    quota=quota_from(
                        row["owner__daily_quota"], row["owner__monthly_quota"]
                    ),
                    today=row["usage_today"],
                    month=row["usage_month"],
                    period=period,
                )
            ),
            "sent_recent": row["sent_recent"],
            "failed_recent": row["failed_recent"],
            "sent_total": row["sent_total"],
            "failed_total": row["failed_total"],
        }
        for row in rows
    ]
    more = rows[0]["owners"] - len(rows) if rows else 0
    return owners, more


def _nice_step(peak: int) -> int:
    """A round gridline step (1, 2, 5, 10, 20 …) giving three to five lines."""
    rough = max(peak / 5, 1)
    magnitude = 1
    while magnitude * 10 <= rough:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= rough:
            return factor * magnitude
    return 10 * magnitude


def _chart(*, days: list[dict]) -> dict:
    """Geometry of a grouped bar chart (sent beside failed) for the template.

    Drawn on the server as inline SVG, so the page needs no script and no
    asset from anywhere else.
    """
    margin = CHART_MARGIN
    plot_width = CHART_WIDTH - margin["left"] - margin["right"]
    plot_height = CHART_HEIGHT - margin["top"] - margin["bottom"]
    bottom = margin["top"] + plot_height
    peak = max((max(day["sent"], day["failed"]) for day in days), default=0)
    step = _nice_step(peak)
    top = max(step, -(-peak // step) * step)
    slot = plot_width / len(days)
    bar = slot * 0.38

    def height(value):
        return round(value / top * plot_height, 2)

    bars = []
    for index, day in enumerate(days):
        x = margin["left"] + index * slot
        sent_height, failed_height = height(day["sent"]), height(day["failed"])
        bars.append(
            {
                **day,
                "x": round(x, 2),
                "label_x": round(x + slot / 2, 2),
                "sent_x": round(x + slot * 0.1, 2),
                "sent_y": round(bottom - sent_height, 2),
                "sent_height": sent_height,
                "failed_x": round(x + slot * 0.1 + bar, 2),
                "failed_y": round(bottom - failed_height, 2),
                "failed_height": failed_height,
                # The month is named under the first bar and where one begins.
                "month_label": index == 0 or day["date"].day == 1,
            }
        )
    gridlines = [
        {"value": value, "y": round(bottom - height(value), 2)}
        for value in range(0, top + 1, step)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": margin["left"],
        "right": CHART_WIDTH - margin["right"],
        "bottom": bottom,
        "slot": round(slot, 2),
        "bar_width": round(bar, 2),
        "day_label_y": bottom + 16,
        "month_label_y": bottom + 32,
        "bars": bars,
        "gridlines": gridlines,
    }
