"""A recipient's own data: the preference centre (their signed link, in
every message as {{ preferences_url }}) and the owner's data requests.

Each change that is a consent or a suppression is recorded as one: an
unsubscribe withdraws the advertising consent and suppresses the address;
an erasure deletes the recipient and keeps only the address's sha256, so no
import brings it back (DESIGN.md, Suppression).
"""

from django.core import signing
from django.db import transaction
from django.utils import timezone

from core.links import link_around_token
from core.models import Attempt, Client, Consent, Event, Field, Suppression, Tag
from core.models.suppressions import email_digest
from core.models.users import email_normalize
from core.services.events import link_event_record, link_with_message

PREFERENCES_SALT = "core.preferences"


def preferences_token(*, client_id: int) -> str:
    return signing.dumps(client_id, salt=PREFERENCES_SALT)


def preferences_client(*, token: str) -> Client | None:
    """The recipient a preference link names, or None for a tampered one."""
    try:
        client_id = signing.loads(token, salt=PREFERENCES_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(client_id, int):
        return None
    return Client.objects.select_related("owner").filter(pk=client_id).first()


def preferences_url(*, client_id: int, message: str = "") -> str:
    """The link; `message` as for `unsubscribe_url`."""
    head, tail = link_around_token("preferences")
    link = f"{head}{preferences_token(client_id=client_id)}{tail}"
    return link_with_message(link, message)


# --- what the recipient may change -------------------------------------------


def editable_fields(*, client) -> list:
    return list(Field.objects.filter(owner_id=client.owner_id, is_editable=True))


def public_topics(*, client) -> list:
    return list(Tag.objects.filter(owner_id=client.owner_id, is_public=True))


def preferences_save(
    *, client, full_name: str, attributes: dict, topics, message: str = ""
) -> None:
    """The recipient's own changes: their name, the fields their owner lets
    them edit (`attributes`, checked already), the public topics they chose.
    Nothing else of theirs changes."""
    editable = {field.key for field in editable_fields(client=client)}
    offered = public_topics(client=client)
    chosen = {tag.pk for tag in topics}
    with transaction.atomic():
        client = Client.objects.select_for_update().get(pk=client.pk)
        kept = {k: v for k, v in client.attributes.items() if k not in editable}
        client.attributes = {
            **kept,
            **{k: attributes[k] for k in attributes if k in editable},
        }
        client.full_name = full_name
        client.save(update_fields=["full_name", "attributes", "updated_at"])
        client.tags.remove(*[tag for tag in offered if tag.pk not in chosen])
        client.tags.add(*[tag for tag in offered if tag.pk in chosen])
        link_event_record(
            client_id=client.pk, kind=Event.Kind.PREFERENCES, message=message
        )


def preferences_unsubscribe(
    *, client, ip=None, user_agent: str = "", message: str = ""
) -> None:
    """Unsubscribe from everything of this owner: the suppression, and the
    advertising consent withdrawn."""
    with transaction.atomic():
        if client.unsubscribed_at is None:
            client.unsubscribed_at = timezone.now()
            client.save(update_fields=["unsubscribed_at", "updated_at"])
        client.suppress(detail="preference centre")
        Consent.objects.record(
            owner_id=client.owner_id,
            client_ids=[client.pk],
            kind=Consent.Kind.MARKETING,
            action=Consent.Action.WITHDRAWN,
            text="",
            source=Consent.PREFERENCES,
            ip=ip,
            user_agent=user_agent,
        )
        link_event_record(
            client_id=client.pk, kind=Event.Kind.UNSUBSCRIBE, message=message
        )


# --- data requests: the recipient's, and the owner's for them ---------------


def client_data(*, client) -> dict:
    """Everything the service holds of one recipient, as JSON values."""
    fields = {
        field.key: field for field in Field.objects.filter(owner_id=client.owner_id)
    }
    attempts = (
        Attempt.objects.filter(client=client)
        .select_related("run__mailing")
        .order_by("id")
    )
    return {
        "recipient": {
            "email": client.email,
            "full_name": client.full_name,
            "comment": client.comment,
            "source": client.source,
            "added_at": _time(client.created_at),
            "confirmed_at": _time(client.confirmed_at),
            "unsubscribed_at": _time(client.unsubscribed_at),
        },
        "attributes": {
            key: {
                "label": fields[key].label if key in fields else key,
                "value": value,
            }
            for key, value in client.attributes.items()
        },
        "tags": sorted(tag.name for tag in client.tags.all()),
        "consents": [
            {
                "kind": consent.kind,
                "action": consent.action,
                "text": consent.text,
                "version": consent.version,
                "at": _time(consent.at),
                "ip": consent.ip,
                "user_agent": consent.user_agent,
                "source": consent.source,
            }
            for consent in client.consents.order_by("at", "id")
        ],
        "attempts": [
            {
                "mailing": attempt.run.mailing.title,
                "address": attempt.email,
                "status": attempt.status,
                "at": _time(attempt.attempted_at),
                "opened_at": _time(attempt.opened_at),
                "clicked_at": _time(attempt.clicked_at),
            }
            for attempt in attempts
        ],
        # What followed each message (bounces, complaints, clicks) joins
        # here once the statistics record events.
        "events": [],
    }


def _time(moment):
    return moment.isoformat() if moment else None


def clients_erase(*, clients) -> int:
    """Delete these recipients and every trace of their address but its
    sha256: each owner's suppressions of it become the digest, and the
    address in the reports is replaced by it. Returns how many were erased."""
    with transaction.atomic():
        rows = list(
            Client.objects.filter(pk__in=clients.values("pk"))
            .select_for_update()
            .values_list("pk", "owner_id", "email")
        )
        for _pk, owner_id, email in rows:
            plain = Suppression.objects.filter(
                owner_id=owner_id, email=email_normalize(email)
            )
            # Unsubscribed, bounced, complained: still so, as the digest.
            was = sorted(set(plain.values_list("reason", flat=True)))
            Suppression.objects.record(
                owner_id=owner_id,
                emails=[email],
                reason=Suppression.Reason.ERASED,
                detail="erased" + (f"; was {', '.join(was)}" if was else ""),
            )
            plain.delete()
            Attempt.objects.filter(owner_id=owner_id, email__iexact=email).update(
                email=f"erased-{email_digest(email)[:40]}@invalid"
            )
        Client.objects.filter(pk__in=[pk for pk, _owner, _email in rows]).delete()
    return len(rows)
