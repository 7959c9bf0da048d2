"""The SMTP transport, with and without PIPELINING: same answers, fewer writes."""

import socket

import pytest

from core.services import transport as transports
from core.services.emails import Outgoing

pytestmark = pytest.mark.parametrize(
    "pipelining", [True, False], ids=["pipelined", "one by one"]
)


def envelope(transport, address, text="Здравствуйте!\n"):
    return transport.build(
        Outgoing(
            subject="Новости",
            text=text,
            html="",
            from_email="Сервис <noreply@example.com>",
            to=f"Получатель <{address}>",
            headers={"Message-ID": "<1@example.com>"},
            address=address,
        )
    )


@pytest.fixture
def transport(smtp_server, pipelining):
    smtp_server.recorder.pipelining = pipelining
    transport = transports.SmtpTransport()
    transport.prepare()
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
    outcome = transport.send(envelope(transport, "anna@example.org", text))
    assert outcome.result == transports.SENT
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
    refused = transport.send(envelope(transport, "gone@example.org"))
    assert refused.result == transports.FAILED
    assert "550" in refused.response and "No such user" in refused.response
    accepted = transport.send(envelope(transport, "boris@example.org"))
    assert accepted.result == transports.SENT
    assert [tos for tos, _ in smtp_server.messages] == [["boris@example.org"]]


@pytest.mark.parametrize(
    ("reply", "result"),
    [
        ("451 4.3.0 Try again later", transports.RETRY),
        ("554 5.7.1 Message refused", transports.FAILED),
    ],
)
def test_the_answer_to_the_content_decides(transport, smtp_server, reply, result):
    smtp_server.recorder.script["vera@example.org"] = [reply]
    outcome = transport.send(envelope(transport, "vera@example.org"))
    assert outcome.result == result
    assert reply.split()[0] in outcome.response
    again = transport.send(envelope(transport, "vera@example.org"))
    assert again.result == transports.SENT


def test_a_dropped_connection_is_retried_later(transport, smtp_server):
    transport.backend.connection.sock.shutdown(socket.SHUT_RDWR)
    outcome = transport.send(envelope(transport, "gleb@example.org"))
    assert outcome.result == transports.RETRY
    assert "connection lost" in outcome.response
    assert transport.send(envelope(transport, "gleb@example.org")).result == (
        transports.SENT
    )


def test_a_refused_sender_is_answered_for_the_message(transport, smtp_server):
    smtp_server.recorder.refuse_sender = "451 4.7.1 Sender rate exceeded"
    outcome = transport.send(envelope(transport, "dina@example.org"))
    assert outcome.result == transports.RETRY
    assert "Sender rate exceeded" in outcome.response
    smtp_server.recorder.refuse_sender = ""
    assert transport.send(envelope(transport, "dina@example.org")).result == (
        transports.SENT
    )
    assert [tos for tos, _ in smtp_server.messages] == [["dina@example.org"]]
