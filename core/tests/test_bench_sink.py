"""The benchmarks' SMTP sink (bench/sink.py) is a correct SMTP server.

It measures every sender, so it must take what they send as any server
would: in order, pipelined or not, dot-stuffing undone, each recipient
counted once per copy, and DATA answered only after its delay.
"""

import smtplib
import socket
import time

import pytest

from bench.sink import SinkProcess

pytestmark = pytest.mark.slow

MESSAGE = (
    b"From: a@example.org\r\n"
    b"To: r000001.t@example.org\r\n"
    b"Subject: x\r\n"
    b"\r\n"
    b".a line that starts with a dot\r\n"
    b"..and one with two\r\n"
    b".\r\n"
    b"end\r\n"
)


@pytest.fixture(params=["asyncio", "aiosmtpd"])
def kind(request, monkeypatch):
    if request.param == "aiosmtpd":
        monkeypatch.setenv("BENCH_SINK", "aiosmtpd")
    else:
        monkeypatch.delenv("BENCH_SINK", raising=False)
    return request.param


def test_the_sink_counts_every_copy_and_keeps_the_first_recipients_message(
    kind, tmp_path
):
    sample = tmp_path / "sample.eml"
    with SinkProcess(prefer_postfix=False, sample=sample) as sink:
        assert sink.kind == kind
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            smtp.sendmail("a@example.org", ["r000002.t@example.org"], MESSAGE)
            # One message to two recipients, the first of them the sample's.
            smtp.sendmail(
                "a@example.org",
                ["r000001.t@example.org", "r000003.u@example.org"],
                MESSAGE,
            )
            smtp.sendmail("a@example.org", ["r000002.t@example.org"], MESSAGE)
            assert smtp.noop()[0] == 250
            assert smtp.rset()[0] == 250
        counts = sink.stop()
    assert counts["messages"] == 3
    assert counts["recipients"] == 3
    assert counts["max_copies"] == 2
    assert counts["tags"]["t"] == {"messages": 3, "recipients": 2, "max_copies": 2}
    assert counts["tags"]["u"] == {"messages": 0, "recipients": 1, "max_copies": 1}
    # As the sender wrote it: smtplib stuffed the dots, the sink undid it.
    assert sample.read_bytes() == MESSAGE


def test_data_is_answered_after_the_delay_and_nothing_before_it(kind):
    with SinkProcess(prefer_postfix=False, delay_ms=150) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            started = time.monotonic()
            smtp.sendmail("a@example.org", ["r000001.t@example.org"], MESSAGE)
            first = time.monotonic() - started
            smtp.sendmail("a@example.org", ["r000002.t@example.org"], MESSAGE)
            both = time.monotonic() - started
        assert sink.stop()["messages"] == 2
    assert 0.15 <= first < 1.5
    assert both >= 0.3


def reply(stream) -> tuple[int, str]:
    """One (possibly multi-line) reply."""
    lines = []
    while True:
        line = stream.readline().decode()
        lines.append(line)
        if line[3:4] != "-":
            return int(line[:3]), "".join(lines)


def test_pipelined_commands_are_answered_in_order_each_after_the_one_before(kind):
    with SinkProcess(prefer_postfix=False, delay_ms=100, pipelining=True) as sink:
        with socket.create_connection(("127.0.0.1", sink.port)) as sock:
            stream = sock.makefile("rb")
            assert reply(stream)[0] == 220
            sock.sendall(b"EHLO client\r\n")
            code, text = reply(stream)
            assert code == 250 and "PIPELINING" in text and "8BITMIME" in text
            # Two whole messages in one write, the second's commands behind
            # the first one's delayed answer.
            envelope = (
                b"MAIL FROM:<a@example.org>\r\n"
                b"RCPT TO:<r%06d.t@example.org>\r\n"
                b"DATA\r\n"
            )
            content = MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n"
            started = time.monotonic()
            sock.sendall(envelope % 1 + content + envelope % 2 + content)
            codes = [reply(stream)[0] for _ in range(8)]
            elapsed = time.monotonic() - started
            assert codes == [250, 250, 354, 250, 250, 250, 354, 250]
            sock.sendall(b"DATA\r\n")  # no recipient since the last message
            assert reply(stream)[0] == 503
            sock.sendall(b"QUIT\r\n")
            assert reply(stream)[0] == 221
        counts = sink.stop()
    assert counts["messages"] == 2 and counts["recipients"] == 2
    assert elapsed >= 0.2


def test_without_pipelining_the_sink_does_not_offer_it(kind):
    with SinkProcess(prefer_postfix=False, pipelining=False) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("pipelining")
            assert smtp.has_extn("smtputf8")
        sink.stop()
