"""Sending quotas: how many messages a day and a calendar month each client's
mailings may hand to the relay.

A manager sets a client's own (`User.daily_quota`, `monthly_quota`); left
empty, the service's SENDING_QUOTA_DAILY and SENDING_QUOTA_MONTHLY hold
(empty: no limit). Days and months are those of TIME_ZONE.

Usage is counted in `SendingUsage`, for every client: a claim adds what it
takes, with the client's rows of the month locked when a quota applies, so
workers on any machine never take more than is left between them; what goes
back to the queue unsent (a retry later, a paused run, a stopped worker) is
given back when its result is recorded. What exceeds a quota stays queued,
never dropped: claims pass the client's runs over until the next day or
month starts, and the run's report says so.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from core.models import SendingUsage


@dataclass(frozen=True)
class Quota:
    """A client's limits; None: no limit."""

    daily: int | None
    monthly: int | None

    @property
    def limited(self) -> bool:
        return self.daily is not None or self.monthly is not None


def quota_of(user) -> Quota:
    """The limits that hold for `user`: their own, else the service's."""
    return quota_from(user.daily_quota, user.monthly_quota)


def quota_from(daily: int | None, monthly: int | None) -> Quota:
    """The limits a user's own values (None: not set) make."""
    return Quota(
        daily=settings.SENDING_QUOTA_DAILY if daily is None else daily,
        monthly=settings.SENDING_QUOTA_MONTHLY if monthly is None else monthly,
    )


@dataclass(frozen=True)
class Period:
    """The day and month a moment falls in, in TIME_ZONE."""

    today: date
    month_start: date
    next_day: datetime  # when the next day starts
    next_month: datetime  # when the next month starts

    @property
    def month_days(self) -> dict:
        """The lookup of SendingUsage rows of this month (every day of it,
        later ones too: another worker's clock may be a little ahead)."""
        return {"day__gte": self.month_start, "day__lt": self.next_month.date()}

    @classmethod
    def of(cls, now) -> "Period":
        zone = timezone.get_default_timezone()
        today = timezone.localdate(now, zone)
        month_start = today.replace(day=1)
        following = (month_start + timedelta(days=32)).replace(day=1)
        return cls(
            today=today,
            month_start=month_start,
            next_day=datetime.combine(today + timedelta(days=1), time.min, zone),
            next_month=datetime.combine(following, time.min, zone),
        )


@dataclass(frozen=True)
class Usage:
    """What a client used of their quota in the current day and month."""

    quota: Quota
    today: int
    month: int
    period: Period

    @property
    def left(self) -> int | None:
        """Messages still allowed now; None for no limit."""
        room = [
            limit - used
            for limit, used in (
                (self.quota.daily, self.today),
                (self.quota.monthly, self.month),
            )
            if limit is not None
        ]
        return max(0, min(room)) if room else None

    @property
    def resumes_at(self) -> datetime | None:
        """When sending may go on, if the quota is used up now; None if it is
        not, or if it never will (a quota of zero)."""
        if self.left != 0 or 0 in (self.quota.daily, self.quota.monthly):
            return None
        return self.period.next_month if self.monthly_spent else self.period.next_day

    @property
    def monthly_spent(self) -> bool:
        return self.quota.monthly is not None and self.month >= self.quota.monthly

    def explain(self) -> str:
        """The report's line while the quota holds mail back ("" if it does not)."""
        if self.left != 0:
            return ""
        if self.quota.daily == 0 or self.quota.monthly == 0:
            return _(
                "The sending quota is zero: nothing is sent until a manager "
                "raises it. The recipients stay queued."
            )
        resumes = timezone.localtime(self.resumes_at, timezone.get_default_timezone())
        figures = {
            "used": self.today,
            "limit": self.quota.daily,
            "at": date_format(resumes, "DATETIME_FORMAT"),
        }
        # Not told by the moment it resumes: on a month's last day the next
        # day and the next month start together.
        if self.monthly_spent:
            figures.update(used=self.month, limit=self.quota.monthly)
            return (
                _(
                    "Monthly sending quota reached (%(used)d of %(limit)d): the "
                    "rest waits, queued, until %(at)s."
                )
                % figures
            )
        return (
            _(
                "Daily sending quota reached (%(used)d of %(limit)d): the rest "
                "waits, queued, until %(at)s."
            )
            % figures
        )


def usage_of(user, *, now=None) -> Usage:
    """`user`'s usage of the current day and month, in one query."""
    period = Period.of(now or timezone.now())
    totals = SendingUsage.objects.filter(owner=user, **period.month_days).aggregate(
        month=Coalesce(Sum("count"), 0),
        today=Coalesce(Sum("count", filter=Q(day=period.today)), 0),
    )
    return Usage(
        quota=quota_of(user),
        today=totals["today"],
        month=totals["month"],
        period=period,
    )


