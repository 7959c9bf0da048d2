"""The SMTP transport, with and without PIPELINING: same answers, fewer writes.

The first tests talk to the aiosmtpd server of smtp.py; the later ones to a
raw scripted server (rawsmtp.py) that answers as odd servers do and shows
what went over the wire.
"""

import random
import smtplib
import socket

import pytest

from core.services.dispatch.outcome import Outcome, outcome_of
from core.services.mail import smtp as transports
from core.services.mail.message import envelope_recipient, envelope_sender
from core.services.mail.mime import Outgoing

from .rawsmtp import RawSmtpServer


@pytest.fixture(params=[True, False], ids=["pipelined", "one by one"])
def pipelining(request):
    """Whether the server offers PIPELINING: each exchange is tried both ways."""
    return request.param


class Answer:
    """What the dispatcher makes of the server's reply."""

    def __init__(self, reply):
        self.result = outcome_of(reply)
        self.response = reply.text


def envelope(transport, address, text="Здравствуйте!\n"):
    outgoing = Outgoing(
        subject="Новости",
        text=text,
        html="",
        from_email="Сервис <noreply@example.com>",
        to=f"Получатель <{address}>",
        headers={"Message-ID": "<1@example.com>"},
        address=address,
    )
    return (
        envelope_sender(outgoing.from_email),
        envelope_recipient(outgoing),
        outgoing.as_bytes(),
    )


def send(transport, envelope):
    return Answer(transport.send(*envelope))


@pytest.fixture
def transport(smtp_server, pipelining):
    smtp_server.recorder.pipelining = pipelining
    transport = transports.SmtpTransport()
    transport.open()
    writes = []
    smtp = transport.backend.connection
    smtp.ehlo_or_helo_if_needed()
    send = smtp.send
    smtp.send = lambda data: (writes.append(data), send(data))[1]
    transport.writes = writes
    yield transport
    transport.close()


def test_a_message_arrives_whole_dots_and_all(transport, smtp_server, pipelining):
    text = "Первая строка\n.\n..две точки\n.точка в начале\nКонец\n"
    outcome = send(transport, envelope(transport, "anna@example.org", text))
    assert outcome.result == Outcome.SENT
    assert "250" in outcome.response
    ((tos, message),) = smtp_server.messages
    assert tos == ["anna@example.org"]
    assert message.get_content().replace("\r\n", "\n") == text
    # Pipelined: the envelope in one write, the content in another.
    assert len(transport.writes) == (2 if pipelining else 4)


def test_a_refused_recipient_fails_with_the_servers_words_and_the_next_goes(
    transport, smtp_server
):
    smtp_server.recorder.reject["gone@example.org"] = "550 5.1.1 No such user here"
    refused = send(transport, envelope(transport, "gone@example.org"))
    assert refused.result == Outcome.FAILED
    assert "550" in refused.response and "No such user" in refused.response
    accepted = send(transport, envelope(transport, "boris@example.org"))
    assert accepted.result == Outcome.SENT
    assert [tos for tos, _ in smtp_server.messages] == [["boris@example.org"]]


@pytest.mark.parametrize(
    ("reply", "result"),
    [
        ("451 4.3.0 Try again later", Outcome.RETRY),
        ("554 5.7.1 Message refused", Outcome.FAILED),
    ],
)
def test_the_answer_to_the_content_decides(transport, smtp_server, reply, result):
    smtp_server.recorder.script["vera@example.org"] = [reply]
    outcome = send(transport, envelope(transport, "vera@example.org"))
    assert outcome.result == result
    assert reply.split()[0] in outcome.response
    again = send(transport, envelope(transport, "vera@example.org"))
    assert again.result == Outcome.SENT


def test_a_session_the_server_dropped_is_opened_again_for_the_message(
    transport, smtp_server
):
    """Servers close idle sessions; nothing of the message had gone out, so it
    goes on a new session at once, costing no try."""
    transport.backend.connection.sock.shutdown(socket.SHUT_RDWR)
    outcome = send(transport, envelope(transport, "gleb@example.org"))
    assert outcome.result == Outcome.SENT
    assert [tos for tos, _ in smtp_server.messages] == [["gleb@example.org"]]


