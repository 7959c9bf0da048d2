"""The visitor's address, as throttles and lockouts count it.

Behind `TRUSTED_PROXY_COUNT` proxies (nginx in front: 1; a CDN and nginx: 2),
the address is the one the outermost trusted proxy saw: counted from the
right of `X-Forwarded-For`, where a visitor cannot write, so a forged header
changes nothing. With no proxy configured the header is ignored and the
connection's own address is used. Parsing is python-ipware's (the engine of
django-ipware).
"""

from django.conf import settings
from python_ipware import IpWare


def client_ip(request) -> str:
    """The address one visitor's requests share; django-axes and
    django-ratelimit both ask this."""
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    remote = request.META.get("REMOTE_ADDR", "") or ""
    if proxies <= 0:
        return remote
    # Each trusted proxy appends the address it took the request from; the
    # last one's is REMOTE_ADDR, so the header's right-most `proxies - 1`
    # entries are proxies too.
    ipware = IpWare(
        precedence=("HTTP_X_FORWARDED_FOR",), leftmost=True, proxy_count=proxies - 1
    )
    address, _trusted = ipware.get_client_ip(request.META, strict=False)
    return str(address) if address is not None else remote
