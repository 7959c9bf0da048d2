"""An SMTP sink in its own process, for benchmarks of the send path.

`SinkProcess` starts Postfix's `smtp-sink` when it is installed (written in C,
it costs the machine next to nothing), otherwise this module as an aiosmtpd
server. Either way the sink accepts every message on a loopback port, may
wait before answering DATA, and reports how many messages it received when
it is stopped.

Run alone, this module is the aiosmtpd sink:

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
            self.kind = "aiosmtpd"
            self.label = "aiosmtpd (bench/sink.py)"
            self.command = [
                sys.executable,
                "-m",
                "bench.sink",
                "--port",
                str(self.port),
                "--delay-ms",
                str(delay_ms),
                *(["--pipelining"] if pipelining else []),
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
        if self.kind == "aiosmtpd":
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


# --- the aiosmtpd sink ------------------------------------------------------


def recipient_tag(address: str) -> str:
    """`r000001.main@example.org` -> "main"; "" for another shape."""
    local = address.rpartition("@")[0]
    return local.rpartition(".")[2] if "." in local else ""


class CountingHandler:
    """Accepts everything; counts messages and copies per recipient."""

    def __init__(
        self, delay: float, sample: str | None = None, pipelining: bool = False
    ):
        self.delay = delay
        self.sample = sample
        self.sampled = None  # whose message the sample is
        self.pipelining = pipelining
        self.messages = 0
        self.per_recipient = Counter()
        self.per_tag = Counter()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        self.messages += 1
        first = min(envelope.rcpt_tos)
        if self.sample and (self.sampled is None or first < self.sampled):
            content = envelope.original_content or envelope.content
            Path(self.sample).write_bytes(content)
            self.sampled = first
        self.per_recipient.update(envelope.rcpt_tos)
        self.per_tag[recipient_tag(envelope.rcpt_tos[0])] += 1
        return f"250 2.0.0 Ok: queued as {self.messages}"

    def counts(self) -> dict:
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--pipelining", action="store_true")
    parser.add_argument("--sample", help="keep the first recipient's message here")
    args = parser.parse_args(argv)

    from aiosmtpd.controller import Controller

    handler = CountingHandler(
        args.delay_ms / 1000, sample=args.sample, pipelining=args.pipelining
    )
    controller = Controller(
        handler, hostname="127.0.0.1", port=args.port, ready_timeout=10
    )
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    controller.start()
    print("ready", flush=True)
    stopped.wait()
    controller.stop()
    print(json.dumps(handler.counts()), flush=True)


if __name__ == "__main__":
    main()
