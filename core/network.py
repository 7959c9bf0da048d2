"""Where the service may connect on a client's behalf.

A client's own relay is a host the client names. Unchecked, a tenant could
point it at the service's own network (a database, a cache, an internal
mail server) and make the workers talk to it; so a relay must be on one of
SMTP_RELAY_PORTS and resolve to public addresses only, unless
SMTP_RELAY_ALLOW_PRIVATE says every client is trusted. Checked when the
relay is saved and again before each connection, which then goes to the
very address checked: a name whose DNS answers differently the second time
(rebinding) gains nothing.
"""

import ipaddress
import socket

from django.conf import settings
from django.utils.translation import gettext as _


class AddressRefused(Exception):
    """The service may not connect there for a client; the message says why."""


def port_refusal(port: int) -> str:
    """Why a client's relay may not be on `port` ("" if it may)."""
    if port in settings.SMTP_RELAY_PORTS:
        return ""
    return _("A relay listens on one of the ports %(ports)s.") % {
        "ports": ", ".join(map(str, settings.SMTP_RELAY_PORTS))
    }


def relay_address(host: str, port: int) -> str:
    """The IP address to connect to for a client's relay at `host`:`port`;
    AddressRefused if there is none the service may use."""
    if refused := port_refusal(port):
        raise AddressRefused(refused)
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as error:
        raise AddressRefused(
            _("%(host)s cannot be resolved: %(error)s") % {"host": host, "error": error}
        ) from error
    addresses = [address[0] for *_rest, address in found]
    if not settings.SMTP_RELAY_ALLOW_PRIVATE:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global or ip.is_multicast:
                # Any one of them: the system might have picked it.
                raise AddressRefused(
                    _(
                        "%(host)s is at %(address)s, an address of a private "
                        "network: a relay must be reachable on the internet."
                    )
                    % {"host": host, "address": ip}
                )
    return addresses[0]


def host_refusal(host: str, port: int) -> str:
    """Why the service may not connect to `host`:`port` for a client ("" if
    it may)."""
    try:
        relay_address(host, port)
    except AddressRefused as error:
        return str(error)
    return ""
