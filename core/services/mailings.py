"""Mailings in the back office: the managers' switch, and the audience of
a mailing being edited."""

from django.db import transaction
from django.db.models import Count

from core.models import Client, Mailing
from core.models.clients import subscribed_q


def mailing_audience_size(*, owner_id, clients, tags, segments) -> tuple[int, int]:
    """(everyone, those mailings may reach) of the audience a mailing would
    have with these recipients, tags and segments, counted in one query as
    the send path resolves it."""
    sizes = (
        Client.objects.filter(owner_id=owner_id)
        .audience(
            clients=[client.pk for client in clients],
            tags=[tag.pk for tag in tags],
            segments=list(segments),
        )
        .aggregate(total=Count("pk"), reachable=Count("pk", filter=subscribed_q()))
    )
    return sizes["total"], sizes["reachable"]


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
