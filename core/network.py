"""Where the service may connect on a client's behalf.

A client's own relay is a host the client names. Unchecked, a tenant could
point it at the service's own network (a database, a cache, an internal
mail server) and make the workers talk to it; so a relay must resolve to
public addresses only, unless SMTP_RELAY_ALLOW_PRIVATE says every client
is trusted. Checked when the relay is saved and again before each
connection (DNS may change in between).
"""

import ipaddress
import socket

from django.conf import settings
from django.utils.translation import gettext as _


def host_refusal(host: str, port: int) -> str:
    """Why the service may not connect to `host`:`port` for a client ("" if
    it may)."""
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as error:
        return _("%(host)s cannot be resolved: %(error)s") % {
            "host": host,
            "error": error,
        }
    if settings.SMTP_RELAY_ALLOW_PRIVATE:
        return ""
    for *_rest, address in found:
        ip = ipaddress.ip_address(address[0].split("%")[0])
        if not ip.is_global or ip.is_multicast:
            return _(
                "%(host)s is at %(address)s, an address of a private network: "
                "a relay must be reachable on the internet."
            ) % {"host": host, "address": ip}
    return ""
