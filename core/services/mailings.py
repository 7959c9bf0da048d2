"""Mailings in the back office: the managers' switch."""

from django.db import transaction

from core.models import Mailing


def mailings_set_enabled(*, mailings, enabled: bool, actor) -> list:
    """A manager switches mailings off or on; returns the ones that changed."""
    with transaction.atomic():
        # A fresh queryset: the admin's carries annotations (GROUP BY) that
        # cannot be locked.
        rows = Mailing.objects.filter(
            pk__in=list(mailings.values_list("pk", flat=True))
        )
        ids = list(
            rows.select_for_update()
            .exclude(is_enabled=enabled)
            .values_list("pk", flat=True)
        )
        Mailing.objects.filter(pk__in=ids).update(is_enabled=enabled)
    # Read again: the database computes their status.
    return list(Mailing.objects.filter(pk__in=ids))
