"""Error reports that never show a configured secret.

Django's filter hides settings whose names look secret (PASSWORD, KEY,
TOKEN…), but not a password inside a URL: the debug page and the mails to
ADMINS showed the SMTP password of EMAIL_URL and the Redis one in CACHES
and Q_CLUSTER. This filter also masks the credentials of every URL a setting
holds, however deep.
"""

import re

from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@host → scheme://user:********@host (and a lone
# ":password@" as Redis URLs write it).
_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?=@)", re.I)


class SecretsFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if type(cleansed) is str:  # not lazy objects that pass for strings
            return _CREDENTIALS.sub(rf"\g<head>{self.cleansed_substitute}", cleansed)
        return cleansed
