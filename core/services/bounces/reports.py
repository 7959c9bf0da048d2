"""Reading one message of the bounce mailbox: what it reports, about whom.

- A complaint is an ARF feedback report (RFC 5965): a multipart/report
  whose `message/feedback-report` part says `Feedback-Type: abuse` (or
  fraud, virus, other). `not-spam` is no complaint.
- A DSN (RFC 3464) names each recipient with its `Action` and `Status`:
  `failed` is a bounce, `delayed` only a warning.
- Anything else is read by flufl.bounce, which knows the plain-text bounces
  of Exim, qmail, Mail.ru and many more; the status code then comes from
  the text (`severity`).

The attempt comes from our VERP token: in the address the report was
delivered to, else anywhere in its first part and the returned headers (our
Message-ID carries the token too). Nothing else is trusted: a report whose
token does not verify names nobody.
"""

import email
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from itertools import islice

from core.services.mail.verp import attempts_named

from .severity import enhanced_status, severity_of

BOUNCE, DELAY, COMPLAINT, AUTO_REPLY = "bounce", "delay", "complaint", "auto-reply"
COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}
# Where the address a report was delivered to is written, most exact first.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
# How much of a message is searched for tokens and codes: a report is short;
# a 10 MB attachment is not read through.
TEXT_LIMIT = 256 * 1024
MAX_PARTS = 100


@dataclass
class Failure:
    address: str
    status: str = ""
    diagnostic: str = ""

    @property
    def severity(self) -> str:
        return severity_of(self.status, self.diagnostic)


@dataclass
class Report:
    kind: str = ""  # BOUNCE, DELAY, COMPLAINT, AUTO_REPLY; "" when unknown
    attempt_id: int | None = None
    failures: list[Failure] = field(default_factory=list)
    feedback_type: str = ""
    fingerprint: str = ""
    subject: str = ""
    sender: str = ""


class Unreadable(Exception):
    """A message too odd to parse safely: it stays in the mailbox."""


def report_read(raw: bytes) -> Report:
    message = email.message_from_bytes(raw, policy=policy.compat32)
    report = Report(
        subject=_header(message, "Subject"),
        sender=_header(message, "From"),
        fingerprint=_fingerprint(message, raw),
    )
    # A report has a few parts; thousands of them would make the detectors
    # (and the email package) take minutes over one message.
    if sum(1 for _ in islice(message.walk(), MAX_PARTS + 1)) > MAX_PARTS:
        raise Unreadable(f"more than {MAX_PARTS} MIME parts")
    report.attempt_id = _attempt_of(message)
    feedback = _part(message, "message/feedback-report")
    if feedback is not None:
        fields = _fields(feedback)
        report.feedback_type = fields.get("feedback-type", "").strip().lower()
        if report.feedback_type in COMPLAINT_TYPES:
            report.kind = COMPLAINT
            rcpt = fields.get("original-rcpt-to", "")
            if rcpt:
                report.failures.append(Failure(address=_bare(rcpt)))
        return report
    status = _part(message, "message/delivery-status")
    if status is not None:
        failed, delayed = _dsn_recipients(status)
        report.failures = failed or delayed
        report.kind = BOUNCE if failed else DELAY if delayed else ""
        return report
    # flufl.bounce's detectors cost 30 ms of import; only a report with no
    # standard part needs them.
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector that chokes on an odd message: none found
        temporary, permanent = set(), set()
    if permanent or temporary:
        diagnostic = _diagnostic(_text(message))
        code = enhanced_status(diagnostic)
        report.failures = [
            Failure(address=_decode(address), status=code, diagnostic=diagnostic)
            for address in sorted(permanent or temporary)
        ]
        report.kind = BOUNCE if permanent else DELAY
    elif _auto_reply(message):
        # Checked last: bounces are marked Auto-Submitted too (Exim, Mail.ru).
        report.kind = AUTO_REPLY
    return report


def _attempt_of(message) -> int | None:
    for name in ENVELOPE_HEADERS + ("To",):
        for value in message.get_all(name, []):
            found = attempts_named(str(value))
            if found:
                return found[0]
    found = attempts_named(_text(message, headers=True))
    return found[0] if found else None


