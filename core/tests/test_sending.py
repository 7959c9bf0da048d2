"""Sending: connections that adapt to the relay, and relays that misbehave."""

import time

import pytest

from core.models import Attempt, MailingRun
from core.services.dispatch import dispatch_tick
from core.services.dispatch.sending import START_CONNECTIONS, Concurrency

from .factories import due_mailing, people

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
    settings.SMTP_MAX_RETRIES = 6
    smtp_server.recorder.drop_rate = 0.2
    recipients = people(owner, 150)
    due_mailing(owner, recipients)
    summary = dispatch_tick()
    assert summary.sent == 150 and summary.failed == 0
    all_sent_once(smtp_server, recipients)
    assert smtp_server.recorder.dropped > 10
    # Each drop cost its message one more try, no more.
    extra_tries = sum(
        tries - 1 for tries in Attempt.objects.values_list("tries", flat=True)
    )
    assert extra_tries == smtp_server.recorder.dropped


# --- the count itself ----------------------------------------------------------


def test_the_count_doubles_while_throughput_grows_and_keeps_the_best():
    count = Concurrency(relay="test:1", ceiling=32, pinned=None)
    assert count.wanted() == START_CONNECTIONS
    rates = {2: 100, 4: 200, 8: 390, 16: 400}  # the server saturates at 8
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
    assert first.wanted() == 4
    first.refused(working=3)
    assert first.wanted() == 3
    assert Concurrency(relay="test:3", ceiling=32, pinned=None).wanted() == 3
    # A smaller share of the relay caps what was learned.
    assert Concurrency(relay="test:3", ceiling=2, pinned=None).wanted() == 2


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
