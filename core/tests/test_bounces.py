"""Bounces and complaints: the return path, reading the mailbox, acting on
what it holds (DESIGN.md, List health)."""

import json
import mailbox
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import translation

from core.models import Attempt, Client, Event, MailingRun, Suppression, UnreadBounce
from core.services.bounces import MailboxError, bounces_process
from core.services.bounces.reports import report_read
from core.services.bounces.severity import severity_of
from core.services.dispatch import dispatch_tick
from core.services.mail.verp import (
    attempts_named,
    token_attempt,
    verp_address,
    verp_message_id,
    verp_token,
)
from core.services.roles import MANAGERS

from .factories import AttemptFactory, MailingRunFactory, UserFactory, due_mailing

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"
    settings.BOUNCE_ADDRESS = "bounces@mail.example.com"
    with translation.override("en"):
        yield


@pytest.fixture
def maildir(tmp_path, settings):
    path = tmp_path / "bounces"
    settings.BOUNCE_MAILBOX_URL = f"maildir://{path}"
    return mailbox.Maildir(path, create=True)


def dsn(
    attempt,
    *,
    status="5.1.1",
    action="failed",
    diagnostic="smtp; 550 5.1.1 <{email}>: Recipient address rejected: "
    "User unknown in virtual mailbox table",
    to=None,
    message_id="<dsn-1@mx.example.net>",
) -> bytes:
    """A Postfix-style DSN for `attempt`, delivered to its VERP address."""
    to = verp_address(attempt.pk) if to is None else to
    diagnostic = diagnostic.format(email=attempt.email)
    return (
        f"Return-Path: <>\n"
        f"Delivered-To: {to}\n"
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        f"To: {to}\n"
        f"Subject: Undelivered Mail Returned to Sender\n"
        f"Message-ID: {message_id}\n"
        f"MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n'
        f"\n--B\nContent-Type: text/plain\n\nI'm sorry to have to inform you...\n"
        f"\n--B\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: rfc822; {attempt.email}\n"
        f"Action: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: {diagnostic}\n"
        f"\n--B--\n"
    ).encode()


def arf(attempt, *, message_id="<arf-1@fbl.example.net>") -> bytes:
    """A complaint (RFC 5965) quoting our message, recipient redacted."""
    ours = verp_address(attempt.pk)
    return (
        f"From: fbl@fbl.example.net\nTo: bounces@mail.example.com\n"
        f"Subject: Complaint\nMessage-ID: {message_id}\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\n'
        f"\n--F\nContent-Type: text/plain\n\nA complaint about a message.\n"
        f"\n--F\nContent-Type: message/feedback-report\n\n"
        f"Feedback-Type: abuse\nUser-Agent: FBL/1.0\nVersion: 1\n"
        f"\n--F\nContent-Type: text/rfc822-headers\n\n"
        f"Return-Path: <{ours}>\nFrom: shop@example.com\nTo: redacted@example.org\n"
        f"Subject: News\n"
        f"\n--F--\n"
    ).encode()


def sent_attempt(owner=None, **fields):
    run = MailingRunFactory(**({"mailing__owner": owner} if owner else {}))
    return AttemptFactory(run=run, **fields)


# --- the return path ---------------------------------------------------


def test_a_token_names_its_attempt_and_a_changed_one_names_none():
    token = verp_token(123456)
    assert token == token.lower() and len(token) <= 22
    key, mac = token.split("-")
    assert token_attempt(key, mac) == 123456
    assert token_attempt(key, mac[:-1] + ("a" if mac[-1] != "a" else "b")) is None
    forged = f"{int('3', 36) + 123456:x}"
    assert token_attempt(forged, mac) is None
    assert attempts_named(f"To: <BOUNCES+{token.upper()}@mail.example.com>") == [123456]
    assert attempts_named("bounces+2fz1k-abcdefgh@mail.example.com") == []


