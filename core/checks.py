"""System checks: settings that would otherwise fail only once sending starts.

`manage.py check`, the web server, `qcluster` and `send_scheduled_emails`
run them at start-up and refuse to start on an error.
"""

from django.conf import settings
from django.core import checks

from core.services.mail.ratelimit import rate_parse


@checks.register()
def rate_limit_check(app_configs=None, **kwargs):
    try:
        rate_parse(settings.SMTP_RATE_LIMIT)
    except ValueError as error:
        return [checks.Error(str(error), id="core.E001")]
    return []
