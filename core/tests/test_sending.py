"""Sending: connections that adapt to the relay, and relays that misbehave."""

import time
from collections import Counter

import pytest

from core.models import Attempt, MailingRun
from core.services.dispatch import dispatch_tick
from core.services.dispatch.sending import START_CONNECTIONS, Concurrency

from .factories import due_mailing, people
from .rawsmtp import RawSmtpServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def adaptive(settings):
    """Connections as a newcomer gets them: not pinned."""
    settings.SMTP_CONCURRENCY = 0
    settings.SMTP_MAX_CONCURRENCY = 16


def all_sent_once(server, recipients):
    assert server.recorder.count_by_address() == {r.email: 1 for r in recipients}
    assert set(Attempt.objects.values_list("status", flat=True)) == {"sent"}
    assert MailingRun.objects.get().status == MailingRun.Status.FINISHED


@pytest.mark.solo
def test_connections_grow_against_a_slow_server(owner, smtp_server, adaptive):
    """A server that takes 20 ms a message gets more connections than two."""
    smtp_server.recorder.delay = 0.02
    recipients = people(owner, 400)
    due_mailing(owner, recipients)
    summary = dispatch_tick()
    assert summary.sent == 400
    all_sent_once(smtp_server, recipients)
    # More at once than the four a fixed count used to open, within the ceiling.
    assert 8 <= smtp_server.recorder.peak_sessions <= 16


@pytest.mark.solo
def test_sessions_slow_to_open_do_not_pass_for_a_slow_server(
    owner, smtp_server, adaptive, settings
):
    """A server that answers every message at once but takes 0.3 s to open
    a session: the window in which a count's connections were opening is not
    judged, or the next count always looks several times faster and the
    count runs up to the ceiling for nothing. (With other work on the cores,
    more connections do bring more here, which is why it runs alone.)"""
    from django.core.cache import cache

    smtp_server.recorder.ehlo_delay = 0.3
    recipients = people(owner, 1500)
    due_mailing(owner, recipients)
    assert dispatch_tick().sent == 1500
    all_sent_once(smtp_server, recipients)
    assert smtp_server.recorder.peak_sessions <= 8
    learned = cache.get(f"dispatch:relay:127.0.0.1:{settings.EMAIL_PORT}:connections")
    assert learned is not None and learned < settings.SMTP_MAX_CONCURRENCY


def test_a_relay_that_takes_two_connections_gets_two(owner, smtp_server, adaptive):
    """The third connection is greeted with 421: nothing is lost or doubled,
    and the process keeps to two from then on."""
    smtp_server.recorder.max_sessions = 2
    smtp_server.recorder.delay = 0.02
    recipients = people(owner, 300)
    due_mailing(owner, recipients)
    summary = dispatch_tick()
    assert (summary.sent, summary.failed) == (300, 0)
    all_sent_once(smtp_server, recipients)
    assert smtp_server.recorder.peak_sessions == 2
    assert smtp_server.recorder.refused_sessions >= 1  # it did try a third


def test_a_pinned_count_gives_way_to_a_relay_that_refuses(owner, smtp_server, settings):
    settings.SMTP_CONCURRENCY = 6
    smtp_server.recorder.max_sessions = 2
    recipients = people(owner, 120)
    due_mailing(owner, recipients)
    assert dispatch_tick().sent == 120
    all_sent_once(smtp_server, recipients)
    # Refused once or a few times, not once per message.
    assert smtp_server.recorder.refused_sessions < 20


def test_a_relay_that_drops_connections_at_random_loses_nothing(
    owner, smtp_server, settings, adaptive
):
    """Dropped before the content, a message goes again; dropped after it,
    the server may have it, so it is reported unknown and never sent again."""
    settings.SMTP_MAX_RETRIES = 8
    smtp_server.recorder.drop_rate = 0.2
    # Enough messages that both kinds of drop come many times, however the
    # connections' turns at the server's random draws fall.
    recipients = people(owner, 300)
    due_mailing(owner, recipients)
    summary = dispatch_tick()
    recorder = smtp_server.recorder
    assert recorder.dropped_early > 5 and recorder.dropped_late > 5
    assert (summary.failed, summary.sent + summary.unknown) == (0, 300)
    assert summary.unknown == recorder.dropped_late
    delivered = recorder.count_by_address()
    assert max(delivered.values()) == 1
    assert len(delivered) == summary.sent
    unknown = set(
        Attempt.objects.filter(status="unknown").values_list("email", flat=True)
    )
    assert not unknown & set(delivered)
    assert not Attempt.objects.exclude(status__in=["sent", "unknown"]).exists()
    assert MailingRun.objects.get().status == MailingRun.Status.FINISHED


# --- the count itself ----------------------------------------------------------


def test_the_count_grows_while_throughput_grows_and_keeps_the_best():
    count = Concurrency(relay="test:1", ceiling=32, pinned=None)
    assert count.wanted() == START_CONNECTIONS
    seen = []
    while not count.settled:
        seen.append(count.wanted())
        # A server that gives 50 msg/s a connection, up to eight of them.
        count.observe(rate=min(count.wanted(), 8) * 50.0)
    # Throughput in step with the connections: four times as many next.
    assert seen == [2, 8, 32]
    assert count.wanted() == 8


def test_the_count_doubles_when_throughput_grows_less_than_in_step():
    count = Concurrency(relay="test:5", ceiling=32, pinned=None)
    rates = {2: 100.0, 8: 150.0, 16: 160.0}
    while not count.settled:
        count.observe(rate=rates[count.wanted()])
    assert count.wanted() == 8


def test_the_count_never_passes_the_ceiling():
    count = Concurrency(relay="test:2", ceiling=5, pinned=None)
    for _ in range(10):
        count.observe(rate=count.wanted() * 100.0)
    assert count.wanted() == 5


