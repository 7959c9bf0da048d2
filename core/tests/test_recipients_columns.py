"""The recipient columns: header names, name parts, cells and their widgets."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.services.recipients import clients_import
from core.services.recipients.columns import Column, EmailWidget, UnsubscribedWidget

from .recipients import (
    CONSENT,
    _english,  # noqa: F401 (autouse: English messages)
    csv_bytes,
    owned,
    problems,
)

pytestmark = pytest.mark.django_db


def test_a_file_without_an_email_column_names_the_headers_it_has(client_user):
    data = csv_bytes(["Phone", "Company", "Name"], ["+7 900", "ACME", "Anna"])
    listing = problems(data, client_user)
    assert "Row 1: No e-mail column found." in listing
    assert "“Phone”, “Company”, “Name”" in listing


def test_a_file_without_a_header_row_says_so(client_user):
    listing = problems(b"anna@example.com,Anna\n", client_user)
    assert "No e-mail column found" in listing
    assert "add a header row" in listing


def test_headers_are_matched_ignoring_case_and_surrounding_spaces(client_user):
    data = csv_bytes(
        ["  E-MAIL  ", " Full Name ", "NOTES "], ["anna@example.com", "Anna", "vip"]
    )
    clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user) == {"anna@example.com": ("Anna", "vip")}


def test_a_google_contacts_export_imports_as_it_is(client_user):
    data = csv_bytes(
        [
            "Name",
            "Given Name",
            "Family Name",
            "Group Membership",
            "E-mail 1 - Type",
            "E-mail 1 - Value",
            "E-mail 2 - Type",
            "E-mail 2 - Value",
            "Notes",
        ],
        [
            "Анна Иванова",
            "Анна",
            "Иванова",
            "* myContacts",
            "* Home",
            "anna@example.com ::: anna@home.example",
            "Work",
            "anna@work.example",
            "met in Kazan",
        ],
        bom=True,
    )
    clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user) == {"anna@example.com": ("Анна Иванова", "met in Kazan")}


def test_an_outlook_export_joins_first_middle_and_last_name(client_user):
    data = csv_bytes(
        [
            "First Name",
            "Middle Name",
            "Last Name",
            "Company",
            "E-mail Address",
            "E-mail Display Name",
            "E-mail 2 Address",
            "Notes",
        ],
        ["John", "Q.", "Public", "ACME", "JOHN@acme.example", "John", "", "client"],
        ["Mary", "", "", "", "mary@acme.example", "", "", ""],
    )
    clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user) == {
        "john@acme.example": ("John Q. Public", "client"),
        "mary@acme.example": ("Mary", ""),
    }


def test_a_formula_in_a_name_is_stored_as_plain_text(client_user):
    formula = '=HYPERLINK("http://evil.example","click")'
    data = csv_bytes(["email", "full_name"], ["anna@example.com", formula])
    clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user)["anna@example.com"][0] == formula


def test_an_unreadable_unsubscribed_value_is_an_error(client_user):
    data = csv_bytes(["email", "unsubscribed"], ["anna@example.com", "sometimes"])
    assert "Row 2: “sometimes” in the unsubscribed column" in problems(
        data, client_user
    )


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("да", "now"),
        ("Yes", "now"),
        ("x", "now"),
        ("нет", None),
        ("no", None),
        ("", None),
        ("2024-05-01", (2024, 5, 1, 0, 0)),
        ("2024-05-01 10:30:00", (2024, 5, 1, 10, 30)),
        ("01.02.2023", (2023, 2, 1, 0, 0)),
        ("01.02.2023 13:45", (2023, 2, 1, 13, 45)),
        ("'-", None),  # our export's quote before "-" (no) is taken off
    ],
)
def test_the_unsubscribed_column_reads_dates_and_yes_or_no(cell, expected):
    value = UnsubscribedWidget().clean(cell)
    if expected == "now":
        assert abs(value - timezone.now()) < timedelta(minutes=1)
    elif expected is None:
        assert value is None
    else:
        local = timezone.localtime(value)
        assert (local.year, local.month, local.day, local.hour, local.minute) == (
            expected
        )


def test_an_address_cell_is_normalised_before_it_is_checked():
    widget = EmailWidget(max_length=254)
    assert widget.clean("  Anna@Example.COM ::: anna@home.example ") == (
        "anna@example.com"
    )
    assert widget.clean("'-minus@example.com") == "-minus@example.com"
    assert widget.clean("   ") is None
    with pytest.raises(ValueError, match="is not a valid e-mail address"):
        widget.clean("a" * 250 + "@example.com")


@pytest.mark.parametrize(
    "options",
    [{"readonly": True}, {"attribute": "owner__email"}, {"default": "x"}],
)
def test_a_column_is_a_plain_writable_attribute(options):
    # Column.save sets the attribute directly: it would ignore these.
    with pytest.raises(ValueError, match="plain writable attribute"):
        Column(**{"attribute": "comment", "column_name": "comment", **options})
