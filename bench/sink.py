"""An SMTP sink in its own process, for benchmarks of the send path.

`SinkProcess` starts Postfix's `smtp-sink` when it is installed (written in C,
it costs the machine next to nothing), otherwise, and wherever it must wait
less than a second before answering or keep a sample, this module. Either
way the sink accepts every message on a loopback port, may wait before
answering DATA, and reports how many messages it received when it is stopped.

This module's sink is a plain asyncio protocol: a server 20 ms away does not
share the sender's cores, and one here should take as little of them as it
can. aiosmtpd, a full server, spent about 1 ms of CPU a message, as much as
the fastest sender it measured, and so held back exactly the senders that
need little; this one spends a tenth of that. `--aiosmtpd` (BENCH_SINK=aiosmtpd
for the benchmarks) runs the aiosmtpd server instead, with the same counts.

Run alone, this module is the sink:

    .venv/bin/python -m bench.sink --port 2525 --delay-ms 20 [--sample FILE]

It prints "ready" once it listens, and on SIGTERM (or SIGINT) one JSON line:
the messages received, the distinct recipients among them, the largest
number of copies any one recipient got, and the same three per tag (the
benchmarks address recipients as `r000001.<tag>@example.org`, one tag per
mailing). With --sample it keeps in FILE, as it came (CRLF line ends,
dot-stuffing undone), the message to the first recipient in address order
(`r000000.<tag>@…`: the same person whichever connection delivered first).
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

SMTP_SINK = "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smtp_sink_path() -> str | None:
    """Postfix's smtp-sink, if this machine has it."""
    found = shutil.which("smtp-sink")
    if found:
        return found
    return SMTP_SINK if os.access(SMTP_SINK, os.X_OK) else None