def test_every_message_goes_out_with_its_attempts_return_path(owner, smtp_server):
    recipients = [
        Client.objects.create(owner=owner, email=f"r{i}@example.org") for i in range(3)
    ]
    mailing = due_mailing(owner, recipients)
    dispatch_tick()
    attempts = {a.email: a for a in Attempt.objects.all()}
    assert len(smtp_server.recorder.senders) == 3
    for (tos, message), sender in zip(
        smtp_server.messages, smtp_server.recorder.senders, strict=True
    ):
        attempt = attempts[tos[0]]
        assert sender == verp_address(attempt.pk)
        assert sender.startswith("bounces+") and sender.endswith("@mail.example.com")
        assert attempts_named(message["Message-ID"]) == [attempt.pk]
        assert message["Feedback-ID"] == f"{mailing.pk}:{owner.pk}:mailing:127.0.0.1"
    message_ids = {m["Message-ID"] for _, m in smtp_server.messages}
    assert len(message_ids) == 3


# --- what a failure says of the address ---------------------------------


@pytest.mark.parametrize(
    "status, text, expected",
    [
        ("5.1.1", "550 5.1.1 User unknown", "hard"),
        ("5.1.2", "bad destination system", "hard"),
        ("5.1.10", "RESOLVER.ADR.RecipientNotFound", "hard"),
        ("5.2.1", "mailbox disabled", "hard"),
        ("5.4.4", "unable to route", "hard"),
        ("5.2.2", "552 5.2.2 Mailbox full", "soft"),
        ("4.4.1", "connection timed out", "soft"),
        ("4.2.2", "over quota", "soft"),
        ("5.7.1", "554 5.7.1 rejected as spam, user unknown", "policy"),
        ("5.7.26", "unauthenticated mail is prohibited (DMARC)", "policy"),
        ("5.1.8", "bad sender's system address", "policy"),
        ("5.6.0", "message content rejected", "content"),
        ("5.3.4", "message too big", "content"),
        ("", "550 Message was not accepted -- invalid mailbox", "hard"),
        ("", "550 Requested action not taken: mailbox unavailable", "hard"),
        ("", "552 Requested mail action aborted: exceeded storage", "soft"),
        ("", "554 Your IP is on a block list", "policy"),
        ("5.0.0", "550 5.0.0 Адресат не существует", "hard"),
        ("5.0.0", "550 5.0.0 Something went wrong", "soft"),
        ("", "451 Try again later", "soft"),
    ],
)
def test_a_failure_is_classified_by_its_code_then_its_words(status, text, expected):
    assert severity_of(status, text) == expected


# --- the mailbox ---------------------------------------------------------


def test_a_hard_bounce_suppresses_the_address_and_leaves_the_mailbox(maildir):
    attempt = sent_attempt(email="anna@example.org")
    maildir.add(dsn(attempt))

    intake = bounces_process()

    assert (intake.read, intake.bounces, intake.suppressed, intake.left) == (
        1,
        1,
        1,
        0,
    )
    assert len(maildir) == 0
    (event,) = Event.objects.all()
    assert (event.kind, event.severity, event.status, event.source) == (
        "bounce",
        "hard",
        "5.1.1",
        "mailbox",
    )
    assert event.attempt == attempt and event.run_id == attempt.run_id
    assert "User unknown" in event.detail
    attempt.refresh_from_db()
    assert attempt.bounced_at is not None
    suppression = Suppression.objects.get()
    assert (suppression.owner_id, suppression.email, suppression.reason) == (
        attempt.owner_id,
        "anna@example.org",
        Suppression.Reason.HARD_BOUNCE,
    )


def test_the_same_dsn_twice_counts_once(maildir):
    attempt = sent_attempt()
    maildir.add(dsn(attempt))
    maildir.add(dsn(attempt))
    intake = bounces_process()
    assert (intake.bounces, intake.duplicates) == (1, 1)
    maildir.add(dsn(attempt))
    assert bounces_process().duplicates == 1
    assert Event.objects.count() == 1
    assert len(maildir) == 0