def usage_total(rows):
    """The sum of `rows` (SendingUsage, filtered on an OuterRef owner) as an
    expression of the outer query; 0 where there are none."""
    return Coalesce(
        Subquery(
            rows.values("owner").annotate(total=Sum("count")).values("total")[:1],
            output_field=IntegerField(),
        ),
        0,
    )


def quota_open_q(*, now, owner: str = "owner") -> Q:
    """Rows whose owner (the foreign key `owner`) may still send now: no
    quota, or one not used up. Claims pass over the runs of a client at
    their quota, so those attempts neither block others nor get taken."""
    period = Period.of(now)
    usage = SendingUsage.objects.filter(owner=OuterRef(owner))
    reached = Q()
    for field, default, rows in (
        ("daily_quota", settings.SENDING_QUOTA_DAILY, usage.filter(day=period.today)),
        (
            "monthly_quota",
            settings.SENDING_QUOTA_MONTHLY,
            usage.filter(**period.month_days),
        ),
    ):
        used = usage_total(rows)
        own = f"{owner}__{field}"
        if default is None:
            # Only clients with a limit of their own are held.
            reached |= Q(**{f"{own}__isnull": False, f"{own}__lte": used})
        else:
            reached |= Q(
                LessThanOrEqual(
                    Coalesce(F(own), Value(default), output_field=IntegerField()),
                    used,
                )
            )
    return ~reached


def quota_take(wanted: Counter, *, owners: dict, now) -> dict:
    """Count `wanted` (owner id → messages a claim would take) as used, each
    owner's cut down to what their quota leaves; owner id → messages granted.
    `owners` holds the users by id.

    Runs in the claim's transaction. A limited owner's rows of the month are
    locked until it commits, so two claims never both take the last room.
    """
    period = Period.of(now)
    granted = {}
    # Locked in one order, so two claims never wait on each other in turn.
    for owner_id in sorted(wanted):
        user = owners.get(owner_id)
        quota = quota_of(user) if user else Quota(None, None)
        count = wanted[owner_id]
        if quota.limited:
            count = min(count, _left_locked(owner_id, quota, period))
        if count:
            _add(owner_id, period.today, count)
        granted[owner_id] = count
    return granted


# (owner id, month's first day, today) whose rows a committed claim of this
# process made or found: later claims that day need not make them again.
_ROWS_MADE: set = set()


def _left_locked(owner_id: int, quota: Quota, period: Period) -> int:
    """What the owner's quota leaves now, with every row of their month
    locked until the claim commits: two claims, even on either side of
    midnight, cannot both take the month's last room. Rows lock in (owner,
    day) order, the order give-backs update them in.

    The month's first and today's rows are made (or found made) before any
    is locked: a claim that waited for another's new row while holding the
    month's first would deadlock with that claim. The month's first comes
    first in both the insert and the lock, so whoever waits holds none of
    this owner's rows. One query, and one more on this process's first
    claim of the day for the owner."""
    made = (owner_id, period.month_start, period.today)
    if made not in _ROWS_MADE:
        SendingUsage.objects.bulk_create(
            [
                SendingUsage(owner_id=owner_id, day=day)
                for day in sorted({period.month_start, period.today})
            ],
            ignore_conflicts=True,
        )
        if len(_ROWS_MADE) > 10_000:
            _ROWS_MADE.clear()
        # Known made only once this claim commits.
        transaction.on_commit(lambda: _ROWS_MADE.add(made))
    days = dict(
        SendingUsage.objects.select_for_update()
        .filter(owner_id=owner_id, **period.month_days)
        .order_by("day")
        .values_list("day", "count")
    )
    usage = Usage(
        quota=quota,
        today=days.get(period.today, 0),
        month=sum(days.values()),
        period=period,
    )
    return usage.left


def _add(owner_id: int, day: date, count: int) -> None:
    rows = SendingUsage.objects.filter(owner_id=owner_id, day=day)
    if not rows.update(count=F("count") + count):
        _, created = SendingUsage.objects.get_or_create(
            owner_id=owner_id, day=day, defaults={"count": count}
        )
        if not created:  # another claim made the row meanwhile
            rows.update(count=F("count") + count)


def quota_give_back(returned: Counter) -> None:
    """Messages taken but not sent go back to their owners' usage:
    `returned` is (owner id, the day they were counted on) → messages; a day
    of None (taken before usage was counted) gives nothing back."""
    # In (owner, day) order, the order claims lock them in: never a deadlock.
    for (owner_id, day), count in sorted(returned.items()):
        if count and day is not None:
            SendingUsage.objects.filter(owner_id=owner_id, day=day).update(
                count=Greatest(F("count") - count, 0)
            )
