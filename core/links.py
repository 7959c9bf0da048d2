"""Absolute links and the site's host name, always from SITE_URL.

Mail, feeds and sitemaps link to the site from outside it, so links are
built from the configured SITE_URL, never from the Host header of a
request: a forged Host cannot redirect a verification or unsubscribe link.
"""

from django.conf import settings


def absolute_url(path: str) -> str:
    """`path` (as `reverse` gives it) on SITE_URL."""
    return f"{settings.SITE_URL}{path}"


def site_host() -> str:
    """SITE_URL's host without the port: the domain of Message-IDs and List-Ids."""
    return settings.SITE_DOMAIN.split(":")[0] or "localhost"
