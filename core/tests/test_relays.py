"""Clients' own SMTP relays: their mail goes through them, logged in; a relay
that refuses keeps its mail queued and says why; nobody else's mail waits."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from core.keys import secret_decrypt
from core.models import Attempt, SmtpRelay
from core.services.dispatch import dispatch_tick
from core.services.relays import relay_of, relay_test

from .factories import UserFactory, due_mailing, people
from .smtp import SmtpServer
from .tls import certificate_authority

pytestmark = pytest.mark.django_db

LOGIN = ("shop@relay.example", "Relay-Pass-2026")


@pytest.fixture(autouse=True)
def _english_and_loopback(client, settings):
    """The texts as written; the test relays listen on loopback, which only
    a service that trusts every client allows."""
    settings.SMTP_RELAY_ALLOW_PRIVATE = True
    settings.SMTP_RELAY_PORTS = list(range(1024, 65536))
    # Also in the connections' threads, which take the service's language.
    settings.LANGUAGE_CODE = "en"
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def own_server():
    server = SmtpServer(login=LOGIN).start()
    yield server
    server.stop()


def relay_for(
    owner, server, *, password=LOGIN[1], security=SmtpRelay.Security.NONE, **fields
):
    relay = SmtpRelay(
        owner=owner,
        host="127.0.0.1",
        port=server.port,
        security=security,
        username=LOGIN[0],
        **fields,
    )
    relay.password_set(password)
    relay.full_clean()
    relay.save()
    return relay


def statuses(mailing):
    return sorted(
        Attempt.objects.filter(run__mailing=mailing).values_list("status", flat=True)
    )


def test_a_clients_mail_goes_through_their_relay_and_everyone_elses_through_ours(
    owner, smtp_server, own_server
):
    relay_for(owner, own_server)
    mine = people(owner, 5)
    due_mailing(owner, mine)
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    theirs = people(other, 4)
    due_mailing(other, theirs)

    assert dispatch_tick().sent == 9
    assert own_server.recorder.count_by_address() == {p.email: 1 for p in mine}
    assert smtp_server.recorder.count_by_address() == {p.email: 1 for p in theirs}
    assert own_server.logins and all(accepted for _, accepted in own_server.logins)
    relay = SmtpRelay.objects.get()
    assert relay.problem == "" and relay.checked_at is not None


def test_a_relay_switched_off_sends_through_the_services_again(
    owner, smtp_server, own_server
):
    relay_for(owner, own_server, is_active=False)
    recipients = people(owner, 3)
    due_mailing(owner, recipients)
    assert dispatch_tick().sent == 3
    assert smtp_server.recorder.count_by_address() == {p.email: 1 for p in recipients}
    assert not own_server.recorder.messages


def test_a_relay_that_refuses_the_login_loses_nothing_and_says_why(
    client, owner, smtp_server, own_server
):
    relay_for(owner, own_server, password="wrong")
    mailing = due_mailing(owner, people(owner, 4))
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    due_mailing(other, people(other, 2))

    assert dispatch_tick().sent == 2  # the other client's, through ours
    assert statuses(mailing) == ["queued"] * 4
    # Nothing of theirs went through the service's relay instead.
    assert not own_server.recorder.messages
    assert len(smtp_server.recorder.messages) == 2
    relay = SmtpRelay.objects.get()
    assert "535" in relay.problem, relay.problem
    run = mailing.runs.get()
    client.force_login(owner)
    page = client.get(reverse("admin:core_mailingrun_change", args=[run.pk]))
    assert "Your SMTP relay" in page.content.decode()
    assert "535" in page.content.decode()

    # The right password: the next tick sends what waited, once each.
    relay.password_set(LOGIN[1])
    relay.save()
    assert dispatch_tick().sent == 4
    assert statuses(mailing) == ["sent"] * 4
    relay.refresh_from_db()
    assert relay.problem == ""


def test_a_password_that_no_key_opens_keeps_the_mail_queued(
    owner, smtp_server, own_server, settings
):
    relay_for(owner, own_server)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # rotated wrongly
    mailing = due_mailing(owner, people(owner, 3))
    dispatch_tick()
    assert statuses(mailing) == ["queued"] * 3
    assert not own_server.recorder.messages and not smtp_server.recorder.messages
    assert "cannot be decrypted" in SmtpRelay.objects.get().problem


def test_a_relays_own_connection_cap_holds(owner, own_server, smtp_server):
    own_server.recorder.delay = 0.02
    relay_for(owner, own_server, max_connections=1)
    due_mailing(owner, people(owner, 30))
    assert dispatch_tick().sent == 30
    assert own_server.recorder.peak_sessions == 1


def test_the_password_is_kept_only_encrypted(owner, own_server, capsys):
    relay_for(owner, own_server)
    stored = SmtpRelay.objects.values_list("password", flat=True).get()
    assert LOGIN[1] not in stored
    assert secret_decrypt(stored).decode() == LOGIN[1]
    call_command("dumpdata", "core.smtprelay")
    assert LOGIN[1] not in capsys.readouterr().out
    # Nor in a log line that names the relay.
    assert LOGIN[1] not in repr(relay_of(SmtpRelay.objects.get()))


def test_rotation_re_encrypts_relay_passwords(owner, own_server, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    relay = relay_for(owner, own_server)
    settings.ENCRYPTION_KEYS = [new, old]
    call_command("encryption_rotate")
    settings.ENCRYPTION_KEYS = [new]
    relay.refresh_from_db()
    assert relay.password_get() == LOGIN[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "169.254.0.9", "::1"])
def test_a_relay_on_the_services_own_network_is_refused(owner, settings, host):
    settings.SMTP_RELAY_ALLOW_PRIVATE = False
    relay = SmtpRelay(owner=owner, host=host, port=2525)
    with pytest.raises(ValidationError, match="private network"):
        relay.full_clean()


def test_even_a_saved_relay_is_not_connected_to_on_a_private_address(
    owner, own_server, smtp_server, settings
):
    """Saved while allowed (or its DNS changed since): checked again before
    each connection."""
    relay_for(owner, own_server)
    settings.SMTP_RELAY_ALLOW_PRIVATE = False
    mailing = due_mailing(owner, people(owner, 2))
    dispatch_tick()
    assert statuses(mailing) == ["queued"] * 2
    assert not own_server.recorder.messages
    assert "private network" in SmtpRelay.objects.get().problem


def test_only_the_usual_ports_unless_configured(owner, settings):
    settings.SMTP_RELAY_PORTS = [25, 465, 587, 2525]
    relay = SmtpRelay(owner=owner, host="127.0.0.1", port=6379)
    with pytest.raises(ValidationError, match="one of the ports 25, 465, 587, 2525"):
        relay.full_clean()


def test_test_connection_says_whether_the_relay_takes_the_login(
    client, owner, own_server
):
    relay = relay_for(owner, own_server)
    client.force_login(owner)
    url = reverse("admin:core_smtprelay_changelist")
    page = client.post(
        url, {"action": "test_connection", "_selected_action": [relay.pk]}, follow=True
    )
    assert "connected and logged in" in page.content.decode()
    relay.password_set("wrong")
    relay.save()
    page = client.post(
        url, {"action": "test_connection", "_selected_action": [relay.pk]}, follow=True
    )
    assert "535" in page.content.decode()
    assert "535" in SmtpRelay.objects.get().problem


def test_a_relay_that_is_down_is_told_as_such(owner):
    from .smtp import free_port

    relay = SmtpRelay(owner=owner, host="127.0.0.1", port=free_port(), security="none")
    relay.save()
    problem = relay_test(relay)
    assert problem and "refused" in problem.lower()


def test_the_admin_form_stores_the_password_and_never_shows_it(client, owner):
    client.force_login(owner)
    add = client.get(reverse("admin:core_smtprelay_add")).content.decode()
    assert 'name="new_password"' in add
    assert "Last connection" not in add  # nothing to tell before it is saved
    page = client.post(
        reverse("admin:core_smtprelay_add"),
        {
            "host": "127.0.0.1",
            "port": "2525",
            "security": "none",
            "username": LOGIN[0],
            "new_password": LOGIN[1],
            "max_connections": "",
            "rate_limit": "5/s",
            "is_active": "on",
        },
    )
    assert page.status_code == 302, page.content.decode()[:3000]
    relay = SmtpRelay.objects.get()
    assert relay.owner == owner and relay.password_get() == LOGIN[1]
    change = reverse("admin:core_smtprelay_change", args=[relay.pk])
    assert LOGIN[1] not in client.get(change).content.decode()
    # Saved again without a password: the saved one stays.
    client.post(
        change,
        {
            "host": "127.0.0.1",
            "port": "2525",
            "security": "none",
            "username": LOGIN[0],
            "new_password": "",
            "max_connections": "",
            "rate_limit": "nonsense",
            "is_active": "on",
        },
    )
    relay.refresh_from_db()
    assert relay.rate_limit == "5/s"  # the bad rate was refused, nothing saved
    assert relay.password_get() == LOGIN[1]


def test_one_relay_per_client_and_nobody_sees_anothers(client, owner, own_server):
    relay = relay_for(owner, own_server)
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    client.force_login(other)
    assert (
        client.get(reverse("admin:core_smtprelay_change", args=[relay.pk])).status_code
        == 302
    )
    assert (
        relay.host
        not in client.get(reverse("admin:core_smtprelay_changelist")).content.decode()
    )
    client.force_login(owner)
    page = client.post(
        reverse("admin:core_smtprelay_add"),
        {"host": "127.0.0.1", "port": "2525", "security": "none", "is_active": "on"},
    )
    assert "You have a relay already" in page.content.decode()


def test_relays_add_no_queries_per_message(owner, own_server, smtp_server):
    """A client relay costs a few queries a delivery (which relays have mail,
    one more claim that finds the queue empty), none per message."""
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    mine, theirs = people(owner, 400), people(other, 400)

    def tick_queries() -> int:
        due_mailing(owner, mine)
        due_mailing(other, theirs)
        with CaptureQueriesContext(connection) as queries:
            assert dispatch_tick().sent == 800
        return len(queries)

    without = tick_queries()
    relay_for(owner, own_server)
    with_relay = tick_queries()
    assert with_relay - without <= 8, (without, with_relay)
    assert own_server.recorder.count_by_address().total() == 400


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_relays_deliver_side_by_side_in_threads(
    owner, own_server, smtp_server, settings
):
    """With PostgreSQL each relay has a thread of its own: a slow client
    relay and the service's deliver together, each recipient once."""
    settings.DISPATCH_PROCESSES = 1  # threads of one process, no helpers
    own_server.recorder.delay = 0.05
    smtp_server.recorder.delay = 0.02
    relay_for(owner, own_server)
    mine = people(owner, 20)
    due_mailing(owner, mine)
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    theirs = people(other, 200)
    due_mailing(other, theirs)
    assert dispatch_tick().sent == 220
    assert own_server.recorder.count_by_address() == {p.email: 1 for p in mine}
    assert smtp_server.recorder.count_by_address() == {p.email: 1 for p in theirs}
    assert set(Attempt.objects.values_list("status", flat=True)) == {"sent"}
    # Side by side, not one after the other: the service's relay took mail
    # while the slow one was still taking its own.
    slow, quick = own_server.recorder.received_at, smtp_server.recorder.received_at
    assert min(quick) < max(slow) and min(slow) < max(quick)


