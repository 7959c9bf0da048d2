"""Mailings in the back office: the managers' switch, and the audience of
a mailing being edited."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from core.models import Client, Mailing, Message, Segment
from core.models.clients import subscribed_q
from core.models.segments import DAYS_MAX


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


def mailing_follow_up(*, run, now=None) -> Mailing:
    """A mailing to those its mailing reached and who did not open it: a
    segment saying so, a copy of the message to edit freely, and a one-off
    mailing of it that starts tomorrow, so its owner reviews it first.

    The segment looks back as far as segments can (DAYS_MAX): it means the
    same when the follow-up goes out as when it was made. For a recurring
    mailing it holds those who opened none of its runs.
    """
    now = now or timezone.now()
    mailing = run.mailing
    within = {"mailing": mailing.pk, "days": DAYS_MAX}
    with translation.override(settings.LANGUAGE_CODE), transaction.atomic():
        base = _("Did not open: %(title)s") % {"title": mailing.title}
        name = base[:90]
        number = 1
        while Segment.objects.filter(
            owner_id=mailing.owner_id, name__iexact=name
        ).exists():
            number += 1
            name = f"{base[:85]} ({number})"
        segment = Segment.objects.create(
            owner_id=mailing.owner_id,
            name=name,
            rules={
                "match": "all",
                "conditions": [
                    {"field": "received", "op": "has", "value": within},
                    {"field": "opened", "op": "not_has", "value": within},
                ],
            },
        )
        original = mailing.message
        message = Message.objects.create(
            owner_id=mailing.owner_id,
            subject=original.subject,
            body=original.body,
            html_body=original.html_body,
        )
        follow_up = Mailing.objects.create(
            owner_id=mailing.owner_id,
            title=(_("%(title)s — follow-up") % {"title": mailing.title})[:255],
            message=message,
            start_at=now + timedelta(days=1),
            periodicity=Mailing.Periodicity.ONCE,
            track_opens=mailing.track_opens,
            track_clicks=mailing.track_clicks,
            track_recipients=mailing.track_recipients,
        )
        follow_up.segments.add(segment)
    return follow_up
