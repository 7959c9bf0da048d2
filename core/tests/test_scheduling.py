"""When mailings go out: the calendar, and the schedule as the database keeps it.

The calendar is the configured time zone's (README, "Mailings"): 09:00 stays
09:00 across DST, the 31st becomes the last day of shorter months, and after
downtime only the latest missed occurrence is sent.
"""

import json
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from core.models import Mailing, MailingRun
from core.models.scheduling import (
    MAX_SKIPPED_RUNS,
    occurrence_after,
    occurrence_latest_due,
)
from core.services.dispatch import dispatch_plan, dispatch_tick

from .factories import ClientFactory, MailingFactory, MailingRunFactory, MessageFactory

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def berlin(settings):
    """Schedules in Berlin, which moves its clocks on 2027-03-28 and 2027-10-31."""
    settings.TIME_ZONE = "Europe/Berlin"
    # Django caches the default time zone; the setting must really reach it.
    assert timezone.get_default_timezone() == BERLIN
    return BERLIN


@pytest.fixture
def owner(client_user):
    return client_user


def schedule(start_at, periodicity, *, end_at=None):
    """What the calendar reads of a mailing, without a database."""
    return SimpleNamespace(
        start_at=start_at,
        end_at=end_at,
        periodicity=periodicity,
        last_run_at=None,
        next_run_at=None,
    )


def sendings(mailing, count):
    """The first `count` occurrences, each found from the one before it, as
    the dispatcher moves `next_run_at` on."""
    moments = [mailing.start_at]
    while len(moments) < count:
        moments.append(occurrence_after(mailing=mailing, moment=moments[-1]))
    return moments


def wall(moment):
    """The moment as a Berlin clock shows it (a time DST skips shows as the
    hour after it)."""
    return moment.astimezone(UTC).astimezone(BERLIN)


def tick_at(moment):
    with time_machine.travel(moment):
        return dispatch_tick()


def mailing_for(owner, start, periodicity, *, recipients=1, **fields):
    """A mailing of `owner` to `recipients` new recipients of theirs."""
    return MailingFactory(
        owner=owner,
        clients=[ClientFactory(owner=owner) for _ in range(recipients)],
        start_at=start,
        periodicity=periodicity,
        **fields,
    )


def runs_of(mailing):
    return list(
        MailingRun.objects.filter(mailing=mailing)
        .order_by("scheduled_for")
        .values_list("scheduled_for", "status")
    )


# --- calendar months -----------------------------------------------------------


def test_monthly_from_the_31st_falls_on_the_last_day_of_shorter_months(berlin):
    mailing = schedule(datetime(2027, 1, 31, 9, 0, tzinfo=berlin), "monthly")
    dates = [wall(moment) for moment in sendings(mailing, 8)]
    assert [(d.month, d.day) for d in dates] == [
        (1, 31),
        (2, 28),
        (3, 31),
        (4, 30),
        (5, 31),
        (6, 30),
        (7, 31),
        (8, 31),
    ]
    assert {d.time() for d in dates} == {time(9, 0)}


def test_monthly_from_the_31st_falls_on_29_february_in_a_leap_year(berlin):
    mailing = schedule(datetime(2028, 1, 31, 9, 0, tzinfo=berlin), "monthly")
    dates = [wall(moment).date() for moment in sendings(mailing, 3)]
    assert [d.isoformat() for d in dates] == ["2028-01-31", "2028-02-29", "2028-03-31"]


def test_monthly_from_29_february_keeps_the_29th_and_takes_28_february_in_common_years(
    berlin,
):
    mailing = schedule(datetime(2028, 2, 29, 9, 0, tzinfo=berlin), "monthly")
    dates = [wall(moment).date() for moment in sendings(mailing, 49)]
    assert dates[1].isoformat() == "2028-03-29"
    assert dates[12].isoformat() == "2029-02-28"
    assert dates[13].isoformat() == "2029-03-29"  # back to the 29th at once
    assert dates[48].isoformat() == "2032-02-29"
    assert {d.day for d in dates if d.month != 2} == {29}
    februaries = {d.year: d.day for d in dates if d.month == 2}
    assert februaries == {2028: 29, 2029: 28, 2030: 28, 2031: 28, 2032: 29}


