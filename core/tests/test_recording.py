"""Recording: answers reach the attempts and their run's counters; back-off
and the pause after failures in a row."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import Attempt, MailingRun
from core.services.dispatch.outcome import Outcome, Result
from core.services.dispatch.recording import backoff, results_record
from core.services.dispatch.runs import run_counts_add

from .factories import AttemptFactory, MailingRunFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def run(db):
    return MailingRunFactory(status=MailingRun.Status.RUNNING)


def held(run, count, **fields):
    return [
        AttemptFactory(run=run, status=Attempt.Status.SENDING, tries=0, **fields)
        for _ in range(count)
    ]


def claim_again(attempt):
    """As the next worker's claim leaves it."""
    Attempt.objects.filter(pk=attempt.pk).update(status=Attempt.Status.SENDING)
    attempt.status = Attempt.Status.SENDING


def record(*pairs):
    """[(attempt, outcome, response)] as one batch."""
    return results_record(
        [Result(a, outcome, text, tried=True) for a, outcome, text in pairs], now=NOW
    )


def test_a_temporary_failure_waits_twice_as_long_each_time(run, settings):
    settings.SMTP_RETRY_BACKOFF = 60
    settings.SMTP_MAX_RETRIES = 4
    (attempt,) = held(run, 1)
    waits = []
    for _ in range(3):
        record((attempt, Outcome.RETRY, "451 4.3.0 Try later"))
        attempt.refresh_from_db()
        assert attempt.status == Attempt.Status.QUEUED
        waits.append(attempt.next_try_at - NOW)
        claim_again(attempt)
    assert waits == [timedelta(seconds=s) for s in (60, 120, 240)]
    assert [backoff(n) for n in (1, 2, 3)] == waits
    record((attempt, Outcome.RETRY, "451 4.3.0 Try later"))
    attempt.refresh_from_db()
    assert (attempt.status, attempt.tries) == (Attempt.Status.FAILED, 4)
    assert attempt.server_response == "451 4.3.0 Try later"


def test_answers_reach_the_attempts_and_the_runs_counters(run):
    sent, failed, skipped = held(run, 3)
    summary = results_record(
        [
            Result(sent, Outcome.SENT, "250 2.0.0 Ok", tried=True),
            Result(failed, Outcome.FAILED, "550 5.1.1 No such user", tried=True),
            Result(skipped, Outcome.SKIPPED, "unsubscribed"),
        ],
        now=NOW,
    )
    assert (summary.sent, summary.failed, summary.skipped) == (1, 1, 1)
    run.refresh_from_db()
    assert (run.sent_count, run.failed_count, run.skipped_count) == (1, 1, 1)
    statuses = dict(Attempt.objects.values_list("pk", "status"))
    assert statuses == {sent.pk: "sent", failed.pk: "failed", skipped.pk: "skipped"}
    assert Attempt.objects.get(pk=skipped.pk).tries == 0  # never handed over
    assert not Attempt.objects.exclude(claim_token="").exists()


def test_failures_in_a_row_add_up_across_batches_and_pause_the_run(run, settings):
    settings.SMTP_MAX_CONSECUTIVE_ERRORS = 5
    settings.SMTP_PAUSE_MINUTES = 15
    attempts = held(run, 6)
    refused = "550 5.7.1 Relaying denied"
    record(*[(a, Outcome.FAILED, refused) for a in attempts[:3]])
    run.refresh_from_db()
    assert (run.status, run.consecutive_failures) == ("running", 3)
    record(*[(a, Outcome.FAILED, refused) for a in attempts[3:5]])
    run.refresh_from_db()
    assert run.status == MailingRun.Status.PAUSED
    assert run.paused_until == NOW + timedelta(minutes=15)
    assert run.consecutive_failures == 0  # a fresh count after the pause


def test_a_message_that_goes_through_ends_the_row_of_failures(run, settings):
    settings.SMTP_MAX_CONSECUTIVE_ERRORS = 3
    attempts = held(run, 5)
    record(
        (attempts[0], Outcome.FAILED, "550"),
        (attempts[1], Outcome.FAILED, "550"),
        (attempts[2], Outcome.SENT, "250"),
        (attempts[3], Outcome.FAILED, "550"),
    )
    run.refresh_from_db()
    assert (run.status, run.consecutive_failures) == ("running", 1)


def test_one_function_writes_the_counters_and_refuses_what_is_not_one(run):
    run_counts_add(run_id=run.pk, total=10, sent=4, failed=2)
    run_counts_add(run_id=run.pk, failed=-2, unknown=1)
    run.refresh_from_db()
    assert (run.total_count, run.sent_count, run.failed_count, run.unknown_count) == (
        10,
        4,
        0,
        1,
    )
    with pytest.raises(ValueError, match="not a run counter: opened"):
        run_counts_add(run_id=run.pk, opened=1)


def test_answers_for_claims_recovery_settled_are_not_recorded(run):
    """A holder thought dead recorded late: recovery's word stands, and the
    run is counted once."""
    attempts = held(run, 3, claim_token="late-holder")
    Attempt.objects.filter(pk=attempts[0].pk).update(
        status=Attempt.Status.UNKNOWN, claim_token=""
    )
    summary = record(*[(a, Outcome.SENT, "250 2.0.0 Ok") for a in attempts])
    assert summary.sent == 2
    statuses = dict(Attempt.objects.values_list("pk", "status"))
    assert statuses[attempts[0].pk] == "unknown"
    assert statuses[attempts[1].pk] == statuses[attempts[2].pk] == "sent"
    run.refresh_from_db()
    assert run.sent_count == 2
