"""Sender domains: keys made and kept encrypted, the records to publish, and
the DNS check against a real DNS server (dnsmasq, core/tests/dns.py)."""

import dns.resolver
import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from core.keys import SecretUnavailable, secret_decrypt
from core.models import SenderDomain
from core.services.senders import DnsUnavailable, sender_domain_check

from .factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def domain(owner):
    return SenderDomain.objects.create(owner=owner, domain="Shop.Example")


def records(domain, *kinds):
    """The domain's records as its owner would publish them."""
    published = {}
    for record in domain.dns_records():
        if record["kind"] in kinds:
            published.setdefault(record["name"], []).append(record["value"])
    return published


def test_a_new_domain_gets_its_own_key_stored_only_encrypted(domain, owner):
    assert domain.domain == "shop.example"
    assert domain.dkim_selector.startswith("ms") and len(domain.dkim_selector) == 8
    stored = SenderDomain.objects.values_list("dkim_private_key", flat=True).get()
    assert "PRIVATE KEY" not in stored
    assert secret_decrypt(stored).startswith(b"-----BEGIN PRIVATE KEY-----")
    other = SenderDomain.objects.create(owner=owner, domain="news.shop.example")
    assert other.dkim_selector != domain.dkim_selector
    assert other.dkim_public_key != domain.dkim_public_key


def test_no_key_appears_in_a_dump(domain, capsys):
    call_command("dumpdata", "core.senderdomain")
    assert "PRIVATE KEY" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "value, expected",
    [("Shop.Example.", "shop.example"), ("цветы.рф", "xn--b1ag3bn2a.xn--p1ai")],
)
def test_a_domain_is_kept_as_dns_names_it(owner, value, expected):
    domain = SenderDomain(owner=owner, domain=value)
    domain.full_clean()
    assert domain.domain == expected


@pytest.mark.parametrize("value", ["not a domain", "localhost", "shop..example", ""])
def test_what_is_not_a_domain_is_refused(owner, value):
    with pytest.raises(ValidationError):
        SenderDomain(owner=owner, domain=value).full_clean()


def test_without_an_encryption_key_a_domain_cannot_be_added(owner, settings):
    settings.DEBUG = False
    settings.ENCRYPTION_KEYS = []
    with pytest.raises(ValidationError, match="ENCRYPTION_KEYS"):
        SenderDomain(owner=owner, domain="shop.example").full_clean()
    with pytest.raises(SecretUnavailable):
        SenderDomain.objects.create(owner=owner, domain="shop.example")
    assert not SenderDomain.objects.exists()