def test_a_forged_bounce_without_our_token_suppresses_nobody(maildir):
    attempt = sent_attempt(email="anna@example.org")
    key, mac = verp_token(attempt.pk).split("-")
    forged_mac = mac[:-1] + ("a" if mac[-1] != "a" else "b")
    maildir.add(dsn(attempt, to=f"bounces+{key}-{forged_mac}@mail.example.com"))
    maildir.add(dsn(attempt, to="bounces@mail.example.com", message_id="<x@y>"))

    intake = bounces_process()

    assert (intake.bounces, intake.suppressed, intake.left) == (0, 0, 2)
    assert not Suppression.objects.exists() and not Event.objects.exists()
    assert len(maildir) == 2
    reasons = set(UnreadBounce.objects.values_list("reason", flat=True))
    assert reasons == {"no valid token or Message-ID of ours"}


def test_a_bounce_for_a_message_never_sent_stays_listed(maildir):
    attempt = sent_attempt(status=Attempt.Status.SKIPPED)
    maildir.add(dsn(attempt))
    intake = bounces_process()
    assert (intake.bounces, intake.left) == (0, 1)
    assert UnreadBounce.objects.get().reason == "names a message we did not send"


def test_what_cannot_be_read_stays_counted_and_is_not_read_again(maildir):
    garbage = EmailMessage()
    garbage["Subject"] = "Hello"
    garbage["From"] = "someone@example.net"
    garbage.set_content("x" * 1000)
    maildir.add(garbage.as_bytes())
    maildir.add(b"\x00\xff garbage \xfe" * 100)
    huge = EmailMessage()
    huge["Subject"] = "Big"
    huge.set_content("y" * (6 * 1024 * 1024))
    maildir.add(huge.as_bytes())

    intake = bounces_process()

    assert (intake.read, intake.left) == (2, 3)
    assert len(maildir) == 3
    hello = UnreadBounce.objects.get(subject="Hello")
    assert hello.sender == "someone@example.net"
    assert hello.reason == "not a bounce or a complaint we can read"
    reasons = sorted(UnreadBounce.objects.values_list("reason", flat=True))
    assert reasons == [
        "larger than 5 MB: not read",
        "not a bounce or a complaint we can read",
        "not a bounce or a complaint we can read",
    ]
    second = bounces_process()
    assert (second.read, second.left) == (0, 3)
    assert set(UnreadBounce.objects.values_list("times_seen", flat=True)) == {2}
    # Removed by hand from the mailbox: no longer listed.
    maildir.clear()
    assert bounces_process().left == 0
    assert not UnreadBounce.objects.exists()


def test_delay_warnings_and_auto_replies_are_read_and_deleted(maildir):
    attempt = sent_attempt()
    maildir.add(dsn(attempt, action="delayed", status="4.4.1"))
    reply = EmailMessage()
    reply["Subject"] = "Out of office"
    reply["Auto-Submitted"] = "auto-replied"
    reply["To"] = verp_address(attempt.pk)
    reply.set_content("I am away until Monday.")
    maildir.add(reply.as_bytes())
    intake = bounces_process()
    assert (intake.ignored, intake.bounces, intake.left) == (2, 0, 0)
    assert len(maildir) == 0 and not Event.objects.exists()


def test_soft_bounces_suppress_only_at_the_limit(maildir, settings):
    settings.SOFT_BOUNCE_LIMIT = 3
    owner = UserFactory()
    attempts = [sent_attempt(owner=owner, email="full@example.org") for _ in range(3)]
    for n, attempt in enumerate(attempts):
        maildir.add(
            dsn(
                attempt,
                status="5.2.2",
                diagnostic="smtp; 552 5.2.2 Mailbox full",
                message_id=f"<soft-{n}@mx>",
            )
        )
        bounces_process()
        expected = n + 1 == 3
        assert Suppression.objects.filter(email="full@example.org").exists() is expected
    assert Suppression.objects.get().reason == Suppression.Reason.SOFT_BOUNCES
    assert set(Event.objects.values_list("severity", flat=True)) == {"soft"}


def test_a_policy_refusal_does_not_blame_the_address(maildir):
    attempt = sent_attempt()
    maildir.add(
        dsn(attempt, status="5.7.1", diagnostic="smtp; 554 5.7.1 Rejected as spam")
    )
    assert bounces_process().bounces == 1
    assert Event.objects.get().severity == "policy"
    assert not Suppression.objects.exists()


