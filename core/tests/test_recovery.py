"""Recovery: a dead worker's claims are settled from its journal."""

import os
from datetime import timedelta

import pytest
import time_machine
from django.db import OperationalError
from django.utils import timezone

from core.models import Attempt, MailingRun
from core.services.dispatch import dispatch_tick, run_open_now, sending
from core.services.dispatch.claims import attempts_claim, token_new
from core.services.dispatch.journal import Journal

from .factories import due_mailing, people

pytestmark = pytest.mark.django_db


def test_interrupted_worker_is_recovered_from_its_journal(owner, smtp_server, settings):
    """A worker killed mid-batch: answered, in flight and untouched attempts."""
    recipients = people(owner, 4)
    mailing = due_mailing(owner, recipients)
    run_open_now(mailing_id=mailing.pk)
    token = token_new()
    journal = Journal(token)
    held = attempts_claim(token=token, limit=10, now=timezone.now())
    sent, in_flight, untouched = held[0], held[1], held[2:]
    journal.in_flight(sent.pk)
    journal.answered(sent.pk, "sent", "250 2.0.0 Ok: queued as 1")
    journal.in_flight(in_flight.pk)
    # ... and the worker dies here: nothing reached the database, and the
    # system drops its lock on the journal.
    os.close(journal.fd)

    later = timezone.now() + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS + 1)
    with time_machine.travel(later):
        summary = dispatch_tick()

    states = {a.pk: a for a in Attempt.objects.all()}
    assert states[sent.pk].status == "sent"
    assert states[sent.pk].server_response == "250 2.0.0 Ok: queued as 1"
    assert states[in_flight.pk].status == "unknown"
    assert {states[a.pk].status for a in untouched} == {"sent"}
    assert summary.unknown == 1
    delivered = smtp_server.recorder.count_by_address()
    assert sent.email not in delivered and in_flight.email not in delivered
    assert all(delivered[a.email] == 1 for a in untouched)
    run = MailingRun.objects.get()
    assert (run.sent_count, run.unknown_count, run.status) == (3, 1, "finished")


def test_claims_without_a_journal_become_unknown_never_resent(
    owner, smtp_server, settings
):
    mailing = due_mailing(owner, people(owner, 3))
    run_open_now(mailing_id=mailing.pk)
    held = attempts_claim(token=token_new(), limit=10, now=timezone.now())
    # Its holder stopped renewing it more than a lease ago.
    lapsed = timezone.now() - timedelta(seconds=settings.DISPATCH_LEASE_SECONDS + 1)
    Attempt.objects.filter(pk__in=[a.pk for a in held]).update(claimed_at=lapsed)
    summary = dispatch_tick()
    assert summary.unknown == len(held) == 3
    assert smtp_server.messages == []


def test_live_claims_are_left_alone(owner, smtp_server):
    mailing = due_mailing(owner, people(owner, 2))
    run_open_now(mailing_id=mailing.pk)
    attempts_claim(token=token_new(), limit=10, now=timezone.now())
    summary = dispatch_tick()
    assert (summary.unknown, summary.sent) == (0, 0)
    assert set(Attempt.objects.values_list("status", flat=True)) == {"sending"}


def test_claims_of_an_earlier_boot_are_written_off_not_read(
    owner, smtp_server, settings
):
    """After the machine itself crashed, its journals may miss the lines not
    yet on disk: what they say is not trusted, and nothing is sent twice."""
    from core.services.dispatch import journal

    mailing = due_mailing(owner, people(owner, 3))
    run_open_now(mailing_id=mailing.pk)
    token = "0" * len(journal.HOST_TAG) + "feedfacecafebeef"  # another boot's
    held = attempts_claim(token=token, limit=10, now=timezone.now())
    journal.journal_path(token).write_text("claim\n")  # says nothing was sent
    lapsed = timezone.now() - timedelta(seconds=settings.DISPATCH_LEASE_SECONDS + 1)
    Attempt.objects.filter(pk__in=[a.pk for a in held]).update(claimed_at=lapsed)
    summary = dispatch_tick()
    assert summary.unknown == 3
    assert smtp_server.messages == []
    assert set(Attempt.objects.values_list("status", flat=True)) == {"unknown"}


def test_a_journal_left_behind_is_swept_even_when_nothing_is_held(owner, settings):
    import os
    import time

    from core.services.dispatch import journal

    stale = journal.journal_path(f"{journal.HOST_TAG}0123456789abcdef")
    stale.write_text("claim\n")
    old = time.time() - 3 * settings.DISPATCH_LEASE_SECONDS
    os.utime(stale, (old, old))
    dispatch_tick()
    assert not stale.exists()


def test_a_batch_whose_recording_failed_is_settled_at_the_next_tick(
    owner, smtp_server, monkeypatch
):
    """The database refused the answers: the journal holds them, unlocked."""
    recipients = people(owner, 3)
    due_mailing(owner, recipients)

    def refused(results, **kwargs):
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(sending, "results_record", refused)
    with pytest.raises(OperationalError):
        dispatch_tick()
    assert len(smtp_server.messages) == 3
    monkeypatch.undo()

    summary = dispatch_tick()
    assert summary.sent == 3
    assert set(Attempt.objects.values_list("status", flat=True)) == {"sent"}
    # Sent once each: recovery read the answers, nothing went out again.
    assert smtp_server.recorder.count_by_address() == {r.email: 1 for r in recipients}
    assert MailingRun.objects.get().status == "finished"


def test_worker_killed_while_building_a_message_fails_it_instead_of_requeueing(
    owner, smtp_server, settings
):
    """A message that kills whoever builds it would otherwise be claimed
    first at every tick, by worker after worker."""
    from .factories import MessageFactory

    message = MessageFactory(owner=owner, body="{{ client.full_name }}")
    recipients = people(owner, 3)
    mailing = due_mailing(owner, recipients, message=message)
    run_open_now(mailing_id=mailing.pk)
    token = token_new()
    journal = Journal(token)
    first, *others = attempts_claim(token=token, limit=10, now=timezone.now())
    journal.building(first.pk)
    os.close(journal.fd)  # the worker dies while building the first message

    summary = dispatch_tick()

    first.refresh_from_db()
    assert first.status == "failed"
    assert first.server_response == (
        "not sent: the worker stopped while building this message"
    )
    assert summary.failed == 1
    delivered = smtp_server.recorder.count_by_address()
    assert first.email not in delivered
    assert all(delivered[a.email] == 1 for a in others)
