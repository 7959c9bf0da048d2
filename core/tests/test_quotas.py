"""Sending quotas: a client's mail beyond their day's or month's quota waits,
queued, for the next period; nothing is dropped or sent twice."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q, Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from core.models import Attempt, MailingRun, SendingUsage, User
from core.services import quotas
from core.services.accounts import users_set_quota
from core.services.dispatch import claims as claims_module
from core.services.dispatch import dispatch_tick
from core.services.dispatch.claims import attempts_claim, token_new
from core.services.dispatch.runs import runs_open_due
from core.services.quotas import Period, usage_of

from .factories import UserFactory, due_mailing, people

pytestmark = pytest.mark.django_db


def at_once(work, count: int = 4) -> list:
    """`work(n)` in `count` threads started together, each on its own
    database connection; the errors they raised."""
    errors, start = [], threading.Barrier(count)

    def run(n):
        try:
            start.wait()
            work(n)
        except Exception as error:  # reported to the caller
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.fixture(autouse=True)
def _english(client):
    """The texts as written (the Russian catalogue has its own test)."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        yield


def statuses(mailing) -> Counter:
    return Counter(
        Attempt.objects.filter(run__mailing=mailing).values_list("status", flat=True)
    )


def used_today(user) -> int:
    return usage_of(user).today


def a_day_passes(user) -> None:
    """Each day's usage moves a day back, as if midnight had passed (the
    earliest first: a day is unique per owner)."""
    for row in SendingUsage.objects.filter(owner=user).order_by("day"):
        row.day -= timedelta(days=1)
        row.save()


def test_a_daily_quota_sends_that_many_and_the_rest_waits_for_the_next_day(
    owner, smtp_server
):
    owner.daily_quota = 50
    owner.save()
    recipients = people(owner, 120)
    mailing = due_mailing(owner, recipients)

    assert dispatch_tick().sent == 50
    assert statuses(mailing) == {"sent": 50, "queued": 70}
    assert used_today(owner) == 50
    usage = usage_of(owner)
    assert usage.left == 0
    assert usage.resumes_at == Period.of(timezone.now()).next_day
    assert "Daily sending quota reached (50 of 50)" in usage.explain()
    # Nothing more today, however often the tick comes.
    assert dispatch_tick().sent == 0
    assert statuses(mailing)["queued"] == 70

    a_day_passes(owner)
    assert dispatch_tick().sent == 50
    a_day_passes(owner)
    assert dispatch_tick().sent == 20
    assert statuses(mailing) == {"sent": 120}
    # Each recipient got exactly one message.
    assert smtp_server.recorder.count_by_address() == {r.email: 1 for r in recipients}
    assert MailingRun.objects.get().status == MailingRun.Status.FINISHED


def test_a_monthly_quota_counts_the_days_before_today(owner, smtp_server):
    period = Period.of(timezone.now())
    if period.today == period.month_start:
        pytest.skip("on the first of a month there is no earlier day in it")
    owner.monthly_quota = 100
    owner.save()
    SendingUsage.objects.create(owner=owner, day=period.month_start, count=70)
    mailing = due_mailing(owner, people(owner, 50))

    assert dispatch_tick().sent == 30
    assert statuses(mailing) == {"sent": 30, "queued": 20}
    usage = usage_of(owner)
    assert (usage.today, usage.month, usage.left) == (30, 100, 0)
    assert usage.resumes_at == period.next_month
    assert "Monthly sending quota reached (100 of 100)" in usage.explain()


def test_the_service_default_holds_unless_a_manager_set_the_clients_own(
    owner, smtp_server, settings
):
    settings.SENDING_QUOTA_DAILY = 10
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    other.daily_quota = 25
    other.save()
    mine = due_mailing(owner, people(owner, 40))
    theirs = due_mailing(other, people(other, 40))
    dispatch_tick()
    assert statuses(mine)["sent"] == 10
    assert statuses(theirs)["sent"] == 25


def test_a_quota_of_zero_sends_nothing_loses_nothing_and_blocks_nobody_else(
    owner, smtp_server
):
    owner.daily_quota = 0
    owner.save()
    held = due_mailing(owner, people(owner, 30))
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    theirs = due_mailing(other, people(other, 20))

    assert dispatch_tick().sent == 20
    assert statuses(held) == {"queued": 30}
    assert statuses(theirs) == {"sent": 20}
    usage = usage_of(owner)
    assert usage.left == 0 and usage.resumes_at is None
    assert "quota is zero" in usage.explain()


