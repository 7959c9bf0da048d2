"""clients_import: a whole file into one list, or a clear refusal."""

import pytest

from core.models import Client
from core.services.recipients import clients_export_csv, clients_import

from .factories import ClientFactory, UserFactory
from .recipients import (
    BAD_FILE_IDS,
    BAD_FILES,
    CONSENT,
    _english,  # noqa: F401 (autouse: English messages)
    csv_bytes,
    owned,
    problems,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("data, message", BAD_FILES, ids=BAD_FILE_IDS)
def test_the_service_explains_a_bad_file_and_saves_nothing(client_user, data, message):
    ClientFactory(owner=client_user, email="kept@example.com")
    assert message in problems(data, client_user)
    assert set(owned(client_user)) == {"kept@example.com"}


def test_a_file_over_the_size_limit_is_refused(client_user, settings):
    settings.IMPORT_EXPORT_CLIENTS_MAX_UPLOAD_SIZE = 1024 * 1024
    data = csv_bytes(["email"], *([f"n{n}@example.com"] for n in range(80_000)))
    listing = problems(data, client_user)
    assert "The file is 1.5\xa0MB; files up to 1.0\xa0MB can be imported." in listing


def test_an_exported_file_imports_back_unchanged(client_user):
    for n, name in enumerate(["=cmd|' /C calc'!A0", "Анна", "-minus"]):
        ClientFactory(
            owner=client_user, email=f"r{n}@example.com", full_name=name, comment="c"
        )
    before = owned(client_user)
    body = b"".join(
        clients_export_csv(queryset=Client.objects.filter(owner=client_user))
    )
    other = UserFactory(verified=True, groups=["clients"])
    result = clients_import(owner=other, data=body, consent=CONSENT)
    assert result.created == 3
    assert owned(other) == before
    assert clients_import(owner=client_user, data=body, consent=CONSENT).unchanged == 3