def test_a_complaint_suppresses_and_tells_the_owner(maildir):
    owner = UserFactory(email="shop@example.com")
    attempt = sent_attempt(owner=owner, email="anna@example.org")
    maildir.add(arf(attempt))

    intake = bounces_process()

    assert (intake.complaints, intake.suppressed) == (1, 1)
    event = Event.objects.get()
    assert (event.kind, event.detail) == ("complaint", "abuse")
    attempt.refresh_from_db()
    assert attempt.complained_at is not None
    assert Suppression.objects.get().reason == Suppression.Reason.COMPLAINT
    (notice,) = mail.outbox
    assert notice.to == ["shop@example.com"]
    assert "anna@example.org" in notice.body
    assert "spam" in notice.subject


def test_a_run_with_too_many_bounces_pauses_its_owner(maildir):
    owner = UserFactory(email="shop@example.com")
    manager = UserFactory(email="boss@example.com")
    manager.groups.add(Group.objects.get(name=MANAGERS))
    run = MailingRunFactory(mailing__owner=owner, sent_count=100)
    attempts = [AttemptFactory(run=run, email=f"a{i}@example.org") for i in range(11)]
    for n, attempt in enumerate(attempts[:10]):
        maildir.add(dsn(attempt, message_id=f"<b{n}@mx>"))
    bounces_process()
    owner.refresh_from_db()
    assert owner.sending_suspended_at is None  # 10 of 100: not past 10 %
    maildir.add(dsn(attempts[10], message_id="<b10@mx>"))
    bounces_process()
    owner.refresh_from_db()
    assert owner.sending_suspended_at is not None
    assert "11.0% bounced" in owner.sending_suspended_reason
    assert sorted(m.to[0] for m in mail.outbox) == [
        "boss@example.com",
        "shop@example.com",
    ]
    assert owner.sending_refusal()


def test_a_5xx_at_send_time_is_a_hard_bounce(owner, smtp_server):
    gone = Client.objects.create(owner=owner, email="gone@example.org")
    kept = Client.objects.create(owner=owner, email="kept@example.org")
    smtp_server.recorder.reject["gone@example.org"] = "550 5.1.1 No such user"
    due_mailing(owner, [gone, kept])
    dispatch_tick()
    event = Event.objects.get()
    assert (event.kind, event.severity, event.source, event.status) == (
        "bounce",
        "hard",
        "smtp",
        "5.1.1",
    )
    assert event.attempt.email == "gone@example.org"
    assert list(Suppression.objects.values_list("email", "reason")) == [
        ("gone@example.org", Suppression.Reason.HARD_BOUNCE)
    ]
    assert MailingRun.objects.get().failed_count == 1


def test_the_command_reads_another_mailbox_and_refuses_a_bad_one(tmp_path):
    box = mailbox.Maildir(tmp_path / "other", create=True)
    attempt = sent_attempt()
    box.add(dsn(attempt))
    call_command("process_bounces", "--url", f"maildir://{tmp_path / 'other'}")
    assert Event.objects.count() == 1
    with pytest.raises(CommandError, match="could not be read"):
        call_command("process_bounces", "--url", "ftp://example.com/")
    with pytest.raises(MailboxError):
        bounces_process(url="imap://user:secret@127.0.0.1:9/INBOX")


def test_the_schedule_reads_the_mailbox_and_survives_one_that_is_down(
    maildir, settings
):
    from django_q.models import Schedule

    from core.tasks import BOUNCES_SCHEDULE_NAME, process_bounces, schedule_ensure

    settings.BOUNCE_PERIOD_MINUTES = 7
    schedule_ensure()
    schedule = Schedule.objects.get(name=BOUNCES_SCHEDULE_NAME)
    assert (schedule.func, schedule.minutes) == ("core.tasks.process_bounces", 7)
    attempt = sent_attempt()
    maildir.add(dsn(attempt))
    assert "bounces 1" in process_bounces()
    settings.BOUNCE_MAILBOX_URL = "pop3://user:secret@127.0.0.1:9"
    assert process_bounces().startswith("bounce mailbox not read: POP3 127.0.0.1:9")


