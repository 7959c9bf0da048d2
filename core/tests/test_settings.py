"""Configuration: the embedded default, production refusals, check --deploy."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
# Each test starts a fresh interpreter (or a server) configured by its own
# environment.
pytestmark = pytest.mark.slow

PRINT_SETTINGS = """
import django, json
django.setup()
from django.conf import settings as s
print(json.dumps({
    "db": s.DATABASES["default"]["ENGINE"],
    "db_name": str(s.DATABASES["default"]["NAME"]),
    "mail": s.EMAIL_BACKEND, "mail_path": str(getattr(s, "EMAIL_FILE_PATH", "")),
    "broker": "redis" if "redis" in s.Q_CLUSTER else s.Q_CLUSTER.get("orm"),
    "language": s.LANGUAGE_CODE, "period": s.DISPATCH_PERIOD_MINUTES,
    "from": s.DEFAULT_FROM_EMAIL, "cache": s.CACHES["default"]["BACKEND"],
    "bounce": s.BOUNCE_ADDRESS, "bounces": s.BOUNCE_MAILBOX_URL,
}))
"""


def run_python(code, tmp_path, **env_vars):
    """Run code in a fresh interpreter configured only by `env_vars`."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "ENV_FILE": str(tmp_path / "none.env"),
        **env_vars,
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def example_env():
    values = {}
    for line in (BASE_DIR / "example.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_no_env_runs_on_sqlite_files_and_the_orm_broker(tmp_path):
    import json

    # In development mode, as `make run` starts it.
    result = run_python(PRINT_SETTINGS, tmp_path, DEBUG="True")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["db"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(BASE_DIR / "var" / "db.sqlite3")
    assert values["mail"] == "django.core.mail.backends.filebased.EmailBackend"
    assert values["mail_path"] == str(BASE_DIR / "var" / "mail")
    assert values["broker"] == "default"
    assert values["language"] == "ru"
    assert values["period"] == 1
    # Bounces come back to the mailings' domain and are read from var/bounces.
    assert values["bounce"] == "bounces@localhost"
    assert values["bounces"] == f"maildir://{BASE_DIR / 'var' / 'bounces'}"


def test_the_bounce_address_follows_the_mailings_sender(tmp_path):
    import json

    result = run_python(
        PRINT_SETTINGS,
        tmp_path,
        DEBUG="True",
        MAILING_FROM_EMAIL="Цветы <news@shop.example.com>",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bounce"] == "bounces@shop.example.com"


def test_variables_switch_on_postgres_smtp_and_redis(tmp_path):
    import json

    result = run_python(
        PRINT_SETTINGS,
        tmp_path,
        DEBUG="True",
        DATABASE_URL="postgres://u:p@db.internal:5432/mailing",
        EMAIL_URL="smtp+tls://u:p@smtp.internal:587",
        REDIS_URL="redis://127.0.0.1:6379/0",
        CRONJOBS_PERIOD="5",
        DEFAULT_FROM_EMAIL="Рассыльщик <noreply@example.com>",
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["db"] == "django.db.backends.postgresql"
    assert values["mail"] == "django.core.mail.backends.smtp.EmailBackend"
    assert values["broker"] == "redis"
    assert values["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert values["period"] == 5
    assert values["from"] == "Рассыльщик <noreply@example.com>"


@pytest.mark.parametrize(
    ("missing", "message"),
    [("SECRET_KEY", "SECRET_KEY must be set"), ("ALLOWED_HOSTS", "ALLOWED_HOSTS")],
)
def test_production_refuses_to_start_without_key_or_hosts(tmp_path, missing, message):
    env = {
        "DEBUG": "False",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "mail.example.com",
    }
    del env[missing]
    result = run_python("import django; django.setup()", tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_without_any_configuration_it_is_production_and_refuses_to_start(tmp_path):
    result = run_python("import django; django.setup()", tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_short_secret_key(tmp_path):
    env = {"SECRET_KEY": "x" * 49, "ALLOWED_HOSTS": "mail.example.com"}
    result = run_python("import django; django.setup()", tmp_path, **env)
    assert result.returncode != 0
    assert "at least 50 characters" in result.stderr
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    assert run_python("import django; django.setup()", tmp_path, **env).returncode == 0


HSTS = """
import django; django.setup()
from django.conf import settings
print(settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_PRELOAD)
"""


def test_hsts_preload_only_when_asked(tmp_path):
    env = {"SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "a.example"}
    assert run_python(HSTS, tmp_path, **env).stdout.split() == ["31536000", "False"]
    asked = run_python(HSTS, tmp_path, SECURE_HSTS_PRELOAD="True", **env)
    assert asked.stdout.split() == ["31536000", "True"]


ERROR_PAGES = """
import django, sys
django.setup()
from django.test import RequestFactory
from django.views import debug
request = RequestFactory().get("/broken/")
try:
    raise RuntimeError("boom")
except RuntimeError:
    page = debug.technical_500_response(request, *sys.exc_info()).content.decode()
text = debug.ExceptionReporter(request, *sys.exc_info()).get_traceback_text()
from django.http import Http404
missing = debug.technical_404_response(request, Http404("x")).content.decode()
print(chr(10).join([page, text, missing]))
"""


def test_no_configured_secret_appears_on_an_error_page(tmp_path):
    secret = "S3cr3t-" + secrets.token_hex(8)
    env = {
        "DEBUG": "True",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "EMAIL_URL": f"smtp+tls://shop:{secret}@smtp.example.com:587",
        "REDIS_URL": f"redis://:{secret}@127.0.0.1:6379/0",
        "DATABASE_URL": f"postgres://mailing:{secret}@db.internal:5432/mailing",
        "SUPERUSER_PASSWORD": secret,
    }
    result = run_python(ERROR_PAGES, tmp_path, **env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RuntimeError" in result.stdout and "smtp.example.com" in result.stdout
    assert secret not in result.stdout
    assert env["SECRET_KEY"] not in result.stdout
    cache = run_python(
        ERROR_PAGES,
        tmp_path,
        **{
            **env,
            "REDIS_URL": "",
            "CACHE_URL": f"rediscache://:{secret}@127.0.0.1:6379/1",
        },
    )
    assert cache.returncode == 0 and secret not in cache.stdout


def test_production_refuses_the_example_placeholder_key(tmp_path):
    env = {**example_env(), "DATABASE_URL": "sqlite:///:memory:"}
    result = run_python("import django; django.setup()", tmp_path, **env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_check_deploy_is_clean_with_the_example_production_values(tmp_path):
    env = {
        **example_env(),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    code = (
        "import sys; from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check', '--deploy', "
        "'--fail-level', 'WARNING'])"
    )
    result = run_python(code, tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


PRODUCTION_PAGES = """
import django, sys
django.setup()
from django.core.management import call_command
call_command("collectstatic", "--no-input", verbosity=0)
call_command("migrate", verbosity=0)
from django.test import Client
from core.models import User
admin = User.objects.create_superuser(
    email="admin@example.com", password="x-long-pass-1"
)
anonymous, logged_in = Client(), Client()
logged_in.force_login(admin)
pages = {
    anonymous: ["/", "/login/", "/signup/", "/password-reset/", "/verify/resend/",
                "/static/vendor/bootswatch/cerulean/bootstrap.min.css",
                "/static/core/site.css"],
    logged_in: ["/admin/", "/admin/core/user/", "/admin/core/user/add/",
                f"/admin/core/user/{admin.pk}/change/", "/admin/auth/group/",
                "/profile/"],
}
bad = []
for client, urls in pages.items():
    for url in urls:
        status = client.get(url, secure=True).status_code
        if status != 200:
            bad.append((url, status))
print(bad)
sys.exit(1 if bad else 0)
"""


def test_production_mode_serves_pages_and_its_own_static_files(tmp_path):
    env = {
        "DEBUG": "False",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        "CACHE_URL": "locmemcache://",
    }
    result = run_python(PRODUCTION_PAGES, tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def run_manage(args, tmp_path, **env_vars):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ENV_FILE": str(tmp_path / "none.env"),
        **env_vars,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_commands_that_read_only_the_code_run_without_a_key(tmp_path):
    """`makemigrations --check` in CI, or translations on a build machine,
    need no secret; everything else in production mode still refuses."""
    checked = run_manage(["makemigrations", "--check", "--dry-run"], tmp_path)
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "No changes detected" in checked.stdout
    refused = run_manage(["migrate", "--no-input"], tmp_path)
    assert refused.returncode != 0
    assert "SECRET_KEY must be set" in refused.stderr


def test_django_anymail_is_installed_only_where_its_webhooks_are_mounted(tmp_path):
    """Its app registers only system checks, which import `requests`: every
    process start (the minute's send command among them) would pay for it.
    So would dnspython, which only the sender-domain checks use, markdown-it
    (articles), flufl.bounce (bounce reports without a standard part) and
    Pillow (cover images)."""
    code = (
        "import django, sys; django.setup(); from django.conf import settings; "
        "import core.tasks, core.services.dispatch; "
        "print('anymail' in settings.INSTALLED_APPS, 'requests' in sys.modules, "
        "'dns.resolver' in sys.modules, 'markdown_it' in sys.modules, "
        "'flufl.bounce' in sys.modules, 'PIL.Image' in sys.modules)"
    )
    without = run_python(code, tmp_path, DEBUG="True")
    assert without.returncode == 0, without.stderr
    assert without.stdout.split() == ["False"] * 6
    mounted = run_python(code, tmp_path, DEBUG="True", ANYMAIL_WEBHOOK_SECRET="a:b")
    assert mounted.returncode == 0, mounted.stderr
    assert mounted.stdout.split()[0] == "True"


def test_the_send_command_skips_the_system_checks_and_check_still_runs_them(
    tmp_path,
):
    """Run every minute, the send command leaves the checks (a tenth of a
    second of every run) to `check`, `migrate` and `runserver`."""
    from core.management.commands.send_scheduled_emails import Command

    assert Command.requires_system_checks == []
    checked = run_manage(["check"], tmp_path, DEBUG="True")
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "System check identified no issues" in checked.stdout


@pytest.mark.parametrize(
    "asks, expected",
    [
        (
            "from django.urls import reverse; "
            "shown = reverse('admin:core_mailing_changelist')",
            "/admin/core/mailing/",
        ),
        (
            "from django.core import checks; "
            "shown = len(checks.run_checks(tags=[checks.Tags.admin]))",
            "0",
        ),
    ],
    ids=["urls", "checks"],
)
def test_the_admin_is_discovered_with_the_urls_or_its_checks_not_at_start_up(
    tmp_path, asks, expected
):
    """A process that serves no page does not import the admin modules; the
    admin's pages and its checks still see every ModelAdmin."""
    code = (
        "import django, sys; django.setup(); from django.contrib import admin; "
        "from core.models import Mailing; "
        f"before = 'core.admin' in sys.modules; {asks}; "
        "print(before, admin.site.is_registered(Mailing), shown)"
    )
    done = run_python(code, tmp_path, DEBUG="True")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", expected]


@pytest.mark.parametrize(
    ("daily", "expected"),
    [("", "None 200000"), ("0", "0 200000"), ("  500 ", "500 200000")],
)
def test_sending_quotas_are_read_as_whole_numbers_or_none(tmp_path, daily, expected):
    result = run_python(
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.SENDING_QUOTA_DAILY, settings.SENDING_QUOTA_MONTHLY)",
        tmp_path,
        DEBUG="True",
        SENDING_QUOTA_DAILY=daily,
        SENDING_QUOTA_MONTHLY="200000",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("value", ["-5", "ten", "1e3"])
def test_a_sending_quota_that_is_not_a_whole_number_refuses_to_start(tmp_path, value):
    result = run_python(
        "import django; django.setup()",
        tmp_path,
        DEBUG="True",
        SENDING_QUOTA_MONTHLY=value,
    )
    assert result.returncode != 0
    assert "SENDING_QUOTA_MONTHLY must be a whole number" in result.stderr
