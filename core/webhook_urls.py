"""The sending providers' tracking webhooks (django-anymail's views), each
mounted only when it can be authenticated: ANYMAIL_WEBHOOK_SECRET for all,
and Mailgun's signing key for Mailgun (core.services.webhooks records what
they report)."""

from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.brevo import BrevoTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.conf import settings
from django.urls import path

PROVIDERS = {
    "amazon_ses": AmazonSESTrackingWebhookView,
    "brevo": BrevoTrackingWebhookView,
    "mailgun": MailgunTrackingWebhookView,
    "postmark": PostmarkTrackingWebhookView,
    "sendgrid": SendGridTrackingWebhookView,
}


def webhook_patterns() -> list:
    if not settings.ANYMAIL_WEBHOOK_SECRET:
        return []
    return [
        path(
            f"anymail/{name}/tracking/",
            view.as_view(),
            name=f"{name}_tracking_webhook",
        )
        for name, view in PROVIDERS.items()
        if name != "mailgun" or settings.MAILGUN_WEBHOOK_SIGNING_KEY
    ]
