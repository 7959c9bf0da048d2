"""The Dovecot fixture is a real IMAP and POP3 server, with and without TLS."""

import imaplib
import poplib
import ssl
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow  # starts a Dovecot

MESSAGE = b"From: mailer@example.com\r\nSubject: Undelivered\r\n\r\nBounced.\r\n"


def test_imap_and_imaps_see_an_appended_message(dovecot_box):
    dovecot_box.append(MESSAGE)
    context = ssl.create_default_context(cafile=dovecot_box.cafile)
    with (
        imaplib.IMAP4(dovecot_box.host, dovecot_box.imap_port, timeout=10) as plain,
        imaplib.IMAP4_SSL(
            dovecot_box.host, dovecot_box.imaps_port, ssl_context=context, timeout=10
        ) as tls,
    ):
        for imap in (plain, tls):
            imap.login(dovecot_box.user, dovecot_box.password)
            assert imap.select("INBOX") == ("OK", [b"1"])
            status, data = imap.fetch("1", "(BODY.PEEK[])")
            assert status == "OK"
            assert data[0][1] == MESSAGE
    assert dovecot_box.count() == 1
    assert dovecot_box.flagged() == 0
    url = urlsplit(dovecot_box.imaps_url)
    assert (url.scheme, url.hostname, url.port, url.path) == (
        "imaps",
        "127.0.0.1",
        dovecot_box.imaps_port,
        "/INBOX",
    )
    assert (url.username, unquote(url.password)) == ("bounces", dovecot_box.password)


def test_pop3_and_pop3s_see_an_appended_message(dovecot_box):
    dovecot_box.append(MESSAGE)
    context = ssl.create_default_context(cafile=dovecot_box.cafile)
    plain = poplib.POP3(dovecot_box.host, dovecot_box.pop3_port, timeout=10)
    tls = poplib.POP3_SSL(
        dovecot_box.host, dovecot_box.pop3s_port, context=context, timeout=10
    )
    for pop in (plain, tls):
        try:
            pop.user(dovecot_box.user)
            pop.pass_(dovecot_box.password)
            assert pop.stat()[0] == 1
            assert b"\r\n".join(pop.retr(1)[1]) + b"\r\n" == MESSAGE
        finally:
            pop.quit()  # without a DELE, QUIT leaves the message where it is
    assert dovecot_box.count() == 1


def test_a_wrong_password_is_refused(dovecot_box):
    with imaplib.IMAP4(dovecot_box.host, dovecot_box.imap_port, timeout=10) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(dovecot_box.user, dovecot_box.password + "x")
    pop = poplib.POP3(dovecot_box.host, dovecot_box.pop3_port, timeout=10)
    try:
        pop.user(dovecot_box.user)
        with pytest.raises(poplib.error_proto):
            pop.pass_(dovecot_box.password + "x")
    finally:
        pop.close()
    # The right password still works straight after.
    assert dovecot_box.count() == 0