def test_a_server_that_is_gone_is_retried_later(transport, smtp_server):
    transport.backend.connection.sock.shutdown(socket.SHUT_RDWR)
    smtp_server.stop()
    outcome = send(transport, envelope(transport, "gleb@example.org"))
    assert outcome.result == Outcome.RETRY
    assert "connection lost" in outcome.response


def test_a_refused_sender_is_answered_for_the_message(transport, smtp_server):
    smtp_server.recorder.refuse_sender = "451 4.7.1 Sender rate exceeded"
    outcome = send(transport, envelope(transport, "dina@example.org"))
    assert outcome.result == Outcome.RETRY
    assert "Sender rate exceeded" in outcome.response
    smtp_server.recorder.refuse_sender = ""
    assert send(transport, envelope(transport, "dina@example.org")).result == (
        Outcome.SENT
    )
    assert [tos for tos, _ in smtp_server.messages] == [["dina@example.org"]]


# --- against a raw scripted server -------------------------------------------


@pytest.fixture
def raw(settings):
    """Start a raw server with a script; Django's SMTP settings point at it.
    Returns the server and a transport connected to it."""
    started = []

    def start(script=None):
        server = RawSmtpServer(script).start()
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 5
        transport = transports.SmtpTransport()
        started.append((server, transport))
        return server, transport

    yield start
    for server, transport in started:
        transport.close()
        server.stop()


def ehlo(*extensions):
    """An EHLO reply offering `extensions`, continuation lines and all."""
    *first, last = ["raw.test greets you", *extensions]
    return "\n".join([*(f"250-{line}" for line in first), f"250 {last}"])


def as_received(envelope) -> bytes:
    """The content a server stores for a message: what was sent, ended by CRLF."""
    data = envelope[2]
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def mail_parameters(server) -> list[list[str]]:
    """The parameters of each MAIL FROM the server received."""
    return [
        line.split()[2:] for line in server.lines if line.upper().startswith("MAIL ")
    ]


def test_a_354_after_a_refused_recipient_ends_the_empty_message_and_the_next_goes(
    raw, pipelining
):
    # Some servers take DATA even when no recipient was accepted (RFC 2920
    # says they should refuse it); the session must stay usable.
    script = {
        "EHLO": ehlo("8BITMIME"),
        "RCPT": ["550 5.1.1 <gone@example.org>: no such user", "250 2.1.5 Ok"],
        ".": "250 2.0.0 Ok: queued as 2",
    }
    if pipelining:
        script["EHLO"] = ehlo("PIPELINING", "8BITMIME")
        script["."] = ["554 5.5.1 Error: no valid recipients", script["."]]
    server, transport = raw(script)
    refused = send(transport, envelope(transport, "gone@example.org"))
    assert refused.result == Outcome.FAILED
    assert refused.response == "550 5.1.1 <gone@example.org>: no such user"
    message = envelope(transport, "boris@example.org")
    accepted = send(transport, message)
    assert accepted.result == Outcome.SENT
    assert accepted.response == "250 2.0.0 Ok: queued as 2"
    # The next message arrived whole: nothing of the first was left over.
    assert server.messages[-1] == as_received(message)
    if pipelining:
        # The envelope went in one write; DATA's 354 was answered with an
        # empty message, then the session was reset.
        assert [len(read) for read in server.reads] == [1, 3, 1, 3]
        assert [line.upper() for line in server.lines[3:6]] == ["DATA", ".", "RSET"]
        assert server.messages[0] == b""
    else:
        assert server.commands()[:5] == ["EHLO", "MAIL", "RCPT", "RSET", "MAIL"]
        assert len(server.messages) == 1