def _part(message, content_type: str):
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _fields(part) -> dict:
    """The header-like fields of a report part, names in lower case."""
    blocks = _blocks(part)
    fields = {}
    for block in blocks:
        for name, value in block.items():
            fields.setdefault(name.lower(), str(value))
    return fields


def _blocks(part) -> list:
    payload = part.get_payload()
    if isinstance(payload, list):  # the parser split the blocks already
        return payload
    text = _decoded(part)
    return [
        email.message_from_string(block.strip() + "\n", policy=policy.compat32)
        for block in text.replace("\r\n", "\n").split("\n\n")
        if block.strip()
    ]


def _dsn_recipients(part) -> tuple[list, list]:
    failed, delayed = [], []
    for block in _blocks(part)[1:]:  # the first block is about the message
        fields = {name.lower(): str(value) for name, value in block.items()}
        recipient = fields.get("final-recipient") or fields.get("original-recipient")
        if not recipient:
            continue
        action = fields.get("action", "").strip().lower()
        failure = Failure(
            address=_bare(recipient.partition(";")[2] or recipient),
            status=enhanced_status(fields.get("status", "")),
            diagnostic=" ".join(fields.get("diagnostic-code", "").split())[:500],
        )
        if action == "failed":
            failed.append(failure)
        elif action == "delayed":
            delayed.append(failure)
    return failed, delayed


def _auto_reply(message) -> bool:
    submitted = _header(message, "Auto-Submitted").lower()
    return (
        submitted.startswith("auto-replied")
        or bool(message.get("X-Autoreply") or message.get("X-Autorespond"))
        or _header(message, "Precedence").lower() == "auto_reply"
    )


def _text(message, *, headers: bool = False) -> str:
    """The message's readable text (and headers), up to TEXT_LIMIT."""
    pieces, size = [], 0
    if headers:
        pieces.append("\n".join(f"{k}: {v}" for k, v in message.items()))
        size = len(pieces[0])
    for number, part in enumerate(message.walk()):
        if number > MAX_PARTS:
            break
        if (
            headers
            and part is not message
            and part.get_content_type()
            in (
                "message/rfc822",
                "text/rfc822-headers",
            )
        ):
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                pieces.append("\n".join(f"{k}: {v}" for k, v in inner[0].items()))
        if part.get_content_maintype() == "text" or part.get_content_type() in (
            "message/delivery-status",
        ):
            pieces.append(_decoded(part))
            size += len(pieces[-1])
        if size > TEXT_LIMIT:
            break
    return "\n".join(pieces)[:TEXT_LIMIT]


def _decoded(part) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        payload = part.get_payload()
        if isinstance(payload, list):
            return "\n".join(str(item) for item in payload)
        return str(payload)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[:TEXT_LIMIT].decode(charset, "replace")
    except LookupError:
        return payload[:TEXT_LIMIT].decode("utf-8", "replace")


# Where a plain-text bounce starts quoting the message it returns: codes
# past this point are the original's (its dates, ids), not the answer.
COPY_MARKER = re.compile(
    r"^\s*-{2,}.*(copy of|below this line|original message|returned message)"
    r"|^\s*-{2,}\s*(оригинальное|исходное) сообщение",
    re.IGNORECASE,
)
HEADER_LINE = re.compile(r"^[\w-]+:\s")
SMTP_REPLY = re.compile(r"(?<![\d.])[45]\d\d[\s-]")


def _diagnostic(text: str) -> str:
    """The line of a plain-text bounce that holds the server's answer."""
    for line in text.splitlines():
        if COPY_MARKER.search(line):
            break
        if HEADER_LINE.match(line):
            continue
        if enhanced_status(line) or SMTP_REPLY.search(line):
            return " ".join(line.split())[:500]
    return ""


def _fingerprint(message, raw: bytes) -> str:
    """The same report read twice (or sent twice) has the same one."""
    message_id = _header(message, "Message-ID").strip()
    basis = message_id.encode() if message_id else raw
    return hashlib.sha256(basis).hexdigest()


def _header(message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(value)))[:300]
    except Exception:  # an undecodable header is shown as it came
        return str(value)[:300]


def _bare(value: str) -> str:
    return value.strip().strip("<>").strip()


def _decode(address) -> str:
    return address.decode("utf-8", "replace") if isinstance(address, bytes) else address
