"""Accounts: signup, e-mail verification and the mail that goes with them."""

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.contrib.sessions.models import Session
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from core.links import absolute_url
from core.models.users import quotas_check

from .roles import CLIENTS, MANAGERS

logger = logging.getLogger(__name__)


class EmailVerificationTokenGenerator(PasswordResetTokenGenerator):
    """Single-use: the token hashes the confirmation time, which it changes.

    It expires after PASSWORD_RESET_TIMEOUT, like a password-reset link.
    """

    key_salt = "core.services.accounts.EmailVerificationTokenGenerator"

    def _make_hash_value(self, user, timestamp):
        return f"{user.pk}{user.email}{user.email_verified_at}{timestamp}"


verification_token = EmailVerificationTokenGenerator()


def axes_username(request, credentials):
    """django-axes counts failures per address whatever its letter case."""
    User = get_user_model()
    raw = (credentials or {}).get("username") or (credentials or {}).get("email")
    return User.objects.normalize_email(raw)


def mail_send_templated(*, to: str, template: str, context: dict) -> bool:
    """Send `emails/<template>` (subject, text and HTML parts) to one address.

    Returns False, and logs, when the mail server refuses: the caller tells the
    user to try again instead of failing the request.
    """
    context = {
        "site_name": settings.SITE_NAME,
        "site_url": settings.SITE_URL,
        **context,
    }
    subject = render_to_string(f"emails/{template}_subject.txt", context)
    subject = " ".join(subject.split())
    text = render_to_string(f"emails/{template}.txt", context)
    html = render_to_string(f"emails/{template}.html", context)
    message = EmailMultiAlternatives(subject, text, to=[to])
    message.attach_alternative(html, "text/html")
    try:
        message.send()
    except Exception:  # any transport failure: SMTP refusal, timeout, DNS
        logger.exception("Could not send %s mail", template)
        return False
    return True


def user_verification_link(*, user) -> str:
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = verification_token.make_token(user)
    return absolute_url(reverse("verify", kwargs={"uidb64": uidb64, "token": token}))


def user_send_verification(*, user) -> bool:
    return mail_send_templated(
        to=user.email,
        template="verify_email",
        context={"user": user, "link": user_verification_link(user=user)},
    )


def user_signup(*, email: str, full_name: str, password: str) -> bool:
    """Register a new user and mail them a verification link.

    An address that already has an account gets a notice instead of a second
    account; the caller shows the same page either way, so the form never
    tells a stranger who is registered. Returns whether the mail went out.
    """
    User = get_user_model()
    email = User.objects.normalize_email(email)
    existing = User.objects.with_email(email).first()
    if existing is not None and _expired_unverified(existing):
        # Its link has lapsed and nobody confirmed it: the address is free.
        existing.delete()
        existing = None
    if existing is not None:
        # As long as creating an account takes: the answer's delay must not
        # tell a stranger that the address is registered.
        make_password(password)
        return mail_send_templated(
            to=existing.email,
            template="already_registered",
            context={
                "user": existing,
                "login_url": absolute_url(reverse("login")),
                "reset_url": absolute_url(reverse("password_reset")),
            },
        )
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email=email, password=password, full_name=full_name.strip()
            )
    except IntegrityError:
        # A signup for the same address won the race a moment ago; this one
        # gets the same page, and that one's mail is on its way.
        return True
    return user_send_verification(user=user)


def _unverified_cutoff():
    return timezone.now() - timedelta(days=settings.UNVERIFIED_ACCOUNT_DAYS)


def _expired_unverified(user) -> bool:
    return (
        not user.is_verified
        and not user.is_superuser
        and user.last_login is None
        and user.date_joined < _unverified_cutoff()
    )


def users_purge_unverified() -> int:
    """Delete accounts nobody confirmed within UNVERIFIED_ACCOUNT_DAYS: a
    stranger's signup with someone else's address lapses. Returns how many."""
    User = get_user_model()
    deleted, _ = User.objects.filter(
        email_verified_at__isnull=True,
        is_superuser=False,
        last_login__isnull=True,
        date_joined__lt=_unverified_cutoff(),
    ).delete()
    return deleted


def user_resend_verification(*, email: str) -> bool:
    """Mail a fresh link if the address belongs to an unconfirmed account.

    Returns True whatever the address, unless the mail server refused, so the
    answer tells nothing about who is registered.
    """
    User = get_user_model()
    user = (
        User.objects.with_email(email)
        .filter(
            email_verified_at__isnull=True,
            is_active=True,
        )
        .first()
    )
    if user is None:
        return True
    return user_send_verification(user=user)