def test_keys_rotate_and_a_removed_key_says_so(owner, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    domain = SenderDomain.objects.create(owner=owner, domain="shop.example")
    pem = secret_decrypt(domain.dkim_private_key)
    settings.ENCRYPTION_KEYS = [new, old]
    call_command("encryption_rotate")
    domain.refresh_from_db()
    settings.ENCRYPTION_KEYS = [new]
    assert secret_decrypt(domain.dkim_private_key) == pem
    # Rotated wrongly: the key the secrets are under is gone.
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(SecretUnavailable, match="encryption_rotate"):
        secret_decrypt(domain.dkim_private_key)
    with pytest.raises(CommandError, match="ENCRYPTION_KEYS"):
        call_command("encryption_rotate")
    settings.ENCRYPTION_KEYS = [new]
    domain.refresh_from_db()
    assert secret_decrypt(domain.dkim_private_key) == pem  # nothing was lost


def test_the_records_to_publish(domain, settings):
    settings.SENDER_SPF = ""
    settings.EMAIL_HOST = "203.0.113.7"
    dkim, spf, dmarc = domain.dns_records()
    assert dkim["name"] == f"{domain.dkim_selector}._domainkey.shop.example"
    assert dkim["type"] == "TXT"
    assert dkim["value"] == f"v=DKIM1; k=rsa; p={domain.dkim_public_key}"
    assert (spf["name"], spf["value"]) == (
        "shop.example",
        "v=spf1 ip4:203.0.113.7 ~all",
    )
    assert dmarc["name"] == "_dmarc.shop.example"
    assert dmarc["value"].startswith("v=DMARC1; p=none")
    settings.SENDER_SPF = "include:_spf.mailer.example"
    assert domain.dns_records()[1]["value"] == (
        "v=spf1 include:_spf.mailer.example ~all"
    )


def test_a_domain_is_verified_once_its_dkim_record_is_published(domain, dns_server):
    states = sender_domain_check(domain)
    assert states == {"dkim": "missing", "spf": "missing", "dmarc": "missing"}
    assert domain.verified_at is None
    dns_server.publish(records(domain, "dkim", "spf", "dmarc"))
    states = sender_domain_check(domain)
    assert states == {"dkim": "found", "spf": "found", "dmarc": "found"}
    domain.refresh_from_db()
    assert domain.verified_at is not None and domain.checked_at is not None
    assert domain.dns_check == states


def test_a_record_that_stops_matching_unverifies_the_domain(domain, dns_server, owner):
    dns_server.publish(records(domain, "dkim"))
    sender_domain_check(domain)
    assert domain.verified_at is not None
    # The zone now publishes another key under the selector, and an SPF
    # record without the service's relay.
    other = SenderDomain.objects.create(owner=owner, domain="other.example")
    dns_server.publish(
        {
            domain.dkim_name: [f"v=DKIM1; k=rsa; p={other.dkim_public_key}"],
            "shop.example": ["v=spf1 include:_spf.google.com ~all"],
        }
    )
    states = sender_domain_check(domain)
    assert (states["dkim"], states["spf"]) == ("different", "different")
    domain.refresh_from_db()
    assert domain.verified_at is None


def test_the_domains_dns_decides_between_two_clients_adding_it(domain, dns_server):
    """Adding a domain proves nothing: publishing its record does."""
    rival = SenderDomain.objects.create(owner=UserFactory(), domain="shop.example")
    dns_server.publish(records(domain, "dkim"))
    assert sender_domain_check(domain)["dkim"] == "found"
    assert sender_domain_check(rival)["dkim"] == "missing"
    assert rival.verified_at is None


def test_dns_that_does_not_answer_changes_nothing(domain, dns_server, settings):
    dns_server.publish(records(domain, "dkim"))
    sender_domain_check(domain)
    verified_at = domain.verified_at
    dns_server.stop()
    # A port that takes queries and never answers.
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    settings.DNS_RESOLVER = f"127.0.0.1:{silent.getsockname()[1]}"
    settings.DNS_TIMEOUT = 0.3
    try:
        with translation.override("en"), pytest.raises(DnsUnavailable) as failed:
            sender_domain_check(domain)
        assert str(failed.value) == (
            f"The DNS did not answer for {domain.dkim_name} in time."
        )
    finally:
        silent.close()
    domain.refresh_from_db()
    assert domain.verified_at == verified_at and domain.dns_check["dkim"] == "found"


def test_the_daily_task_checks_every_domain(domain, dns_server):
    from core.tasks import check_sender_domains

    dns_server.publish(records(domain, "dkim"))
    assert check_sender_domains() == "sender domains checked: 1, verified: 1"


def test_the_resolver_setting_names_host_and_port(settings):
    from core.services.senders import resolver

    settings.DNS_RESOLVER = "127.0.0.1:5353"
    made = resolver()
    assert (made.nameservers, made.port) == (["127.0.0.1"], 5353)
    settings.DNS_RESOLVER = "192.0.2.1"
    assert (resolver().nameservers, resolver().port) == (["192.0.2.1"], 53)
    settings.DNS_RESOLVER = ""
    assert isinstance(resolver(), dns.resolver.Resolver)


# --- the admin -------------------------------------------------------------


@pytest.fixture
def english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def test_a_client_adds_a_domain_and_sees_the_records_to_publish(english, owner):
    from django.urls import reverse

    english.force_login(owner)
    added = english.post(
        reverse("admin:core_senderdomain_add"), {"domain": "Shop.Example"}
    )
    assert added.status_code == 302
    domain = SenderDomain.objects.get(owner=owner)
    page = english.get(reverse("admin:core_senderdomain_change", args=[domain.pk]))
    html = page.content.decode()
    for record in domain.dns_records():
        assert record["name"] in html and record["value"] in html
    assert html.count('data-copy="record-') == 3
    assert "copy-buttons.js" in html
    again = english.post(
        reverse("admin:core_senderdomain_add"), {"domain": "shop.example"}
    )
    assert "You have added this domain already." in again.content.decode()
    bad = english.post(reverse("admin:core_senderdomain_add"), {"domain": "no such"})
    assert "is not a domain name" in bad.content.decode()
    assert SenderDomain.objects.count() == 1


def test_the_check_action_verifies_and_the_list_says_so(
    english, owner, domain, dns_server
):
    from django.urls import reverse

    dns_server.publish(records(domain, "dkim", "spf"))
    english.force_login(owner)
    url = reverse("admin:core_senderdomain_changelist")
    done = english.post(
        url, {"action": "check_dns", "_selected_action": [domain.pk]}, follow=True
    )
    assert "1 domain verified." in done.content.decode()
    domain.refresh_from_db()
    assert domain.verified_at is not None
    assert domain.dns_check == {"dkim": "found", "spf": "found", "dmarc": "missing"}


def test_another_client_never_sees_a_domain_and_a_manager_only_reads(
    english, owner, domain, manager
):
    from django.urls import reverse

    other = UserFactory(verified=True, groups=["clients"])
    english.force_login(other)
    listing = english.get(reverse("admin:core_senderdomain_changelist"))
    assert "shop.example" not in listing.content.decode()
    change = reverse("admin:core_senderdomain_change", args=[domain.pk])
    assert english.get(change).status_code in (302, 403, 404)
    english.force_login(manager)
    listing = english.get(reverse("admin:core_senderdomain_changelist"))
    assert "shop.example" in listing.content.decode()
    assert "check_dns" not in listing.content.decode()
    assert english.post(change, {"domain": "evil.example"}).status_code == 403


# --- mail from the client's own domain ------------------------------------


def verified_domain(owner, opendkim):
    """shop.example, verified, its records on the DNS OpenDKIM asks."""
    from django.utils import timezone

    domain = SenderDomain.objects.create(owner=owner, domain="shop.example")
    SenderDomain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())
    opendkim.publish(records(domain, "dkim", "spf", "dmarc"))
    return domain


