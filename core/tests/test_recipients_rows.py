"""CSV rows as a spreadsheet numbers them: delimiters, quotes, blank rows."""

import codecs

import pytest

from core.models import Client
from core.services.recipients import clients_import

from .recipients import (
    CONSENT,
    _english,  # noqa: F401 (autouse: English messages)
    csv_bytes,
    owned,
    problems,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "data",
    [b"", b"   \r\n\r\n", codecs.BOM_UTF8, b",,,\n,,\n"],
    ids=["nothing", "blank lines", "only a BOM", "empty cells"],
)
def test_an_empty_file_is_refused(client_user, data):
    assert "The file is empty." in problems(data, client_user)


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_delimiter_is_detected(client_user, delimiter):
    data = csv_bytes(
        ["email", "full_name", "comment"],
        ["anna@example.com", "Petrova, Anna", "a; b"],
        delimiter=delimiter,
    )
    clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user) == {"anna@example.com": ("Petrova, Anna", "a; b")}


def test_old_mac_line_endings_are_read(client_user):
    data = b"email;full_name\ra@example.com;Anna\rb@example.com;Boris\r"
    clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user) == {
        "a@example.com": ("Anna", ""),
        "b@example.com": ("Boris", ""),
    }


def test_an_unclosed_quotation_mark_is_reported_at_its_row(client_user):
    data = b'email,comment\na@example.com,ok\nb@example.com,"never closed\nc@x.com,x\n'
    listing = problems(data, client_user)
    assert listing.startswith("Row 3: the row is not valid CSV")
    assert "quotation marks are paired" in listing
    assert not Client.objects.exists()


def test_a_giant_cell_is_reported_at_its_row(client_user):
    data = csv_bytes(["email", "comment"], ["a@example.com", "x" * 200_000])
    assert problems(data, client_user).startswith("Row 2: the row is not valid CSV")


def test_invalid_addresses_are_reported_by_spreadsheet_row_and_nothing_is_saved(
    client_user,
):
    data = (
        b"email,full_name\n"
        b"good@example.com,Good\n"
        b"\n"  # a blank row still counts, as in a spreadsheet
        b"not-an-address,Bad\n"
        b'"two\nlines@example.com",Bad\n'  # one spreadsheet row, two lines
        b"also@bad@example.com,Bad\n"
    )
    listing = problems(data, client_user)
    assert "Row 4: “not-an-address” is not a valid e-mail address." in listing
    assert "Row 5: “two\nlines@example.com” is not a valid e-mail address." in listing
    assert "Row 6: “also@bad@example.com” is not a valid e-mail address." in listing
    assert "good@example.com" not in listing
    assert not Client.objects.exists()
