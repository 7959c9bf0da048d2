import pytest
from django.core.cache import cache

from core.services.roles import CLIENTS, MANAGERS

from .factories import UserFactory


@pytest.fixture(autouse=True)
def _fast_isolated_settings(settings):
    """Fast hashing, and a cache of each test's own so throttles never leak."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client_user(db):
    """A verified client, in the `clients` group, as signup leaves them."""
    return UserFactory(verified=True, groups=[CLIENTS])


@pytest.fixture
def manager(db):
    return UserFactory(verified=True, groups=[MANAGERS])


@pytest.fixture
def superuser(db):
    return UserFactory(verified=True, is_superuser=True)
