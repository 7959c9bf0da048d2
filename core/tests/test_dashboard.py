"""The dashboard on the admin index: whose figures, how many, and how cheaply."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import Attempt
from core.services.dashboard import DASHBOARD_TOP_OWNERS, dashboard_figures

from .factories import (
    AttemptFactory,
    ClientFactory,
    MailingFactory,
    MailingRunFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# Noon in Moscow (the configured TIME_ZONE, UTC+3) on 15 March 2025: the
# 30-day window runs from 14 February 00:00 Moscow time, 13 Feb 21:00 UTC.
NOW = datetime(2025, 3, 15, 9, 0, tzinfo=UTC)
WINDOW_START = datetime(2025, 2, 13, 21, 0, tzinfo=UTC)

Status = Attempt.Status


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _moscow(settings):
    settings.TIME_ZONE = "Europe/Moscow"


def attempt(run, status, at, **kwargs):
    return AttemptFactory(run=run, status=status, attempted_at=at, **kwargs)


@pytest.fixture
def owner_a(client_user):
    """Three mailings (one active), eleven recipients and mixed attempts."""
    owner = client_user
    active = MailingFactory(owner=owner)
    MailingFactory(owner=owner, completed=True)
    MailingFactory(owner=owner, is_enabled=False)  # disabled by a manager
    run = MailingRunFactory(mailing=active)
    today_noon = NOW
    attempt(run, Status.SENT, today_noon)
    attempt(run, Status.SENT, today_noon - timedelta(hours=1))
    attempt(run, Status.FAILED, today_noon)
    # 01:30 in Moscow on the 15th, though still the 14th in UTC.
    attempt(run, Status.SENT, datetime(2025, 3, 14, 22, 30, tzinfo=UTC))
    attempt(run, Status.SENT, WINDOW_START)  # the window's first instant
    attempt(run, Status.SENT, WINDOW_START - timedelta(seconds=1))  # just before
    attempt(run, Status.FAILED, NOW - timedelta(days=40))
    for status in (Status.QUEUED, Status.SENDING, Status.SKIPPED, Status.UNKNOWN):
        attempt(run, status, today_noon)
    return owner


@pytest.fixture
def owner_b(db):
    """Another client, busier than A, with addresses that must not leak."""
    owner = UserFactory(verified=True, groups=["clients"], email="bee@other.test")
    run = MailingRunFactory(mailing=MailingFactory(owner=owner))
    for n in range(7):
        client = ClientFactory(owner=owner, email=f"b-secret-{n}@other.test")
        attempt(run, Status.SENT, NOW, client=client)
    for n in range(2):
        client = ClientFactory(owner=owner, email=f"b-failed-{n}@other.test")
        attempt(run, Status.FAILED, NOW - timedelta(days=1), client=client)
    return owner


def dashboard_page(client, user, language="en"):
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get("/admin/")
    assert response.status_code == 200
    return response, response.content.decode()


def chart_svg(page):
    return re.search(r"<svg class=\"dashboard-chart\".*?</svg>", page, re.S).group()


def test_client_sees_exactly_their_own_figures(client, owner_a, owner_b):
    response, page = dashboard_page(client, owner_a)
    figures = response.context["dashboard"]
    assert figures["scope"] == "own"
    assert figures["mailings_total"] == 3
    assert figures["mailings_active"] == 1
    assert figures["recipients"] == 11
    # Sent: two today, one early this morning Moscow time, one at the very
    # start of the window; the one a second earlier is outside it.
    assert figures["sent"] == 4
    # Failed: one today; the one 40 days ago is outside the window. Queued,
    # sending, skipped and unknown attempts count as neither.
    assert figures["failed"] == 1


def test_client_dashboard_shows_nothing_of_another_client(client, owner_a, owner_b):
    _, page = dashboard_page(client, owner_a)
    assert "other.test" not in page
    assert "dashboard-owners" not in page
    assert "Your figures" in page


def test_chart_counts_days_in_the_configured_time_zone(client, owner_a):
    response, _ = dashboard_page(client, owner_a)
    bars = response.context["dashboard"]["chart"]["bars"]
    assert len(bars) == 30
    assert str(bars[0]["date"]) == "2025-02-14"
    assert str(bars[-1]["date"]) == "2025-03-15"
    assert (bars[0]["sent"], bars[0]["failed"]) == (1, 0)
    assert (bars[-1]["sent"], bars[-1]["failed"]) == (3, 1)
    # The 14th of March had nothing in Moscow time, and shows as zero.
    assert (bars[-2]["sent"], bars[-2]["failed"]) == (0, 0)
    assert sum(bar["sent"] + bar["failed"] for bar in bars[1:-1]) == 0


def test_chart_has_thirty_day_bars_and_no_external_url(client, owner_a):
    _, page = dashboard_page(client, owner_a)
    svg = chart_svg(page)
    assert svg.count('<g class="dashboard-day">') == 30
    assert svg.count('class="dashboard-day-label"') == 30
    assert "<title" in svg and "<desc" in svg
    without_namespace = svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http" not in without_namespace
    # The page's own assets (stylesheets, scripts) are served locally too.
    assets = re.findall(r'(?:href|src)="([^"]+\.(?:css|js))"', page)
    assert assets and not [url for url in assets if "//" in url]


def test_chart_coordinates_stay_numbers_in_russian(client, owner_a):
    _, page = dashboard_page(client, owner_a, language="ru")
    assert '<html lang="ru"' in page
    svg = chart_svg(page)
    coordinates = re.findall(r' (?:x|y|x1|x2|y1|y2|width|height)="([^"]*)"', svg)
    assert len(coordinates) > 120
    for value in coordinates:
        float(value)  # a decimal comma would raise


def test_manager_sees_the_whole_service_and_every_sender(
    client, manager, owner_a, owner_b
):
    response, page = dashboard_page(client, manager)
    figures = response.context["dashboard"]
    assert figures["scope"] == "service"
    assert figures["mailings_total"] == 4
    assert figures["mailings_active"] == 2
    assert figures["recipients"] == 11 + 9
    assert (figures["sent"], figures["failed"]) == (4 + 7, 1 + 2)
    bars = [(bar["sent"], bar["failed"]) for bar in figures["chart"]["bars"]]
    assert bars[0] == (1, 0)  # A's attempt at the window's first instant
    assert bars[-2:] == [(0, 2), (3 + 7, 1)]  # B failed yesterday; A's 01:30
    assert sum(sent + failed for sent, failed in bars[1:-2]) == 0
    rows = [
        (row["email"], row["sent_recent"], row["failed_recent"])
        + (row["sent_total"], row["failed_total"])
        for row in figures["owners"]
    ]
    assert rows == [
        ("bee@other.test", 7, 2, 7, 2),
        (owner_a.email, 4, 1, 5, 2),
    ]
    assert figures["owners_more"] == 0
    assert "bee@other.test" in page and owner_a.email in page
    assert "Attempts by user: last 30 days and all time" in page


def test_superuser_sees_the_same_as_a_manager(client, superuser, owner_a, owner_b):
    response, page = dashboard_page(client, superuser)
    figures = response.context["dashboard"]
    assert figures["scope"] == "service"
    assert [row["email"] for row in figures["owners"]] == [
        "bee@other.test",
        owner_a.email,
    ]


def test_sender_table_shows_the_top_fifty_and_counts_the_rest(client, manager):
    for n in range(DASHBOARD_TOP_OWNERS + 3):
        run = MailingRunFactory()
        for _ in range(1 + n % 4):
            attempt(run, Status.SENT, NOW)
    response, page = dashboard_page(client, manager)
    figures = response.context["dashboard"]
    assert len(figures["owners"]) == DASHBOARD_TOP_OWNERS
    assert figures["owners_more"] == 3
    totals = [row["sent_recent"] for row in figures["owners"]]
    assert totals == sorted(totals, reverse=True)
    assert "and 3 more users" in page


def test_client_never_reads_the_cached_service_figures(
    client, manager, owner_a, owner_b
):
    dashboard_page(client, manager)
    response, page = dashboard_page(client, owner_a)
    assert response.context["dashboard"]["scope"] == "own"
    assert response.context["dashboard"]["recipients"] == 11
    assert "other.test" not in page


def test_figures_are_cached_per_user_for_about_a_minute(owner_a, owner_b, frozen_time):
    first = dashboard_figures(user=owner_a)
    assert dashboard_figures(user=owner_b)["sent"] == 7
    ClientFactory(owner=owner_a)
    assert dashboard_figures(user=owner_a)["recipients"] == first["recipients"]
    frozen_time.shift(timedelta(seconds=61))
    assert dashboard_figures(user=owner_a)["recipients"] == first["recipients"] + 1


def _seed_owners(count):
    for _ in range(count):
        run = MailingRunFactory()
        attempt(run, Status.SENT, NOW)
        attempt(run, Status.FAILED, NOW - timedelta(days=2))
        attempt(run, Status.SENT, NOW - timedelta(days=90))


def _queries_for(user):
    user = type(user).objects.get(pk=user.pk)  # no permission cache yet
    cache.clear()
    with CaptureQueriesContext(connection) as queries:
        dashboard_figures(user=user)
    return len(queries)


def test_query_count_does_not_grow_with_rows_or_owners(manager, client_user):
    _seed_owners(1)
    run = MailingRunFactory(mailing=MailingFactory(owner=client_user))
    attempt(run, Status.SENT, NOW)
    few_for_manager, few_for_client = _queries_for(manager), _queries_for(client_user)

    _seed_owners(19)
    for _ in range(19):
        attempt(run, Status.SENT, NOW)
    assert _queries_for(manager) == few_for_manager
    assert _queries_for(client_user) == few_for_client
    assert few_for_manager <= 8


def test_index_page_query_count_is_the_same_for_one_or_twenty_owners(
    client, manager, django_assert_max_num_queries
):
    _seed_owners(1)
    client.force_login(manager)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/admin/").status_code == 200
    _seed_owners(19)
    cache.clear()
    with django_assert_max_num_queries(len(few)):
        assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("role", ["superuser", "manager", "client_user"])
def test_index_renders_for_every_role_in_both_languages(
    client, request, role, language, owner_a
):
    user = owner_a if role == "client_user" else request.getfixturevalue(role)
    _, page = dashboard_page(client, user, language=language)
    assert f'<html lang="{language}"' in page
    assert 'class="dashboard-chart"' in page
    # jazzmin's own index, with the app list, is still there.
    assert "/admin/core/mailing/" in page


def test_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "login" in response["Location"]
    assert response.context is None or "dashboard" not in response.context


def test_bounce_and_complaint_rates_are_per_message_and_per_owner(
    owner_a, owner_b, manager
):
    from core.models import Event, UnreadBounce

    def event(attempt, kind, at=NOW, **fields):
        Event.objects.create(
            owner_id=attempt.owner_id,
            run_id=attempt.run_id,
            attempt=attempt,
            kind=kind,
            at=at,
            **fields,
        )

    sent = list(Attempt.objects.filter(owner=owner_a, status=Status.SENT))
    event(sent[0], "bounce", severity="hard")
    event(sent[0], "bounce", severity="hard")  # a second report, same message
    event(sent[1], "complaint")
    event(sent[2], "bounce", at=NOW - timedelta(days=40))  # outside the window
    UnreadBounce.objects.create(mailbox="maildir://x", key="1", reason="?")

    own = dashboard_figures(user=owner_a)
    # Five attempts were answered in the window: four sent, one refused.
    assert (own["bounced"], own["complained"]) == (1, 1)
    assert (own["bounce_rate"], own["complaint_rate"]) == (20.0, 20.0)
    assert "unread_bounces" not in own

    service = dashboard_figures(user=manager)
    assert (service["bounced"], service["complained"]) == (1, 1)
    assert service["unread_bounces"] == 1
    rows = {row["email"]: row for row in service["owners"]}
    assert (
        rows[owner_a.email]["bounce_rate"],
        rows[owner_a.email]["complaint_rate"],
    ) == (
        20.0,
        20.0,
    )
    assert rows[owner_b.email]["bounced_recent"] == 0
