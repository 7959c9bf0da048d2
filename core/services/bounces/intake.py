"""`process_bounces`: read the bounce mailbox, record, delete what was read.

A batch of messages is read, each one parsed (`report_read`), the batch's
bounces and complaints recorded in a few statements, and only then are its
messages deleted: a crash midway leaves the rest for the next pass, and a
report read twice is recorded once.

A message that is no report we can act on (no token, an unknown format, too
large) stays in the mailbox and is listed for managers (`UnreadBounce`);
the next passes count it again without reading it again. Delay warnings
and auto-replies are read and deleted.
"""

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from core.models import Event, UnreadBounce

from . import reports as r
from .mailboxes import (
    MAX_BYTES,
    MailboxError,
    UndownloadedError,
    mailbox_name,
    mailbox_open,
)
from .recording import Finding, findings_record

logger = logging.getLogger(__name__)
BATCH = 200
# Rows per statement when the list of unread ones is long (SQLite's limit).
CHUNK = 500


@dataclass
class Intake:
    read: int = 0
    bounces: int = 0
    complaints: int = 0
    duplicates: int = 0
    ignored: int = 0  # delay warnings, auto-replies
    suppressed: int = 0
    left: int = 0  # in the mailbox, unread (new and known)

    def line(self) -> str:
        return (
            _(
                "read %(read)d: bounces %(bounces)d, complaints %(complaints)d, "
                "already recorded %(duplicates)d, warnings and auto-replies "
                "%(ignored)d; addresses suppressed %(suppressed)d; left in the "
                "mailbox unread %(left)d"
            )
            % self.__dict__
        )


def bounces_process(*, url: str | None = None, now=None) -> Intake:
    """One pass over the mailbox. Raises MailboxError if it cannot be read."""
    url = url or settings.BOUNCE_MAILBOX_URL
    name = mailbox_name(url)
    intake = Intake()
    with mailbox_open(url) as box:
        sizes = box.keys()
        known = dict(UnreadBounce.objects.filter(mailbox=name).values_list("key", "pk"))
        # Gone from the mailbox (someone removed them by hand): not listed.
        gone = [pk for key, pk in known.items() if key not in sizes]
        still = [pk for key, pk in known.items() if key in sizes]
        for start in range(0, len(gone), CHUNK):
            UnreadBounce.objects.filter(pk__in=gone[start : start + CHUNK]).delete()
        for start in range(0, len(still), CHUNK):
            UnreadBounce.objects.filter(pk__in=still[start : start + CHUNK]).update(
                last_seen_at=timezone.now(), times_seen=F("times_seen") + 1
            )
        intake.left += len(still)
        fresh = [key for key in sizes if key not in known]
        too_large = [key for key in fresh if sizes[key] > MAX_BYTES]
        for key in too_large:
            _leave(
                name,
                key,
                size=sizes[key],
                reason=_("larger than %(mb)d MB: not read")
                % {"mb": MAX_BYTES // 2**20},
            )
        intake.left += len(too_large)
        readable = [key for key in fresh if sizes[key] <= MAX_BYTES]
        for start in range(0, len(readable), BATCH):
            keys = readable[start : start + BATCH]
            _batch(box, name, keys, intake, now=now)
    logger.info("Bounce mailbox %s: %s", name, intake.line())
    return intake


def _batch(box, name, keys, intake, *, now) -> None:
    raw = box.fetch(keys)
    findings, by_key, done = [], {}, []
    for key in keys:
        data = raw.get(key)
        if data is None:
            continue  # removed meanwhile
        if isinstance(data, UndownloadedError):
            _leave(name, key, size=0, reason=_("could not be downloaded"))
            intake.left += 1
            continue
        intake.read += 1
        try:
            report = r.report_read(data)
        except Exception as error:  # a message the parser chokes on stays
            logger.warning("Unreadable message %s in %s: %r", key, name, error)
            _leave(name, key, size=len(data), reason=_("could not be parsed"))
            intake.left += 1
            continue
        if report.kind in (r.DELAY, r.AUTO_REPLY):
            intake.ignored += 1
            done.append(key)
            continue
        reason = _why_unread(report)
        if reason:
            _leave(name, key, size=len(data), reason=reason, report=report)
            intake.left += 1
            continue
        finding = _finding(report)
        findings.append(finding)
        by_key[key] = (finding, report, len(data))
    recorded = findings_record(findings, now=now)
    unmatched = {id(f) for f in recorded.unmatched}
    for key, (finding, report, size) in by_key.items():
        if id(finding) in unmatched:
            _leave(
                name,
                key,
                size=size,
                reason=_("names a message we did not send"),
                report=report,
            )
            intake.left += 1
        else:
            done.append(key)
    intake.bounces += recorded.bounces
    intake.complaints += recorded.complaints
    intake.duplicates += recorded.duplicates
    intake.suppressed += recorded.suppressed
    box.delete(done)


def _why_unread(report) -> str:
    if report.kind not in (r.BOUNCE, r.COMPLAINT):
        return _("not a bounce or a complaint we can read")
    if report.attempt_id is None:
        return _("no valid token or Message-ID of ours")
    return ""


def _finding(report) -> Finding:
    if report.kind == r.COMPLAINT:
        return Finding(
            attempt_id=report.attempt_id,
            kind=Event.Kind.COMPLAINT,
            source="mailbox",
            fingerprint=_fingerprint(report),
            detail=report.feedback_type,
        )
    failure = report.failures[0] if report.failures else r.Failure(address="")
    return Finding(
        attempt_id=report.attempt_id,
        kind=Event.Kind.BOUNCE,
        source="mailbox",
        fingerprint=_fingerprint(report),
        status=failure.status,
        detail=failure.diagnostic or report.subject,
        severity=failure.severity,
    )


def _fingerprint(report) -> str:
    basis = f"{report.kind}:{report.attempt_id}:{report.fingerprint}"
    return hashlib.sha256(basis.encode()).hexdigest()


def _leave(name, key, *, size, reason, report=None) -> None:
    UnreadBounce.objects.update_or_create(
        mailbox=name,
        key=key[:300],
        defaults={
            "size": size,
            "reason": str(reason)[:300],
            "sender": report.sender if report else "",
            "subject": report.subject if report else "",
            "last_seen_at": timezone.now(),
        },
    )


__all__ = ["Intake", "MailboxError", "bounces_process"]
