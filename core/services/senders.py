"""Sender domains' DNS: is what the owner was asked to publish there?

Each record `SenderDomain.dns_records()` lists is looked up with dnspython,
through the resolver DNS_RESOLVER names (host or host:port; the system's
when empty), and said to be found, missing or different. The DKIM record
decides: a domain is verified while its selector publishes its own public
key, and stops being verified when it does not. A lookup that fails (a
timeout, a server that refuses) changes nothing and says why.
"""

import logging

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from core.keys import secret_rotate
from core.models import SenderDomain, SmtpRelay
from core.models.senders import spf_mechanism

logger = logging.getLogger(__name__)
Check = SenderDomain.Check


class DnsUnavailable(Exception):
    """The DNS could not be asked; the message says why."""


def resolver():
    """The configured resolver (a dnspython Resolver), or the system's."""
    # dnspython is imported by the first lookup, not by every process that
    # loads the admin or the tasks: it costs a process start 35 ms.
    import dns.resolver

    configured = settings.DNS_RESOLVER
    if not configured:
        made = dns.resolver.Resolver()
    else:
        made = dns.resolver.Resolver(configure=False)
        host, _sep, port = configured.rpartition(":")
        if not host or "]" in port:  # no port, or a bare IPv6 address
            host, port = configured, "53"
        made.nameservers = [host.strip("[]")]
        made.port = int(port)
    made.lifetime = made.timeout = settings.DNS_TIMEOUT
    return made


def _lookup(name: str, kind: str, *, using=None):
    """The answer for `name`'s records of `kind`; None if there are none.
    Raises DnsUnavailable when the DNS cannot be asked."""
    import dns.exception
    import dns.resolver

    using = using or resolver()
    try:
        return using.resolve(name, kind)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.Timeout as error:
        raise DnsUnavailable(
            _("The DNS did not answer for %(name)s in time.") % {"name": name}
        ) from error
    except dns.exception.DNSException as error:
        raise DnsUnavailable(
            _("The DNS could not be asked for %(name)s: %(error)s")
            % {"name": name, "error": error}
        ) from error


def txt_records(name: str, *, using=None) -> list[str]:
    """The TXT strings at `name` (each record's chunks joined); [] if none."""
    answer = _lookup(name, "TXT", using=using) or []
    return [
        b"".join(record.strings).decode("utf-8", errors="replace") for record in answer
    ]


def cname_target(name: str, *, using=None) -> str:
    """The name `name` is an alias of (lowercase, no final dot); "" if none."""
    answer = _lookup(name, "CNAME", using=using) or []
    for record in answer:
        return record.target.to_text().rstrip(".").lower()
    return ""


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def dkim_state(domain: SenderDomain, found: list[str], *, public_key=None) -> str:
    keys = [_tags(record).get("p") for record in found]
    if (public_key or domain.dkim_public_key) in keys:
        return Check.FOUND
    return Check.DIFFERENT if found else Check.MISSING


def spf_state(found: list[str]) -> str:
    policies = [r for r in found if r.lower().startswith("v=spf1")]
    if not policies:
        return Check.MISSING
    mechanism = spf_mechanism().lower()
    if any(mechanism in policy.lower().split() for policy in policies):
        return Check.FOUND
    return Check.DIFFERENT


def return_path_state(target: str) -> str:
    if not target:
        return Check.MISSING
    return Check.FOUND if target == settings.RETURN_PATH_HOST else Check.DIFFERENT


def dmarc_state(found: list[str]) -> str:
    if any(record.replace(" ", "").lower().startswith("v=dmarc1") for record in found):
        return Check.FOUND
    return Check.MISSING


def sender_domain_check(domain: SenderDomain, *, now=None) -> dict:
    """Look the domain's records up, record what was found, and return it:
    {"dkim": …, "spf": …, "dmarc": …} and, with RETURN_PATH_HOST,
    "return-path". Raises DnsUnavailable (and changes nothing) when the DNS
    cannot be asked."""
    now = now or timezone.now()
    using = resolver()
    records = {record["kind"]: record for record in domain.dns_records()}
    states = {
        "dkim": dkim_state(domain, txt_records(records["dkim"]["name"], using=using)),
        "spf": spf_state(txt_records(records["spf"]["name"], using=using)),
        "dmarc": dmarc_state(txt_records(records["dmarc"]["name"], using=using)),
    }
    if "dkim-ed25519" in records:
        states["dkim-ed25519"] = dkim_state(
            domain,
            txt_records(records["dkim-ed25519"]["name"], using=using),
            public_key=domain.ed25519_public_key,
        )
    if "return-path" in records:
        target = cname_target(records["return-path"]["name"], using=using)
        states["return-path"] = return_path_state(target)
    verified = states["dkim"] == Check.FOUND
    domain.dns_check = states
    domain.checked_at = now
    if verified and domain.verified_at is None:
        domain.verified_at = now
    elif not verified:
        domain.verified_at = None
    SenderDomain.objects.filter(pk=domain.pk).update(
        dns_check=states, checked_at=now, verified_at=domain.verified_at
    )
    return states


def sender_domains_check(*, now=None) -> tuple[int, int]:
    """The daily check of every domain: (checked, verified now). A domain
    whose lookups fail keeps what it had, and is logged."""
    checked = verified = 0
    for domain in SenderDomain.objects.order_by("pk").iterator():
        try:
            states = sender_domain_check(domain, now=now)
        except DnsUnavailable as error:
            logger.warning("Sender domain %s not checked: %s", domain.domain, error)
            continue
        checked += 1
        verified += states["dkim"] == Check.FOUND
    return checked, verified


def secrets_rotate() -> int:
    """Every stored secret encrypted again under the first key; how many.
    Raises SecretUnavailable, naming none changed, when one cannot be read
    (the caller's transaction rolls the others back)."""
    rotated = 0
    for domain in SenderDomain.objects.select_for_update().order_by("pk"):
        token = secret_rotate(domain.dkim_private_key)
        if token != domain.dkim_private_key:
            SenderDomain.objects.filter(pk=domain.pk).update(dkim_private_key=token)
        rotated += 1
        if domain.ed25519_private_key:
            token = secret_rotate(domain.ed25519_private_key)
            if token != domain.ed25519_private_key:
                SenderDomain.objects.filter(pk=domain.pk).update(
                    ed25519_private_key=token
                )
            rotated += 1
    # The passwords of clients' own relays.
    for relay in (
        SmtpRelay.objects.select_for_update().exclude(password="").order_by("pk")
    ):
        token = secret_rotate(relay.password)
        if token != relay.password:
            SmtpRelay.objects.filter(pk=relay.pk).update(password=token)
        rotated += 1
    return rotated
