"""Unsubscribing: the signed link every message carries, and what it does.

The link names the recipient in a signed token (Django's signing, salted),
so nobody can unsubscribe someone else by guessing; GET asks, POST (a mail
program's RFC 8058 one click) acts.
"""

from django.core import signing
from django.utils import timezone

from core.links import link_around_token
from core.models import Client, Event
from core.services.events import link_event_record, link_with_message

UNSUBSCRIBE_SALT = "core.unsubscribe"


def unsubscribe_token(*, client_id: int) -> str:
    # Not compressed: an id is too short to gain from it, and trying cost a
    # zlib call a message. Tokens made with `compress=True` still read.
    return signing.dumps(client_id, salt=UNSUBSCRIBE_SALT)


def unsubscribe_client_id(*, token: str) -> int | None:
    """The recipient a token names, or None for a tampered token."""
    try:
        value = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, int) else None


def unsubscribe_url(*, client_id: int, message: str = "") -> str:
    """The link; `message` is the token of the message it is in, so the
    unsubscribe counts for that message's run."""
    head, tail = link_around_token("unsubscribe")
    link = f"{head}{unsubscribe_token(client_id=client_id)}{tail}"
    return link_with_message(link, message)


def client_for_unsubscribe(*, token: str) -> Client | None:
    """The recipient a link names, or None when the token is invalid."""
    client_id = unsubscribe_client_id(token=token)
    return Client.objects.filter(pk=client_id).first() if client_id else None


def client_unsubscribe(*, token: str, message: str = "") -> Client | None:
    """Unsubscribe the recipient a signed token names; None if it is invalid.

    The recipient is then skipped by every mailing of that owner, and the
    address stays suppressed if the recipient is deleted and added again.
    """
    client = client_for_unsubscribe(token=token)
    if client is not None:
        Client.objects.filter(pk=client.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=timezone.now()
        )
        client.refresh_from_db(fields=["unsubscribed_at"])
        if client.unsubscribed_at is None:  # suppressed, with the date cleared
            client.unsubscribed_at = timezone.now()
            client.save(update_fields=["unsubscribed_at"])
        # Written even for an earlier unsubscribe: it may predate suppressions.
        client.suppress(detail="link")
        link_event_record(
            client_id=client.pk, kind=Event.Kind.UNSUBSCRIBE, message=message
        )
    return client