def shop_message(owner):
    """A message from the shop's own address, replies to another of its."""
    from .factories import MessageFactory

    return MessageFactory(
        owner=owner,
        from_name="Цветочная лавка",
        from_email="news@shop.example",
        reply_to="hello@shop.example",
    )


def test_a_message_may_name_only_a_verified_domain_of_its_owner(owner, domain):
    from .factories import MessageFactory

    message = MessageFactory.build(owner=owner, from_email="news@shop.example")
    with pytest.raises(ValidationError) as refused:
        message.full_clean()
    assert "from_email" in refused.value.message_dict
    SenderDomain.objects.filter(pk=domain.pk).update(verified_at="2026-12-01T00:00Z")
    message.full_clean()
    rival = UserFactory()
    theirs = MessageFactory.build(owner=rival, from_email="news@shop.example")
    with pytest.raises(ValidationError):
        theirs.full_clean()  # shop.example is verified, but not theirs


def test_mail_goes_out_from_the_clients_domain_signed_and_verifies(
    owner, smtp_server, opendkim
):
    import dkim

    from core.services.dispatch import dispatch_tick

    from .factories import due_mailing, people

    domain = verified_domain(owner, opendkim)
    message = shop_message(owner)
    recipients = people(owner, 3)
    due_mailing(owner, recipients, message=message)
    assert dispatch_tick().sent == 3
    record = {
        f"{domain.dkim_name}.".encode(): domain.dns_records()[0]["value"].encode()
    }
    for (_tos, parsed), raw in zip(
        smtp_server.messages, smtp_server.recorder.raw, strict=True
    ):
        assert parsed["From"] == "Цветочная лавка <news@shop.example>"
        assert parsed["Reply-To"] == "hello@shop.example"
        assert f"d=shop.example; s={domain.dkim_selector}" in parsed["DKIM-Signature"]
        assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record.get(name))
        assert opendkim.verify(raw) == (True, "")


def test_mail_from_the_services_address_is_not_signed(owner, smtp_server):
    from core.services.dispatch import dispatch_tick

    from .factories import MessageFactory, due_mailing, people

    message = MessageFactory(owner=owner, from_name="Лавка")
    due_mailing(owner, people(owner, 1), message=message)
    assert dispatch_tick().sent == 1
    ((_, parsed),) = smtp_server.messages
    assert parsed["DKIM-Signature"] is None
    assert parsed["From"].startswith("Лавка <") and "shop" not in parsed["From"]


# --- the return path on the client's domain --------------------------------

BOUNCE_HOST = "bounces.mailer.example"


