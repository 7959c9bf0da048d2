"""Subscribing through a form, always by double opt-in (DESIGN.md,
SubscriptionForm, Consent).

A submission creates the recipient unconfirmed (or leaves an existing one
as it is) and mails a signed link; the link opens a page whose button
(POST: mail scanners follow links, they do not press buttons) confirms:
`confirmed_at`, the form's tags, one `Consent` per consent given, with the
text agreed to, its version, time, IP and browser, and the welcome message.
Nothing a visitor submits changes a recipient who is on the list already:
their data is theirs to change in the preference centre.

An address that unsubscribed (or was erased at its request) may come back
only this way, by its own confirmed opt-in, which lifts that suppression
(the consent is the record). Suppressions for other reasons (bounces,
complaints, a manager's) stay.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from core.links import absolute_url
from core.models import Client, Consent, Mailing, SubscriptionForm, Suppression
from core.models.consents import text_version
from core.models.suppressions import suppression_keys
from core.models.users import email_normalize

from .mail.templates import MessageTooLarge, message_context, message_render
from .privacy import preferences_url
from .unsubscribe import unsubscribe_url

logger = logging.getLogger(__name__)

FORM_SALT = "core.subscription.form"
CONFIRM_SALT = "core.subscription.confirm"
# A person takes a few seconds to fill a form; a bot posts at once.
MIN_FILL_SECONDS = 2
FORM_TOKEN_MAX_AGE = 24 * 3600
# Unconfirmed subscribers lapse, and their link with them.
PENDING_DAYS = 7
# The snippet's token carries no time: it is printed once into another site.
EMBEDDED = 0


def form_is_open(form) -> bool:
    """Whether the form takes subscriptions: published, its owner active
    and allowed to send."""
    return form.is_published and not form.owner.sending_refusal()


# --- the form's own token: against bots and forged posts -------------------


def form_token(*, form, embedded: bool = False) -> str:
    """The hidden token a form posts back: signed for this form, with the
    time the page was shown (none for the embeddable snippet)."""
    shown = EMBEDDED if embedded else int(time.time())
    return signing.dumps({"f": form.pk, "t": shown}, salt=FORM_SALT)


def form_token_problem(*, form, token: str) -> str:
    """Why a posted token is refused ("" if it is not)."""
    try:
        value = signing.loads(token or "", salt=FORM_SALT)
    except signing.BadSignature:
        return _("The form was not sent from its page. Please send it again.")
    if not isinstance(value, dict) or value.get("f") != form.pk:
        return _("The form was not sent from its page. Please send it again.")
    shown = value.get("t")
    if shown == EMBEDDED:
        return ""
    age = time.time() - (shown if isinstance(shown, int) else 0)
    if age < MIN_FILL_SECONDS:
        return _("That was too quick. Please check the form and send it again.")
    if age > FORM_TOKEN_MAX_AGE:
        return _("The page was open too long. Please send the form again.")
    return ""


# --- submitting --------------------------------------------------------------


@dataclass
class Submission:
    """What a valid submission asks: kept in the confirmation link."""

    email: str
    full_name: str
    attributes: dict
    consents: list  # Consent.Kind values given
    ip: str | None
    user_agent: str


def subscription_submit(*, form, submission: Submission) -> str:
    """Record a submission; return the confirmation link to mail."""
    email = email_normalize(submission.email)
    client = Client.objects.filter(owner_id=form.owner_id).with_email(email).first()
    if client is None:
        client = Client(
            owner_id=form.owner_id,
            email=email,
            full_name=submission.full_name,
            attributes=submission.attributes,
            confirmed_at=None,
            source=Client.Source.FORM,
        )
        try:
            with transaction.atomic():
                client.save()
        except IntegrityError:  # the same address, submitted twice at once
            client = (
                Client.objects.filter(owner_id=form.owner_id).with_email(email).get()
            )
    elif client.confirmed_at is None:
        client.save(update_fields=["updated_at"])  # pending: its link renews
    token = signing.dumps(
        {
            "c": client.pk,
            "f": form.pk,
            "k": submission.consents,
            "t": time.time(),
            "ip": submission.ip,
            "ua": submission.user_agent[:200],
            # The words shown: a form edited since cannot be confirmed with
            # words the visitor never saw.
            "v": form_texts_version(form),
        },
        salt=CONFIRM_SALT,
        compress=True,
    )
    return absolute_url(reverse("subscribe_confirm", kwargs={"token": token}))


def mail_refused(*, form, email: str) -> bool:
    """Whether no confirmation may be mailed to `email`: it bounced, complained
    or was blocked, here or service-wide (an unsubscribe or an erasure may
    still come back by its own confirmation)."""
    return (
        Suppression.objects.applying_to(owner_id=form.owner_id)
        .filter(email__in=suppression_keys(email))
        .exclude(
            reason__in=[Suppression.Reason.UNSUBSCRIBED, Suppression.Reason.ERASED]
        )
        .exists()
    )


def form_texts_version(form) -> str:
    return text_version(form.personal_data_text + "\x00" + form.marketing_text)[:16]


def subscription_mail_confirmation(
    *, form_id: int, email: str, link: str, language: str
) -> None:
    """The confirmation e-mail, in the language the form was shown in."""
    form = SubscriptionForm.objects.select_related("owner").get(pk=form_id)
    with translation.override(language):
        subject = _("Confirm your subscription: %(title)s") % {"title": form.title}
        body = _(
            "Hello!\n\nSomeone, probably you, asked to subscribe %(email)s to "
            "“%(title)s”. To confirm, open this link and press the button:\n\n"
            "%(link)s\n\nThe link works for %(days)d days. If it was not you, "
            "ignore this e-mail: nothing is sent to you unless you confirm."
        ) % {"email": email, "title": form.title, "link": link, "days": PENDING_DAYS}
    EmailMultiAlternatives(
        subject=subject,
        body=body,
        from_email=settings.MAILING_FROM_EMAIL,
        to=[email],
        reply_to=[form.owner.email],
    ).send()


# --- confirming --------------------------------------------------------------


@dataclass
class Pending:
    """A confirmation link, read."""

    client: Client
    form: SubscriptionForm
    consents: list
    submitted_at: object
    ip: str | None
    user_agent: str

    @property
    def done(self) -> bool:
        confirmed = self.client.confirmed_at
        return confirmed is not None and confirmed >= self.submitted_at


class LinkProblem(Exception):
    """A confirmation link that cannot confirm: `kind` says why."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind  # "invalid" or "expired"


