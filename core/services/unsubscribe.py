"""Unsubscribing: the signed link every message carries, and what it does.

The link names the recipient in a signed token (Django's signing, salted),
so nobody can unsubscribe someone else by guessing; GET asks, POST (a mail
program's RFC 8058 one click) acts.
"""

from django.core import signing
from django.urls import reverse
from django.utils import timezone

from core.links import absolute_url
from core.models import Client

UNSUBSCRIBE_SALT = "core.unsubscribe"


def unsubscribe_token(*, client_id: int) -> str:
    return signing.dumps(client_id, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_client_id(*, token: str) -> int | None:
    """The recipient a token names, or None for a tampered token."""
    try:
        value = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, int) else None


def unsubscribe_url(*, client_id: int) -> str:
    token = unsubscribe_token(client_id=client_id)
    return absolute_url(reverse("unsubscribe", kwargs={"token": token}))


def client_for_unsubscribe(*, token: str) -> Client | None:
    """The recipient a link names, or None when the token is invalid."""
    client_id = unsubscribe_client_id(token=token)
    return Client.objects.filter(pk=client_id).first() if client_id else None


def client_unsubscribe(*, token: str) -> Client | None:
    """Unsubscribe the recipient a signed token names; None if it is invalid.

    The recipient is then skipped by every mailing of that owner.
    """
    client = client_for_unsubscribe(token=token)
    if client is not None:
        Client.objects.subscribed().filter(pk=client.pk).update(
            unsubscribed_at=timezone.now()
        )
        client.refresh_from_db(fields=["unsubscribed_at"])
    return client