def test_a_manager_sees_a_clients_relay_read_only_without_its_password(
    client, manager, owner, own_server
):
    relay = relay_for(owner, own_server)
    client.force_login(manager)
    page = client.get(reverse("admin:core_smtprelay_change", args=[relay.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert relay.host in text and LOGIN[0] in text
    assert LOGIN[1] not in text and relay.password not in text
    assert 'name="new_password"' not in text


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_a_relay_over_tls_is_verified_and_used(
    owner, smtp_server, tmp_path, monkeypatch, mode
):
    """The relay's certificate is checked against the system's authorities
    (here the test's own, through SSL_CERT_FILE); mail goes over TLS."""
    ca_file, context = certificate_authority(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    kind = "starttls" if mode == "starttls" else "implicit_tls"
    server = SmtpServer(login=LOGIN, **{kind: context}).start()
    try:
        relay_for(owner, server, security=mode)
        recipients = people(owner, 3)
        due_mailing(owner, recipients)
        assert dispatch_tick().sent == 3
        assert server.recorder.count_by_address() == {p.email: 1 for p in recipients}
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_a_relay_whose_certificate_is_not_trusted_gets_nothing(
    owner, smtp_server, tmp_path, mode
):
    """No authority vouches for it: refused, and nothing goes in plain text
    or elsewhere instead."""
    _, context = certificate_authority(tmp_path)
    kind = "starttls" if mode == "starttls" else "implicit_tls"
    server = SmtpServer(login=LOGIN, **{kind: context}).start()
    try:
        relay_for(owner, server, security=mode)
        mailing = due_mailing(owner, people(owner, 2))
        dispatch_tick()
        assert statuses(mailing) == ["queued"] * 2
        assert not server.recorder.messages and not smtp_server.recorder.messages
        assert "certificate verify failed" in SmtpRelay.objects.get().problem
    finally:
        server.stop()


def test_starttls_asked_of_a_relay_that_does_not_offer_it_sends_nothing(
    owner, own_server, smtp_server
):
    relay_for(owner, own_server, security="starttls")
    mailing = due_mailing(owner, people(owner, 2))
    dispatch_tick()
    assert statuses(mailing) == ["queued"] * 2
    assert not own_server.recorder.messages
    assert "STARTTLS" in SmtpRelay.objects.get().problem


def test_a_connection_goes_to_the_address_checked_not_a_new_answer(
    owner, own_server, smtp_server, monkeypatch
):
    """A name that resolves to an allowed address when checked and to
    another when connected to (DNS rebinding) is connected to where the
    check said: the second answer is never asked for."""
    import socket

    import core.network

    real = socket.getaddrinfo

    def second_answer(host, *args, **kwargs):
        # What the name says to anyone but the check: another address.
        return real("127.0.0.2" if host == "relay.test" else host, *args, **kwargs)

    class Checked:
        IPPROTO_TCP = socket.IPPROTO_TCP

        @staticmethod
        def getaddrinfo(host, *args, **kwargs):
            return real("127.0.0.1" if host == "relay.test" else host, *args, **kwargs)

    monkeypatch.setattr(core.network, "socket", Checked)
    monkeypatch.setattr(socket, "getaddrinfo", second_answer)
    relay = relay_for(owner, own_server)
    SmtpRelay.objects.filter(pk=relay.pk).update(host="relay.test")
    recipients = people(owner, 2)
    due_mailing(owner, recipients)
    assert dispatch_tick().sent == 2
    assert own_server.recorder.count_by_address() == {p.email: 1 for p in recipients}


def test_a_password_never_goes_unencrypted_to_a_public_relay(owner, settings):
    settings.SMTP_RELAY_ALLOW_PRIVATE = False
    relay = SmtpRelay(owner=owner, host="8.8.8.8", port=2525, security="none")
    relay.password_set("secret")
    with pytest.raises(ValidationError, match="never sent over the internet"):
        relay.full_clean()
    relay.security = "starttls"
    relay.full_clean()  # encrypted: fine


def test_the_port_is_checked_again_before_each_connection(
    owner, own_server, smtp_server, settings
):
    relay_for(owner, own_server)
    settings.SMTP_RELAY_PORTS = [587]
    mailing = due_mailing(owner, people(owner, 2))
    dispatch_tick()
    assert statuses(mailing) == ["queued"] * 2
    assert "one of the ports 587" in SmtpRelay.objects.get().problem


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rate_limited_relay_sends_from_one_process_at_a_time(
    owner, own_server, smtp_server, settings
):
    """Without a cache that counts across processes, the relay's own rate
    holds only if one process sends through it: the others leave its mail
    for that one (here another session holds the relay's lock)."""
    from core.services.dispatch.workers import RELAY_LOCK

    settings.DISPATCH_PROCESSES = 1
    relay = relay_for(owner, own_server, rate_limit="1000/s")
    mailing = due_mailing(owner, people(owner, 3))
    other = UserFactory(email="other@example.com", verified=True, groups=["clients"])
    due_mailing(other, people(other, 2))
    elsewhere = connection.get_new_connection(connection.get_connection_params())
    try:
        with elsewhere.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [RELAY_LOCK, relay.pk])
        assert dispatch_tick().sent == 2  # the other client's, through ours
        assert statuses(mailing) == ["queued"] * 3
        with elsewhere.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RELAY_LOCK, relay.pk])
        assert dispatch_tick().sent == 3
        assert own_server.recorder.count_by_address().total() == 3
    finally:
        elsewhere.close()
