"""The e-mail a recipient gets: one address, personalised, with list headers.

Every message is multipart (text, and HTML when the message has it) and
carries Message-ID on the service's own domain, Date, List-Id,
List-Unsubscribe with a signed link, and List-Unsubscribe-Post for RFC 8058
one-click unsubscribing.
"""

from dataclasses import dataclass, field
from email.utils import format_datetime, formataddr, make_msgid

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse
from django.utils import timezone

from .compose import message_bytes
from .messages import message_context, message_render

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
    path = reverse(
        "unsubscribe", kwargs={"token": unsubscribe_token(client_id=client_id)}
    )
    return f"{settings.SITE_URL}{path}"


def list_id(*, mailing) -> str:
    title = " ".join(mailing.title.split())[:60].replace('"', "'")
    return f'"{title}" <mailing-{mailing.pk}.{settings.SITE_DOMAIN.split(":")[0]}>'


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One recipient's message, rendered, before it becomes MIME."""

    subject: str
    text: str
    html: str
    from_email: str
    to: str
    reply_to: tuple = ()
    headers: dict = field(default_factory=dict)
    address: str = ""  # the bare address `to` names, for RCPT TO

    def email_message(self, connection=None) -> EmailMultiAlternatives:
        """As a Django e-mail, for any mail backend."""
        email_message = EmailMultiAlternatives(
            subject=self.subject,
            body=self.text,
            from_email=self.from_email,
            to=[self.to],
            reply_to=list(self.reply_to) or None,
            headers=dict(self.headers),
            connection=connection,
        )
        if self.html:
            email_message.attach_alternative(self.html, "text/html")
        return email_message

    def as_bytes(self) -> bytes:
        """The MIME bytes the Django e-mail would give, built faster
        (compose.py says where they may differ: boundary, QP line breaks)."""
        return message_bytes(self)


def email_prepare(
    *, mailing, message, client_id, email: str, full_name: str
) -> Outgoing:
    """The message for one recipient, rendered and with its headers."""
    # A name is shown in a header: no line breaks may reach it.
    full_name = " ".join((full_name or "").split())
    link = unsubscribe_url(client_id=client_id) if client_id else ""
    context = message_context(
        client=_Recipient(email=email, full_name=full_name),
        mailing=mailing,
        unsubscribe_url=link,
    )
    subject, text, html = message_render(message=message, context=context)
    domain = settings.SITE_DOMAIN.split(":")[0] or "localhost"
    headers = {
        "Message-ID": make_msgid(domain=domain),
        "Date": format_datetime(timezone.now()),
        "List-Id": list_id(mailing=mailing),
    }
    if link:
        headers["List-Unsubscribe"] = f"<{link}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    owner_email = getattr(mailing.owner, "email", "") if mailing.owner_id else ""
    return Outgoing(
        subject=subject,
        text=text,
        html=html,
        from_email=settings.MAILING_FROM_EMAIL,
        to=formataddr((full_name, email)) if full_name else email,
        reply_to=(owner_email,) if owner_email else (),
        headers=headers,
        address=email,
    )


class _Recipient:
    """Just the two fields a template may read."""

    __slots__ = ("email", "full_name")

    def __init__(self, *, email, full_name):
        self.email = email
        self.full_name = full_name
