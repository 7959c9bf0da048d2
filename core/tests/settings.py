"""The test suite's settings: the development defaults `make run` has.

Production is the default of project.settings (DEBUG=False); the tests of
production mode start interpreters of their own with project.settings and
the environment they name (test_settings.py).
"""

import base64
import os

os.environ.setdefault("DEBUG", "True")
# The providers' webhooks are mounted only with a secret to check them by.
os.environ.setdefault("ANYMAIL_WEBHOOK_SECRET", "hooks:test-webhook-secret")
os.environ.setdefault("MAILGUN_WEBHOOK_SIGNING_KEY", "test-mailgun-signing-key")
# pytest-django runs with DEBUG off, where no key is derived: the tests' own
# (a Fernet key is 32 bytes, URL-safe base64).
os.environ.setdefault(
    "ENCRYPTION_KEYS",
    base64.urlsafe_b64encode(b"tests-only-encryption-key-32byte").decode(),
)

from project.settings import *  # noqa: E402, F403