def user_from_uidb64(uidb64: str):
    User = get_user_model()
    try:
        pk = force_str(urlsafe_base64_decode(uidb64))
        return User.objects.get(pk=pk)
    except (TypeError, ValueError, OverflowError, User.DoesNotExist):
        return None


def user_verify(*, uidb64: str, token: str, confirm: bool) -> tuple[str, object]:
    """Confirm an e-mail address from a link, once the person pressed the
    button on its page (`confirm`): opening the link alone changes nothing,
    so a mail scanner that follows links confirms nobody's account.

    Returns ("confirm", user) for a valid link not yet pressed, ("verified",
    user) on first use, ("already", user) when the account is already
    confirmed, and ("invalid", None) for a tampered, expired or unknown link.
    """
    user = user_from_uidb64(uidb64)
    if user is None:
        return "invalid", None
    if not verification_token.check_token(user, token):
        # A second click on a used link: say so rather than "invalid".
        if user.is_verified and _token_was_issued_for(user, token):
            return "already", user
        return "invalid", None
    if not confirm:
        return "confirm", user
    user_mark_verified(user=user)
    return "verified", user


def _token_was_issued_for(user, token: str) -> bool:
    """Whether the token was valid for this user before they confirmed."""
    before = type(user).objects.get(pk=user.pk)
    before.email_verified_at = None
    return verification_token.check_token(before, token)


def user_mark_verified(*, user) -> None:
    """Confirm the address and open the admin to the user as a client."""
    with transaction.atomic():
        user.email_verified_at = timezone.now()
        user.is_staff = True
        user.save(update_fields=["email_verified_at", "is_staff"])
        clients, _ = Group.objects.get_or_create(name=CLIENTS)
        user.groups.add(clients)


def _managers_change(*, users, actor, change) -> tuple[list, list]:
    """Apply `change(user)` (True when it changed and saved the user) to each
    of `users` a manager may change: never the actor themself, a superuser
    or another manager. Returns (changed, refused) lists of users."""
    changed, refused = [], []
    with transaction.atomic():
        for user in users.select_for_update().prefetch_related("groups"):
            protected = (
                user.pk == actor.pk
                or user.is_superuser
                or any(group.name == MANAGERS for group in user.groups.all())
            )
            if protected:
                refused.append(user)
            elif change(user):
                changed.append(user)
    return changed, refused


def users_set_active(*, users, active: bool, actor) -> tuple[list, list]:
    """A manager blocks or unblocks users; (changed, refused).

    Blocking ends the user's sessions at once: they are deleted, and the
    authentication backend refuses inactive users on every request anyway.
    """

    def change(user) -> bool:
        if user.is_active == active:
            return False
        user.is_active = active
        user.save(update_fields=["is_active"])
        return True

    changed, refused = _managers_change(users=users, actor=actor, change=change)
    if not active:
        sessions_end(user_ids={user.pk for user in changed})
    return changed, refused


def sessions_end(*, user_ids) -> int:
    """Delete the users' sessions, so unblocking never brings an old cookie
    back. Sessions name their user only inside their signed data: the
    unexpired ones are read (a blocking is rare; sessions are few)."""
    if not user_ids:
        return 0
    wanted = {str(pk) for pk in user_ids}
    ended = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator(
            chunk_size=2000
        )
        if session.get_decoded().get("_auth_user_id") in wanted
    ]
    Session.objects.filter(pk__in=ended).delete()
    return len(ended)


def users_set_sending(*, users, suspended: bool, actor, reason: str = "") -> tuple:
    """A manager suspends or resumes users' sending; (changed, refused).

    A suspension stops every door of the send path (the schedule, "send
    now", the command, deliveries under way, test e-mails) until resumed.
    """

    def change(user) -> bool:
        if suspended:
            user.sending_suspended_at = user.sending_suspended_at or timezone.now()
            user.sending_suspended_reason = reason.strip()
        elif user.sending_suspended_at is None:
            return False
        else:
            user.sending_suspended_at, user.sending_suspended_reason = None, ""
        user.save(update_fields=["sending_suspended_at", "sending_suspended_reason"])
        return True

    return _managers_change(users=users, actor=actor, change=change)


def users_set_quota(*, users, daily: int | None, monthly: int | None, actor) -> tuple:
    """A manager sets users' sending quotas (None: the service's default);
    (changed, refused). A raised quota lets their queued mail go at the next
    claim; a lowered one holds back what exceeds it from then on."""
    quotas_check(daily, monthly)

    def change(user) -> bool:
        if (user.daily_quota, user.monthly_quota) == (daily, monthly):
            return False
        user.daily_quota, user.monthly_quota = daily, monthly
        user.save(update_fields=["daily_quota", "monthly_quota"])
        return True

    return _managers_change(users=users, actor=actor, change=change)
