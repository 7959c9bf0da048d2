"""A real SMTP server on a loopback port for tests, scriptable per address."""

import socket
import threading
from collections import Counter, defaultdict
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


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
        self.script = defaultdict(list)
        self.reject = {}
        self.delay = 0.0
        self.lock = threading.Lock()
        self.peers = set()  # (host, port) of every connection that sent mail
        self.pipelining = True  # offer RFC 2920 PIPELINING, as most servers do
        self.refuse_sender = ""  # a reply to MAIL FROM, e.g. "451 4.7.1 Later"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
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
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        address = envelope.rcpt_tos[0]
        with self.lock:
            self.peers.add(tuple(session.peer))
            if self.script.get(address):
                return self.script[address].pop(0)
            self.messages.append(
                (
                    envelope.rcpt_tos,
                    message_from_bytes(envelope.content, policy=policy.default),
                )
            )
        return f"250 2.0.0 Ok: queued as {len(self.messages)}"

    def count_by_address(self) -> Counter:
        with self.lock:
            return Counter(to for tos, _ in self.messages for to in tos)


class SmtpServer:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.recorder = Recorder()
        self.controller = None

    def start(self):
        self.controller = Controller(
            self.recorder, hostname="127.0.0.1", port=self.port, ready_timeout=10
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
