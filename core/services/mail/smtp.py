"""Carrying finished messages to the mail server, one recipient at a time.

A transport receives bytes and the two envelope addresses; it never
composes. It answers with the server's own reply (`Reply`) and leaves what
the reply means (sent, retry, failed) to the dispatcher.

`SmtpTransport` keeps one SMTP connection open and speaks the envelope
itself (MAIL, RCPT, DATA; in one write where the server offers PIPELINING,
RFC 2920) so it can record exactly what the server answered. Other Django
backends (files in development, memory in tests) go through
`BackendTransport`, which can only tell accepted from refused.
"""

import email
import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from email import policy

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend

from core.network import AddressRefused, relay_address

# What the server answers MAIL, RCPT and DATA when it takes them.
PIPELINE_ACCEPTED = ({250}, {250, 251}, {354})
# Lines of content that start with a dot get another (RFC 5321 4.5.2).
# An address smtplib.quoteaddr would only bracket: no name, quotes,
# comments or routes for email.utils.parseaddr to take apart.
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server answered; `code` is None when it answered nothing (the
    connection was lost, or could not be opened). `content_sent`: the whole
    message had gone out when the answer was lost, so the server may have
    taken it."""

    code: int | None
    text: str
    content_sent: bool = False

    @classmethod
    def of(cls, code, message) -> "Reply":
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        return cls(code, f"{code} {message}".strip())


class ConnectionFailed(Exception):
    """The server could not be reached or refused the session itself.

    `code` is the server's answer where it gave one: 421 is "too busy", the
    usual way to say "no more connections from you" (RFC 5321 3.8).
    """

    def __init__(self, text: str, code: int | None = None):
        super().__init__(text)
        self.code = code


SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@dataclass(frozen=True)
class Relay:
    """A client's own relay: where and how to log in. The service's relay is
    None: Django's EMAIL_* settings."""

    host: str
    port: int
    security: str = "starttls"  # or "ssl", "none"
    username: str = ""
    password: str = field(default="", repr=False)  # never in a log
    # Connections at most (None: SMTP_MAX_CONCURRENCY) and a rate ("" none).
    ceiling: int | None = None
    rate: str = ""

    @property
    def name(self) -> str:
        # Providers cap connections and rates per account, not per host.
        place = f"{self.host}:{self.port}"
        return f"{self.username}@{place}" if self.username else place


def uses_smtp(relay: Relay | None = None) -> bool:
    return relay is not None or settings.EMAIL_BACKEND == SMTP_BACKEND


def relay_name(relay: Relay | None = None) -> str:
    """The relay messages go to: what connection counts and rates are kept for."""
    if relay is not None:
        return relay.name
    if uses_smtp():
        return f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    return settings.EMAIL_BACKEND


class _Pinned:
    """An SMTP session that connects to the address checked (`pinned`), not
    to whatever the host name resolves to by then; TLS still verifies the
    certificate for the host name."""

    pinned = ""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection(
            (self.pinned, port), timeout, self.source_address
        )
        if isinstance(self, smtplib.SMTP_SSL):
            sock = self.context.wrap_socket(sock, server_hostname=self._host)
        return sock


class _RelayBackend(EmailBackend):
    """Django's SMTP backend, its sessions pinned to one checked address."""

    def __init__(self, *, address: str, **kwargs):
        super().__init__(**kwargs)
        self.address = address

    @property
    def connection_class(self):
        base = smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP
        return type("PinnedSMTP", (_Pinned, base), {"pinned": self.address})


def smtp_connection(relay: Relay | None, *, timeout: float):
    """Django's SMTP backend for `relay` (None: as EMAIL_* configure it).
    AddressRefused where a client's relay may not be connected to."""
    if relay is None:
        return get_connection(fail_silently=False, timeout=timeout)
    return _RelayBackend(
        address=relay_address(relay.host, relay.port),
        fail_silently=False,
        host=relay.host,
        port=relay.port,
        username=relay.username,
        password=relay.password,
        use_tls=relay.security == "starttls",
        use_ssl=relay.security == "ssl",
        timeout=timeout,
    )