class SinkProcess:
    """A sink on 127.0.0.1 in a child process; `stop()` returns its counts.

    `delay_ms` is waited before each DATA answer, i.e. once per message.
    smtp-sink only waits whole seconds (`-w`), so a delay that is not a
    whole number of seconds always uses the aiosmtpd sink.
    """

    def __init__(
        self,
        *,
        delay_ms: int = 0,
        prefer_postfix: bool = True,
        sample: Path | None = None,
        pipelining: bool = True,
    ):
        """`sample`: a file to keep one message in (aiosmtpd only);
        `pipelining`: whether the sink offers PIPELINING (RFC 2920)."""
        self.delay_ms = delay_ms
        self.port = free_port()
        self.sample = sample
        postfix = smtp_sink_path() if prefer_postfix and sample is None else None
        if postfix and delay_ms % 1000 == 0:
            self.kind = "postfix"
            self.label = f"Postfix smtp-sink ({postfix})"
            self.command = [postfix, "-c"] + ([] if pipelining else ["-p"])
            if delay_ms:
                self.command += ["-w", str(delay_ms // 1000)]
            if os.geteuid() == 0:
                self.command += ["-u", "nobody"]  # it refuses to run as root
            self.command += [f"127.0.0.1:{self.port}", "1024"]
        else:
            aiosmtpd = os.environ.get("BENCH_SINK", "") == "aiosmtpd"
            self.kind = "aiosmtpd" if aiosmtpd else "asyncio"
            self.label = (
                "aiosmtpd (bench/sink.py --aiosmtpd)"
                if aiosmtpd
                else "asyncio protocol (bench/sink.py)"
            )
            self.command = [
                sys.executable,
                "-m",
                "bench.sink",
                "--port",
                str(self.port),
                "--delay-ms",
                str(delay_ms),
                *(["--pipelining"] if pipelining else []),
                *(["--aiosmtpd"] if aiosmtpd else []),
            ]
            if sample is not None:
                self.command += ["--sample", str(sample)]
        self.process = None
        self.output = None

    def start(self) -> "SinkProcess":
        # Output goes to a file: a pipe nobody reads would block the sink.
        self.output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.command,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=self.output,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the sink exited: {' '.join(self.command)}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the sink did not start: {' '.join(self.command)}")

    def _ready(self) -> bool:
        if self.kind != "postfix":
            self.output.seek(0)
            return b"ready" in self.output.read()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                # This session counts in smtp-sink's "sess", never in "mesg".
                return True
        except OSError:
            return False

    def stop(self) -> dict:
        """Stop the sink; return {"messages": n, ...} as far as it knows."""
        if self.process is None:
            return {}
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.output.seek(0)
        text = self.output.read().decode(errors="replace")
        self.output.close()
        if self.kind == "postfix":
            # -c rewrites "sess=N quit=N mesg=N" after every message.
            counts = re.findall(r"mesg=(\d+)", text)
            return {"messages": int(counts[-1]) if counts else 0}
        lines = [line for line in text.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        if self.process is not None:
            self.stop()


# --- this module's sinks ----------------------------------------------------


def recipient_tag(address: str) -> str:
    """`r000001.main@example.org` -> "main"; "" for another shape."""
    local = address.rpartition("@")[0]
    return local.rpartition(".")[2] if "." in local else ""


class Counts:
    """Messages and copies per recipient; with `sample`, keeps the first
    recipient's message there."""

    def __init__(self, sample: str | None = None):
        self.sample = sample
        self.sampled = None  # whose message the sample is
        self.messages = 0
        self.per_recipient = Counter()
        self.per_tag = Counter()

    def received(self, recipients: list[str], content: bytes) -> int:
        """Count one message (its content with dot-stuffing undone); its number."""
        self.messages += 1
        first = min(recipients)
        if self.sample and (self.sampled is None or first < self.sampled):
            Path(self.sample).write_bytes(content)
            self.sampled = first
        self.per_recipient.update(recipients)
        self.per_tag[recipient_tag(recipients[0])] += 1
        return self.messages

    def summary(self) -> dict:
        tags = {}
        for address, copies in self.per_recipient.items():
            tag = tags.setdefault(
                recipient_tag(address),
                {"messages": 0, "recipients": 0, "max_copies": 0},
            )
            tag["recipients"] += 1
            tag["max_copies"] = max(tag["max_copies"], copies)
        for name, messages in self.per_tag.items():
            tags.setdefault(name, {"recipients": 0, "max_copies": 0})
            tags[name]["messages"] = messages
        return {
            "messages": self.messages,
            "recipients": len(self.per_recipient),
            "max_copies": max(self.per_recipient.values(), default=0),
            "tags": tags,
        }


# What aiosmtpd's server offers, and PIPELINING where asked.
EXTENSIONS = ("SIZE 33554432", "8BITMIME", "SMTPUTF8", "HELP")
END_OF_DATA = b"\r\n.\r\n"
ADDRESS = re.compile(rb"<([^>]*)>")


class SinkProtocol(asyncio.Protocol):
    """One SMTP session: every message accepted, DATA answered after `delay`.

    Commands are taken in order, pipelined or not (RFC 2920): while an
    answer waits out the delay, the commands after it wait too, as they
    would at a real server.
    """

    def __init__(self, counts: Counts, *, delay: float, pipelining: bool):
        self.counts = counts
        self.delay = delay
        self.extensions = (("PIPELINING",) if pipelining else ()) + EXTENSIONS
        self.buffer = bytearray()
        self.in_data = False
        self.searched = 0  # of the buffer, for the end of DATA
        self.waiting = False
        self.recipients = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"220 127.0.0.1 ESMTP bench sink\r\n")

    def data_received(self, data):
        self.buffer += data
        if not self.waiting:
            self._work()

    def _work(self):
        while not self.waiting and self.transport is not None:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):
                    content, taken = b"", 3  # an empty message
                else:
                    end = self.buffer.find(END_OF_DATA, max(0, self.searched - 4))
                    if end < 0:
                        self.searched = len(self.buffer)
                        return
                    # The content keeps its last line's CRLF.
                    content, taken = bytes(self.buffer[: end + 2]), end + 5
                del self.buffer[:taken]
                self.in_data, self.searched = False, 0
                self._message(content)
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line = bytes(self.buffer[:line_end])
            del self.buffer[: line_end + 2]
            self._command(line)

    def _message(self, content: bytes):
        # Transparency (RFC 5321 4.5.2): a doubled dot at a line's start.
        if content.startswith(b".."):
            content = content[1:]
        content = content.replace(b"\r\n..", b"\r\n.")
        recipients, self.recipients = self.recipients, []
        number = self.counts.received(recipients, content)
        self._answer(f"250 2.0.0 Ok: queued as {number}", delay=self.delay)

    def _command(self, line: bytes):
        verb = line[:4].upper()
        if verb == b"EHLO":
            lines = ["127.0.0.1", *self.extensions]
            self._answer(
                "\r\n".join(
                    f"250{' ' if n == len(lines) - 1 else '-'}{text}"
                    for n, text in enumerate(lines)
                )
            )
        elif verb == b"HELO":
            self._answer("250 127.0.0.1")
        elif verb == b"MAIL":
            self.recipients = []
            self._answer("250 OK")
        elif verb == b"RCPT":
            found = ADDRESS.search(line)
            if found is None:
                self._answer("501 Syntax: RCPT TO: <address>")
                return
            self.recipients.append(found.group(1).decode("utf-8", "replace"))
            self._answer("250 OK")
        elif verb == b"DATA":
            if not self.recipients:
                self._answer("503 Error: need RCPT command")
                return
            self.in_data = True
            self._answer("354 End data with <CR><LF>.<CR><LF>")
        elif verb == b"RSET":
            self.recipients = []
            self._answer("250 OK")
        elif verb == b"NOOP":
            self._answer("250 OK")
        elif verb == b"QUIT":
            self._answer("221 Bye")
            self.transport.close()
            self.transport = None
        else:
            self._answer("500 Error: command not recognized")

    def _answer(self, text: str, *, delay: float = 0):
        if not delay:
            self.transport.write(text.encode() + b"\r\n")
            return
        self.waiting = True
        asyncio.get_running_loop().call_later(delay, self._answer_late, text)

    def _answer_late(self, text: str):
        self.waiting = False
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(text.encode() + b"\r\n")
        self._work()

    def connection_lost(self, exc):
        self.transport = None


def serve(*, port: int, delay: float, pipelining: bool, counts: Counts) -> None:
    """This module's sink until SIGTERM or SIGINT."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SinkProtocol(counts, delay=delay, pipelining=pipelining),
            "127.0.0.1",
            port,
            backlog=1024,
        )
    )
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    print("ready", flush=True)
    loop.run_until_complete(stopped.wait())
    server.close()
    loop.close()


class CountingHandler:
    """An aiosmtpd handler that accepts everything and counts it."""

    def __init__(self, delay: float, counts: Counts, pipelining: bool = False):
        self.delay = delay
        self.counts = counts
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        content = envelope.original_content or envelope.content
        number = self.counts.received(list(envelope.rcpt_tos), content)
        return f"250 2.0.0 Ok: queued as {number}"


def serve_aiosmtpd(*, port: int, delay: float, pipelining: bool, counts: Counts):
    from aiosmtpd.controller import Controller

    handler = CountingHandler(delay, counts, pipelining=pipelining)
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    controller.start()
    print("ready", flush=True)
    stopped.wait()
    controller.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--pipelining", action="store_true")
    parser.add_argument("--sample", help="keep the first recipient's message here")
    parser.add_argument(
        "--aiosmtpd", action="store_true", help="an aiosmtpd server instead"
    )
    args = parser.parse_args(argv)
    counts = Counts(sample=args.sample)
    (serve_aiosmtpd if args.aiosmtpd else serve)(
        port=args.port,
        delay=args.delay_ms / 1000,
        pipelining=args.pipelining,
        counts=counts,
    )
    print(json.dumps(counts.summary()), flush=True)


if __name__ == "__main__":
    main()
