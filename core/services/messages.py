"""Messages in the back office: the preview, and the test e-mail to oneself."""

import logging
from types import SimpleNamespace

from django.core.mail import EmailMultiAlternatives
from django.template import TemplateSyntaxError
from django.utils.translation import gettext as _

from core.models import Client, Field, Mailing

from .mail.dkim import dkim_sign
from .mail.message import envelope_sender, message_sender
from .mail.smtp import SmtpTransport
from .mail.templates import MessageTooLarge, message_context, message_render
from .mail.tracking import (
    IMAGE_ONLY_MAX_CHARS,
    image_only_length,
    links_found,
    tracking_fill,
)
from .mail.verp import verp_token
from .relays import relay_active_of, relay_of
from .signing import message_signing
from .tracking import message_tracked
from .unsubscribe import unsubscribe_url

logger = logging.getLogger(__name__)


def _sample_recipient(*, message, email=""):
    """The owner's recipient asked for, else the first one with custom field
    values, else the first one; a stand-in when the list is empty."""
    clients = Client.objects.filter(owner_id=message.owner_id)
    if email and (client := clients.with_email(email).first()):
        return client
    client = (
        clients.exclude(attributes={}).order_by("pk").first()
        or clients.order_by("pk").first()
    )
    return client or Client(email="ivan.petrov@example.com", full_name=_("Ivan Petrov"))


def _preview_context(*, client, unsubscribe_url="#unsubscribe") -> dict:
    return message_context(
        client=client,
        mailing=Mailing(title=_("Sample mailing")),
        unsubscribe_url=unsubscribe_url,
        preferences_url="#preferences",
        attributes=client.attributes,
    )


def message_preview(*, message, email: str = "") -> dict:
    """The message as one recipient would read it: the owner's recipient
    with this `email`, or a sample one."""
    client = _sample_recipient(message=message, email=email)
    context = _preview_context(client=client)
    # What could not be saved today but may still be sent (an unknown
    # variable, which renders empty) is shown above the rendering.
    problem = message.template_problem()
    shown = {
        "client": client,
        "attributes": [
            (field.key, field.label, field.display(client.attributes.get(field.key)))
            for field in Field.objects.filter(owner_id=message.owner_id)
        ],
    }
    if unsafe := message.sending_problem():
        return {**shown, "error": unsafe}
    try:
        subject, text, html = message_render(message=message, context=context)
    except (TemplateSyntaxError, MessageTooLarge) as error:
        return {**shown, "error": str(error)}
    return {
        **shown,
        "problem": problem,
        "spam_warning": spam_warning(
            html=html_as_sent(message=message, client=client),
            pixel=message.owner.track_opens_default,
        ),
        "sender": message_sender(message),
        "reply_to": message.reply_to,
        "subject": subject,
        "text": text,
        "html": html,
    }


def html_as_sent(*, message, client) -> str:
    """The HTML part as a new mailing of the owner's would send it to
    `client`: tracked as the owner's defaults say (through the send path's
    own `message_tracked`, on a stand-in run), with links as long as real
    ones."""
    if not message.html_body:
        return ""
    owner = message.owner
    # Ids of the size a busy service reaches; only their length matters.
    sample = 10**7
    run = SimpleNamespace(
        pk=sample,
        track_opens=owner.track_opens_default,
        track_clicks=owner.track_clicks_default,
        track_recipients=owner.track_recipients_default,
        links=links_found(text=message.body, html_body=message.html_body),
    )
    parts, tracking = message_tracked(run=run, attempt_id=sample, message=message)
    context = _preview_context(
        client=client,
        unsubscribe_url=unsubscribe_url(
            client_id=client.pk or sample, message=verp_token(sample)
        ),
    )
    try:
        _subject, _text, html = message_render(message=parts, context=context)
    except (TemplateSyntaxError, MessageTooLarge):
        return ""
    return tracking_fill(html, **tracking) if tracking else html


def spam_warning(*, html: str, pixel: bool) -> str:
    """What the preview says when the HTML part would earn spam points for
    being short and holding an image (`pixel`: the owner's new mailings
    track opens); "" when it would not."""
    length = image_only_length(html)
    if length is None:
        return ""
    figures = {
        "length": length,
        "limit": IMAGE_ONLY_MAX_CHARS,
    }
    if pixel:
        return (
            _(
                "The HTML part is short (about %(length)d characters as sent) and "
                "holds an image: the open-tracking pixel is one. SpamAssassin, "
                "which many receiving servers run, adds up to 2 points to HTML "
                "mail of under %(limit)d characters with any image in it. Write a "
                "little more, or send this message with open tracking off."
            )
            % figures
        )
    return (
        _(
            "The HTML part is short (about %(length)d characters as sent) and "
            "holds an image. SpamAssassin, which many receiving servers run, adds "
            "up to 2 points to HTML mail of under %(limit)d characters with any "
            "image in it. Write a little more, or leave the image out."
        )
        % figures
    )


def message_send_test(*, message, to: str) -> tuple[bool, str]:
    """Send the preview to one address; return (sent, error text)."""
    if refusal := message.owner.sending_refusal():
        return False, refusal
    preview = message_preview(message=message)
    if "error" in preview:
        return False, preview["error"]
    # From the message's sender and signed as its mail is, or not at all.
    signing = message_signing(message)
    if signing.problem:
        return False, signing.problem
    email = EmailMultiAlternatives(
        subject=_("[Test] %(subject)s") % {"subject": preview["subject"]},
        body=preview["text"],
        from_email=message_sender(message),
        to=[to],
        reply_to=[message.reply_to] if message.reply_to else None,
    )
    if preview["html"]:
        email.attach_alternative(preview["html"], "text/html")
    # Through the owner's own relay, as their mailings go, where they have one.
    row = relay_active_of(message.owner_id)
    try:
        relay = relay_of(row) if row else None
        if signing.key is None and relay is None:
            email.send()
        else:
            keys = (signing.key, *signing.also) if signing.key else ()
            _send_bytes(email, keys, relay)
    except Exception as error:  # SMTP refusal, timeout, DNS: report, don't crash
        logger.warning("Test e-mail to %s failed: %s", to, error)
        return False, str(error) or error.__class__.__name__
    return True, ""


def _send_bytes(email, keys, relay) -> None:
    """The e-mail as bytes, DKIM-signed with `keys` (if any), through the
    mailings' transport to `relay` (None: the service's)."""
    data = email.message().as_bytes(linesep="\r\n")
    if keys:
        data = dkim_sign(data, *keys)
    transport = SmtpTransport(relay)
    try:
        reply = transport.send(envelope_sender(email.from_email), email.to[0], data)
    finally:
        transport.close()
    if reply.code is None or not 200 <= reply.code < 300:
        raise OSError(reply.text or _("the server did not answer"))
