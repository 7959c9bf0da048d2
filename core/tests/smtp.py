"""A real SMTP server on a loopback port for tests, scriptable per address."""

import asyncio
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    """aiosmtpd handler: keeps every message; answers as scripted.

    `script[address]` is a list of replies used one per delivery attempt,
    e.g. ["451 4.3.0 Try later", "451 4.3.0 Try later"] then 250;
    `reject[address]` refuses the recipient at RCPT.
    """

    def __init__(self):
        self.messages = []
        self.raw = []  # each message's bytes, as `messages` holds them parsed
        self.senders = []  # MAIL FROM of each message in `messages`
        self.received_at = []  # time.monotonic() of each, as it arrived
        self.script = defaultdict(list)
        self.reject = {}
        self.delay = 0.0
        self.ehlo_delay = 0.0  # before answering EHLO: a session slow to open
        self.lock = threading.Lock()
        self.peers = set()  # (host, port) of every connection that sent mail
        self.pipelining = True  # offer RFC 2920 PIPELINING, as most servers do
        self.refuse_sender = ""  # a reply to MAIL FROM, e.g. "451 4.7.1 Later"
        # Sessions beyond this many at once are greeted with 421 and closed.
        self.max_sessions = 0
        self.sessions = self.peak_sessions = self.refused_sessions = 0
        # Share of messages whose connection is dropped, half of them at RCPT
        # (before any content) and half before the answer to their data (the
        # message is not kept, but the client cannot know); and the random
        # source.
        self.drop_rate = 0.0
        self.dropped_early = self.dropped_late = 0
        self.random = random.Random(2026)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.ehlo_delay:
            await asyncio.sleep(self.ehlo_delay)
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self._drop(server, late=False):
            return "451 4.3.0 never seen: the connection is gone"
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        address = envelope.rcpt_tos[0]
        with self.lock:
            if self._drop(server, late=True):
                return "451 4.3.0 never seen: the connection is gone"
            self.peers.add(tuple(session.peer))
            if self.script.get(address):
                return self.script[address].pop(0)
            self.senders.append(envelope.mail_from)
            self.received_at.append(time.monotonic())
            self.raw.append(envelope.content)  # as received, for DKIM checks
            self.messages.append(
                (
                    envelope.rcpt_tos,
                    message_from_bytes(envelope.content, policy=policy.default),
                )
            )
        return f"250 2.0.0 Ok: queued as {len(self.messages)}"

    def _drop(self, server, *, late: bool) -> bool:
        if not self.drop_rate or self.random.random() >= self.drop_rate / 2:
            return False
        if late:
            self.dropped_late += 1
        else:
            self.dropped_early += 1
        server.transport.close()
        return True

    def count_by_address(self) -> Counter:
        with self.lock:
            return Counter(to for tos, _ in self.messages for to in tos)


class LimitingSMTP(SMTP):
    """Greets sessions beyond the recorder's `max_sessions` with 421, as a
    relay that caps connections per client does, and closes them."""

    async def _handle_client(self):
        recorder = self.event_handler
        with recorder.lock:
            refuse = 0 < recorder.max_sessions <= recorder.sessions
            if refuse:
                recorder.refused_sessions += 1
            else:
                recorder.sessions += 1
                recorder.peak_sessions = max(recorder.peak_sessions, recorder.sessions)
        if refuse:
            await self.push("421 4.7.0 Too many connections from you, try later")
            self.transport.close()
            return
        try:
            await super()._handle_client()
        finally:
            with recorder.lock:
                recorder.sessions -= 1


class RecorderController(Controller):
    def factory(self):
        return LimitingSMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """`login`: (user, password) the server requires before MAIL (AUTH PLAIN
    or LOGIN, over plain text as a test allows)."""

    def __init__(self, port=None, *, login=None, starttls=None, implicit_tls=None):
        """`starttls` / `implicit_tls`: a server SSLContext, to offer STARTTLS
        (and require it) or to speak TLS from the first byte."""
        self.port = port or free_port()
        self.recorder = Recorder()
        self.controller = None
        self.login = login
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.logins = []  # (user, accepted) of every AUTH tried

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        user = auth_data.login.decode()
        accepted = (user, auth_data.password.decode()) == self.login
        self.logins.append((user, accepted))
        return AuthResult(success=accepted, handled=False)

    def start(self):
        auth = (
            {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
            if self.login
            else {}
        )
        if self.starttls:
            auth.update(tls_context=self.starttls, require_starttls=True)
        if self.implicit_tls:
            auth.update(ssl_context=self.implicit_tls)
        self.controller = RecorderController(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            ready_timeout=10,
            **auth,
        )
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self):
        return self.recorder.messages