def subscription_pending(*, token: str) -> Pending:
    """What a confirmation link confirms; LinkProblem if it cannot."""
    try:
        value = signing.loads(
            token, salt=CONFIRM_SALT, max_age=timedelta(days=PENDING_DAYS)
        )
    except signing.SignatureExpired:
        raise LinkProblem("expired") from None
    except signing.BadSignature:
        raise LinkProblem("invalid") from None
    if not isinstance(value, dict):
        raise LinkProblem("invalid")
    client = Client.objects.filter(pk=value.get("c")).first()
    form = (
        SubscriptionForm.objects.select_related("owner", "welcome_message")
        .filter(pk=value.get("f"))
        .first()
    )
    # A recipient since deleted, or a form of another owner: nothing to do.
    if client is None or form is None or form.owner_id != client.owner_id:
        raise LinkProblem("invalid")
    if value.get("v") != form_texts_version(form):
        raise LinkProblem("changed")
    kinds = [kind for kind in value.get("k") or [] if kind in Consent.Kind.values]
    return Pending(
        client=client,
        form=form,
        consents=kinds,
        submitted_at=datetime.fromtimestamp(value["t"], tz=UTC),
        ip=value.get("ip"),
        user_agent=value.get("ua") or "",
    )


def subscription_confirm(*, pending: Pending, ip=None, user_agent: str = "") -> bool:
    """Confirm; False if this link confirmed already (nothing is done twice).
    The consents are given now, by whoever presses the button: their IP and
    browser are recorded (the form's were the submission's)."""
    form = pending.form
    with transaction.atomic():
        client = Client.objects.select_for_update().get(pk=pending.client.pk)
        pending.client = client
        if pending.done:
            return False
        lifted = _lift_unsubscribe(client)
        client.confirmed_at = timezone.now()
        client.save(update_fields=["confirmed_at", "unsubscribed_at", "updated_at"])
        client.tags.add(*form.tags.all())
        texts = {
            Consent.Kind.PERSONAL_DATA: form.personal_data_text,
            Consent.Kind.MARKETING: form.marketing_text,
        }
        for kind in pending.consents:
            Consent.objects.record(
                owner_id=client.owner_id,
                client_ids=[client.pk],
                kind=kind,
                text=texts[kind],
                source=form.slug,
                ip=ip or pending.ip,
                user_agent=user_agent or pending.user_agent,
            )
        if lifted:
            logger.info(
                "Recipient %s subscribed again through %s", client.pk, form.slug
            )
    return True


def _lift_unsubscribe(client) -> bool:
    """The recipient's own confirmed opt-in ends their unsubscribe (or the
    erasure they asked for): those suppressions of the owner's go, no other
    does."""
    Suppression.objects.filter(
        owner_id=client.owner_id,
        email__in=suppression_keys(client.email),
        reason__in=[Suppression.Reason.UNSUBSCRIBED, Suppression.Reason.ERASED],
    ).delete()
    was = client.unsubscribed_at is not None
    client.unsubscribed_at = None
    return was


def subscription_welcome(*, form_id: int, client_id: int) -> str:
    """Send the form's welcome message to a subscriber who confirmed;
    what happened, for the task's result."""
    form = SubscriptionForm.objects.select_related("owner", "welcome_message").get(
        pk=form_id
    )
    client = Client.objects.subscribed().filter(pk=client_id).first()
    message = form.welcome_message
    if message is None or client is None or message.owner_id != form.owner_id:
        return "no welcome to send"
    if refusal := form.owner.sending_refusal():
        return f"not sent: {refusal}"
    if problem := message.sending_problem():
        return f"not sent: {problem}"
    link = unsubscribe_url(client_id=client.pk)
    context = message_context(
        client=client,
        mailing=Mailing(title=form.title),
        unsubscribe_url=link,
        preferences_url=preferences_url(client_id=client.pk),
        attributes=client.attributes,
    )
    try:
        subject, text, html = message_render(message=message, context=context)
    except MessageTooLarge as error:
        return f"not sent: {error}"
    email = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.MAILING_FROM_EMAIL,
        to=[client.email],
        reply_to=[form.owner.email],
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    if html:
        email.attach_alternative(html, "text/html")
    email.send()
    return "welcome sent"


def subscriptions_purge_pending() -> int:
    """Subscribers who never confirmed lapse after PENDING_DAYS."""
    cutoff = timezone.now() - timedelta(days=PENDING_DAYS)
    # By the last submission (each one renews the link), in one statement:
    # whoever confirms meanwhile is not deleted.
    lapsed = Client.objects.filter(
        confirmed_at__isnull=True,
        source=Client.Source.FORM,
        updated_at__lt=cutoff,
    )
    count = lapsed.count()
    lapsed.delete()
    return count
