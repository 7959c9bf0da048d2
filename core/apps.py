from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = _("Mailing service")
    default = True
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks, signals  # noqa: F401 (checks register themselves)

        signals.connect(self)


class MailingAdminConfig(admin_apps.SimpleAdminConfig):
    """django.contrib.admin with our site, which logs in on the public page.

    The apps' admin modules are found when the URLconf is loaded (the first
    request or `reverse()`, project/urls.py) or the admin's checks run, not
    at start-up: a process that serves no page (the send command every
    minute, a django-q2 worker) does not import the admin, import-export's
    resources and forms, a tenth of its start.
    """

    default = False
    default_site = "core.admin_site.MailingAdminSite"

    def ready(self):
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_admin_discovered, checks.Tags.admin)


def check_admin_discovered(app_configs, **kwargs):
    """Django's admin checks, over every ModelAdmin: the checks may run
    before anything loaded the URLconf."""
    from django.contrib import admin

    admin.autodiscover()
    return check_admin_app(app_configs, **kwargs)
