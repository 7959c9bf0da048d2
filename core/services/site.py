"""The service's figures on the public home page.

They cover everyone's rows and nothing personal, so one cache entry serves
every visitor. Saving or deleting a mailing or a recipient drops it at once
(core/signals.py); bulk writes (imports, the scheduler) send no signal, and
the entry lives only a few minutes for them.
"""

from django.core.cache import cache
from django.db import transaction
from django.db.models.functions import Lower

from core.models import Client, Mailing

SITE_FIGURES_KEY = "core:site:figures:v1"
SITE_FIGURES_SECONDS = 5 * 60


def site_figures() -> dict:
    """Mailings in total, active mailings, and distinct recipient addresses."""
    figures = cache.get(SITE_FIGURES_KEY)
    if figures is None:
        figures = {
            "mailings_total": Mailing.objects.count(),
            "mailings_active": Mailing.objects.active().count(),
            # The same address in two users' lists is one person.
            "recipients_unique": Client.objects.annotate(address=Lower("email"))
            .values("address")
            .distinct()
            .count(),
        }
        cache.set(SITE_FIGURES_KEY, figures, SITE_FIGURES_SECONDS)
    return figures


def site_figures_invalidate() -> None:
    cache.delete(SITE_FIGURES_KEY)


def site_figures_invalidate_on_commit() -> None:
    # Now for this transaction's own reads, and after the commit so nobody
    # caches counts read before the change was visible.
    site_figures_invalidate()
    transaction.on_commit(site_figures_invalidate)