def test_the_return_path_record_is_offered_only_with_a_bounce_host(domain, settings):
    settings.RETURN_PATH_HOST = ""
    assert [r["kind"] for r in domain.dns_records()] == ["dkim", "spf", "dmarc"]
    settings.RETURN_PATH_HOST = BOUNCE_HOST
    *_, return_path = domain.dns_records()
    assert return_path == {
        "kind": "return-path",
        "name": "bounces.shop.example",
        "type": "CNAME",
        "value": BOUNCE_HOST,
    }


def test_mail_returns_to_the_clients_domain_once_its_alias_is_found(
    owner, domain, dns_server, smtp_server, settings
):
    """Until the check finds bounces.<domain> pointing at the service's
    bounce host, bounces go to BOUNCE_ADDRESS; after, to the client's own
    subdomain, and a bounce there still names its attempt."""
    from core.models import Attempt
    from core.services.dispatch import dispatch_tick
    from core.services.mail.verp import attempts_named

    from .factories import ClientFactory, due_mailing

    settings.RETURN_PATH_HOST = BOUNCE_HOST
    settings.BOUNCE_ADDRESS = "bounces@mailer.example"
    published = records(domain, "dkim", "spf", "dmarc")

    def send_one():
        due_mailing(owner, [ClientFactory(owner=owner)], message=shop_message(owner))
        smtp_server.recorder.senders.clear()
        assert dispatch_tick().sent == 1
        (sender,) = smtp_server.recorder.senders
        return sender

    dns_server.publish(published)
    assert sender_domain_check(domain)["return-path"] == "missing"
    assert domain.return_path_domain() == ""
    assert send_one().endswith("@mailer.example")
    dns_server.publish(published, cnames={"bounces.shop.example": "elsewhere.example"})
    assert sender_domain_check(domain)["return-path"] == "different"
    assert send_one().endswith("@mailer.example")
    dns_server.publish(published, cnames={"bounces.shop.example": BOUNCE_HOST})
    assert sender_domain_check(domain)["return-path"] == "found"
    assert domain.return_path_domain() == "bounces.shop.example"
    sender = send_one()
    assert sender.startswith("bounces+") and sender.endswith("@bounces.shop.example")
    attempt = Attempt.objects.latest("pk")
    assert attempts_named(f"Final-Recipient: x\nOriginal-Envelope-Id: {sender}") == [
        attempt.pk
    ]
    settings.RETURN_PATH_HOST = ""  # switched off: back to BOUNCE_ADDRESS
    assert domain.return_path_domain() == ""
    assert send_one().endswith("@mailer.example")


@pytest.mark.parametrize("limit", [20, 0])
@pytest.mark.parametrize("broken", ["unverified", "key"])
def test_a_run_whose_mail_cannot_be_signed_pauses_and_says_why(
    owner, smtp_server, broken, settings, limit
):
    # Pausing after failures in a row switched off (0) still pauses it:
    # otherwise the tick would claim the same attempts again and again.
    settings.SMTP_MAX_CONSECUTIVE_ERRORS = limit
    from django.utils import timezone

    from core.models import Attempt, MailingRun
    from core.services.dispatch import dispatch_tick

    from .factories import MessageFactory, due_mailing, people

    domain = SenderDomain.objects.create(owner=owner, domain="shop.example")
    SenderDomain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())
    message = MessageFactory(owner=owner, from_email="news@shop.example")
    due_mailing(owner, people(owner, 2), message=message)
    if broken == "unverified":  # the daily check found the record gone
        SenderDomain.objects.filter(pk=domain.pk).update(verified_at=None)
        reason = "is not verified"
    else:  # a key rotation done wrong
        settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        reason = "ENCRYPTION_KEYS"
    with translation.override("en"):
        summary = dispatch_tick()
    assert summary.sent == 0 and not smtp_server.messages
    run = MailingRun.objects.get()
    assert run.status == MailingRun.Status.PAUSED
    attempts = Attempt.objects.filter(run=run)
    assert {a.status for a in attempts} == {"queued"}
    assert all(reason in a.server_response for a in attempts)


