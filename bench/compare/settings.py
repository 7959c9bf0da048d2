"""Settings of the throw-away project in which bench/bench_compare.py runs
another Django mailing app (django-post-office or django-newsletter).

bench_compare.py copies this file into a temporary directory next to a
config.json it writes (databases, sender, site) and runs it with the
interpreter of var/bench/venv-compare: none of these apps is a dependency of
the project. BENCH_APP names the app, BENCH_SMTP_PORT the port of the SMTP
sink the messages go to, BENCH_POST_OFFICE (JSON) any POST_OFFICE setting
that differs from its defaults.
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
CONFIG = json.loads((BASE_DIR / "config.json").read_text())
APP = os.environ["BENCH_APP"]

SECRET_KEY = "bench-compare-throw-away"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "urls"
STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "media"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sites",
    APP,
]
if APP == "newsletter":
    INSTALLED_APPS.append("sorl.thumbnail")
SITE_ID = 1

DATABASES = {"default": CONFIG["databases"][APP]}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The mailing's own templates (django-newsletter looks them up by
        # name) come before the app's defaults.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

# The same SMTP backend and timeout as the project, pointed at the sink.
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_SMTP_PORT", "25"))
EMAIL_HOST_USER = EMAIL_HOST_PASSWORD = ""
EMAIL_USE_TLS = EMAIL_USE_SSL = False
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = CONFIG["from_email"]

if APP == "post_office":
    # Mail is queued in the database; `send_queued_mail` delivers it through
    # the real backend named here.
    EMAIL_BACKEND = "post_office.EmailBackend"
    # Its defaults otherwise: THREADS_PER_PROCESS 5, BATCH_SIZE 100,
    # LOG_LEVEL 2 (a Log row per message), MAX_RETRIES 0.
    POST_OFFICE = {
        "BACKENDS": {"default": SMTP_BACKEND},
        **json.loads(os.environ.get("BENCH_POST_OFFICE") or "{}"),
    }
else:
    EMAIL_BACKEND = SMTP_BACKEND
    # Only names a template; the mailing has no images to thumbnail.
    NEWSLETTER_THUMBNAIL = "sorl-thumbnail"
    NEWSLETTER_USE_HTTPS = False
    NEWSLETTER_CONFIRM_EMAIL = False
