import gc

import pytest
from django.core.cache import cache
from django.utils import translation

from core.services.quotas import _ROWS_MADE
from core.services.roles import CLIENTS, MANAGERS
from core.services.tracking import RUNS

from .dns import dns_server  # noqa: F401
from .dovecot import dovecot, dovecot_box  # noqa: F401
from .factories import UserFactory
from .opendkim import opendkim  # noqa: F401


@pytest.fixture(autouse=True)
def _fast_isolated_settings(settings):
    """Fast hashing, and a cache of each test's own so throttles and what a
    run tracks never leak (run ids come again on SQLite)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    cache.clear()
    RUNS.clear()
    _ROWS_MADE.clear()
    yield
    cache.clear()
    RUNS.clear()
    _ROWS_MADE.clear()
    # The language a request's Accept-Language chose stays active in the
    # thread after the test client returns: the next test starts in the
    # default one, as a fresh process does.
    translation.deactivate()
    # The send command freezes what it finds for its process's life; here
    # the process goes on, and its garbage is collected again.
    gc.unfreeze()


@pytest.fixture
def client_user(db):
    """A verified client, in the `clients` group, as signup leaves them."""
    return UserFactory(verified=True, groups=[CLIENTS])


@pytest.fixture
def manager(db):
    return UserFactory(verified=True, groups=[MANAGERS])


@pytest.fixture
def owner(db):
    """A client who sends mailings."""
    return UserFactory(email="shop@example.com", verified=True, groups=[CLIENTS])


@pytest.fixture
def superuser(db):
    return UserFactory(verified=True, is_superuser=True)


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on loopback; Django's mail goes to it."""
    from .smtp import SmtpServer

    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 10
    yield server
    server.stop()


@pytest.fixture
def inline_tasks(monkeypatch):
    """Run queued django-q2 tasks at once, as a worker would."""
    from django.utils.module_loading import import_string

    from core import tasks

    monkeypatch.setattr(
        tasks, "async_task", lambda func, *args: import_string(func)(*args)
    )


@pytest.fixture(autouse=True)
def _dispatch_settings(settings, tmp_path):
    """Quick retries; a journal and an upload directory of each test's own."""
    settings.SMTP_RETRY_BACKOFF = 0
    settings.SMTP_RATE_LIMIT = ""
    settings.DISPATCH_JOURNAL_DIR = tmp_path / "journal"
    settings.IMPORT_UPLOAD_DIR = tmp_path / "imports"


def pytest_collection_modifyitems(config, items):
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(
        reason="needs PostgreSQL (row locking, concurrent workers); "
        "set DATABASE_URL to run it"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
