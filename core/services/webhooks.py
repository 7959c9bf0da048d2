"""Bounces, complaints and unsubscribes that a sending provider reports.

django-anymail receives each provider's tracking webhook, checks it as the
provider allows (HTTP basic auth with ANYMAIL_WEBHOOK_SECRET; Mailgun's
signature too) and turns it into an `AnymailTrackingEvent`; this module
records it as the mailbox's bounces are recorded (core.services.bounces).

An event names its message by our token: in the metadata our messages give
Postmark and Brevo (MAILING_PROVIDER), or in what the provider echoes of
the message itself (Amazon SES the return path and Message-ID, Mailgun and
SendGrid the Message-ID), and it must be about that message's address. One
that names none of ours is logged and left.
The same webhook delivered again is recorded once (its fingerprint).

Opens and clicks a provider tracks are not recorded: the service tracks its
own, and counting both would count each twice. Deliveries and deferrals
change nothing.
"""

import hashlib
import json
import logging

from anymail.signals import EventType, RejectReason

from core.models import Attempt
from core.services.bounces import Finding, findings_record
from core.services.bounces import severity as sev
from core.services.mail.verp import attempts_named, verp_token
from core.services.unsubscribe import client_unsubscribe, unsubscribe_token

logger = logging.getLogger(__name__)

# The metadata key our messages carry their token under.
METADATA_KEY = "m"

# What a provider says of an address it would not deliver to, when its
# answer holds no status code to judge by.
REJECTED_SEVERITY = {
    RejectReason.INVALID: sev.HARD,
    RejectReason.BOUNCED: sev.HARD,
    RejectReason.TIMED_OUT: sev.SOFT,
    RejectReason.BLOCKED: sev.POLICY,
    RejectReason.OTHER: sev.SOFT,
}


def metadata_headers(provider: str, token: str) -> dict:
    """The header that makes `provider` report our token back, if it needs one."""
    if provider == "postmark":
        return {f"X-PM-Metadata-{METADATA_KEY}": token}
    if provider == "brevo":
        return {"X-Mailin-custom": json.dumps({METADATA_KEY: token})}
    return {}


def _named_by(event) -> list[str]:
    """Where an event may name our message: its metadata, the Message-ID the
    provider reports, and Amazon SES's copy of the return path and headers.
    Never the free text a receiving server wrote (a diagnostic may quote
    any token it likes)."""
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    texts = [str(metadata.get(METADATA_KEY, "")), str(event.message_id or "")]
    esp = event.esp_event if isinstance(event.esp_event, dict) else {}
    mail = esp.get("mail") if isinstance(esp.get("mail"), dict) else {}
    headers = mail.get("commonHeaders")
    headers = headers if isinstance(headers, dict) else {}
    texts += [str(mail.get("source", "")), str(headers.get("messageId", ""))]
    return texts


def _attempt_named(event) -> int | None:
    """The attempt the event names, if it is about that attempt's address."""
    for text in _named_by(event):
        found = attempts_named(text, tries=3)
        if not found:
            continue
        attempt = Attempt.objects.filter(pk=found[0]).values("email").first()
        if attempt is None:
            return None
        recipient = str(event.recipient or "").strip().lower()
        if recipient and recipient != attempt["email"].strip().lower():
            logger.info(
                "Tracking webhook: an event for %.100s names the message of "
                "another address",
                recipient,
            )
            return None
        return found[0]
    return None


def _fingerprint(event, esp_name: str, attempt_id: int) -> str:
    basis = event.event_id or json.dumps(event.esp_event, sort_keys=True, default=str)
    text = f"{esp_name}:{event.event_type}:{attempt_id}:{basis}"
    return hashlib.sha256(text.encode()).hexdigest()


def provider_event_record(*, event, esp_name: str) -> str:
    """Record one provider event; what was done, for the log."""
    kind = event.event_type
    if kind not in (
        EventType.BOUNCED,
        EventType.REJECTED,
        EventType.COMPLAINED,
        EventType.UNSUBSCRIBED,
    ):
        return "ignored"
    attempt_id = _attempt_named(event)
    if attempt_id is None:
        logger.info(
            "%s webhook: a %s event names no message of ours (%s)",
            esp_name,
            kind,
            str(event.recipient)[:100],
        )
        return "unmatched"
    if kind == EventType.REJECTED and event.reject_reason == RejectReason.SPAM:
        kind = EventType.COMPLAINED
    if kind == EventType.UNSUBSCRIBED or (
        kind == EventType.REJECTED and event.reject_reason == RejectReason.UNSUBSCRIBED
    ):
        return _unsubscribed(attempt_id)
    text = " ".join(filter(None, [event.mta_response, event.description]))[:500]
    if kind == EventType.COMPLAINED:
        finding = Finding(
            attempt_id=attempt_id, kind="complaint", source=_source(esp_name)
        )
    else:
        status = sev.enhanced_status(text)
        severity = (
            sev.severity_of(status, text)
            if status or text
            else REJECTED_SEVERITY.get(event.reject_reason, sev.SOFT)
        )
        if _soft_by_provider(event):
            severity = sev.SOFT
        finding = Finding(
            attempt_id=attempt_id,
            kind="bounce",
            source=_source(esp_name),
            status=status,
            detail=text,
            severity=severity,
        )
    finding.fingerprint = _fingerprint(event, esp_name, attempt_id)
    finding.at = event.timestamp
    recorded = findings_record([finding])
    if recorded.duplicates:
        return "duplicate"
    if recorded.unmatched:
        return "unmatched"
    return finding.kind


def _soft_by_provider(event) -> bool:
    """The provider itself calls the bounce temporary (Amazon SES's
    "Transient", Postmark's "SoftBounce", Brevo's "soft_bounce")."""
    esp = event.esp_event if isinstance(event.esp_event, dict) else {}
    bounce = esp.get("bounce") if isinstance(esp.get("bounce"), dict) else {}
    return (
        bounce.get("bounceType") == "Transient"
        or esp.get("Type") == "SoftBounce"
        or esp.get("event") == "soft_bounce"
    )


def _unsubscribed(attempt_id: int) -> str:
    attempt = Attempt.objects.filter(pk=attempt_id).values("client_id").first()
    if attempt is None or attempt["client_id"] is None:
        return "unmatched"
    client_unsubscribe(
        token=unsubscribe_token(client_id=attempt["client_id"]),
        message=verp_token(attempt_id),
    )
    return "unsubscribe"


def _source(esp_name: str) -> str:
    """ "Amazon SES" → "amazon_ses", as its webhook's path names it."""
    return esp_name.lower().replace(" ", "_")
