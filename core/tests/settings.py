"""The test suite's settings: the development defaults `make run` has.

Production is the default of project.settings (DEBUG=False); the tests of
production mode start interpreters of their own with project.settings and
the environment they name (test_settings.py).
"""

import os

os.environ.setdefault("DEBUG", "True")
# The providers' webhooks are mounted only with a secret to check them by.
os.environ.setdefault("ANYMAIL_WEBHOOK_SECRET", "hooks:test-webhook-secret")
os.environ.setdefault("MAILGUN_WEBHOOK_SIGNING_KEY", "test-mailgun-signing-key")

from project.settings import *  # noqa: E402, F403
