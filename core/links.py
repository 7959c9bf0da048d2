"""Absolute links and the site's host name, always from SITE_URL.

Mail, feeds and sitemaps link to the site from outside it, so links are
built from the configured SITE_URL, never from the Host header of a
request: a forged Host cannot redirect a verification or unsubscribe link.
"""

import functools

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

TOKEN_PLACEHOLDER = "TOKEN"


def absolute_url(path: str) -> str:
    """`path` (as `reverse` gives it) on SITE_URL."""
    return f"{settings.SITE_URL}{path}"


def link_around_token(name: str, **kwargs) -> tuple[str, str]:
    """The absolute link of the URL `name` up to and after its `token`:
    resolved once, not once per message, which then costs a concatenation.
    Other arguments of the URL are given as `kwargs`."""
    return _link_around_token(
        name,
        tuple(sorted(kwargs.items())),
        settings.SITE_URL,
        get_urlconf(),
        get_script_prefix(),
    )


@functools.lru_cache(maxsize=32)
def _link_around_token(name, kwargs, site_url, urlconf, prefix) -> tuple[str, str]:
    link = absolute_url(
        reverse(name, kwargs={"token": TOKEN_PLACEHOLDER, **dict(kwargs)})
    )
    head, _, tail = link.partition(TOKEN_PLACEHOLDER)
    return head, tail


def site_host() -> str:
    """SITE_URL's host without the port: the domain of Message-IDs and List-Ids."""
    return settings.SITE_DOMAIN.split(":")[0] or "localhost"
