"""Mailings in the back office: the managers' switch."""

from django.db import transaction

from core.models import Mailing


def mailings_set_enabled(*, mailings, enabled: bool) -> list:
    """A manager switches mailings off or on; returns the ones that changed."""
    with transaction.atomic():
        # A fresh queryset: the admin's carries annotations (GROUP BY) that
        # cannot be locked.
        rows = Mailing.objects.filter(
            pk__in=list(mailings.values_list("pk", flat=True))
        )
        changed = list(rows.select_for_update().exclude(is_enabled=enabled))
        Mailing.objects.filter(pk__in=[m.pk for m in changed]).update(
            is_enabled=enabled
        )
    for mailing in changed:
        mailing.is_enabled = enabled
        # The database computed the status anew: read it when asked.
        mailing.__dict__.pop("status", None)
    return changed
