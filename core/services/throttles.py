"""Throttles of the public site and the back office, in one place.

Counted by django-ratelimit in the shared cache, per visitor address as
core/clientip.py reads it behind proxies, and per account or e-mail in the
normalized form accounts are looked up by: " Victim@Example.org" and
"victim@example.org" share one count.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django_ratelimit.core import get_usage

# Mail-sending forms: a handful per hour from one address (IP) or for one
# e-mail, enough for a person, too few for a bot.
MAIL_RATE_PER_IP = "10/h"
MAIL_RATE_PER_EMAIL = "3/h"
# Subscription forms: enough for an office behind one address; for one
# e-mail, a few confirmation mails an hour, so nobody is flooded with them.
SUBSCRIBE_RATE_PER_IP = "60/h"
SUBSCRIBE_RATE_PER_EMAIL = "3/h"
# ...and from all forms together, so many forms cannot flood one mailbox.
SUBSCRIBE_RATE_PER_EMAIL_ALL_FORMS = "6/h"
# Wrong current passwords (profile, the admin's password page) per account.
PASSWORD_CHECKS = "5/15m"


def normalized_email(value: str) -> str:
    return get_user_model().objects.normalize_email(value or "")


def submitted_email(group, request) -> str:
    """A django-ratelimit key: the form's e-mail, as accounts are matched."""
    return normalized_email(request.POST.get("email", ""))


def _spent(request, *, group, key, rate, failed: bool) -> bool:
    """Whether the allowance is used up: `rate` failures pass, the next is
    refused. `failed` counts one more first."""
    usage = get_usage(request, group=group, key=key, rate=rate, increment=failed)
    return usage is not None and usage["count"] >= usage["limit"]


def login_account_limited(request, *, username: str, failed: bool = False) -> bool:
    """Whether one account took its hour's wrong passwords from all addresses
    together; `failed` counts one more. django-axes locks an address+account
    pair far sooner; this ceiling stops a spread-out guess."""
    return _spent(
        request,
        group="login-account",
        key=lambda group, request: normalized_email(username),
        rate=settings.LOGIN_FAILURES_PER_ACCOUNT,
        failed=failed,
    )


def password_check_limited(request, *, failed: bool = False) -> bool:
    """Whether the logged-in user guessed their current password too often;
    `failed` counts one more."""
    return _spent(
        request, group="password-check", key="user", rate=PASSWORD_CHECKS, failed=failed
    )


def _over(request, *, group, key, rate) -> bool:
    """Count this request; whether it is over `rate` (the rate's own number
    of requests pass)."""
    usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
    return usage is not None and usage["should_limit"]


def subscribe_ip_limited(request) -> bool:
    """Whether this visitor address posted too many subscriptions."""
    return _over(request, group="subscribe-ip", key="ip", rate=SUBSCRIBE_RATE_PER_IP)


def subscribe_email_limited(request, *, form_id: int) -> bool:
    """Whether this form, or all forms together, mailed the submitted
    address too often. The visitor is not told: the page says the same
    either way."""
    this_form = _over(
        request,
        group=f"subscribe-email-{form_id}",
        key=submitted_email,
        rate=SUBSCRIBE_RATE_PER_EMAIL,
    )
    every_form = _over(
        request,
        group="subscribe-email",
        key=submitted_email,
        rate=SUBSCRIBE_RATE_PER_EMAIL_ALL_FORMS,
    )
    return this_form or every_form