def test_multi_line_replies_are_read_to_their_last_line(raw, pipelining):
    extensions = ["SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES"]
    if pipelining:
        extensions.insert(1, "PIPELINING")  # offered on a continuation line
    server, transport = raw(
        {
            "EHLO": ehlo(*extensions),
            "RCPT": "250-2.1.5 Recipient ok\n250 2.1.5 Ok",
            ".": [
                "250-2.0.0 Message accepted\n250 2.0.0 Ok: queued as A1",
                "250-2.0.0 Message accepted\n250 2.0.0 Ok: queued as B2",
            ],
        }
    )
    first = send(transport, envelope(transport, "anna@example.org"))
    second = send(transport, envelope(transport, "boris@example.org"))
    assert (first.result, second.result) == (Outcome.SENT, Outcome.SENT)
    assert first.response.endswith("queued as A1")
    assert second.response.endswith("queued as B2")
    assert len(server.messages) == 2
    commands_per_read = [len(read) for read in server.reads]
    if pipelining:
        assert commands_per_read == [1, 3, 3]
    else:
        assert set(commands_per_read) == {1}


@pytest.mark.parametrize(
    "refusal",
    ["500 5.5.1 Command unrecognized", "502 5.5.2 Command not implemented"],
)
def test_a_server_that_refuses_ehlo_is_greeted_with_helo_and_not_pipelined(
    raw, refusal
):
    server, transport = raw({"EHLO": refusal})
    for address in ("anna@example.org", "boris@example.org"):
        assert send(transport, envelope(transport, address)).result == Outcome.SENT
    commands = server.commands()
    assert commands[:3] == ["EHLO", "HELO", "MAIL"]
    assert commands.count("EHLO") == commands.count("HELO") == 1
    assert {len(read) for read in server.reads} == {1}  # one command a write
    assert mail_parameters(server) == [[], []]  # no ESMTP parameters for HELO
    assert len(server.messages) == 2


def test_a_message_that_is_not_ascii_asks_for_smtputf8_where_it_is_offered(
    raw, pipelining
):
    extensions = ["8BITMIME", "SMTPUTF8"] + (["PIPELINING"] if pipelining else [])
    server, transport = raw({"EHLO": ehlo(*extensions)})
    russian = envelope(transport, "anna@example.org", "Здравствуйте!\n")
    english = envelope(transport, "boris@example.org", "Hello!\n")
    assert not russian[2].isascii() and english[2].isascii()
    assert send(transport, russian).result == Outcome.SENT
    assert send(transport, english).result == Outcome.SENT
    russian_mail, english_mail = map(set, mail_parameters(server))
    assert russian_mail == {"SMTPUTF8", "BODY=8BITMIME"}
    assert "SMTPUTF8" not in english_mail
    assert server.messages[0] == as_received(russian)  # its 8bit bytes as they were


def test_a_server_without_smtputf8_is_never_asked_for_it(raw, pipelining):
    extensions = ["8BITMIME"] + (["PIPELINING"] if pipelining else [])
    server, transport = raw({"EHLO": ehlo(*extensions)})
    russian = envelope(transport, "anna@example.org", "Здравствуйте!\n")
    assert send(transport, russian).result == Outcome.SENT
    assert mail_parameters(server) == [["BODY=8BITMIME"]]
    assert server.messages[0] == as_received(russian)  # its 8bit bytes as they were


def test_smtp_short_cuts_match_the_library():
    from core.services.mail.smtp import dot_stuff, quoteaddr

    rng = random.Random(7)
    characters = "abz09.!#$%&'*+/=?^_`{|}~-@ <>\"(),:;[]\\"
    for _ in range(5000):
        address = "".join(rng.choice(characters) for _ in range(rng.randrange(30)))
        assert quoteaddr(address) == smtplib.quoteaddr(address), address
        plain = "".join(rng.choice("abz09._-+") for _ in range(8)) + "@example.org"
        assert quoteaddr(plain) == smtplib.quoteaddr(plain) == f"<{plain}>"
        data = bytes(rng.choice(b".\r\nab ") for _ in range(rng.randrange(60)))
        # smtplib's own dot-stuffing (what SMTP.data sends) is the judge.
        assert dot_stuff(data) == smtplib._quote_periods(data), data
