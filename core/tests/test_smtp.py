"""The SMTP transport, with and without PIPELINING: same answers, fewer writes."""

import socket

import pytest

from core.services.dispatch.outcome import Outcome, outcome_of
from core.services.mail import smtp as transports
from core.services.mail.message import envelope_recipient, envelope_sender
from core.services.mail.mime import Outgoing

pytestmark = pytest.mark.parametrize(
    "pipelining", [True, False], ids=["pipelined", "one by one"]
)


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


def test_a_dropped_connection_is_retried_later(transport, smtp_server):
    transport.backend.connection.sock.shutdown(socket.SHUT_RDWR)
    outcome = send(transport, envelope(transport, "gleb@example.org"))
    assert outcome.result == Outcome.RETRY
    assert "connection lost" in outcome.response
    assert send(transport, envelope(transport, "gleb@example.org")).result == (
        Outcome.SENT
    )


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
