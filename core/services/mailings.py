"""Mailings and messages in the back office: preview, test e-mail, switches."""

import logging

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template import TemplateSyntaxError
from django.utils.translation import gettext as _

from core.models import Client, Mailing

from .messages import message_context, message_render
from .scheduling import mailing_schedule_next

logger = logging.getLogger(__name__)


def _sample_recipient(*, message):
    """The owner's first recipient, or a stand-in when the list is empty."""
    client = Client.objects.filter(owner_id=message.owner_id).order_by("pk").first()
    return client or Client(email="ivan.petrov@example.com", full_name=_("Ivan Petrov"))


def message_preview(*, message) -> dict:
    """The message as one recipient would read it."""
    client = _sample_recipient(message=message)
    context = message_context(
        client=client,
        mailing=Mailing(title=_("Sample mailing")),
        unsubscribe_url="#unsubscribe",
    )
    try:
        subject, text, html = message_render(message=message, context=context)
    except TemplateSyntaxError as error:
        return {"client": client, "error": str(error)}
    return {"client": client, "subject": subject, "text": text, "html": html}


def message_send_test(*, message, to: str) -> tuple[bool, str]:
    """Send the preview to one address; return (sent, error text)."""
    preview = message_preview(message=message)
    if "error" in preview:
        return False, preview["error"]
    email = EmailMultiAlternatives(
        subject=_("[Test] %(subject)s") % {"subject": preview["subject"]},
        body=preview["text"],
        to=[to],
    )
    if preview["html"]:
        email.attach_alternative(preview["html"], "text/html")
    try:
        email.send()
    except Exception as error:  # SMTP refusal, timeout, DNS: report, don't crash
        logger.warning("Test e-mail to %s failed: %s", to, error)
        return False, str(error) or error.__class__.__name__
    return True, ""


def mailing_reschedule(*, mailing) -> None:
    """Recompute when the mailing next sends, after its schedule changed."""
    mailing_schedule_next(mailing=mailing)


def mailings_set_enabled(*, mailings, enabled: bool, actor) -> list:
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
    return changed


def client_unsubscribe(*, token: str) -> Client | None:
    """Unsubscribe the recipient a signed token names; None if it is invalid.

    The recipient is then skipped by every mailing of that owner.
    """
    from django.utils import timezone

    from .emails import unsubscribe_client_id

    client_id = unsubscribe_client_id(token=token)
    if client_id is None:
        return None
    client = Client.objects.filter(pk=client_id).first()
    if client is not None and client.unsubscribed_at is None:
        Client.objects.filter(pk=client.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=timezone.now()
        )
        client.refresh_from_db(fields=["unsubscribed_at"])
    return client


def client_for_unsubscribe(*, token: str) -> Client | None:
    from .emails import unsubscribe_client_id

    client_id = unsubscribe_client_id(token=token)
    return Client.objects.filter(pk=client_id).first() if client_id else None