def test_a_raised_quota_lets_the_queued_mail_go_at_the_next_tick(
    owner, manager, smtp_server
):
    owner.daily_quota = 0
    owner.save()
    mailing = due_mailing(owner, people(owner, 15))
    assert dispatch_tick().sent == 0
    changed, refused = users_set_quota(
        users=User.objects.filter(pk=owner.pk), daily=None, monthly=None, actor=manager
    )
    assert changed == [owner] and not refused
    assert dispatch_tick().sent == 15
    assert statuses(mailing) == {"sent": 15}


def test_a_claim_that_meets_only_clients_at_their_quota_takes_the_next_ones(
    owner, monkeypatch
):
    """Another worker used the quota up after this claim's view of the runs:
    the claim passes that client over instead of coming back empty."""
    owner.daily_quota = 5
    owner.save()
    due_mailing(owner, people(owner, 10))
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    due_mailing(other, people(other, 1))
    runs_open_due(now=timezone.now())
    # The client at their quota is first in line.
    Attempt.objects.filter(owner=owner).update(
        next_try_at=timezone.now() - timedelta(hours=1)
    )
    SendingUsage.objects.create(
        owner=owner, day=Period.of(timezone.now()).today, count=5
    )
    # The runs' filter as it stood before that other worker's claim.
    monkeypatch.setattr(claims_module, "quota_open_q", lambda **kwargs: Q())
    taken = attempts_claim(token=token_new(), limit=3, now=timezone.now())
    assert [attempt.owner_id for attempt in taken] == [other.pk]
    assert used_today(owner) == 5


def test_mail_that_was_taken_but_not_sent_is_given_back(owner, settings):
    """A relay that is down: every attempt goes back to the queue, and so
    does its share of the quota."""
    from .smtp import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_TIMEOUT = 2
    owner.daily_quota = 100
    owner.save()
    mailing = due_mailing(owner, people(owner, 12))
    dispatch_tick()
    assert statuses(mailing) == {"queued": 12}
    assert used_today(owner) == 0


def test_usage_counts_what_the_relay_answered_for_good(owner, smtp_server, settings):
    """Refused for good counts (the relay had it); a retry later counts once,
    when it is sent."""
    settings.SMTP_MAX_RETRIES = 3
    recipients = people(owner, 6)
    smtp_server.recorder.reject[recipients[0].email] = "550 5.1.1 No such user"
    smtp_server.recorder.script[recipients[1].email] = ["451 4.7.1 Try again later"]
    owner.daily_quota = 100
    owner.save()
    mailing = due_mailing(owner, recipients)
    dispatch_tick()
    if statuses(mailing)["queued"]:  # the retry's back-off outlasted the tick
        dispatch_tick()
    assert statuses(mailing) == {"sent": 5, "failed": 1}
    # The refusal counts; the 451 counted once, when its retry went.
    assert used_today(owner) == 6
    assert smtp_server.recorder.count_by_address()[recipients[1].email] == 1


def test_usage_is_counted_for_clients_without_a_quota_too(owner, smtp_server):
    due_mailing(owner, people(owner, 7))
    assert dispatch_tick().sent == 7
    assert used_today(owner) == 7
    usage = usage_of(owner)
    assert usage.left is None and usage.explain() == ""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_claiming_at_once_never_take_more_than_the_quota(owner):
    owner.daily_quota = 150
    owner.save()
    due_mailing(owner, people(owner, 400))
    runs_open_due(now=timezone.now())
    taken = []

    def claim(_):
        while batch := attempts_claim(token=token_new(), limit=40, now=timezone.now()):
            taken.extend(batch)

    assert not at_once(claim)
    assert len(taken) == len({attempt.pk for attempt in taken}) == 150
    assert SendingUsage.objects.aggregate(total=Sum("count"))["total"] == 150


def test_without_quotas_a_claim_costs_one_query_more(owner, settings):
    """What quotas add to a claim with none set: one UPDATE of the day's
    usage (and its INSERT the first time)."""
    due_mailing(owner, people(owner, 20))
    runs_open_due(now=timezone.now())
    attempts_claim(token=token_new(), limit=5, now=timezone.now())  # the day's row
    with CaptureQueriesContext(connection) as queries:
        attempts_claim(token=token_new(), limit=5, now=timezone.now())
    usage_queries = [q for q in queries if "core_sendingusage" in q["sql"]]
    assert len(usage_queries) == 2  # the runs' filter, and the count added
    assert used_today(owner) == 10


