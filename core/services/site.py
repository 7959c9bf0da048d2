"""The service's figures on the public home page.

They cover everyone's rows and nothing personal, so one cache entry serves
every visitor. They are computed on a schedule (every SITE_FIGURES_SECONDS,
core.tasks.site_figures_refresh), never because a row changed: when adding a
recipient moved the unique-recipients figure at once, a client could learn
whether an address was on another client's list by adding it and watching.
"""

from django.core.cache import cache
from django.db.models.functions import Lower

from core.models import Client, Mailing

SITE_FIGURES_KEY = "core:site:figures:v1"
SITE_FIGURES_SECONDS = 5 * 60


def site_figures() -> dict:
    """Mailings in total, active mailings, and distinct recipient addresses,
    as last computed (computed now only when nothing is cached yet)."""
    figures = cache.get(SITE_FIGURES_KEY)
    if figures is None:
        figures = site_figures_refresh()
    return figures


def site_figures_refresh() -> dict:
    """Compute the figures and keep them until the next scheduled refresh
    (twice the period, should one be late)."""
    figures = {
        "mailings_total": Mailing.objects.count(),
        "mailings_active": Mailing.objects.active().count(),
        # The same address in two users' lists is one person.
        "recipients_unique": Client.objects.annotate(address=Lower("email"))
        .values("address")
        .distinct()
        .count(),
    }
    cache.set(SITE_FIGURES_KEY, figures, 2 * SITE_FIGURES_SECONDS)
    return figures
