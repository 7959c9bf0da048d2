from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = _("Mailing service")
    default = True
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks, signals  # noqa: F401 (checks register themselves)

        signals.connect(self)


class MailingAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site, which logs in on the public page."""

    default = False
    default_site = "core.admin_site.MailingAdminSite"
