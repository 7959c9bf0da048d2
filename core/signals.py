"""Every signal receiver of the project, connected by `CoreConfig.ready`.

Each keeps one rule true whatever path writes a row: the admin, a form, a
service, `loaddata`, or the shell.
"""

import logging

from anymail.signals import tracking
from django.db.models.signals import post_delete, post_migrate, post_save, pre_save

from .models import Article, Client, Field, Mailing, User
from .models.grants import permissions_grant_owner
from .models.mailings import SCHEDULE_FIELDS
from .models.markup import article_body_html
from .services.blog import blog_cache_invalidate_on_commit
from .services.webhooks import provider_event_record
from .tasks import schedule_ensure

logger = logging.getLogger(__name__)


def grant_owner(sender, instance, created=False, raw=False, **kwargs):
    """An owned row gives its owner view, change and delete on it.

    Once, when it is created: the owner never changes (permissions_sync
    repairs what went missing otherwise). `loaddata` may bring a row over
    one that exists: it is granted too.
    """
    if (created or raw) and getattr(sender, "owner_field", None):
        permissions_grant_owner(objs=[instance])


def mailing_schedule_loaded(sender, instance, raw=False, **kwargs):
    """`loaddata` skips save(): its rows' `next_run_at` follows their schedule
    too, when it differs from the stored row's (Mailing.save does the rest)."""
    if not raw:
        return
    stored = (
        sender.objects.filter(pk=instance.pk).values_list(*SCHEDULE_FIELDS).first()
        if instance.pk is not None
        else None
    )
    if stored is None or tuple(stored) != instance.schedule():
        instance.schedule_derive()


def client_suppression_loaded(sender, instance, raw=False, **kwargs):
    """`loaddata` skips save(): a fixture cannot bring back a suppressed
    address as subscribed either (Client.save does the rest)."""
    if raw and instance.unsubscribed_at is None:
        instance.unsubscribed_at = instance.suppressed_since()


def client_unsubscribe_loaded(sender, instance, raw=False, **kwargs):
    """A fixture's unsubscribed recipient is suppressed for good, as any."""
    if raw and instance.unsubscribed_at is not None:
        instance.suppress(detail="loaddata")


def field_values_removed(sender, instance, **kwargs):
    """A custom field deleted takes its values with it, however it went."""
    Client.objects.filter(owner_id=instance.owner_id).attribute_remove(instance.key)


def article_sanitize_loaded(sender, instance, raw=False, **kwargs):
    """`loaddata` skips save(): a fixture cannot bring unsafe HTML either."""
    if raw:
        instance.body = article_body_html(source=instance.source, html=instance.body)


def blog_changed(sender, **kwargs):
    blog_cache_invalidate_on_commit()


def author_changed(sender, update_fields=None, **kwargs):
    # Logins save last_login only; readers see the author's name, and a
    # blocked author's articles leave the site.
    if update_fields is None or {"full_name", "is_active"} & set(update_fields):
        blog_cache_invalidate_on_commit()


def provider_event(sender, event, esp_name, **kwargs):
    """A sending provider's webhook: its bounce, complaint or unsubscribe."""
    outcome = provider_event_record(event=event, esp_name=esp_name)
    logger.info("%s webhook: %s event %s", esp_name, event.event_type, outcome)


def connect(app_config) -> None:
    post_save.connect(grant_owner, dispatch_uid="core.grant_owner")
    pre_save.connect(mailing_schedule_loaded, sender=Mailing)
    pre_save.connect(article_sanitize_loaded, sender=Article)
    pre_save.connect(client_suppression_loaded, sender=Client)
    post_save.connect(client_unsubscribe_loaded, sender=Client)
    post_delete.connect(field_values_removed, sender=Field)
    for signal in (post_save, post_delete):
        signal.connect(blog_changed, sender=Article)
    post_save.connect(author_changed, sender=User)
    # The dispatch schedule follows DISPATCH_PERIOD_MINUTES after each migrate.
    post_migrate.connect(schedule_ensure, sender=app_config)
    tracking.connect(provider_event, dispatch_uid="core.provider_event")