def envelope_check(sender: str, recipient: str) -> None:
    """Refuse envelope addresses that would break the SMTP dialogue."""
    if any(char in sender + recipient for char in "\r\n"):
        raise ValueError("an envelope address holds a line break")


class SmtpTransport:
    """One persistent SMTP session; reconnects after the server drops it.

    Django's SMTP backend opens the session (host, port, TLS, login as
    EMAIL_* configure them); the transport then speaks on its connection.
    """

    def __init__(self, relay: Relay | None = None):
        self.relay = relay
        self.backend = None

    def _smtp(self, deadline: float | None = None):
        if self.backend is None or self.backend.connection is None:
            try:
                self.backend = smtp_connection(self.relay, timeout=_timeout(deadline))
            except AddressRefused as error:
                raise ConnectionFailed(str(error)) from error
            try:
                self.backend.open()
                # The deadline bounded opening; the session's waits are
                # EMAIL_TIMEOUT each.
                self.backend.connection.sock.settimeout(settings.EMAIL_TIMEOUT)
            except smtplib.SMTPResponseException as error:
                self.backend = None
                raise ConnectionFailed(
                    Reply.of(error.smtp_code, error.smtp_error).text,
                    code=error.smtp_code,
                ) from error
            except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
                self.backend = None
                raise ConnectionFailed(
                    str(error) or error.__class__.__name__
                ) from error
        return self.backend.connection

    def open(self, *, deadline: float | None = None) -> None:
        """Connect if not connected; ConnectionFailed if the server is down.

        `deadline` (time.monotonic()) bounds the wait for the session.
        """
        self._smtp(deadline)

    @property
    def is_open(self) -> bool:
        return self.backend is not None and self.backend.connection is not None

    def send(self, sender: str, recipient: str, data: bytes, *, deadline=None) -> Reply:
        """Hand one message to the server; its reply to the message.

        A session found closed before any of the message went out (a server
        drops idle ones) is opened again once, within `deadline`. Each wait
        for the server lasts EMAIL_TIMEOUT at most, however near the deadline:
        a server that checks a message may take seconds to accept it.
        """
        envelope_check(sender, recipient)
        for fresh in (False, True):
            reused = self.is_open
            try:
                smtp = self._smtp(deadline)
            except ConnectionFailed as error:
                return Reply(None, f"connection lost: {error}")
            sent = _Progress()
            try:
                return self._exchange(smtp, sender, recipient, data, sent)
            except smtplib.SMTPResponseException as error:
                # Includes SMTPDataError; checked before OSError, its base.
                self._reset(smtp)
                return self._answered(Reply.of(error.smtp_code, error.smtp_error))
            except (TimeoutError, OSError) as error:  # dropped connection, timeout
                self.close()
                reason = str(error) or error.__class__.__name__
                if sent.content:
                    return Reply(
                        None,
                        f"connection lost after the message was sent: {reason}",
                        content_sent=True,
                    )
                if reused and not fresh:
                    continue
                return Reply(None, f"connection lost: {reason}")
        raise AssertionError("unreachable")  # the loop always returns

    def _exchange(self, smtp, sender, recipient, data, sent) -> Reply:
        smtp.ehlo_or_helo_if_needed()
        options = _mail_options(smtp, data)
        if smtp.does_esmtp and smtp.has_extn("pipelining"):
            return self._send_pipelined(smtp, sender, recipient, data, options, sent)
        code, reply = smtp.mail(sender, options)
        if code != 250:
            self._reset(smtp)
            return Reply.of(code, reply)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            self._reset(smtp)
            return Reply.of(code, reply)
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            self._reset(smtp)
            return self._answered(Reply.of(code, reply))
        return self._content(smtp, data, sent)

    def _send_pipelined(self, smtp, sender, recipient, data, options, sent) -> Reply:
        """MAIL, RCPT and DATA in one write (RFC 2920), then the content.

        Two writes and two waits for the server a message instead of four:
        half the round trips to a distant server, and fewer system calls.
        """
        params = "".join(f" {option}" for option in options)
        smtp.send(
            (
                f"mail FROM:{quoteaddr(sender)}{params}\r\n"
                f"rcpt TO:{quoteaddr(recipient)}\r\n"
                "data\r\n"
            ).encode("utf-8" if "SMTPUTF8" in options else "ascii")
        )
        replies = []
        for _ in range(3):
            replies.append(smtp.getreply())
        refused = next(
            (
                reply
                for reply, accepted in zip(replies, PIPELINE_ACCEPTED, strict=True)
                if reply[0] not in accepted
            ),
            None,
        )
        if refused is None:
            return self._content(smtp, data, sent)
        if replies[2][0] == 354:
            # DATA taken after the envelope was refused: end an empty message,
            # which the server refuses for want of a recipient.
            smtp.send(b".\r\n")
            smtp.getreply()
        self._reset(smtp)
        return self._answered(Reply.of(*refused))

    def _content(self, smtp, data, sent) -> Reply:
        """The message after a 354, and the server's answer to it."""
        content = dot_stuff(data)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        smtp.send(content + b".\r\n")
        sent.content = True
        return self._answered(Reply.of(*smtp.getreply()))

    def _answered(self, reply: Reply) -> Reply:
        # 421: the server is closing this session (RFC 5321 3.8).
        if reply.code == 421:
            self.close()
        return reply

    def _reset(self, smtp):
        if self.backend is None:
            return
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


