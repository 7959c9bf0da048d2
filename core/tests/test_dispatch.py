"""Sending: the pipeline against a real SMTP server on loopback."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from core.models import Attempt, Client, Mailing, MailingRun
from core.services.dispatch import dispatch_tick, run_open_now
from core.services.dispatch.workers import deliver, deliveries_wanted

from .factories import (
    ClientFactory,
    MessageFactory,
    UserFactory,
    due_mailing,
    people,
)

pytestmark = pytest.mark.django_db


def test_due_mailing_reaches_every_recipient_once(owner, smtp_server):
    recipients = people(owner, 5)
    message = MessageFactory(
        owner=owner,
        subject="Скидки для {{ client.full_name }}",
        body="Здравствуйте, {{ client.full_name }}!\nОтписаться: {{ unsubscribe_url }}",
        html_body="<p>Здравствуйте, <b>{{ client.full_name }}</b></p>",
    )
    mailing = due_mailing(owner, recipients, message=message, title="Осень")

    summary = dispatch_tick()

    assert (summary.runs, summary.sent, summary.failed) == (1, 5, 0)
    counts = smtp_server.recorder.count_by_address()
    assert counts == {r.email: 1 for r in recipients}
    run = MailingRun.objects.get(mailing=mailing)
    assert run.status == MailingRun.Status.FINISHED
    assert (run.total_count, run.sent_count, run.failed_count) == (5, 5, 0)
    assert set(Attempt.objects.values_list("status", flat=True)) == {"sent"}
    assert all(a.server_response.startswith("250") for a in Attempt.objects.all())
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED

    tos, email = smtp_server.messages[0]
    (to,) = tos
    recipient = Client.objects.get(email=to)
    # Long encoded subjects are folded after "Subject:"; readers unfold them.
    assert email["Subject"].strip() == f"Скидки для {recipient.full_name}"
    assert email.is_multipart()
    assert (
        email.get_body(("plain",))
        .get_content()
        .startswith(f"Здравствуйте, {recipient.full_name}!")
    )
    assert f"<b>{recipient.full_name}</b>" in email.get_body(("html",)).get_content()
    assert re.fullmatch(r"<[^@]+@127\.0\.0\.1>", email["Message-ID"])
    assert email["Date"]
    assert f"mailing-{mailing.pk}." in email["List-Id"]
    assert (
        email["List-Unsubscribe"]
        .strip()
        .startswith("<http://127.0.0.1:8000/unsubscribe/")
    )
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Replies go where the message says; it names nowhere, so to the sender,
    # never to the owner's login address unless they choose it.
    assert email["Reply-To"] is None


def test_unsubscribed_recipients_are_skipped_and_reported(owner, smtp_server):
    stays = people(owner, 2)
    gone = ClientFactory(owner=owner, unsubscribed_at=timezone.now())
    due_mailing(owner, [*stays, gone])
    summary = dispatch_tick()
    assert summary.sent == 2
    assert gone.email not in smtp_server.recorder.count_by_address()
    skipped = Attempt.objects.get(client=gone)
    assert skipped.status == Attempt.Status.SKIPPED
    run = MailingRun.objects.get()
    assert (run.sent_count, run.skipped_count, run.total_count) == (2, 1, 3)


@pytest.mark.parametrize("block", ["owner", "mailing"])
def test_blocked_owner_or_disabled_mailing_sends_nothing(owner, smtp_server, block):
    mailing = due_mailing(owner, people(owner, 3))
    if block == "owner":
        owner.is_active = False
        owner.save()
    else:
        mailing.is_enabled = False
        mailing.save()
    summary = dispatch_tick()
    assert summary.sent == 0
    assert smtp_server.messages == []
    assert not MailingRun.objects.exists()


def test_disabling_a_running_mailing_stops_its_queued_attempts(owner, smtp_server):
    mailing = due_mailing(owner, people(owner, 3))
    run = run_open_now(mailing_id=mailing.pk)
    Mailing.objects.filter(pk=mailing.pk).update(is_enabled=False)
    assert deliver(time_budget=30).sent == 0
    Mailing.objects.filter(pk=mailing.pk).update(is_enabled=True)
    assert deliver(time_budget=30).sent == 3
    run.refresh_from_db()
    assert run.status == MailingRun.Status.FINISHED


def test_temporary_failures_are_retried_and_the_message_arrives_once(
    owner, smtp_server, settings
):
    settings.SMTP_MAX_RETRIES = 3
    (person,) = people(owner, 1)
    smtp_server.recorder.script[person.email] = [
        "451 4.3.0 Mailbox busy, try later",
        "451 4.3.0 Mailbox busy, try later",
    ]
    due_mailing(owner, [person])
    summary = dispatch_tick()
    assert summary.sent == 1
    assert smtp_server.recorder.count_by_address() == {person.email: 1}
    attempt = Attempt.objects.get()
    assert attempt.status == Attempt.Status.SENT
    assert attempt.tries == 3


def test_temporary_failures_give_up_after_the_retry_limit(owner, smtp_server, settings):
    settings.SMTP_MAX_RETRIES = 2
    (person,) = people(owner, 1)
    smtp_server.recorder.script[person.email] = ["451 4.3.0 Try later"] * 5
    due_mailing(owner, [person])
    dispatch_tick()
    attempt = Attempt.objects.get()
    assert attempt.status == Attempt.Status.FAILED
    assert attempt.tries == 2
    assert attempt.server_response == "451 4.3.0 Try later"


def test_permanent_failure_is_recorded_with_the_servers_text(owner, smtp_server):
    good, bad = people(owner, 2)
    smtp_server.recorder.reject[bad.email] = "550 5.1.1 No such user here"
    due_mailing(owner, [good, bad])
    summary = dispatch_tick()
    assert (summary.sent, summary.failed) == (1, 1)
    failed = Attempt.objects.get(client=bad)
    assert failed.status == Attempt.Status.FAILED
    assert failed.server_response == "550 5.1.1 No such user here"
    assert failed.tries == 1
    run = MailingRun.objects.get()
    assert (run.sent_count, run.failed_count, run.status) == (1, 1, "finished")


def test_server_down_then_back_loses_nothing(owner, settings):
    from .smtp import SmtpServer, free_port

    port = free_port()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = (
        "127.0.0.1",
        port,
        5,
    )
    recipients = people(owner, 4)
    due_mailing(owner, recipients)

    down = dispatch_tick()
    assert down.sent == 0
    attempts = Attempt.objects.all()
    assert {a.status for a in attempts} == {"queued"}
    assert {a.tries for a in attempts} == {0}
    assert "no SMTP session" in attempts[0].server_response

    server = SmtpServer(port=port).start()
    try:
        back = dispatch_tick()
    finally:
        server.stop()
    assert back.sent == 4
    assert server.recorder.count_by_address() == {r.email: 1 for r in recipients}


def test_many_failures_in_a_row_pause_the_run(owner, smtp_server, settings):
    settings.SMTP_MAX_CONSECUTIVE_ERRORS = 5
    settings.SMTP_CONCURRENCY = 1
    recipients = people(owner, 12)
    for person in recipients:
        smtp_server.recorder.reject[person.email] = "550 5.7.1 Relaying denied"
    due_mailing(owner, recipients)
    summary = dispatch_tick()
    assert summary.failed == 5
    run = MailingRun.objects.get()
    assert run.status == MailingRun.Status.PAUSED
    assert run.paused_until > timezone.now()
    assert Attempt.objects.filter(status="queued").count() == 7

    # Once the pause is over the run resumes (here: the server is fixed).
    smtp_server.recorder.reject.clear()
    with time_machine.travel(run.paused_until + timedelta(seconds=1)):
        resumed = dispatch_tick()
    assert resumed.sent == 7
    run.refresh_from_db()
    assert run.status == MailingRun.Status.FINISHED


def test_a_sender_that_outlives_a_pause_tries_the_run_again(
    owner, smtp_server, settings
):
    # The command delivers for as long as there is work: a pause that ends
    # meanwhile starts a new count of failures, not a pause at once again.
    settings.SMTP_MAX_CONSECUTIVE_ERRORS = 5
    settings.SMTP_PAUSE_MINUTES = 0
    settings.SMTP_CONCURRENCY = 1
    recipients = people(owner, 12)
    for person in recipients:
        smtp_server.recorder.reject[person.email] = "550 5.7.1 Relaying denied"
    due_mailing(owner, recipients)
    summary = dispatch_tick(time_budget=5)
    assert summary.failed == 12
    assert not Attempt.objects.exclude(status="failed").exists()


def test_scheduler_down_for_three_days_sends_a_daily_mailing_once(owner, smtp_server):
    start = timezone.now().replace(microsecond=0) - timedelta(days=3, minutes=5)
    mailing = due_mailing(
        owner, people(owner, 2), start_at=start, periodicity=Mailing.Periodicity.DAILY
    )
    summary = dispatch_tick()
    assert (summary.runs, summary.skipped_runs, summary.sent) == (1, 3, 2)
    runs = MailingRun.objects.order_by("scheduled_for")
    assert [r.status for r in runs] == ["skipped"] * 3 + ["finished"]
    assert runs.last().scheduled_for == start + timedelta(days=3)
    mailing.refresh_from_db()
    assert mailing.next_run_at == start + timedelta(days=4)
    assert mailing.status == Mailing.Status.RUNNING

    # The next tick the same day sends nothing more.
    assert dispatch_tick().sent == 0
    assert len(smtp_server.messages) == 2


def test_mailing_whose_recipients_were_all_deleted_finishes_empty(owner, smtp_server):
    recipients = people(owner, 2)
    mailing = due_mailing(owner, recipients)
    Client.objects.filter(pk__in=[r.pk for r in recipients]).delete()
    summary = dispatch_tick()
    assert summary.runs == 1 and summary.sent == 0
    run = MailingRun.objects.get(mailing=mailing)
    assert (run.total_count, run.status) == (0, MailingRun.Status.FINISHED)


def test_attempts_carry_their_runs_owner_and_go_with_their_mailing(owner, smtp_server):
    # The copied owner column has no foreign-key check of its own in the
    # database: the enqueue writes the run's owner into it.
    other = UserFactory(verified=True, groups=["clients"])
    mailing = due_mailing(owner, people(owner, 3))
    due_mailing(other, people(other, 2))
    dispatch_tick()
    pairs = set(Attempt.objects.values_list("owner_id", "run__owner_id"))
    assert pairs == {(owner.pk, owner.pk), (other.pk, other.pk)}

    mailing.delete()

    assert set(Attempt.objects.values_list("owner_id", flat=True)) == {other.pk}
    assert Attempt.objects.count() == 2


def test_names_and_subjects_cannot_inject_headers(owner, smtp_server):
    person = ClientFactory(
        owner=owner, full_name="Eve\r\nBcc: victim@example.net", email="eve@example.org"
    )
    message = MessageFactory(
        owner=owner, subject="Привет {{ client.full_name }}\nX-Injected: yes"
    )
    due_mailing(owner, [person], message=message)
    dispatch_tick()
    ((tos, email),) = smtp_server.messages
    assert tos == ["eve@example.org"]
    assert "X-Injected" not in email and "Bcc" not in email
    assert "\n" not in email["Subject"]


def test_template_reaches_nothing_beyond_its_context(owner, smtp_server):
    message = MessageFactory(
        owner=owner,
        subject="{{ client.full_name }}{{ missing }}",
        body="[{{ client.owner.password }}][{{ mailing.owner.email }}][{{ settings }}]",
    )
    (person,) = people(owner, 1)
    due_mailing(owner, [person], message=message)
    dispatch_tick()
    ((_, email),) = smtp_server.messages
    assert email.get_body(("plain",)).get_content().strip() == "[][][]"
    assert email["Subject"].strip() == person.full_name


def test_wrong_smtp_password_is_reported_and_loses_nothing(owner, settings):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from .smtp import Recorder, free_port

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login in (b"shop", "shop") and auth_data.password in (
            b"right",
            "right",
        )
        # handled=False: aiosmtpd answers 535 itself.
        return AuthResult(success=ok, handled=False)

    port = free_port()
    controller = Controller(
        Recorder(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "shop", "wrong"
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        due_mailing(owner, people(owner, 2))
        summary = dispatch_tick()
        assert (summary.sent, summary.failed) == (0, 0)
        attempts = Attempt.objects.all()
        assert {a.status for a in attempts} == {"queued"}
        assert all("535" in a.server_response for a in attempts), [
            a.server_response for a in attempts
        ]

        settings.EMAIL_HOST_PASSWORD = "right"
        assert dispatch_tick().sent == 2
    finally:
        controller.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("recipients, wanted", [(20, 1), (50, 3), (200, 4)])
def test_deliveries_are_wanted_one_per_two_batches_up_to_the_workers(
    owner, settings, recipients, wanted
):
    # A delivery takes two batches at a time: a second one for a queue of
    # two would find nothing to take.
    settings.DISPATCH_WORKERS, settings.DISPATCH_BATCH_SIZE = 4, 10
    run_open_now(mailing_id=due_mailing(owner, people(owner, recipients)).pk)
    assert deliveries_wanted() == wanted


# Saved before the language was bounded: through the shell or a fixture, or
# by an older version. Django's full template language would run these.
WORST_MESSAGES = {
    "loops": "{% for a in 'x'|ljust:'2000' %}{% for b in 'x'|ljust:'2000' %}"
    "{% for c in 'x'|ljust:'2000' %}.{% endfor %}{% endfor %}{% endfor %}",
    "allocation": "{{ 'x'|ljust:'300000000' }}",
    "recursion": "{% if client.email %}" * 3000,
}


@pytest.mark.parametrize("kind", sorted(WORST_MESSAGES))
def test_another_tenants_mailing_is_delivered_while_the_worst_message_is_sent(
    owner, smtp_server, kind
):
    from django.utils import translation

    from .factories import UserFactory

    attacker = UserFactory()
    hostile = MessageFactory(owner=attacker, body=WORST_MESSAGES[kind])
    due_mailing(attacker, people(attacker, 3), message=hostile)
    victims = people(owner, 4)
    due_mailing(owner, victims)

    with translation.override("en"):
        summary = dispatch_tick()

    assert smtp_server.recorder.count_by_address() == {r.email: 1 for r in victims}
    assert (summary.sent, summary.runs) == (4, 2)
    refused = Attempt.objects.filter(owner=attacker)
    assert {a.status for a in refused} == {"failed"}
    reason = refused.first().server_response
    assert reason.startswith("not sent: text: Line 1:")
    run = MailingRun.objects.get(owner=attacker)
    assert (run.status, run.failed_count, run.total_count) == ("finished", 3, 3)


def test_send_now_of_a_message_that_may_not_be_sent_says_why(owner):
    from django.utils import translation

    from core.services.dispatch import NotSendable

    message = MessageFactory(owner=owner, subject="{% now 'Y' %}")
    mailing = due_mailing(owner, people(owner, 1), message=message)
    with translation.override("en"), pytest.raises(NotSendable) as refused:
        run_open_now(mailing_id=mailing.pk)
    assert "subject: Line 1:" in str(refused.value)
    assert "{% now %}" in str(refused.value)
    assert not MailingRun.objects.exists()


def test_fixed_message_is_sent_on_retry_of_the_failed(owner, smtp_server):
    from core.services.dispatch import run_retry_failed

    message = MessageFactory(owner=owner, body="{% widthratio 1 1 100000000 %}")
    recipients = people(owner, 2)
    due_mailing(owner, recipients, message=message)
    dispatch_tick()
    assert not smtp_server.messages
    message.body = "Hello {{ client.full_name }}"
    message.full_clean()
    message.save()
    assert run_retry_failed(run=MailingRun.objects.get()) == 2
    dispatch_tick()
    assert smtp_server.recorder.count_by_address() == {r.email: 1 for r in recipients}


def test_another_tenants_mailing_is_delivered_while_the_worst_valid_message_is_sent(
    owner, smtp_server
):
    """The heaviest message the language lets one save: as many variables as
    a part may use, with the longest names, in both parts, and the rest of
    the text allowed; it goes out, and so does the other tenant's."""
    from core.templating import MAX_SOURCE, MAX_VARIABLES, template_error

    from .factories import UserFactory

    attacker = UserFactory()
    variables = "{{ client.full_name|default:client.email }}" * MAX_VARIABLES
    body = variables + "x" * (MAX_SOURCE - len(variables))
    assert template_error(body) == ""
    hostile = MessageFactory(owner=attacker, body=body, html_body=body)
    due_mailing(
        attacker,
        [ClientFactory(owner=attacker, email="long@example.org", full_name="Я" * 255)],
        message=hostile,
    )
    victims = people(owner, 4)
    due_mailing(owner, victims)

    dispatch_tick()

    delivered = smtp_server.recorder.count_by_address()
    assert all(delivered[r.email] == 1 for r in victims)
    assert delivered["long@example.org"] == 1
    assert Attempt.objects.get(email="long@example.org").status == "sent"