# --- a real IMAP and POP3 server ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["imap", "imaps", "pop3", "pop3s"])
def test_a_real_mailbox_is_read_and_what_was_read_is_deleted(
    dovecot_box, settings, kind
):
    settings.BOUNCE_MAILBOX_CA_FILE = str(dovecot_box.cafile)
    url = getattr(dovecot_box, f"{kind}_url")
    attempt = sent_attempt(email="anna@example.org")
    dovecot_box.append(dsn(attempt))
    dovecot_box.append(dsn(attempt))  # the same DSN again
    dovecot_box.append(b"Subject: not a bounce\r\n\r\nhello\r\n")

    intake = bounces_process(url=url)

    assert (intake.read, intake.bounces, intake.duplicates, intake.left) == (
        3,
        1,
        1,
        1,
    )
    assert Suppression.objects.get().email == "anna@example.org"
    assert dovecot_box.count() == 1
    left = UnreadBounce.objects.get()
    assert left.subject == "not a bounce"
    assert dovecot_box.password not in left.mailbox
    again = bounces_process(url=url)
    assert (again.read, again.left) == (0, 1)


@pytest.mark.slow
def test_a_mailbox_that_refuses_the_login_loses_nothing(dovecot_box, settings):
    settings.BOUNCE_MAILBOX_CA_FILE = str(dovecot_box.cafile)
    attempt = sent_attempt()
    dovecot_box.append(dsn(attempt))
    wrong = dovecot_box.imap_url.replace(dovecot_box.password, "wrong")
    with pytest.raises(MailboxError):
        bounces_process(url=wrong)
    assert dovecot_box.count() == 1 and not Event.objects.exists()
    with pytest.raises(CommandError, match="could not be read"):
        call_command("process_bounces", "--url", wrong)


# --- who sees what ---------------------------------------------------------