class _Progress:
    """How far one message got: once its end is written, a lost answer may
    hide a message the server took."""

    __slots__ = ("content",)

    def __init__(self):
        self.content = False


def _timeout(deadline: float | None) -> float:
    """EMAIL_TIMEOUT, or less when the deadline is nearer."""
    if deadline is None:
        return settings.EMAIL_TIMEOUT
    return max(0.05, min(settings.EMAIL_TIMEOUT, deadline - time.monotonic()))


def quoteaddr(address: str) -> str:
    """smtplib.quoteaddr, without parsing an address that is only an address
    (the parser cost some 25 µs a message)."""
    if PLAIN_ADDRESS.match(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def dot_stuff(data: bytes) -> bytes:
    """A dot doubled at the start of every line (RFC 5321 4.5.2): a
    replacement in C, where a regular expression's pass over every line cost
    some 70 µs for 12 KB."""
    data = data.replace(b"\n.", b"\n..")
    return b"." + data if data.startswith(b".") else data


def _mail_options(smtp, data: bytes) -> list[str]:
    options = []
    if smtp.has_extn("smtputf8") and not data.isascii():
        options.append("SMTPUTF8")
    if smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


class _Finished(EmailMessage):
    """A message that is bytes already, for Django's other mail backends."""

    def __init__(self, sender: str, recipient: str, data: bytes, connection):
        parsed = email.message_from_bytes(data, policy=policy.compat32)
        super().__init__(
            subject=str(parsed.get("Subject", "")),
            from_email=sender,
            to=[recipient],
            connection=connection,
        )
        self.parsed = parsed

    def message(self, **kwargs):
        return self.parsed


class BackendTransport:
    """Any other Django mail backend: files in development, memory in tests."""

    def __init__(self):
        self.backend = get_connection(fail_silently=False)

    def open(self, *, deadline: float | None = None) -> None:
        pass

    is_open = True

    def send(self, sender: str, recipient: str, data: bytes, *, deadline=None) -> Reply:
        envelope_check(sender, recipient)
        try:
            _Finished(sender, recipient, data, self.backend).send()
        except smtplib.SMTPResponseException as error:
            return Reply.of(error.smtp_code, error.smtp_error)
        except Exception as error:  # the backend's own failure: try again later
            return Reply(None, str(error) or error.__class__.__name__)
        return Reply(250, f"accepted by {self.backend.__class__.__module__}")

    def close(self):
        try:
            self.backend.close()
        except Exception:  # nothing to release
            pass


def transport_open(relay: Relay | None = None):
    return SmtpTransport(relay) if uses_smtp(relay) else BackendTransport()