def test_the_preview_the_test_email_and_the_report_show_the_sender(
    owner, smtp_server, opendkim, client
):
    from django.urls import reverse

    from core.models import MailingRun
    from core.services.dispatch import dispatch_tick
    from core.services.messages import message_preview, message_send_test

    from .factories import due_mailing, people

    domain = verified_domain(owner, opendkim)
    message = shop_message(owner)
    preview = message_preview(message=message)
    assert preview["sender"] == "Цветочная лавка <news@shop.example>"
    assert preview["reply_to"] == "hello@shop.example"
    assert message_send_test(message=message, to="me@example.org") == (True, "")
    (_, test_mail), raw = smtp_server.messages[0], smtp_server.recorder.raw[0]
    assert test_mail["From"] == "Цветочная лавка <news@shop.example>"
    assert test_mail["Reply-To"] == "hello@shop.example"
    assert opendkim.verify(raw) == (True, "")
    due_mailing(owner, people(owner, 1), message=message)
    dispatch_tick()
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    client.force_login(owner)
    run = MailingRun.objects.get()
    page = client.get(reverse("admin:core_mailingrun_change", args=[run.pk]))
    assert f"signed by {domain.domain} (DKIM)" in page.content.decode()
    # The test e-mail of a message whose domain lost its verification is
    # refused like its mailings, not sent unsigned.
    SenderDomain.objects.update(verified_at=None)
    sent, why = message_send_test(message=message, to="me@example.org")
    assert not sent and "news@shop.example" in why


def test_ed25519_is_offered_checked_and_then_signs_beside_rsa(
    owner, dns_server, opendkim, smtp_server, settings
):
    """Switched on, the domain gets a second key and record; once the check
    finds the record its mail carries both signatures, and dkimpy and
    OpenDKIM verify each against the DNS they are published on."""
    import dkim

    from core.services.dispatch import dispatch_tick

    from .dns import dns_txt
    from .factories import due_mailing, people

    recipients = people(owner, 3)
    domain = SenderDomain.objects.create(
        owner=owner, domain="shop.example", signs_ed25519=True
    )
    kinds = [record["kind"] for record in domain.dns_records()]
    assert kinds == ["dkim", "dkim-ed25519", "spf", "dmarc"]
    ed_record = domain.dns_records()[1]
    assert ed_record["name"] == f"{domain.dkim_selector}e._domainkey.shop.example"
    assert ed_record["value"].startswith("v=DKIM1; k=ed25519; p=")
    assert (
        "PRIVATE"
        not in SenderDomain.objects.values_list("ed25519_private_key", flat=True).get()
    )

    # Only the RSA record is out: verified, but signed with RSA alone.
    dns_server.publish(records(domain, "dkim"))
    states = sender_domain_check(domain)
    assert (states["dkim"], states["dkim-ed25519"]) == ("found", "missing")
    message = shop_message(owner)
    due_mailing(owner, recipients[:1], message=message)
    dispatch_tick()
    assert smtp_server.recorder.raw[-1].count(b"DKIM-Signature:") == 1

    everything = records(domain, "dkim", "dkim-ed25519", "spf", "dmarc")
    dns_server.publish(everything)
    opendkim.publish(everything)
    domain.refresh_from_db()
    assert sender_domain_check(domain)["dkim-ed25519"] == "found"
    from core.services import signing

    signing._KEYS.clear()
    due_mailing(owner, recipients, message=message)
    dispatch_tick()
    lookup = dns_txt(dns_server)
    for raw in smtp_server.recorder.raw[-3:]:
        assert raw.count(b"DKIM-Signature:") == 2
        assert b"a=ed25519-sha256;" in raw and b"a=rsa-sha256;" in raw
        checker = dkim.DKIM(raw)
        assert [checker.verify(idx=i, dnsfunc=lookup) for i in (0, 1)] == [True, True]
        assert opendkim.verify(raw) == (True, "")


def test_rotation_covers_the_ed25519_key_too(owner, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    domain = SenderDomain.objects.create(
        owner=owner, domain="shop.example", signs_ed25519=True
    )
    pem = secret_decrypt(domain.ed25519_private_key)
    settings.ENCRYPTION_KEYS = [new, old]
    call_command("encryption_rotate")
    settings.ENCRYPTION_KEYS = [new]
    domain.refresh_from_db()
    assert secret_decrypt(domain.ed25519_private_key) == pem


def test_the_admin_offers_ed25519_and_shows_its_record(client, owner):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    client.force_login(owner)
    response = client.post(
        "/admin/core/senderdomain/add/",
        {"domain": "shop.example", "signs_ed25519": "on", "_continue": "1"},
    )
    domain = SenderDomain.objects.get()
    assert response.status_code == 302 and domain.signs_ed25519
    page = client.get(f"/admin/core/senderdomain/{domain.pk}/change/").content.decode()
    assert 'id="record-dkim-ed25519"' in page
    assert "k=ed25519; p=" in page and domain.ed25519_name in page
