"""`manage.py import_clients FILE --owner EMAIL [--dry-run]`."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core.models import Client

from .factories import ClientFactory
from .recipients import (
    BAD_FILE_IDS,
    BAD_FILES,
    _english,  # noqa: F401 (autouse: English messages)
    csv_bytes,
    owned,
)

pytestmark = pytest.mark.django_db


def test_the_command_imports_a_file_and_prints_the_counts(
    tmp_path, client_user, capsys
):
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    path = tmp_path / "list.csv"
    path.write_bytes(
        csv_bytes(
            ["email", "full_name"],
            ["anna@example.com", "Anna P."],
            ["boris@example.com", "Boris"],
            ["Boris@Example.com", ""],
        )
    )
    call_command(
        "import_clients", str(path), "--owner", client_user.email.upper(), "--consent"
    )
    out = capsys.readouterr().out
    assert "created: 1, updated: 1, unchanged: 0, duplicate rows merged: 1" in out
    assert owned(client_user) == {
        "anna@example.com": ("Anna P.", ""),
        "boris@example.com": ("Boris", ""),
    }


def test_the_command_dry_run_saves_nothing(tmp_path, client_user, capsys):
    path = tmp_path / "list.csv"
    path.write_bytes(csv_bytes(["email"], ["anna@example.com"]))
    call_command("import_clients", str(path), "--owner", client_user.email, "--dry-run")
    assert "created: 1" in capsys.readouterr().out
    assert not Client.objects.exists()


@pytest.mark.parametrize("data, message", BAD_FILES, ids=BAD_FILE_IDS)
def test_the_command_explains_a_bad_file_and_saves_nothing(
    tmp_path, client_user, data, message
):
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(CommandError) as error:
        call_command(
            "import_clients", str(path), "--owner", client_user.email, "--consent"
        )
    assert message in str(error.value)
    assert not Client.objects.exists()


def test_the_command_refuses_a_file_over_the_size_limit(
    tmp_path, client_user, settings
):
    settings.IMPORT_EXPORT_CLIENTS_MAX_UPLOAD_SIZE = 10
    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(["email"], ["anna@example.com"]))
    with pytest.raises(CommandError, match="files up to 10\xa0bytes can be imported"):
        call_command(
            "import_clients", str(path), "--owner", client_user.email, "--consent"
        )


def test_the_command_refuses_bad_input_clearly(tmp_path, client_user):
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes(["email"], ["anna@example.com"]))
    with pytest.raises(CommandError, match="No user with the e-mail nobody@example"):
        call_command("import_clients", str(good), "--owner", "nobody@example.com")
    with pytest.raises(CommandError, match="No such file"):
        call_command(
            "import_clients",
            str(tmp_path / "missing.csv"),
            "--owner",
            client_user.email,
        )
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes(["email"], ["anna@example.com"], ["nope"]))
    with pytest.raises(CommandError) as error:
        call_command(
            "import_clients", str(bad), "--owner", client_user.email, "--consent"
        )
    assert "Nothing was imported" in str(error.value)
    assert "Row 3: “nope” is not a valid e-mail address." in str(error.value)
    assert not Client.objects.exists()


def test_the_command_imports_only_with_the_owners_word_of_consent(
    tmp_path, client_user
):
    from core.models import Consent

    path = tmp_path / "list.csv"
    path.write_bytes(csv_bytes(["email"], ["anna@example.com"]))
    with pytest.raises(CommandError, match="pass --consent"):
        call_command("import_clients", str(path), "--owner", client_user.email)
    assert not Client.objects.exists()
    call_command("import_clients", str(path), "--owner", client_user.email, "--consent")
    anna = Client.objects.get()
    assert anna.source == "import" and anna.confirmed_at is not None
    assert sorted(
        Consent.objects.filter(client=anna).values_list("kind", "source")
    ) == [
        ("marketing", "import"),
        ("personal_data", "import"),
    ]