# --- DST ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("periodicity", "start", "offsets"),
    [
        ("daily", datetime(2027, 3, 26, 9, 0), [1, 1, 2, 2]),
        ("daily", datetime(2027, 10, 29, 9, 0), [2, 2, 1, 1]),
        ("weekly", datetime(2027, 3, 14, 9, 0), [1, 1, 2, 2]),
        ("weekly", datetime(2027, 10, 17, 9, 0), [2, 2, 1, 1]),
    ],
    ids=["daily spring", "daily autumn", "weekly spring", "weekly autumn"],
)
def test_nine_oclock_stays_nine_oclock_across_dst(berlin, periodicity, start, offsets):
    mailing = schedule(start.replace(tzinfo=berlin), periodicity)
    moments = [wall(moment) for moment in sendings(mailing, 4)]
    assert {moment.time() for moment in moments} == {time(9, 0)}
    assert [moment.utcoffset() // HOUR for moment in moments] == offsets
    step = 1 if periodicity == "daily" else 7
    assert [(m.date() - moments[0].date()).days for m in moments] == [
        0,
        step,
        2 * step,
        3 * step,
    ]


def test_a_0230_mailing_goes_out_at_0330_summer_time_the_night_dst_skips_0230(
    berlin, owner, smtp_server
):
    # 02:30 does not exist on 2027-03-28 in Berlin: the clocks go from 02:00
    # to 03:00. The occurrence takes the offset from before the change.
    start = datetime(2027, 3, 27, 2, 30, tzinfo=berlin)
    mailing = mailing_for(owner, start, Mailing.Periodicity.DAILY)
    assert tick_at(start + MINUTE).sent == 1
    skipped_night = datetime(2027, 3, 28, 3, 30, tzinfo=berlin)  # 01:30 UTC
    assert tick_at(skipped_night - MINUTE).sent == 0
    assert tick_at(skipped_night + MINUTE).sent == 1
    mailing.refresh_from_db()
    next_night = datetime(2027, 3, 29, 2, 30, tzinfo=berlin)
    assert mailing.next_run_at == next_night
    assert tick_at(next_night + MINUTE).sent == 1

    sent_at = [wall(moment) for moment, _ in runs_of(mailing)]
    assert [m.strftime("%m-%d %H:%M %Z") for m in sent_at] == [
        "03-27 02:30 CET",
        "03-28 03:30 CEST",
        "03-29 02:30 CEST",
    ]
    assert len(smtp_server.messages) == 3


def test_a_0230_mailing_goes_out_once_the_night_0230_comes_twice(
    berlin, owner, smtp_server
):
    # On 2027-10-31 Berlin sees 02:30 twice: in summer time, then in winter
    # time. The mailing goes out at the first.
    start = datetime(2027, 10, 30, 2, 30, tzinfo=berlin)
    mailing = mailing_for(owner, start, Mailing.Periodicity.DAILY)
    assert tick_at(start + MINUTE).sent == 1
    first = datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2027, 10, 31, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert (wall(first).time(), wall(second).time()) == (time(2, 30), time(2, 30))
    assert tick_at(first + MINUTE).sent == 1
    assert tick_at(second + MINUTE).sent == 0
    assert tick_at(second + HOUR).sent == 0

    mailing.refresh_from_db()
    assert wall(mailing.next_run_at).strftime("%m-%d %H:%M %Z") == "11-01 02:30 CET"
    assert [moment for moment, _ in runs_of(mailing)] == [start, first]
    assert len(smtp_server.messages) == 2


# --- the end -------------------------------------------------------------------


def test_an_occurrence_exactly_at_the_end_is_the_last_one():
    start = datetime(2027, 6, 1, 6, 0, tzinfo=UTC)
    end = start + 2 * DAY
    mailing = schedule(start, "daily", end_at=end)
    assert occurrence_after(mailing=mailing, moment=start + DAY) == end
    assert occurrence_after(mailing=mailing, moment=end) is None
    assert occurrence_latest_due(mailing=mailing, now=end + 5 * DAY) == end


def test_a_mailing_sends_at_its_end_then_is_completed_and_sends_no_more(
    owner, smtp_server
):
    start = datetime(2027, 6, 1, 6, 0, tzinfo=UTC)
    end = start + 2 * DAY
    mailing = mailing_for(owner, start, Mailing.Periodicity.DAILY, end_at=end)
    for day in range(3):
        assert tick_at(start + day * DAY + MINUTE).sent == 1
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
    assert mailing.next_run_at is None
    assert tick_at(end + DAY + MINUTE).sent == 0
    assert [moment for moment, _ in runs_of(mailing)] == [start, start + DAY, end]
    assert len(smtp_server.messages) == 3


# --- downtime ------------------------------------------------------------------


def test_after_downtime_only_the_latest_occurrence_goes_out_and_the_rest_are_skipped(
    berlin, owner, smtp_server
):
    # Weekly on Mondays at 09:00, and the service down from before the first.
    start = datetime(2027, 3, 15, 9, 0, tzinfo=berlin)
    recipients = [ClientFactory(owner=owner) for _ in range(2)]
    mailing = MailingFactory(
        owner=owner,
        clients=recipients,
        start_at=start,
        periodicity=Mailing.Periodicity.WEEKLY,
    )
    summary = tick_at(datetime(2027, 4, 5, 9, 5, tzinfo=berlin))
    assert (summary.runs, summary.skipped_runs, summary.sent) == (1, 3, 2)
    runs = [(wall(moment), status) for moment, status in runs_of(mailing)]
    assert [(m.strftime("%m-%d %H:%M"), status) for m, status in runs] == [
        ("03-15 09:00", "skipped"),
        ("03-22 09:00", "skipped"),
        ("03-29 09:00", "skipped"),
        ("04-05 09:00", "finished"),
    ]
    assert smtp_server.recorder.count_by_address() == {r.email: 1 for r in recipients}


def test_years_of_downtime_record_only_the_latest_skipped_runs(owner, smtp_server):
    start = datetime(2027, 1, 4, 6, 0, tzinfo=UTC)
    mailing = mailing_for(owner, start, Mailing.Periodicity.DAILY)
    sent_for = start + 1000 * DAY
    summary = tick_at(sent_for + MINUTE)
    assert (summary.runs, summary.skipped_runs, summary.sent) == (
        1,
        MAX_SKIPPED_RUNS,
        1,
    )
    skipped = MailingRun.objects.filter(
        mailing=mailing, status=MailingRun.Status.SKIPPED
    ).values_list("scheduled_for", flat=True)
    assert sorted(skipped) == [
        sent_for - days * DAY for days in range(MAX_SKIPPED_RUNS, 0, -1)
    ]
    assert MailingRun.objects.get(mailing=mailing, status="finished").scheduled_for == (
        sent_for
    )


# --- next_run_at follows the schedule, by whatever path the row is saved ---------


def mailing_create(owner, **fields):
    """A mailing as code makes it: Mailing.objects.create, no factory."""
    recipients = fields.pop("recipients", ())
    mailing = Mailing.objects.create(
        owner=owner,
        title="Новости",
        message=MessageFactory(owner=owner),
        **fields,
    )
    mailing.clients.add(*recipients)
    return mailing


def test_a_mailing_created_in_code_for_later_waits_for_its_start(owner):
    start = timezone.now().replace(microsecond=0) + 3 * DAY
    mailing = mailing_create(owner, start_at=start, periodicity="daily")
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.CREATED
    assert mailing.next_run_at == start


def test_a_mailing_created_in_code_with_a_past_start_goes_out_at_the_next_tick_once(
    owner, smtp_server
):
    recipients = [ClientFactory(owner=owner) for _ in range(2)]
    mailing = mailing_create(
        owner, start_at=timezone.now() - HOUR, recipients=recipients
    )
    assert dispatch_tick().sent == 2
    assert dispatch_tick().sent == 0
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
    assert smtp_server.recorder.count_by_address() == {r.email: 1 for r in recipients}


def test_a_mailing_created_with_start_and_end_past_is_completed_and_never_sends(
    owner, smtp_server
):
    now = timezone.now()
    mailing = mailing_create(
        owner,
        start_at=now - 3 * DAY,
        end_at=now - DAY,
        periodicity="daily",
        recipients=[ClientFactory(owner=owner)],
    )
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
    assert dispatch_tick().sent == 0
    assert smtp_server.messages == [] and not MailingRun.objects.exists()


def test_changing_start_and_periodicity_then_saving_moves_the_next_sending(owner):
    start = timezone.now().replace(microsecond=0) + DAY
    mailing = mailing_create(owner, start_at=start)
    mailing = Mailing.objects.get(pk=mailing.pk)
    mailing.start_at = start + 5 * DAY
    mailing.save()
    mailing.refresh_from_db()
    assert mailing.next_run_at == start + 5 * DAY

    # A mailing that already went out moves on from its last sending.
    last = start - 10 * DAY
    Mailing.objects.filter(pk=mailing.pk).update(
        start_at=last, last_run_at=last, next_run_at=None
    )
    mailing = Mailing.objects.get(pk=mailing.pk)
    mailing.periodicity = Mailing.Periodicity.WEEKLY
    mailing.save()
    mailing.refresh_from_db()
    assert mailing.next_run_at == last + 7 * DAY
    assert mailing.status == Mailing.Status.RUNNING


def test_saving_only_the_start_moves_the_next_sending(owner):
    start = timezone.now().replace(microsecond=0) + DAY
    mailing = Mailing.objects.get(pk=mailing_create(owner, start_at=start).pk)
    mailing.start_at = start + 2 * DAY
    mailing.save(update_fields=["start_at"])
    mailing.refresh_from_db()
    assert mailing.next_run_at == start + 2 * DAY


def admin_form(message, start, clients=(), **extra):
    local = timezone.localtime(start)
    return {
        "title": "Из админки",
        "message": message.pk,
        "clients": [c.pk for c in clients],
        "start_at_0": local.strftime("%d.%m.%Y"),
        "start_at_1": local.strftime("%H:%M:%S"),
        "end_at_0": "",
        "end_at_1": "",
        "periodicity": "once",
        **extra,
    }


def test_a_mailing_added_in_the_admin_with_a_past_start_goes_out_at_the_next_tick(
    client, owner, smtp_server
):
    recipient = ClientFactory(owner=owner)
    message = MessageFactory(owner=owner)
    client.force_login(owner)
    start = timezone.now().replace(microsecond=0) - HOUR
    response = client.post(
        reverse("admin:core_mailing_add"), admin_form(message, start, [recipient])
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    mailing = Mailing.objects.get()
    assert mailing.next_run_at == start
    assert dispatch_tick().sent == 1
    assert smtp_server.recorder.count_by_address() == {recipient.email: 1}


def test_changing_the_schedule_in_the_admin_moves_the_next_sending(client, owner):
    start = timezone.now().replace(microsecond=0) - 3 * DAY
    mailing = mailing_create(owner, start_at=start, periodicity="daily")
    Mailing.objects.filter(pk=mailing.pk).update(last_run_at=start + 2 * DAY)
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_mailing_change", args=[mailing.pk]),
        admin_form(mailing.message, start, periodicity="weekly"),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    mailing.refresh_from_db()
    assert mailing.periodicity == "weekly"
    assert mailing.next_run_at == start + 7 * DAY

    later = start + 30 * DAY
    client.post(
        reverse("admin:core_mailing_change", args=[mailing.pk]),
        admin_form(mailing.message, later, periodicity="weekly"),
    )
    mailing.refresh_from_db()
    assert mailing.next_run_at == later


def test_a_mailing_loaded_from_a_fixture_gets_its_next_sending(owner, tmp_path):
    message = MessageFactory(owner=owner)
    existing = mailing_create(owner, start_at=datetime(2031, 5, 1, 6, 0, tzinfo=UTC))

    def row(pk, start):
        return {
            "model": "core.mailing",
            "pk": pk,
            "fields": {
                "owner": owner.pk,
                "title": "Из файла",
                "message": message.pk,
                "start_at": start,
                "end_at": None,
                "periodicity": "weekly",
                "created_at": "2030-01-01T00:00:00Z",
                "updated_at": "2030-01-01T00:00:00Z",
            },
        }

    rows = [row(4242, "2031-06-02T06:00:00Z"), row(existing.pk, "2031-07-07T06:00:00Z")]
    fixture = tmp_path / "mailings.json"
    fixture.write_text(json.dumps(rows))
    call_command("loaddata", str(fixture), verbosity=0)

    new = Mailing.objects.get(pk=4242)
    assert new.next_run_at == datetime(2031, 6, 2, 6, 0, tzinfo=UTC)
    assert new.status == Mailing.Status.CREATED
    existing.refresh_from_db()
    assert existing.next_run_at == datetime(2031, 7, 7, 6, 0, tzinfo=UTC)


def test_a_save_of_the_run_fields_alone_keeps_the_next_sending_as_set(owner):
    # The dispatcher writes last_run_at and next_run_at itself; a schedule
    # change it does not save must not overrule the sending it chose.
    start = timezone.now().replace(microsecond=0) + DAY
    mailing = Mailing.objects.get(
        pk=mailing_create(owner, start_at=start, periodicity="daily").pk
    )
    chosen = start + 3 * DAY
    mailing.start_at = start + 10 * DAY  # not saved below
    mailing.last_run_at, mailing.next_run_at = start + 2 * DAY, chosen
    mailing.save(update_fields=["last_run_at", "next_run_at"])
    mailing.refresh_from_db()
    assert (mailing.start_at, mailing.next_run_at) == (start, chosen)


def test_send_now_finishes_a_one_off_mailing_which_then_skips_its_start(
    owner, smtp_server
):
    start = timezone.now().replace(microsecond=0) + DAY
    mailing = mailing_create(
        owner, start_at=start, recipients=[ClientFactory(owner=owner)]
    )
    assert dispatch_tick(mailing_id=mailing.pk).sent == 1
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
    assert tick_at(start + MINUTE).sent == 0
    assert len(smtp_server.messages) == 1
    assert MailingRun.objects.filter(mailing=mailing).count() == 1


# --- the dry run decides as the tick does -------------------------------------------


def test_an_occurrence_that_already_ran_is_neither_planned_nor_sent_again(
    owner, smtp_server
):
    # A tick that died after recording the run, before moving next_run_at.
    start = timezone.now().replace(microsecond=0) - 2 * DAY - HOUR
    mailing = mailing_for(owner, start, Mailing.Periodicity.DAILY)
    ran = start + 2 * DAY
    MailingRunFactory(mailing=mailing, scheduled_for=ran)
    Mailing.objects.filter(pk=mailing.pk).update(last_run_at=ran, next_run_at=ran)

    assert dispatch_plan() == []
    summary = dispatch_tick()
    assert (summary.runs, summary.sent) == (0, 0)
    assert smtp_server.messages == []
    mailing.refresh_from_db()
    assert mailing.next_run_at == ran + DAY


def test_the_dry_run_names_the_occurrence_and_the_missed_ones_the_tick_then_sends(
    owner, smtp_server
):
    start = timezone.now().replace(microsecond=0) - 5 * DAY - HOUR
    mailing = mailing_for(owner, start, Mailing.Periodicity.DAILY, recipients=2)
    (plan,) = dispatch_plan()
    assert (plan.mailing, plan.occurrence, plan.missed, plan.recipients) == (
        mailing,
        start + 5 * DAY,
        5,
        2,
    )
    summary = dispatch_tick()
    assert (summary.skipped_runs, summary.sent) == (plan.missed, plan.recipients)
    assert MailingRun.objects.get(mailing=mailing, status="finished").scheduled_for == (
        plan.occurrence
    )


# --- the paths a schedule change can take ------------------------------------------


def daily_mailing(owner):
    start = timezone.now().replace(microsecond=0) + 2 * DAY
    return Mailing.objects.get(
        pk=mailing_create(owner, start_at=start, periodicity="daily").pk
    )


def test_a_partly_loaded_mailing_saves_its_new_next_sending(owner):
    mailing = daily_mailing(owner)
    moved = mailing.start_at + 3 * DAY
    partial = Mailing.objects.only("title", "start_at").get(pk=mailing.pk)
    partial.start_at = moved
    partial.save()
    mailing.refresh_from_db()
    assert mailing.next_run_at == moved


@pytest.mark.parametrize("how", ["refresh other fields", "load a deferred field"])
def test_a_change_not_yet_saved_survives_reading_other_fields(owner, how):
    mailing = daily_mailing(owner)
    if how == "load a deferred field":
        mailing = Mailing.objects.defer("title").get(pk=mailing.pk)
    moved = mailing.start_at + 3 * DAY
    mailing.start_at = moved
    if how == "refresh other fields":
        mailing.refresh_from_db(fields=["title"])
    else:
        assert mailing.title  # read from the database now
    mailing.save()
    mailing.refresh_from_db()
    assert mailing.next_run_at == moved


def test_a_copy_of_a_finished_mailing_is_scheduled_anew(owner):
    mailing = daily_mailing(owner)
    Mailing.objects.filter(pk=mailing.pk).update(next_run_at=None)
    mailing.refresh_from_db()
    mailing.pk = None
    mailing._state.adding = True
    mailing.save()
    assert mailing.next_run_at == mailing.start_at


def test_a_queryset_update_of_the_schedule_moves_the_next_sending(owner):
    mailing = daily_mailing(owner)
    moved = mailing.start_at + 3 * DAY
    assert Mailing.objects.filter(pk=mailing.pk).update(start_at=moved) == 1
    mailing.refresh_from_db()
    assert mailing.next_run_at == moved
    assert mailing.status == Mailing.Status.CREATED


def test_a_queryset_update_that_names_the_next_sending_keeps_it(owner):
    mailing = daily_mailing(owner)
    moved, chosen = mailing.start_at + 3 * DAY, mailing.start_at + 5 * DAY
    Mailing.objects.filter(pk=mailing.pk).update(start_at=moved, next_run_at=chosen)
    mailing.refresh_from_db()
    assert (mailing.start_at, mailing.next_run_at) == (moved, chosen)