# --- managers and reports -------------------------------------------------


def set_quota(client, manager, users, **fields):
    client.force_login(manager)
    url = reverse("admin:core_user_changelist")
    ids = [str(user.pk) for user in users]
    page = client.post(url, {"action": "set_sending_quota", "_selected_action": ids})
    assert page.status_code == 200 and 'id="quota-users"' in page.content.decode()
    return client.post(
        url,
        {
            "action": "set_sending_quota",
            "_selected_action": ids,
            "apply": "1",
            **{name: "" if value is None else value for name, value in fields.items()},
        },
        follow=True,
    )


def test_a_manager_sets_a_clients_quota_but_not_a_managers(
    client, manager, owner, settings
):
    settings.SENDING_QUOTA_DAILY = 1000
    other_manager = UserFactory(verified=True, groups=["managers"])
    page = set_quota(
        client, manager, [owner, other_manager], daily_quota=200, monthly_quota=3000
    )
    text = page.content.decode()
    assert "Sending quota set for 1 user." in text
    assert other_manager.email in text  # named as left unchanged
    owner.refresh_from_db()
    other_manager.refresh_from_db()
    assert (owner.daily_quota, owner.monthly_quota) == (200, 3000)
    assert other_manager.daily_quota is None
    # Empty goes back to the service's default.
    set_quota(client, manager, [owner], daily_quota=None, monthly_quota=None)
    owner.refresh_from_db()
    assert owner.daily_quota is None
    assert quotas.quota_of(owner).daily == 1000


def test_the_quota_form_refuses_a_day_above_its_month_and_a_negative(
    client, manager, owner
):
    page = set_quota(client, manager, [owner], daily_quota=500, monthly_quota=100)
    assert "A day cannot allow more than its month" in page.content.decode()
    page = set_quota(client, manager, [owner], daily_quota=-1, monthly_quota=None)
    assert 'id="quota-users"' in page.content.decode()  # the form again
    owner.refresh_from_db()
    assert owner.daily_quota is None


def test_a_client_cannot_set_quotas(client, owner):
    client.force_login(owner)
    client.post(
        reverse("admin:core_user_changelist"),
        {
            "action": "set_sending_quota",
            "_selected_action": [owner.pk],
            "apply": "1",
            "daily_quota": "100000",
        },
    )
    owner.refresh_from_db()
    assert owner.daily_quota is None


def test_the_run_report_and_the_dashboard_say_what_waits(
    client, owner, manager, smtp_server
):
    owner.daily_quota = 4
    owner.save()
    mailing = due_mailing(owner, people(owner, 9))
    dispatch_tick()
    run = MailingRun.objects.get(mailing=mailing)
    client.force_login(owner)
    page = client.get(reverse("admin:core_mailingrun_change", args=[run.pk]))
    assert "Daily sending quota reached (4 of 4)" in page.content.decode()
    assert "field-held_back" in page.content.decode()
    index = client.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard-quota"' in index and 'id="dashboard-quota-held"' in index
    figures = client.get(reverse("admin:index")).context["dashboard"]["quota"]
    assert (figures["today"], figures["daily"]) == (4, 4)

    client.force_login(manager)
    index = client.get(reverse("admin:index"))
    row = next(o for o in index.context["dashboard"]["owners"] if o["id"] == owner.pk)
    assert (row["quota"]["today"], row["quota"]["daily"]) == (4, 4)
    assert "dashboard-quota-today" in index.content.decode()
    user_page = client.get(reverse("admin:core_user_change", args=[owner.pk]))
    assert "4 of 4 today" in user_page.content.decode()


def test_a_finished_run_says_nothing_is_held_back(client, owner, smtp_server):
    owner.daily_quota = 4
    owner.save()
    mailing = due_mailing(owner, people(owner, 4))
    dispatch_tick()
    run = MailingRun.objects.get(mailing=mailing)
    assert run.status == MailingRun.Status.FINISHED
    client.force_login(owner)
    page = client.get(reverse("admin:core_mailingrun_change", args=[run.pk]))
    assert "quota reached" not in page.content.decode()
    assert "field-held_back" not in page.content.decode()  # no empty line either


