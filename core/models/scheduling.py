"""Schedule arithmetic: when a mailing's occurrences fall.

Pure functions of a mailing's `start_at`, `end_at`, `periodicity` and
`last_run_at` (any object with those attributes): `Mailing` derives its
`next_run_at` with them whenever its schedule changes, and the dispatcher
decides with them what a tick sends.

Occurrences keep the wall-clock time of `start_at` in the scheduler's time
zone (TIME_ZONE), so a daily 09:00 mailing stays at 09:00 across DST
changes, and a monthly mailing started on the 31st falls on the last day of
shorter months.
"""

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

STEP_DAYS = {"daily": 1, "weekly": 7}
# A mailing down for years records at most this many skipped runs: the
# latest ones before the occurrence it sends.
MAX_SKIPPED_RUNS = 400
# The years a schedule may name: the calendar arithmetic, the time zones and
# the database all have ends (year 1 in Moscow is year 0 in UTC).
FIRST_YEAR, LAST_YEAR = 2000, 2999


def validate_schedule_moment(moment: datetime) -> None:
    """A field validator: a start or end the schedule can compute with."""
    if moment is not None and not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise ValidationError(
            _("Choose a date between the years %(first)s and %(last)s."),
            code="year",
            params={"first": FIRST_YEAR, "last": LAST_YEAR},
        )


def _local(moment: datetime) -> datetime:
    return timezone.localtime(moment, timezone.get_default_timezone())


def _attach(naive: datetime, tz) -> datetime:
    # A wall time that DST skips gets the offset from before the change
    # (PEP 495, fold=0): it still sends, an hour later in UTC terms.
    return naive.replace(tzinfo=tz)


def occurrence(*, start_at: datetime, periodicity: str, index: int) -> datetime:
    """The `index`-th occurrence (0 is `start_at` itself)."""
    if index == 0 or periodicity == "once":
        return start_at
    start = _local(start_at)
    tz = start.tzinfo
    naive = start.replace(tzinfo=None)
    if periodicity in STEP_DAYS:
        return _attach(naive + timedelta(days=STEP_DAYS[periodicity] * index), tz)
    if periodicity == "monthly":
        months = naive.month - 1 + index
        year, month = naive.year + months // 12, months % 12 + 1
        day = min(naive.day, calendar.monthrange(year, month)[1])
        return _attach(naive.replace(year=year, month=month, day=day), tz)
    raise ValueError(f"Unknown periodicity {periodicity!r}")


def _index_at_or_before(*, start_at, periodicity, moment) -> int:
    """The largest index whose occurrence is at or before `moment` (≥ 0)."""
    if periodicity == "once" or moment <= start_at:
        return 0
    start, local = _local(start_at), _local(moment)
    if periodicity in STEP_DAYS:
        guess = (local.date() - start.date()).days // STEP_DAYS[periodicity]
    else:
        guess = (local.year - start.year) * 12 + (local.month - start.month)
    # The guess is off by at most one either way (time of day, month lengths).
    index = max(guess + 1, 0)
    while (
        index > 0
        and occurrence(start_at=start_at, periodicity=periodicity, index=index) > moment
    ):
        index -= 1
    return index


def occurrence_latest_due(*, mailing, now: datetime):
    """The latest occurrence at or before `now` within the mailing's window."""
    if now < mailing.start_at:
        return None
    moment = min(now, mailing.end_at) if mailing.end_at else now
    index = _index_at_or_before(
        start_at=mailing.start_at, periodicity=mailing.periodicity, moment=moment
    )
    due = occurrence(
        start_at=mailing.start_at, periodicity=mailing.periodicity, index=index
    )
    return due if due <= moment else None


def occurrence_after(*, mailing, moment: datetime):
    """The first occurrence strictly after `moment`, or None when there is none."""
    if moment < mailing.start_at:
        candidate = mailing.start_at
    elif mailing.periodicity == "once":
        return None
    else:
        index = _index_at_or_before(
            start_at=mailing.start_at, periodicity=mailing.periodicity, moment=moment
        )
        candidate = occurrence(
            start_at=mailing.start_at, periodicity=mailing.periodicity, index=index + 1
        )
    if mailing.end_at and candidate > mailing.end_at:
        return None
    return candidate


def next_run_for(*, mailing, now: datetime | None = None) -> datetime | None:
    """When the mailing next sends, from its schedule and its last run.

    Before the first run the mailing is due at its start (a start in the past
    sends at the next tick, unless its end has passed too); afterwards at the
    first occurrence after the last one that ran.
    """
    now = now or timezone.now()
    if mailing.last_run_at is None:
        if mailing.end_at and mailing.end_at < now:
            return None
        return mailing.start_at
    return occurrence_after(mailing=mailing, moment=mailing.last_run_at)


@dataclass(frozen=True)
class Due:
    """What a tick does with a mailing whose `next_run_at` has come."""

    occurrence: datetime | None  # the occurrence to send now, if any
    missed: tuple  # older occurrences not sent, recorded as skipped runs
    next_run_at: datetime | None  # where `next_run_at` moves afterwards


def due_now(*, mailing, now: datetime) -> Due:
    """The one decision the tick and its dry run share.

    The latest occurrence at or before `now` is sent, unless it already ran
    or the mailing's window is over; the occurrences between `next_run_at`
    and it were missed (the service was down).
    """
    latest = occurrence_latest_due(mailing=mailing, now=now)
    if latest is None or (mailing.last_run_at and latest <= mailing.last_run_at):
        moment = max(filter(None, [now, mailing.last_run_at]))
        return Due(None, (), occurrence_after(mailing=mailing, moment=moment))
    start_at, periodicity = mailing.start_at, mailing.periodicity
    missed = ()
    if mailing.next_run_at is not None and mailing.next_run_at < latest:
        last = _index_at_or_before(
            start_at=start_at, periodicity=periodicity, moment=latest
        )
        first = _index_at_or_before(
            start_at=start_at, periodicity=periodicity, moment=mailing.next_run_at
        )
        if occurrence(start_at=start_at, periodicity=periodicity, index=first) < (
            mailing.next_run_at
        ):
            first += 1
        missed = tuple(
            occurrence(start_at=start_at, periodicity=periodicity, index=index)
            for index in range(max(first, last - MAX_SKIPPED_RUNS), last)
        )
    return Due(latest, missed, occurrence_after(mailing=mailing, moment=latest))
