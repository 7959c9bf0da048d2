"""Getting messages to the mail server, one recipient at a time.

`SmtpTransport` keeps one SMTP connection open and speaks the envelope
itself (MAIL, RCPT, DATA; in one write where the server offers PIPELINING)
so it can record the server's own answer, and sort it: 2xx sent, 4xx or a
dropped connection retry later, 5xx failed for good.
Other Django backends (files in development, memory in tests) go through
`BackendTransport`, which can only tell accepted from refused.
"""

import functools
import re
import smtplib
import ssl
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.mail import get_connection
from django.core.mail.message import sanitize_address

SENT, RETRY, FAILED = "sent", "retry", "failed"


@dataclass
class Outcome:
    result: str  # SENT, RETRY or FAILED
    response: str


# What the server answers MAIL, RCPT and DATA when it takes them.
PIPELINE_ACCEPTED = ({250}, {250, 251}, {354})
# Lines of content that start with a dot get another (RFC 5321 4.5.2).
DOT_LINE = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message as SMTP carries it: MAIL FROM, RCPT TO and the data."""

    sender: str
    recipient: str
    data: bytes


class ConnectionFailed(Exception):
    """The server could not be reached or refused the session itself."""


def _text(code, message) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return f"{code} {message}".strip()


def _classify(code: int, message) -> Outcome:
    if 200 <= code < 300:
        return Outcome(SENT, _text(code, message))
    if 400 <= code < 500:
        return Outcome(RETRY, _text(code, message))
    return Outcome(FAILED, _text(code, message))


def uses_smtp() -> bool:
    return settings.EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend"


class SmtpTransport:
    """One persistent SMTP session; reconnects after the server drops it."""

    def __init__(self):
        self.backend = None

    def _smtp(self):
        if self.backend is None or self.backend.connection is None:
            self.backend = get_connection(fail_silently=False)
            try:
                self.backend.open()
            except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
                self.backend = None
                raise ConnectionFailed(
                    str(error) or error.__class__.__name__
                ) from error
        return self.backend.connection

    def prepare(self) -> None:
        """Connect if not connected; ConnectionFailed if the server is down."""
        self._smtp()

    def build(self, outgoing) -> "Envelope":
        """What `send` takes, made before the session is touched."""
        return Envelope(
            sender=_sender_address(outgoing.from_email),
            recipient=_recipient_address(outgoing),
            data=outgoing.as_bytes(),
        )

    def send(self, envelope: "Envelope") -> Outcome:
        try:
            smtp = self._smtp()
        except ConnectionFailed as error:
            return Outcome(RETRY, f"connection lost: {error}")
        sender, recipient, data = envelope.sender, envelope.recipient, envelope.data
        if any(char in sender + recipient for char in "\r\n"):
            return Outcome(FAILED, "address holds a line break")
        try:
            smtp.ehlo_or_helo_if_needed()
            options = _mail_options(smtp, data)
            if smtp.has_extn("pipelining"):
                return self._send_pipelined(smtp, sender, recipient, data, options)
            code, reply = smtp.mail(sender, options)
            if code != 250:
                self._reset(smtp)
                return _classify(code, reply)
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                self._reset(smtp)
                return _classify(code, reply)
            code, reply = smtp.data(data)
            return _classify(code, reply)
        except smtplib.SMTPResponseException as error:
            # Includes SMTPDataError; checked before OSError, its base class.
            self._reset(smtp)
            return _classify(error.smtp_code, error.smtp_error)
        except (TimeoutError, OSError) as error:  # dropped connection, timeout
            self.close()
            return Outcome(
                RETRY, f"connection lost: {error or error.__class__.__name__}"
            )

    def _send_pipelined(self, smtp, sender, recipient, data, options) -> Outcome:
        """MAIL, RCPT and DATA in one write (RFC 2920), then the content.

        Two writes and two waits for the server a message instead of four:
        half the round trips to a distant server, and fewer system calls.
        """
        params = "".join(f" {option}" for option in options)
        smtp.send(
            (
                f"mail FROM:{smtplib.quoteaddr(sender)}{params}\r\n"
                f"rcpt TO:{smtplib.quoteaddr(recipient)}\r\n"
                "data\r\n"
            ).encode("utf-8" if "SMTPUTF8" in options else "ascii")
        )
        replies = [smtp.getreply() for _ in range(3)]
        refused = next(
            (
                reply
                for reply, accepted in zip(replies, PIPELINE_ACCEPTED, strict=True)
                if reply[0] not in accepted
            ),
            None,
        )
        if refused is None:
            content = DOT_LINE.sub(b"..", data)
            if not content.endswith(b"\r\n"):
                content += b"\r\n"
            smtp.send(content + b".\r\n")
            return _classify(*smtp.getreply())
        if replies[2][0] == 354:
            # DATA taken after the envelope was refused: end an empty message.
            smtp.send(b".\r\n")
            smtp.getreply()
        self._reset(smtp)
        return _classify(*refused)

    def _reset(self, smtp):
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self):
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception:  # closing a dead socket can fail in many ways
                pass
            self.backend = None


@functools.lru_cache(maxsize=16)
def _sender_address(address: str) -> str:
    """The address for MAIL FROM, as Django's backend makes it; one per site."""
    return sanitize_address(address, settings.DEFAULT_CHARSET)