@pytest.mark.parametrize(
    ("daily", "monthly", "today", "month", "left", "resumes"),
    [
        (None, None, 500, 900, None, None),
        (100, None, 40, 40, 60, None),
        (100, None, 100, 100, 0, "next_day"),
        (100, 1000, 100, 400, 0, "next_day"),
        (100, 1000, 60, 1000, 0, "next_month"),
        (100, 1000, 100, 1000, 0, "next_month"),
        (0, 1000, 0, 400, 0, None),
        (0, 1000, 0, 1000, 0, None),
        (None, 0, 0, 0, 0, None),
        (100, 1000, 30, 990, 10, None),
    ],
)
def test_what_is_left_and_when_sending_resumes(
    daily, monthly, today, month, left, resumes
):
    period = Period.of(timezone.now())
    usage = quotas.Usage(
        quota=quotas.Quota(daily, monthly), today=today, month=month, period=period
    )
    assert usage.left == left
    assert usage.resumes_at == (getattr(period, resumes) if resumes else None)
    assert bool(usage.explain()) == (left == 0)


def test_a_day_and_a_month_follow_the_time_zone(settings):
    """23:30 on 31 January in UTC is already 1 February in Moscow."""
    from datetime import UTC, datetime

    settings.TIME_ZONE = "Europe/Moscow"
    period = Period.of(datetime(2027, 1, 31, 23, 30, tzinfo=UTC))
    assert str(period.today) == "2027-02-01"
    assert str(period.month_start) == "2027-02-01"
    assert period.next_day.isoformat() == "2027-02-02T00:00:00+03:00"
    assert period.next_month.isoformat() == "2027-03-01T00:00:00+03:00"


@pytest.mark.parametrize(
    ("daily", "used", "said"),
    [
        (10, 3, "leaves 7 messages now"),
        (10, 10, "Daily sending quota reached (10 of 10)"),
        (None, 0, None),
    ],
)
def test_send_now_says_what_the_quota_lets_go(
    client, owner, smtp_server, inline_tasks, daily, used, said
):
    owner.daily_quota = daily
    owner.save()
    if used:
        SendingUsage.objects.create(
            owner=owner, day=Period.of(timezone.now()).today, count=used
        )
    mailing = due_mailing(owner, people(owner, 12))
    client.force_login(owner)
    page = client.post(
        reverse("admin:core_mailing_changelist"),
        {"action": "send_now", "_selected_action": [mailing.pk]},
        follow=True,
    )
    warnings = [str(m) for m in page.context["messages"] if m.level_tag == "warning"]
    if said is None:
        assert warnings == []
    else:
        assert any(said in warning for warning in warnings), warnings
    assert statuses(mailing)["sent"] == min(12, (daily or 99) - used)


def test_on_a_months_last_day_a_daily_quota_says_daily():
    """There the next day and the next month start at the same moment."""
    from datetime import UTC, datetime

    period = Period.of(datetime(2027, 1, 31, 9, 0, tzinfo=UTC))
    for monthly in (None, 1000):
        usage = quotas.Usage(
            quota=quotas.Quota(10, monthly), today=10, month=50, period=period
        )
        assert usage.resumes_at == period.next_day == period.next_month
        assert "Daily sending quota reached (10 of 10)" in usage.explain()
    spent = quotas.Usage(quota=quotas.Quota(10, 50), today=10, month=50, period=period)
    assert "Monthly sending quota reached (50 of 50)" in spent.explain()


