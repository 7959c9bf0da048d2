"""The e-mail a recipient gets: one address, personalised, with list headers.

Every message is multipart (text, and HTML when the message has it) and
carries Message-ID on the service's own domain, Date, List-Id, Feedback-ID
(mailing, owner, service: what providers' complaint loops report back per
sender), and — given the recipient's signed link — List-Unsubscribe and
List-Unsubscribe-Post for RFC 8058 one-click unsubscribing.
"""

import functools
from email.headerregistry import Address
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

from django.conf import settings
from django.core.mail.message import sanitize_address
from django.utils import timezone

from core.links import site_host

from .mime import Outgoing
from .templates import message_context, message_render, part_bounded
from .tracking import tracking_fill


def list_id(*, mailing) -> str:
    title = " ".join(mailing.title.split())[:60].replace('"', "'")
    return f'"{title}" <mailing-{mailing.pk}.{site_host()}>'


def feedback_id(*, mailing) -> str:
    """Gmail's form, `campaign:customer:type:sender`, the sender last."""
    return f"{mailing.pk}:{mailing.owner_id}:mailing:{site_host()}"


def email_prepare(
    *,
    mailing,
    message,
    email: str,
    full_name: str,
    attributes: dict | None = None,
    unsubscribe_url: str = "",
    preferences_url: str = "",
    reply_to: str = "",
    message_id: str = "",
    tracking: dict | None = None,
    extra_headers: dict | None = None,
    from_email: str = "",
) -> Outgoing:
    """The message for one recipient, rendered and with its headers.

    `message_id` is the attempt's own (`verp_message_id`); a message that is
    no attempt (a test e-mail) gets a random one. `tracking` holds the
    recipient's `click_url` and `open_url` for a message whose parts were
    rewritten for tracking (core.services.mail.tracking). `extra_headers`
    are the recipient's own too (a provider's metadata header). `from_email`
    is the message's sender (`message_sender`), the service's by default.
    """
    # A name is shown in a header: no line breaks may reach it.
    full_name = " ".join((full_name or "").split())
    context = message_context(
        client=_Recipient(email=email, full_name=full_name),
        mailing=mailing,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        attributes=attributes,
    )
    subject, text, html = message_render(message=message, context=context)
    if tracking:
        # Filled in, the markers grow: the cap holds for what is sent.
        text = part_bounded(tracking_fill(text, **tracking))
        html = part_bounded(tracking_fill(html, **tracking))
    headers = {
        "Message-ID": message_id or make_msgid(domain=site_host()),
        "Date": format_datetime(timezone.now()),
        "List-Id": list_id(mailing=mailing),
        "Feedback-ID": feedback_id(mailing=mailing),
    }
    if extra_headers:
        headers.update(extra_headers)
    if unsubscribe_url:
        headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return Outgoing(
        subject=subject,
        text=text,
        html=html,
        from_email=from_email or settings.MAILING_FROM_EMAIL,
        to=formataddr((full_name, email)) if full_name else email,
        reply_to=(reply_to,) if reply_to else (),
        headers=headers,
        address=email,
    )


def message_sender(message) -> str:
    """The From of a message's mail: its sender's name and address; the
    service's address (MAILING_FROM_EMAIL) where it names none."""
    return _sender(message.from_name, message.from_email, settings.MAILING_FROM_EMAIL)


@functools.lru_cache(maxsize=256)
def _sender(name: str, address: str, default: str) -> str:
    if not address:
        if not name:
            return default
        address = parseaddr(default)[1]
    name = " ".join(name.split())  # a header: no line breaks
    # Quoted where the name needs it, not encoded: readable in the preview,
    # and Django encodes it once for the whole mailing.
    return str(Address(display_name=name, addr_spec=address)) if name else address


class _Recipient:
    """Just the two fields a template may read."""

    __slots__ = ("email", "full_name")

    def __init__(self, *, email, full_name):
        self.email = email
        self.full_name = full_name


@functools.lru_cache(maxsize=16)
def envelope_sender(address: str) -> str:
    """MAIL FROM for a From address, as Django's backend makes it."""
    return sanitize_address(address, settings.DEFAULT_CHARSET)


def envelope_recipient(outgoing: Outgoing) -> str:
    """RCPT TO. An ASCII address (saved ones are validated) is used as it is:
    Django's parsing costs a third of building the message."""
    address = outgoing.address
    if address and address.isascii():
        return address
    return sanitize_address(address or outgoing.to, settings.DEFAULT_CHARSET)