def test_the_next_delivery_starts_where_the_relay_settled():
    first = Concurrency(relay="test:3", ceiling=32, pinned=None)
    first.observe(rate=100.0)
    assert first.wanted() == 8
    first.refused(working=3)
    assert first.wanted() == 3
    assert Concurrency(relay="test:3", ceiling=32, pinned=None).wanted() == 3
    # A smaller share of the relay caps what was learned.
    assert Concurrency(relay="test:3", ceiling=2, pinned=None).wanted() == 2


def test_a_delivery_that_ends_mid_search_leaves_its_best_measured_count():
    short = Concurrency(relay="test:6", ceiling=32, pinned=None)
    short.observe(rate=100.0)  # at 2
    short.observe(rate=400.0)  # at 8: still growing, now trying 32
    assert short.wanted() == 32 and not short.settled
    short.finish()
    # 32 was never measured: the next delivery starts at 8.
    assert Concurrency(relay="test:6", ceiling=32, pinned=None).wanted() == 8


def test_a_delivery_that_measured_nothing_leaves_nothing():
    Concurrency(relay="test:7", ceiling=32, pinned=None).finish()
    assert Concurrency(relay="test:7", ceiling=32, pinned=None).wanted() == (
        START_CONNECTIONS
    )


def test_a_pinned_count_stays_unless_refused(monkeypatch):
    count = Concurrency(relay="test:4", ceiling=32, pinned=6)
    count.observe(rate=10.0)
    count.observe(rate=1000.0)
    assert count.wanted() == 6
    count.refused(working=2)
    assert count.wanted() == 2
    later = time.monotonic() + 3600
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert count.wanted() == 6  # long after the refusals


# --- what must never hang, nor send twice --------------------------------------


def point_at(settings, server):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False


class LosesTheFirstAnswer(RawSmtpServer):
    """Keeps the first message, then dies before saying so."""

    def _reply(self, command):
        if command == "." and not self.used["."]:
            self.used["."] += 1
            raise ConnectionAbortedError("crashed after queueing, before 250")
        return super()._reply(command)

    def _serve(self, connection):
        try:
            super()._serve(connection)
        except ConnectionAbortedError:
            pass  # the connection closes unanswered


def test_an_answer_lost_after_the_message_is_unknown_never_resent(owner, settings):
    server = LosesTheFirstAnswer().start()
    try:
        point_at(settings, server)
        settings.EMAIL_TIMEOUT = 2
        settings.SMTP_CONCURRENCY = 1
        (person,) = people(owner, 1)
        due_mailing(owner, [person])
        summary = dispatch_tick(time_budget=5)
    finally:
        server.stop()
    assert len(server.messages) == 1
    assert (summary.unknown, summary.sent) == (1, 0)
    attempt = Attempt.objects.get()
    assert attempt.status == Attempt.Status.UNKNOWN
    assert "after the message was sent" in attempt.server_response


def test_a_server_that_never_greets_keeps_the_time_budget(owner, settings):
    """Every connection waits for the greeting; none waits past the budget."""
    import socket

    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(64)
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = silent.getsockname()[1]
        settings.EMAIL_TIMEOUT = 3
        settings.SMTP_CONCURRENCY = 8
        due_mailing(owner, people(owner, 20))
        started = time.monotonic()
        summary = dispatch_tick(time_budget=1)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert summary.sent == 0
    assert took < 1 + 5 + 3, took  # the budget, its grace, one timeout
    assert set(Attempt.objects.values_list("status", flat=True)) == {"queued"}


def test_a_failure_inside_a_connection_stops_the_delivery_not_the_process(
    owner, settings, monkeypatch
):
    """A rate limit whose cache went away: the delivery ends at once, the
    attempts wait for the next tick, and nothing is left sending."""
    from core.services.mail import ratelimit

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMTP_RATE_LIMIT = "1000/s"
    calls = []

    def cache_gone(self, **kwargs):
        calls.append(1)
        if len(calls) >= 3:
            raise ConnectionError("the cache is down")
        return True

    monkeypatch.setattr(ratelimit.RateLimiter, "acquire", cache_gone)
    due_mailing(owner, people(owner, 10))
    started = time.monotonic()
    summary = dispatch_tick(time_budget=30)
    assert time.monotonic() - started < 10
    assert summary.sent == 2
    statuses = Counter(Attempt.objects.values_list("status", flat=True))
    assert statuses == {"sent": 2, "queued": 8}
    assert (
        "the cache is down"
        in Attempt.objects.filter(status="queued")[0].server_response
    )


def test_no_transport_for_the_configuration_is_reported_not_hung(
    owner, settings, monkeypatch
):
    from django.core.exceptions import ImproperlyConfigured

    from core.services.dispatch import sending

    def cannot(*args, **kwargs):
        raise ImproperlyConfigured("the mail directory is not a directory")

    monkeypatch.setattr(sending, "transport_open", cannot)
    due_mailing(owner, people(owner, 5))
    started = time.monotonic()
    summary = dispatch_tick(time_budget=30)
    assert time.monotonic() - started < 10
    assert summary.sent == 0
    attempt = Attempt.objects.first()
    assert attempt.status == Attempt.Status.QUEUED
    assert "not a directory" in attempt.server_response


def test_a_rate_limit_window_beyond_the_budget_is_not_waited_for(owner, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMTP_RATE_LIMIT = "2/h"
    due_mailing(owner, people(owner, 5))
    started = time.monotonic()
    summary = dispatch_tick(time_budget=1)
    assert time.monotonic() - started < 8
    assert summary.sent == 2
    assert Attempt.objects.filter(status="queued").count() == 3