def test_what_returns_unsent_goes_back_to_the_day_it_was_counted_on(owner):
    """Claimed before midnight, settled after: the evening's count is given
    back, not the morning's."""
    from datetime import UTC, datetime

    from core.services.dispatch.outcome import Outcome, Result
    from core.services.dispatch.recording import results_record

    owner.daily_quota = 100
    owner.save()
    due_mailing(owner, people(owner, 6))
    runs_open_due(now=timezone.now())
    evening = datetime(2027, 3, 10, 20, 59, tzinfo=UTC)  # 23:59 in Moscow
    taken = attempts_claim(token=token_new(), limit=6, now=evening)
    day = Period.of(evening).today
    assert SendingUsage.objects.get(owner=owner, day=day).count == 6
    morning = datetime(2027, 3, 10, 21, 1, tzinfo=UTC)
    SendingUsage.objects.create(owner=owner, day=Period.of(morning).today, count=4)
    results_record(
        [Result(attempt, Outcome.RELEASED) for attempt in taken[:2]]
        + [
            Result(attempt, Outcome.FAILED, "message error: too large", True)
            for attempt in taken[2:3]
        ]
        + [
            Result(attempt, Outcome.FAILED, "550 5.1.1 No such user", True)
            for attempt in taken[3:4]
        ]
        + [Result(attempt, Outcome.SENT, "250 ok", True) for attempt in taken[4:]],
        now=morning,
    )
    # Two released and one never built go back; the refusal and the sent stay.
    assert SendingUsage.objects.get(owner=owner, day=day).count == 3
    assert (
        SendingUsage.objects.get(owner=owner, day=Period.of(morning).today).count == 4
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_claims_on_both_sides_of_midnight_share_the_months_quota(owner):
    from datetime import UTC, datetime

    owner.monthly_quota = 150
    owner.save()
    due_mailing(owner, people(owner, 400))
    runs_open_due(now=timezone.now())
    # 23:59:59 and 00:00:01 in Moscow, the same month.
    moments = [
        datetime(2027, 3, 10, 20, 59, 59, tzinfo=UTC),
        datetime(2027, 3, 10, 21, 0, 1, tzinfo=UTC),
    ]
    assert Period.of(moments[0]).today != Period.of(moments[1]).today
    taken = []

    def claim(n):
        now = moments[n % 2]
        while batch := attempts_claim(token=token_new(), limit=25, now=now):
            taken.extend(batch)

    assert not at_once(claim)
    assert len(taken) == len({attempt.pk for attempt in taken}) == 150


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_claims_and_give_backs_of_several_clients_at_once_agree(owner):
    """Workers claiming and recording batches that mix two limited clients,
    half of each first claim going back unsent: no deadlock between the
    usage rows' locks, and each client's count ends at what was sent."""
    from core.services.dispatch.outcome import Outcome, Result
    from core.services.dispatch.recording import results_record

    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    for user in (owner, other):
        user.daily_quota = 1000
        user.save()
        due_mailing(user, people(user, 150))
    runs_open_due(now=timezone.now())
    released_once, lock = set(), threading.Lock()

    def work(_):
        while batch := attempts_claim(token=token_new(), limit=20, now=timezone.now()):
            results = []
            for attempt in batch:
                with lock:
                    first = attempt.pk not in released_once
                    released_once.add(attempt.pk)
                back = first and attempt.pk % 2
                results.append(
                    Result(attempt, Outcome.RELEASED)
                    if back
                    else Result(attempt, Outcome.SENT, "250 ok", True)
                )
            results_record(results)

    errors = at_once(work)
    assert not errors, errors
    assert set(Attempt.objects.values_list("status", flat=True)) == {"sent"}
    for user in (owner, other):
        assert used_today(user) == 150


def test_a_claim_for_a_client_with_a_quota_costs_one_query_more(
    owner, django_capture_on_commit_callbacks
):
    """Locking the month's rows, beside adding what it takes, which every
    claim does (with 200 a batch, 0.005 a message); the process's first
    claim of the day also makes the rows (INSERT … ON CONFLICT DO NOTHING)."""
    from core.services.quotas import _ROWS_MADE

    _ROWS_MADE.clear()
    owner.daily_quota = 1000
    owner.save()
    due_mailing(owner, people(owner, 20))
    runs_open_due(now=timezone.now())

    def usage_queries():
        with CaptureQueriesContext(connection) as queries:
            # As if each claim committed (the test's transaction never does).
            with django_capture_on_commit_callbacks(execute=True):
                attempts_claim(token=token_new(), limit=5, now=timezone.now())
        return [q["sql"][:60] for q in queries if "core_sendingusage" in q["sql"]]

    # The runs' filter, the INSERT, the lock and the UPDATE.
    assert len(usage_queries()) == 4
    # Once that claim committed: the runs' filter, the lock and the UPDATE.
    assert len(usage_queries()) == 3
    assert used_today(owner) == 10


def test_a_day_above_its_month_is_refused_by_every_door(owner, manager):
    """The action's form (above), the model's own check (the superuser's
    change form, the shell) and the service."""
    from django.core.exceptions import ValidationError

    owner.daily_quota, owner.monthly_quota = 500, 100
    with pytest.raises(ValidationError, match="A day cannot allow more"):
        owner.full_clean()
    with pytest.raises(ValidationError, match="A day cannot allow more"):
        users_set_quota(
            users=User.objects.filter(pk=owner.pk),
            daily=500,
            monthly=100,
            actor=manager,
        )
    owner.refresh_from_db()
    assert (owner.daily_quota, owner.monthly_quota) == (None, None)
