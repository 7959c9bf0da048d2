"""Providers' tracking webhooks (django-anymail) feed the same events as the
bounce mailbox: a payload of each provider's own shape, authenticated as the
provider allows."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from django.test import Client as Provider
from django.test import override_settings

from core.models import Attempt, Client, Event, Suppression
from core.services.mail.verp import verp_address, verp_message_id, verp_token
from core.services.webhooks import metadata_headers

from .factories import AttemptFactory

pytestmark = pytest.mark.django_db

AUTH = "Basic " + base64.b64encode(b"hooks:test-webhook-secret").decode()
WRONG = "Basic " + base64.b64encode(b"hooks:guessed").decode()
SIGNING_KEY = b"test-mailgun-signing-key"


@pytest.fixture
def attempt(db):
    return AttemptFactory(email="gone@example.org", client__email="gone@example.org")


def _post(path, payload, *, auth=AUTH, **headers):
    return Provider().post(
        path,
        json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
        **headers,
    )


def _message_id(attempt):
    return verp_message_id(attempt.pk, "mail.example.com")


def postmark(attempt, *, type_="HardBounce", bounce_id=4011):
    return {
        "RecordType": "Bounce",
        "ID": bounce_id,
        "Type": type_,
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": attempt.email,
        "BouncedAt": "2026-11-30T10:00:00Z",
        "Details": "smtp;550 5.1.1 The email account does not exist",
        "Description": "The server was unable to deliver your message.",
        "Metadata": {"m": verp_token(attempt.pk)},
    }


def ses(attempt, *, bounce_type="Permanent", status="5.1.1"):
    message = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": attempt.email,
                    "status": status,
                    "diagnosticCode": f"smtp; 550 {status} user unknown",
                }
            ],
            "timestamp": "2026-11-30T10:00:00.000Z",
            "feedbackId": "0100017e-feedback",
        },
        "mail": {
            "timestamp": "2026-11-30T09:59:58.000Z",
            "source": verp_address(attempt.pk),
            "messageId": "0100017e-ses-id",
            "destination": [attempt.email],
            "commonHeaders": {"messageId": _message_id(attempt)},
        },
    }
    return {
        "Type": "Notification",
        "MessageId": "sns-5f2ba2e7",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
        "Message": json.dumps(message),
        "Timestamp": "2026-11-30T10:00:01.000Z",
    }


def mailgun(attempt, *, event="failed", severity="permanent", key=SIGNING_KEY):
    timestamp, token = (
        str(int(time.time())),
        "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
    )
    signature = hmac.new(
        key, f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": event,
            "severity": severity,
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": time.time(),
            "recipient": attempt.email,
            "reason": "bounce",
            "message": {"headers": {"message-id": _message_id(attempt).strip("<>")}},
            "delivery-status": {
                "code": 550,
                "message": "5.1.1 The email account does not exist",
                "description": "",
            },
        },
    }


def sendgrid(attempt, *, event="bounce"):
    return [
        {
            "email": attempt.email,
            "timestamp": 1764496800,
            "event": event,
            "smtp-id": _message_id(attempt),
            "sg_event_id": "sg-event-1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "reason": "550 5.1.1 The email account does not exist",
            "status": "5.1.1",
            "type": "bounce",
        }
    ]


def brevo(attempt, *, event="hard_bounce"):
    return {
        "event": event,
        "email": attempt.email,
        "id": 4321,
        "date": "2026-11-30 11:00:00",
        "ts_epoch": 1764496800000,
        "message-id": "<202611301100.12345678@smtp-relay.mailin.fr>",
        "reason": "550 5.1.1 user unknown",
        "X-Mailin-custom": json.dumps({"m": verp_token(attempt.pk)}),
    }


PROVIDERS = {
    "postmark": postmark,
    "amazon_ses": ses,
    "mailgun": mailgun,
    "sendgrid": sendgrid,
    "brevo": brevo,
}


def _deliver(name, payload, **kwargs):
    headers = {}
    if name == "amazon_ses":
        headers = {
            "HTTP_X_AMZ_SNS_MESSAGE_TYPE": payload["Type"],
            "HTTP_X_AMZ_SNS_MESSAGE_ID": payload["MessageId"],
        }
    return _post(f"/anymail/{name}/tracking/", payload, **headers, **kwargs)


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
@pytest.mark.parametrize("name", PROVIDERS)
def test_a_providers_hard_bounce_suppresses_once(name, attempt):
    payload = PROVIDERS[name](attempt)
    for _ in range(3):  # the same webhook delivered three times
        assert _deliver(name, payload).status_code == 200
    event = Event.objects.get()
    assert (event.kind, event.severity, event.attempt_id) == (
        "bounce",
        "hard",
        attempt.pk,
    )
    assert event.source == name
    assert Attempt.objects.get().bounced_at is not None
    assert Suppression.objects.filter(
        owner=attempt.owner, email=attempt.email, reason="hard_bounce"
    ).exists()


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
@pytest.mark.parametrize("name", PROVIDERS)
def test_a_bad_secret_is_refused_and_records_nothing(name, attempt):
    answer = _deliver(name, PROVIDERS[name](attempt), auth=WRONG)
    assert answer.status_code in (400, 401, 403)
    assert not Event.objects.exists()


def test_a_mailgun_webhook_with_a_bad_signature_is_refused(attempt):
    answer = _deliver("mailgun", mailgun(attempt, key=b"not-the-key"))
    assert answer.status_code == 400
    assert not Event.objects.exists()


def test_soft_bounces_as_the_provider_calls_them(attempt):
    _deliver("amazon_ses", ses(attempt, bounce_type="Transient", status="5.2.2"))
    _deliver("postmark", postmark(attempt, type_="SoftBounce", bounce_id=4012))
    _deliver("brevo", brevo(attempt, event="soft_bounce"))
    assert list(Event.objects.values_list("severity", flat=True)) == ["soft"] * 3
    assert not Suppression.objects.exists()  # fewer than SOFT_BOUNCE_LIMIT


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_complaints_and_unsubscribes_from_providers(attempt, mailoutbox):
    _deliver("sendgrid", sendgrid(attempt, event="spamreport"))
    event = Event.objects.get()
    assert event.kind == "complaint"
    assert Suppression.objects.filter(email=attempt.email, reason="complaint").exists()
    assert mailoutbox  # the owner is told

    other = AttemptFactory(
        run=attempt.run,
        email="leaving@example.org",
        client__email="leaving@example.org",
    )
    _deliver("mailgun", mailgun(other, event="unsubscribed"))
    assert Client.objects.get(pk=other.client_id).unsubscribed_at is not None
    assert Event.objects.filter(kind="unsubscribe", attempt=other).exists()


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_events_naming_no_message_of_ours_change_nothing(attempt, caplog):
    forged = sendgrid(attempt)
    forged[0]["smtp-id"] = "<someone-else@mail.example.com>"
    assert _deliver("sendgrid", forged).status_code == 200
    payload = postmark(attempt)
    payload["Metadata"] = {"m": verp_token(attempt.pk)[:-1] + "x"}  # tampered
    assert _deliver("postmark", payload).status_code == 200
    assert not Event.objects.exists() and not Suppression.objects.exists()
    assert "names no message of ours" in caplog.text


def test_opens_and_deliveries_from_providers_are_not_counted_again(attempt):
    _deliver("mailgun", mailgun(attempt, event="opened"))
    _deliver("mailgun", mailgun(attempt, event="delivered"))
    _deliver("mailgun", mailgun(attempt, event="failed", severity="temporary"))
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "provider, header",
    [("postmark", "X-PM-Metadata-m"), ("brevo", "X-Mailin-custom"), ("", None)],
)
def test_messages_carry_the_token_for_the_providers_that_need_it(
    provider, header, settings, smtp_server, owner
):
    from core.services.dispatch import dispatch_tick

    from .factories import ClientFactory, due_mailing

    settings.MAILING_PROVIDER = provider
    due_mailing(owner, [ClientFactory(owner=owner) for _ in range(3)])
    dispatch_tick()
    assert len(smtp_server.messages) == 3
    for (address,), email in smtp_server.messages:
        # Each recipient's own token, on the fast MIME path too.
        token = verp_token(Attempt.objects.get(email=address).pk)
        if header is None:
            assert "X-PM-Metadata-m" not in email and "X-Mailin-custom" not in email
        else:
            assert metadata_headers(provider, token)[header] == email[header]


def test_webhooks_are_not_mounted_without_a_secret():
    from core.webhook_urls import webhook_patterns

    with override_settings(ANYMAIL_WEBHOOK_SECRET=[]):
        assert webhook_patterns() == []
    with override_settings(MAILGUN_WEBHOOK_SIGNING_KEY=""):
        names = {pattern.name for pattern in webhook_patterns()}
    assert names == {
        "amazon_ses_tracking_webhook",
        "brevo_tracking_webhook",
        "postmark_tracking_webhook",
        "sendgrid_tracking_webhook",
    }


def test_a_token_quoted_by_the_bouncing_server_names_nobody(attempt, db):
    """A receiving server writes what it likes into its diagnostic: a token
    quoted there, in a genuine provider bounce of another message, never
    suppresses the address that token belongs to."""
    stranger = AttemptFactory(email="attacker@evil.example")
    payload = ses(stranger)
    message = json.loads(payload["Message"])
    message["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = (
        f"smtp; 550 5.1.1 <{verp_address(attempt.pk)}> {_message_id(attempt)}"
    )
    message["mail"]["source"] = "sender@evil.example"
    message["mail"]["commonHeaders"] = {"messageId": "<x@evil.example>"}
    payload["Message"] = json.dumps(message)
    assert _deliver("amazon_ses", payload).status_code == 200
    assert not Event.objects.exists() and not Suppression.objects.exists()


def test_an_event_about_another_address_than_the_messages_is_refused(attempt):
    payload = postmark(attempt)
    payload["Email"] = "someone.else@example.org"
    assert _deliver("postmark", payload).status_code == 200
    assert not Event.objects.exists() and not Suppression.objects.exists()


def test_mounting_the_webhooks_imports_none_of_the_providers_views():
    """boto3 and the rest cost every process that resolves a URL 0.8 s of
    start-up: a view's module is imported at its first request only."""
    from .fresh import modules_loaded

    code = (
        "import project.urls; from django.urls import reverse; "
        "reverse('postmark_tracking_webhook')"
    )
    assert modules_loaded(code, ("anymail.webhooks.", "boto3")) == []


def test_a_providers_view_loads_with_its_first_request(attempt):
    from core import webhook_urls

    webhook_urls._view.cache_clear()
    assert _deliver("postmark", postmark(attempt)).status_code == 200
    assert webhook_urls._view.cache_info().currsize == 1