def _recipient_address(outgoing) -> str:
    """The address for RCPT TO. An ASCII address (saved ones are validated) is
    used as it is: Django's parsing costs a third of building the message."""
    address = outgoing.address
    if address and address.isascii():
        return address
    return sanitize_address(address or outgoing.to, settings.DEFAULT_CHARSET)


def _mail_options(smtp, data: bytes) -> list[str]:
    options = []
    if smtp.has_extn("smtputf8") and not data.isascii():
        options.append("SMTPUTF8")
    if smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


class BackendTransport:
    """Any other Django mail backend: files in development, memory in tests."""

    def __init__(self):
        self.backend = get_connection(fail_silently=False)

    def prepare(self) -> None:
        pass

    def build(self, outgoing):
        return outgoing.email_message(connection=self.backend)

    def send(self, email_message) -> Outcome:
        try:
            email_message.send()
        except smtplib.SMTPResponseException as error:
            return _classify(error.smtp_code, error.smtp_error)
        except Exception as error:  # the backend's own failure: try again later
            return Outcome(RETRY, str(error) or error.__class__.__name__)
        return Outcome(SENT, f"accepted by {self.backend.__class__.__module__}")

    def close(self):
        try:
            self.backend.close()
        except Exception:  # nothing to release
            pass


def transport_open():
    return SmtpTransport() if uses_smtp() else BackendTransport()


class RateLimiter:
    """A fixed-window limit shared by every worker through the cache.

    SMTP_RATE_LIMIT is "N/s", "N/m" or "N/h". Each worker takes tokens just
    before it sends; when the window is spent it waits for the next one.
    With Redis as the cache the limit holds across machines.
    """

    UNITS = {"s": 1, "m": 60, "h": 3600}

    def __init__(self, spec: str):
        self.limit, self.window = self.parse(spec) if spec else (0, 0)

    @classmethod
    def parse(cls, spec: str) -> tuple[int, int]:
        count, _, unit = spec.strip().partition("/")
        unit = unit.strip().lower()[:1] or "s"
        if unit not in cls.UNITS or not count.strip().isdigit():
            raise ValueError(
                f"SMTP_RATE_LIMIT must look like 50/s or 10000/h, not {spec!r}"
            )
        return int(count), cls.UNITS[unit]

    def acquire(self) -> None:
        if not self.limit:
            return
        while True:
            now = time.time()
            window = int(now // self.window)
            key = f"dispatch:rate:{window}"
            cache.add(key, 0, timeout=self.window * 2)
            try:
                used = cache.incr(key)
            except ValueError:  # expired between add and incr
                continue
            if used <= self.limit:
                return
            time.sleep(max((window + 1) * self.window - now, 0.001))
