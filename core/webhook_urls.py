"""The sending providers' tracking webhooks (django-anymail's views), each
mounted only when it can be authenticated: ANYMAIL_WEBHOOK_SECRET for all,
and Mailgun's signing key for Mailgun (core.services.webhooks records what
they report).

A view's module is imported at its first request, not with the URLconf:
Amazon SES's brings boto3 and SendGrid's the cryptography and requests
packages, 0.8 s of start-up for every process that resolves a URL (the
send command among them), measured with `python -X importtime`.
"""

import functools
from importlib import import_module

from django.conf import settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

PROVIDERS = {
    "amazon_ses": ("amazon_ses", "AmazonSESTrackingWebhookView"),
    "brevo": ("brevo", "BrevoTrackingWebhookView"),
    "mailgun": ("mailgun", "MailgunTrackingWebhookView"),
    "postmark": ("postmark", "PostmarkTrackingWebhookView"),
    "sendgrid": ("sendgrid", "SendGridTrackingWebhookView"),
}


@functools.cache
def _view(name: str):
    module, view = PROVIDERS[name]
    return getattr(import_module(f"anymail.webhooks.{module}"), view).as_view()


def _lazy(name: str):
    # The providers post without a CSRF token, as anymail's views allow.
    @csrf_exempt
    def view(request, *args, **kwargs):
        return _view(name)(request, *args, **kwargs)

    return view


def webhook_patterns() -> list:
    if not settings.ANYMAIL_WEBHOOK_SECRET:
        return []
    return [
        path(f"anymail/{name}/tracking/", _lazy(name), name=f"{name}_tracking_webhook")
        for name in PROVIDERS
        if name != "mailgun" or settings.MAILGUN_WEBHOOK_SIGNING_KEY
    ]