def test_owners_see_their_events_and_managers_see_the_unread_mail(
    client, maildir, manager
):
    mine = UserFactory(verified=True, groups=["clients"])
    theirs = UserFactory(verified=True, groups=["clients"])
    maildir.add(dsn(sent_attempt(owner=mine, email="a@example.org")))
    maildir.add(
        dsn(sent_attempt(owner=theirs, email="b@example.org"), message_id="<2@x>")
    )
    maildir.add(b"Subject: what is this\n\nhello\n")
    bounces_process()

    client.force_login(mine)
    page = client.get("/admin/core/event/", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    assert b"a@example.org" in page.content and b"b@example.org" not in page.content
    assert client.get("/admin/core/unreadbounce/").status_code == 403

    client.force_login(manager)
    page = client.get("/admin/core/event/", HTTP_ACCEPT_LANGUAGE="en")
    assert b"a@example.org" in page.content and b"b@example.org" in page.content
    page = client.get("/admin/core/unreadbounce/", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200 and b"what is this" in page.content
    assert client.post("/admin/core/unreadbounce/add/").status_code == 403


# --- the formats real servers send -----------------------------------------

SAMPLES = Path(__file__).parent / "bounces"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())


def sample(name: str, attempt) -> bytes:
    """A sample as it would come back for `attempt`'s message."""
    text = (SAMPLES / name).read_bytes()
    values = {
        "verp": verp_address(attempt.pk),
        "from": "news@shop.example.com",
        "message_id": verp_message_id(attempt.pk, "mail.example.com"),
        "recipient": attempt.email,
    }
    for key, value in values.items():
        text = text.replace(b"{{" + key.encode() + b"}}", value.encode())
    return text


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_servers_format_is_read_and_matched(name, maildir):
    expected = EXPECTED[name]
    attempt = sent_attempt(email="anna@example.org")
    raw = sample(name, attempt)

    report = report_read(raw)

    kind = {"none": ""}.get(expected["kind"], expected["kind"])
    assert report.kind in ({kind, "auto-reply"} if not kind else {kind})
    if kind in ("bounce", "complaint", "delay"):
        assert report.attempt_id == attempt.pk
    if kind in ("bounce", "delay"):
        # One recipient per envelope: a report names one failure.
        (failure,) = report.failures
        assert failure.status == (expected["status"] or "")
        if expected["recipient_named"]:
            assert failure.address.lower() == attempt.email
    if kind == "bounce":
        assert failure.severity == expected["class"]

    maildir.add(raw)
    intake = bounces_process()
    events = list(Event.objects.values_list("kind", "attempt_id", "severity"))
    if kind == "bounce":
        assert events == [("bounce", attempt.pk, expected["class"])]
        suppressed = Suppression.objects.filter(email=attempt.email).exists()
        assert suppressed is (expected["class"] == "hard")
    elif kind == "complaint":
        assert events == [("complaint", attempt.pk, "")]
        assert Suppression.objects.get().reason == Suppression.Reason.COMPLAINT
    else:
        assert events == [] and intake.ignored == 1
    assert len(maildir) == 0


def test_a_report_with_only_our_message_id_is_matched(maildir):
    attempt = sent_attempt(email="anna@example.org")
    raw = sample("arf_redacted.eml", attempt)
    # Neither the envelope nor the original's return path: the Message-ID only.
    raw = raw.replace(verp_address(attempt.pk).encode(), b"bounces@mail.example.com")
    assert report_read(raw).attempt_id == attempt.pk


@pytest.mark.slow
def test_an_empty_mailbox_reads_nothing(dovecot_box, settings):
    settings.BOUNCE_MAILBOX_CA_FILE = str(dovecot_box.cafile)
    for url in (dovecot_box.imaps_url, dovecot_box.pop3s_url):
        intake = bounces_process(url=url)
        assert (intake.read, intake.left) == (0, 0)


@pytest.mark.parametrize("name", ["mailru_invalid_mailbox.eml", "exim_plain.eml"])
def test_a_code_in_the_returned_message_is_not_the_servers_answer(name):
    attempt = sent_attempt(email="anna@example.org")
    raw = sample(name, attempt)
    # The quoted original's own headers hold what looks like a status code.
    assert raw.count(b"\nMessage-ID: ") == 1
    raw = raw.replace(
        b"\nMessage-ID: ", b"\nX-Version: 4.4.7 build 5.2.2\nMessage-ID: "
    )
    failure = report_read(raw).failures[0]
    assert failure.severity == "hard"
    assert failure.status == (EXPECTED[name]["status"] or "")


def test_the_runs_report_says_what_followed(client, maildir):
    owner = UserFactory(verified=True, groups=["clients"])
    run = MailingRunFactory(mailing__owner=owner, sent_count=3)
    gone, full, reader = (
        AttemptFactory(run=run, email=f"{name}@example.org")
        for name in ("gone", "full", "reader")
    )
    maildir.add(dsn(gone))
    maildir.add(
        dsn(full, status="5.2.2", diagnostic="smtp; 552 full", message_id="<s@x>")
    )
    maildir.add(arf(reader))
    bounces_process()
    from core.services.events import run_followed

    figures = run_followed(run=run)
    assert figures == {
        "bounced": 2,
        "complained": 1,
        "unsubscribed": 0,
        "delivered": 1,
        "severities": {"hard": 1, "soft": 1},
    }
    client.force_login(owner)
    page = client.get(
        f"/admin/core/mailingrun/{run.pk}/change/", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert (
        "delivered 1; bounced 2 (hard 1, soft 1); complaints 1; unsubscribed 0" in text
    )
    assert f"/admin/core/event/?run__id__exact={run.pk}" in text
    events = client.get(
        f"/admin/core/event/?run__id__exact={run.pk}", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert events.status_code == 200 and b"gone@example.org" in events.content


# --- from an independent review ----------------------------------------------


def test_a_refused_return_path_at_send_time_blames_no_recipient(owner, smtp_server):
    people_ = [
        Client.objects.create(owner=owner, email=f"p{i}@example.org") for i in range(2)
    ]
    smtp_server.recorder.refuse_sender = (
        "550 5.1.0 <bounces@mail.example.com>: Sender address rejected: User unknown"
    )
    due_mailing(owner, people_)
    dispatch_tick()
    assert Attempt.objects.filter(status=Attempt.Status.FAILED).count() == 2
    assert set(Event.objects.values_list("severity", flat=True)) == {"policy"}
    assert not Suppression.objects.exists()


def test_retries_that_ran_out_are_no_bounce(owner, smtp_server, settings):
    settings.SMTP_MAX_RETRIES = 1
    person = Client.objects.create(owner=owner, email="grey@example.org")
    smtp_server.recorder.reject["grey@example.org"] = "450 4.7.1 Greylisted"
    due_mailing(owner, [person])
    dispatch_tick()
    assert Attempt.objects.get().status == Attempt.Status.FAILED
    assert not Event.objects.exists() and not Suppression.objects.exists()


def test_soft_bounces_count_messages_not_reports_whatever_the_case(maildir, settings):
    settings.SOFT_BOUNCE_LIMIT = 3
    owner = UserFactory()
    once = sent_attempt(owner=owner, email="one@example.org")
    for n in range(3):  # three reports about one message
        maildir.add(dsn(once, status="4.2.2", message_id=f"<r{n}@mx>"))
    bounces_process()
    assert not Suppression.objects.exists()
    for n in range(3):
        attempt = sent_attempt(owner=owner, email="Full@Example.org")
        maildir.add(dsn(attempt, status="4.2.2", message_id=f"<c{n}@mx>"))
    bounces_process()
    assert list(Suppression.objects.values_list("email", "reason")) == [
        ("full@example.org", Suppression.Reason.SOFT_BOUNCES)
    ]


def test_a_bounce_that_arrives_while_its_batch_is_sending_counts(maildir):
    attempt = sent_attempt(status=Attempt.Status.SENDING)
    maildir.add(dsn(attempt))
    assert bounces_process().bounces == 1


def test_a_message_of_thousands_of_parts_is_left_at_once(maildir):
    import time

    parts = "".join(f"--X\nContent-Type: text/plain\n\n{n}\n" for n in range(20_000))
    maildir.add(
        f"Subject: parts\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed; boundary="X"\n\n{parts}--X--\n'.encode()
    )
    started = time.monotonic()
    intake = bounces_process()
    assert time.monotonic() - started < 30
    assert intake.left == 1
    assert UnreadBounce.objects.get().reason == "could not be parsed"


def test_one_complaint_does_not_pause_a_run_three_do(maildir):
    owner = UserFactory(email="shop@example.com")
    run = MailingRunFactory(mailing__owner=owner, sent_count=300)
    readers = [AttemptFactory(run=run, email=f"c{i}@example.org") for i in range(3)]
    maildir.add(arf(readers[0], message_id="<a0@x>"))
    bounces_process()
    owner.refresh_from_db()
    assert owner.sending_suspended_at is None
    for n, reader in enumerate(readers[1:], start=1):
        maildir.add(arf(reader, message_id=f"<a{n}@x>"))
    bounces_process()
    owner.refresh_from_db()
    assert owner.sending_suspended_at is not None


@pytest.mark.slow
def test_a_pop3_message_with_a_long_line_is_read_like_any_other(dovecot_box, settings):
    settings.BOUNCE_MAILBOX_CA_FILE = str(dovecot_box.cafile)
    attempt = sent_attempt(email="anna@example.org")
    dovecot_box.append(b"Subject: long\r\n\r\n" + b"x" * 5000 + b"\r\n")
    dovecot_box.append(dsn(attempt))
    intake = bounces_process(url=dovecot_box.pop3s_url)
    # poplib alone refuses lines over 2 KB, and the session with them.
    assert (intake.read, intake.bounces, intake.left) == (2, 1, 1)
    assert (
        UnreadBounce.objects.get().reason == "not a bounce or a complaint we can read"
    )
    assert dovecot_box.count() == 1


def test_a_maildir_made_by_hand_as_new_alone_is_read(tmp_path, settings):
    """`mkdir -p var/bounces/new` and a bounce saved there, as the README
    says: the missing `cur/` and `tmp/` are made, and the bounce is read."""
    root = tmp_path / "by-hand"
    (root / "new").mkdir(parents=True)
    settings.BOUNCE_MAILBOX_URL = f"maildir://{root}"
    attempt = sent_attempt(email="boris@example.org")
    (root / "new" / "1.eml").write_bytes(dsn(attempt))

    intake = bounces_process()

    assert (intake.read, intake.bounces, intake.left) == (1, 1, 0)
    assert Suppression.objects.filter(email="boris@example.org").exists()
