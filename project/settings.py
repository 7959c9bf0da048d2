"""Settings, read from the environment (and an optional `.env`) by django-environ.

With no `.env` at all the project runs on an embedded default: SQLite and the
django-q2 ORM broker under `var/`, and e-mail written as files to `var/mail/`.
Every variable is documented in `example.env`.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# ENV_FILE names another file to read instead of `.env` (or /dev/null for none).
ENV_FILE = Path(os.environ.get("ENV_FILE", BASE_DIR / ".env"))
if ENV_FILE.is_file():
    env.read_env(ENV_FILE)


def _quota(name: str) -> int | None:
    """A sending quota: a whole number of messages, or empty for none."""
    value = env.str(name, default="").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ImproperlyConfigured(
            f"{name} must be a whole number of messages (0 or more), or empty "
            f"for no limit; it is {value!r}."
        )
    return int(value)


# Production unless told otherwise: `make run` (and the test settings) set
# DEBUG=True for development.
DEBUG = env.bool("DEBUG", default=False)

# Commands that read only the code (migrations, translations) never sign,
# serve or send anything: they run without a key in production mode too, so
# `manage.py makemigrations --check` in CI needs no secret.
CODE_ONLY_COMMANDS = {"makemigrations", "makemessages", "compilemessages"}
_code_only = (
    len(sys.argv) > 1
    and Path(sys.argv[0]).name == "manage.py"
    and sys.argv[1] in CODE_ONLY_COMMANDS
)

if DEBUG or (_code_only and not env.str("SECRET_KEY", default="")):
    SECRET_KEY = env.str(
        "SECRET_KEY", default="insecure-development-key-never-use-in-production"
    )
    ALLOWED_HOSTS = env.list(
        "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"]
    )
else:
    # Production refuses to start on a guessable key or an open Host header.
    SECRET_KEY = env.str("SECRET_KEY", default="")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
    if not SECRET_KEY or SECRET_KEY.startswith("change-me") or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a random string of at least 50 characters "
            "when DEBUG is False."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is False.")

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "core.views.csrf_failure"

# Absolute links in e-mails are built from SITE_URL, never from the request's
# Host header, so a forged Host cannot redirect a verification link.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
SITE_NAME = env.str("SITE_NAME", default="Рассыльщик")
_site = urlsplit(SITE_URL)
SITE_DOMAIN = _site.netloc
SITE_USES_HTTPS = _site.scheme == "https"

INSTALLED_APPS = [
    # First, so its templates may extend jazzmin's of the same name.
    "core",
    "jazzmin",
    "core.apps.MailingAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sitemaps",
    "import_export",
    "guardian",
    "django_q",
    "axes",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The open pixel and click links answer here, skipping what follows.
    "core.middleware.TrackingShortcut",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes requires.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.site",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    ),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker share the file: wait for each other's writes
    # instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# `manage.py loaddata blog_data.json` finds the demo data here.
FIXTURE_DIRS = [BASE_DIR / "fixtures"]

AUTH_USER_MODEL = "core.User"
AUTHENTICATION_BACKENDS = [
    # django-axes must come first so a locked-out address never reaches the others.
    "axes.backends.AxesStandaloneBackend",
    "core.backends.AccountBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("email", "full_name")},
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/admin/"
LOGOUT_REDIRECT_URL = "home"
# Verification and password-reset links stay valid for three days.
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3 * 24 * 3600)
# Accounts nobody confirmed are deleted after this many days (a daily task),
# and the address may sign up afresh.
UNVERIFIED_ACCOUNT_DAYS = env.int("UNVERIFIED_ACCOUNT_DAYS", default=7)

# django-guardian: no anonymous user row (our users have no username).
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

# django-axes: five wrong passwords for one address from one IP lock that pair
# out for fifteen minutes.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Behind proxies the visitor's address comes from X-Forwarded-For, counted
# from the right past this many trusted proxies (core/clientip.py); 0 reads
# the connection's own address. Lockouts and throttles share it.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "core.clientip.client_ip"
RATELIMIT_IP_META_KEY = "core.clientip.client_ip"
# Past the per-address lockout, one account takes at most this many wrong
# passwords an hour from all addresses together (core.views.LoginView).
LOGIN_FAILURES_PER_ACCOUNT = env.str("LOGIN_FAILURES_PER_ACCOUNT", default="30/h")
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "core/accounts/locked_out.html"
AXES_USERNAME_CALLABLE = "core.services.accounts.axes_username"
AXES_VERBOSE = False
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)

# Languages: Russian first; the switcher stores the choice in a cookie.
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="ru")
LANGUAGES = [("ru", _("Russian")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "core" / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Moscow")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # jazzmin references files that a strict manifest does not list; the
        # non-strict storage falls back to the plain name instead of a 500.
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "core.storage.StaticStorage",
    },
}

# Mail: files under var/mail/ unless EMAIL_URL points at an SMTP server.
# The URLs that carry passwords are read into the settings they configure and
# kept under no setting name of their own (core/reporting.py hides the rest).
_email_url = env.str("EMAIL_URL", default="")
if _email_url:
    vars().update(env.email_url_config(_email_url))
    if EMAIL_BACKEND.endswith("filebased.EmailBackend"):  # noqa: F821
        # filemail:///var/mail is read as a path relative to the project.
        EMAIL_FILE_PATH = str(BASE_DIR / EMAIL_FILE_PATH)  # noqa: F821
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="noreply@localhost")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)

_redis_url = env.str("REDIS_URL", default="")
_cache_url = env.str("CACHE_URL", default="")
if _cache_url:
    CACHES = {"default": env.cache_url_config(_cache_url)}
elif _redis_url:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _redis_url,
        }
    }
else:
    # A file cache is shared by the web server and the worker processes,
    # which throttling needs; memory caches are per process.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
RATELIMIT_USE_CACHE = "default"
SILENCED_SYSTEM_CHECKS = [
    # HSTS preloading is off unless SECURE_HSTS_PRELOAD asks for it: once a
    # domain is on the browsers' list, leaving it takes months.
    "security.W021",
    # The file cache is shared between processes; its increments are not
    # atomic, which only makes throttling a little lenient under races.
    "django_ratelimit.E003",
    "django_ratelimit.W001",
]

# django-q2. `retry` must exceed `timeout`, and `catch_up=False`, or a task
# is run twice.
DISPATCH_PERIOD_MINUTES = env.int(
    "DISPATCH_PERIOD_MINUTES", default=env.int("CRONJOBS_PERIOD", default=1)
)
Q_CLUSTER = {
    "name": "mailing",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 600,
    "retry": 900,
    "catch_up": False,
    "max_attempts": 1,
    "label": "Django Q2",
    "save_limit": 500,
}
if _redis_url:
    Q_CLUSTER["redis"] = _redis_url
else:
    # The database as broker, polled every 0.2 s (django-q2's default): a
    # queued "send now" starts within a moment.
    Q_CLUSTER["orm"] = "default"

# Sending mailings (DESIGN.md, Dispatch; core/services/dispatch/).
# SMTP connections to the relay: unset, each delivering process starts with
# two and adds more while throughput grows and the server accepts them, up
# to its share of SMTP_MAX_CONCURRENCY (the total for all processes one
# tick or command delivers in). A number pins the count per process.
SMTP_CONCURRENCY = env.int("SMTP_CONCURRENCY", default=0)
SMTP_MAX_CONCURRENCY = env.int("SMTP_MAX_CONCURRENCY", default=32)
# Messages per second or hour for all workers together, e.g. "50/s",
# "10000/h"; empty for no limit.
SMTP_RATE_LIMIT = env.str("SMTP_RATE_LIMIT", default="")
# Tries per recipient for temporary failures (4xx, dropped connection).
SMTP_MAX_RETRIES = env.int("SMTP_MAX_RETRIES", default=3)
# Seconds before the first retry; each further retry waits twice as long.
SMTP_RETRY_BACKOFF = env.int("SMTP_RETRY_BACKOFF", default=60)
# Failures in a row that pause a run, and for how many minutes.
SMTP_MAX_CONSECUTIVE_ERRORS = env.int("SMTP_MAX_CONSECUTIVE_ERRORS", default=20)
SMTP_PAUSE_MINUTES = env.int("SMTP_PAUSE_MINUTES", default=15)
# Clients' own SMTP relays (core/models/relays.py): the ports they may name,
# and whether they may be on a private, loopback or link-local address (a
# tenant could otherwise make the workers connect to the service's own
# network; allow it only where every client is trusted).
SMTP_RELAY_PORTS = env.list("SMTP_RELAY_PORTS", cast=int, default=[25, 465, 587, 2525])
SMTP_RELAY_ALLOW_PRIVATE = env.bool("SMTP_RELAY_ALLOW_PRIVATE", default=False)
# Sending quotas (core/services/quotas.py): messages a day (TIME_ZONE) and a
# calendar month each client's mailings may hand to the relay, unless a
# manager set the client's own; empty for no limit. What exceeds a quota
# waits for the next day or month, and the run's report says so.
SENDING_QUOTA_DAILY = _quota("SENDING_QUOTA_DAILY")
SENDING_QUOTA_MONTHLY = _quota("SENDING_QUOTA_MONTHLY")
# Attempts a worker claims at once. A claim and its recording cost some ten
# queries whatever their size: at 500 they cost a third less a message than
# at 200 (0.018 queries a message), and two batches in hand are still only
# a thousand rows a process.
DISPATCH_BATCH_SIZE = env.int("DISPATCH_BATCH_SIZE", default=500)
# Delivery tasks a tick hands to the cluster at most: the django-q2 workers
# of every machine together (PostgreSQL; on SQLite one delivers).
DISPATCH_WORKERS = env.int("DISPATCH_WORKERS", default=Q_CLUSTER["workers"])
# Processes `send_scheduled_emails` delivers in, itself included
# (PostgreSQL only). One process fills about one core.
DISPATCH_PROCESSES = env.int("DISPATCH_PROCESSES", default=min(os.cpu_count() or 1, 4))
# A worker renews its claims every third of this; a claim not renewed for
# this long belongs to a dead worker and is settled by the next tick.
DISPATCH_LEASE_SECONDS = env.int("DISPATCH_LEASE_SECONDS", default=30)
# Where workers journal each send until its result is in the database; it
# lets recovery tell a message in flight from one never started.
DISPATCH_JOURNAL_DIR = env.path("DISPATCH_JOURNAL_DIR", default=VAR_DIR / "journal")
# Longest one delivery task keeps sending before it gives its worker back
# (below the task timeout), so the next tick is never kept waiting long;
# what is left goes out with the next tick's deliveries.
DISPATCH_TICK_SECONDS = env.int("DISPATCH_TICK_SECONDS", default=60)
# Sender of mailings; replies go to the mailing's owner.
MAILING_FROM_EMAIL = env.str("MAILING_FROM_EMAIL", default=DEFAULT_FROM_EMAIL)

# Bounces. Each message's envelope sender is BOUNCE_ADDRESS with the
# attempt's signed token after a "+" (bounces+<token>@domain): the mail
# server of that domain must deliver such addresses to the bounce mailbox.
BOUNCE_ADDRESS = env.str(
    "BOUNCE_ADDRESS",
    default="bounces@" + MAILING_FROM_EMAIL.rpartition("@")[2].rstrip(">"),
)
# Where `process_bounces` reads them: imap(s)://user:password@host[:port]/folder,
# pop3(s)://user:password@host[:port], or maildir://path (relative to the
# project). A message it cannot read stays there, listed for managers.
BOUNCE_MAILBOX_URL = env.str(
    "BOUNCE_MAILBOX_URL", default=f"maildir://{VAR_DIR / 'bounces'}"
)
# Certificates an imaps/pop3s server is checked against, besides the
# system's (a file of PEM certificates).
BOUNCE_MAILBOX_CA_FILE = env.str("BOUNCE_MAILBOX_CA_FILE", default="")
# How often the django-q2 schedule reads the mailbox.
BOUNCE_PERIOD_MINUTES = env.int("BOUNCE_PERIOD_MINUTES", default=5)
# Soft bounces of one address within 30 days that suppress it.
SOFT_BOUNCE_LIMIT = env.int("SOFT_BOUNCE_LIMIT", default=3)
# Sending providers' tracking webhooks (django-anymail), at
# /anymail/<provider>/tracking/ for amazon_ses, brevo, mailgun, postmark and
# sendgrid: on only when ANYMAIL_WEBHOOK_SECRET ("user:password", the basic
# auth the provider is given) is set; Mailgun's also needs its signing key.
# MAILING_PROVIDER names the provider the relay belongs to, for those that
# report a message's token only from a header of theirs (Postmark, Brevo).
ANYMAIL_WEBHOOK_SECRET = env.list("ANYMAIL_WEBHOOK_SECRET", default=[])
MAILGUN_WEBHOOK_SIGNING_KEY = env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default="")
MAILING_PROVIDER = env.str("MAILING_PROVIDER", default="")
if ANYMAIL_WEBHOOK_SECRET:
    # Its app only registers system checks, and they import `requests`: a
    # tenth of a second in every process start (the minute's send command
    # included), so it is installed only where its webhooks are mounted.
    INSTALLED_APPS.append("anymail")
ANYMAIL = {
    "WEBHOOK_SECRET": ANYMAIL_WEBHOOK_SECRET,
    "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_WEBHOOK_SIGNING_KEY,
    # A subscription is confirmed by hand in the AWS console (no boto3 here).
    "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False,
}
# Secrets kept in the database (sender domains' DKIM keys) are encrypted
# with these Fernet keys (core/keys.py): the first encrypts, all decrypt.
# Make one with `python -c "from cryptography.fernet import Fernet;
# print(Fernet.generate_key().decode())"`; to rotate, put a new one first,
# run `manage.py encryption_rotate`, then drop the old one. In development a
# key is derived from SECRET_KEY when none is set.
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])
# The resolver sender domains' DNS is checked through (host or host:port);
# the system's when empty.
DNS_RESOLVER = env.str("DNS_RESOLVER", default="")
DNS_TIMEOUT = env.float("DNS_TIMEOUT", default=5.0)
# How the service's relay is named in the SPF record suggested to clients
# (e.g. "include:_spf.mailer.example" or "ip4:203.0.113.7"); by default
# "a:" or "ip4:" of EMAIL_HOST.
SENDER_SPF = env.str("SENDER_SPF", default="")
# The service's bounce host (e.g. "bounces.mailer.example": its MX receives
# bounces into BOUNCE_MAILBOX_URL, its TXT is the relay's SPF). When set,
# each client may point `bounces.<their domain>` at it with a CNAME; once
# the check finds it, their mail's return path is on their own domain, so
# SPF aligns with From. Empty: every return path is BOUNCE_ADDRESS's.
RETURN_PATH_HOST = env.str("RETURN_PATH_HOST", default="").strip().rstrip(".").lower()

# Opens and clicks this many seconds after delivery or sooner are counted as
# a machine's (a link scanner or a prefetcher), not a person's.
TRACKING_MACHINE_SECONDS = env.int("TRACKING_MACHINE_SECONDS", default=10)

SUPERUSER_EMAIL = env.str("SUPERUSER_EMAIL", default="")
SUPERUSER_PASSWORD = env.str("SUPERUSER_PASSWORD", default="")

# Content-Security-Policy (django-csp): scripts from this site only, never
# inline; inline styles, which the admin theme writes, are allowed; images
# also from https (message previews show the images a message links).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "https:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Error pages and reports to ADMINS mask passwords inside URLs too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "core.reporting.SecretsFilter"

# Security: production values, switched on when DEBUG is False.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
        "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True
    )
    # Preloading is hard to undo (browsers ship the list): only when asked.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if env.bool("BEHIND_PROXY", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}

JAZZMIN_SETTINGS = {
    "site_title": SITE_NAME,
    "site_header": SITE_NAME,
    "site_brand": SITE_NAME,
    "welcome_sign": _("Mailing service"),
    "copyright": SITE_NAME,
    "site_logo": None,
    "show_ui_builder": False,
    # Every asset is served locally; no font CDN.
    "use_google_fonts_cdn": False,
    "language_chooser": True,
    "topmenu_links": [
        {"name": _("Site"), "url": "home"},
        {"name": _("Profile"), "url": "profile"},
    ],
    "usermenu_links": [{"name": _("Profile"), "url": "profile", "icon": "fas fa-user"}],
    "icons": {
        "auth.Group": "fas fa-users",
        "core.User": "fas fa-user",
        "core.Client": "fas fa-address-book",
        "core.Tag": "fas fa-tags",
        "core.Field": "fas fa-list-ul",
        "core.Segment": "fas fa-filter",
        "core.Consent": "fas fa-file-signature",
        "core.SubscriptionForm": "fas fa-user-plus",
        "core.Suppression": "fas fa-ban",
        "core.Message": "fas fa-envelope-open-text",
        "core.Mailing": "fas fa-paper-plane",
        "core.MailingRun": "fas fa-history",
        "core.Attempt": "fas fa-list-alt",
        "core.Article": "fas fa-newspaper",
        "core.SenderDomain": "fas fa-globe",
        "core.SmtpRelay": "fas fa-server",
        "core.Event": "fas fa-bolt",
        "django_q": "fas fa-tasks",
    },
    # The order of the work: recipients, then messages, then mailings and
    # their reports.
    "order_with_respect_to": [
        "core",
        "core.client",
        "core.tag",
        "core.field",
        "core.segment",
        "core.subscriptionform",
        "core.consent",
        "core.suppression",
        "core.message",
        "core.senderdomain",
        "core.smtprelay",
        "core.mailing",
        "core.mailingrun",
        "core.attempt",
        "core.article",
        "core.user",
        "auth",
    ],
}
# Bootswatch themes that @import Google Fonts are avoided: every asset is local.
JAZZMIN_UI_TWEAKS = {"theme": "cerulean"}

# Recipient CSV import/export (core.services.recipients, the recipients admin).
# Uploads above this size are refused before they are read.
IMPORT_EXPORT_CLIENTS_MAX_UPLOAD_SIZE = 20 * 1024 * 1024
# Uploads waiting for "Confirm import": one per user, an hour at most.
IMPORT_UPLOAD_DIR = env.path("IMPORT_UPLOAD_DIR", default=VAR_DIR / "imports")
# For any export through django-import-export's own pipeline. That pipeline
# only strips a leading "=" (4.4), so the recipients' streaming export quotes
# cells starting with = + - @ tab or CR itself (services.recipients.export).
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True
