"""A raw SMTP server on loopback for protocol tests.

It answers each command from a script and records every line it receives,
and which lines arrived together, so a test sees what a client pipelined
and what it sent after an odd reply. The aiosmtpd server in smtp.py speaks
proper SMTP; this one says whatever the script says, as some servers do.
"""

import socket
import threading
from collections import Counter

SCRIPT = {
    "greeting": "220 raw.test ESMTP",
    "EHLO": "250-raw.test\n250-PIPELINING\n250 8BITMIME",
    "HELO": "250 raw.test",
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    ".": "250 2.0.0 Ok: queued",  # the end of a message's content
    "RSET": "250 2.0.0 Ok",
    "NOOP": "250 2.0.0 Ok",
    "QUIT": "221 2.0.0 Bye",
}
UNKNOWN = "500 5.5.2 Error: command not recognized"
POLL = 0.1  # how often a blocked thread looks whether the server stops


class RawSmtpServer:
    """`script` maps a command ("EHLO", "MAIL", …; "." for the end of a
    message's content; "greeting") to its reply, or to a list of replies
    used one per command, the last repeated. A reply of several lines is one
    string with "\\n" between them.

    Recorded: `lines`, every line received in order (content too), without
    its CRLF; `reads`, the commands each read from the socket brought (what
    arrived together); `messages`, each message's content, dots unstuffed.
    """

    def __init__(self, script=None):
        self.script = {**SCRIPT, **(script or {})}
        self.lines, self.reads, self.messages = [], [], []
        self.used = Counter()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(POLL)
        self.port = self.listener.getsockname()[1]
        self.threads = []

    def start(self):
        self._thread(self._accept)
        return self

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()

    def commands(self) -> list[str]:
        """The command verbs received, in order (content lines left out)."""
        with self.lock:
            return [verb for read in self.reads for verb in map(_verb, read)]

    # --- the server's threads -------------------------------------------

    def _thread(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self._thread(self._serve, connection)

    def _reply(self, command: str) -> str:
        with self.lock:
            replies = self.script.get(command, UNKNOWN)
            if isinstance(replies, list):
                replies = replies[min(self.used[command], len(replies) - 1)]
            self.used[command] += 1
        return replies

    def _serve(self, connection):
        with connection:
            connection.settimeout(POLL)
            connection.sendall(_wire(self._reply("greeting")))
            buffer, content = b"", None  # content: lines of a message, in DATA
            while not self.stopping.is_set():
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                *complete, buffer = (buffer + data).split(b"\r\n")
                read, answers = [], []
                for raw in complete:
                    line = raw.decode("utf-8", "surrogateescape")
                    with self.lock:
                        self.lines.append(line)
                    if content is not None and line != ".":
                        content.append(raw[1:] if raw.startswith(b".") else raw)
                        continue
                    if content is not None:
                        with self.lock:
                            self.messages.append(b"".join(c + b"\r\n" for c in content))
                        content = None
                        answers.append(self._reply("."))
                        continue
                    read.append(line)
                    answer = self._reply(_verb(line))
                    if _verb(line) == "DATA" and answer.startswith("354"):
                        content = []
                    answers.append(answer)
                if read:
                    with self.lock:
                        self.reads.append(read)
                for answer in answers:
                    connection.sendall(_wire(answer))
                if read and _verb(read[-1]) == "QUIT":
                    return


def _verb(line: str) -> str:
    return line.split(" ", 1)[0].upper()


def _wire(reply: str) -> bytes:
    return "".join(f"{line}\r\n" for line in reply.split("\n")).encode()
