"""Error reports that never show a configured secret.

Django's filter hides settings whose names look secret (PASSWORD, KEY,
TOKEN…), but not a password inside a URL: the debug page and the mails to
ADMINS showed the SMTP password of EMAIL_URL and the Redis one in CACHES
and Q_CLUSTER. This filter also masks, in every URL a setting holds however
deep, the password of its user part (read as urllib reads it, so an "@" in
the user or the password hides nothing) and query parameters that name a
secret (`?password=`, `?token=` …).
"""

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.views.debug import SafeExceptionReporterFilter

_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.I)
_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|signature", re.I)


class SecretsFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if type(cleansed) is str:  # not lazy objects that pass for strings
            return _URL.sub(lambda match: self._mask(match.group()), cleansed)
        return cleansed

    def _mask(self, url: str) -> str:
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:  # not a URL after all: hide it whole
            return self.cleansed_substitute
        netloc = parts.netloc
        if password is not None:
            user, _, host = netloc.rpartition("@")
            name = user.split(":", 1)[0]
            netloc = f"{name}:{self.cleansed_substitute}@{host}"
        query = urlencode(
            [
                (name, self.cleansed_substitute if _SECRET_NAME.search(name) else v)
                for name, v in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*",
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
