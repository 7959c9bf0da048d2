"""Recipient CSV import and export: the service, the admin and the command."""

import codecs
import csv
import io
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone, translation

from core.models import Client, ClientUserObjectPermission
from core.services import imports
from core.services.imports import (
    ClientImportError,
    ClientResource,
    clients_export_csv,
    clients_import,
)

from .factories import ClientFactory, UserFactory

pytestmark = pytest.mark.django_db

IMPORT_URL = reverse("admin:core_client_import")
CONFIRM_URL = reverse("admin:core_client_process_import")
EXPORT_URL = reverse("admin:core_client_export")
CHANGELIST_URL = reverse("admin:core_client_changelist")


@pytest.fixture(autouse=True)
def _english(client):
    """Messages are asserted in their English source form."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        yield


def csv_bytes(*rows, delimiter=",", encoding="utf-8", bom=False):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    data = buffer.getvalue().encode(encoding)
    return codecs.BOM_UTF8 + data if bom else data


def problems(data, owner):
    with pytest.raises(ClientImportError) as error:
        clients_import(owner=owner, data=data)
    return "\n".join(error.value.listing())


def owned(owner):
    return {
        c.email: (c.full_name, c.comment)
        for c in Client.objects.filter(owner=owner).order_by()
    }


def upload(client, data, name="recipients.csv"):
    return client.post(
        IMPORT_URL, {"import_file": SimpleUploadedFile(name, data, "text/csv")}
    )


def confirm(client, response):
    initial = response.context["confirm_form"].initial
    return client.post(CONFIRM_URL, initial, follow=True)


def exported(response):
    assert response.streaming
    body = b"".join(response.streaming_content)
    assert body.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(body[3:].decode("utf-8"), newline="")))


# Each bad file, with the message that explains it; run through the service,
# the admin and the command.
BAD_FILES = [
    (b" \r\n\r\n", "The file is empty."),
    (b"email,full_name\n", "The file has a header row but no recipients."),
    (b"phone,name\n1,Anna\n", "The headers in the file are: “phone”, “name”"),
    (
        "email,name\na@example.com,Анна\n".encode()
        + "b@example.com,Борис\n".encode("cp1251"),
        "The file mixes text encodings: line 2 is UTF-8, line 3 is not.",
    ),
    (os.urandom(10 * 1024 * 1024), "This is not a text CSV file"),
    (
        b"email\nok@example.com\nnope\n\nal so@example.com\n",
        "Row 3: “nope” is not a valid e-mail address.",
    ),
    (b'email,name\na@example.com,"Anna\nb@example.com,B\n', "Row 2: the row is not"),
]
BAD_FILE_IDS = [
    "blank lines",
    "header only",
    "no e-mail column",
    "mixed encodings",
    "10 MB of random bytes",
    "invalid addresses",
    "unclosed quote",
]


# --- the service ---------------------------------------------------------


@pytest.mark.parametrize("data, message", BAD_FILES, ids=BAD_FILE_IDS)
def test_the_service_explains_a_bad_file_and_saves_nothing(client_user, data, message):
    ClientFactory(owner=client_user, email="kept@example.com")
    assert message in problems(data, client_user)
    assert set(owned(client_user)) == {"kept@example.com"}


def test_import_creates_recipients_the_importer_owns_with_permissions(client_user):
    data = csv_bytes(
        ["email", "full_name", "comment"],
        ["Anna@Example.com", "Анна Иванова", "from the fair"],
        ["boris@example.com", "", ""],
    )
    result = clients_import(owner=client_user, data=data)
    assert (result.created, result.updated, result.merged) == (2, 0, 0)
    assert owned(client_user) == {
        "anna@example.com": ("Анна Иванова", "from the fair"),
        "boris@example.com": ("", ""),
    }
    for recipient in Client.objects.filter(owner=client_user):
        for action in ("view", "change", "delete"):
            assert client_user.has_perm(f"core.{action}_client", recipient)


def test_import_updates_existing_recipients_by_email_ignoring_case(client_user):
    existing = ClientFactory(
        owner=client_user, email="anna@example.com", full_name="Old", comment="old"
    )
    data = csv_bytes(
        ["email", "name", "comment"], ["ANNA@example.COM", "Anna New", "new note"]
    )
    result = clients_import(owner=client_user, data=data)
    assert (result.created, result.updated) == (0, 1)
    existing.refresh_from_db()
    assert (existing.full_name, existing.comment) == ("Anna New", "new note")
    assert Client.objects.filter(owner=client_user).count() == 1


def test_empty_cells_keep_the_stored_name_and_comment(client_user):
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    data = csv_bytes(["email", "full_name", "comment"], ["anna@example.com", "", ""])
    result = clients_import(owner=client_user, data=data)
    assert (result.updated, result.unchanged) == (0, 1)
    assert owned(client_user)["anna@example.com"][0] == "Anna"


def test_an_id_column_naming_another_users_recipient_changes_nothing_of_theirs(
    client_user,
):
    theirs = ClientFactory(email="victim@example.org", full_name="Victim")
    other_owner = theirs.owner
    data = csv_bytes(
        ["id", "owner", "email", "full_name"],
        [str(theirs.pk), other_owner.email, "victim@example.org", "Hijacked"],
        [str(theirs.pk), str(other_owner.pk), "mine@example.org", "Mine"],
    )
    result = clients_import(owner=client_user, data=data)
    assert result.created == 2
    theirs.refresh_from_db()
    assert (theirs.owner, theirs.email, theirs.full_name) == (
        other_owner,
        "victim@example.org",
        "Victim",
    )
    assert set(owned(client_user)) == {"victim@example.org", "mine@example.org"}
    assert Client.objects.filter(owner=other_owner).count() == 1
    assert not client_user.has_perm("core.change_client", theirs)


def test_duplicate_rows_are_merged_and_later_non_empty_values_win(client_user):
    data = csv_bytes(
        ["email", "full_name", "comment"],
        ["anna@example.com", "Anna", "first"],
        ["ANNA@EXAMPLE.COM", "Anna Petrova", ""],
        ["Anna@Example.com", "", "third"],
    )
    result = clients_import(owner=client_user, data=data)
    assert (result.created, result.merged) == (1, 2)
    assert owned(client_user) == {"anna@example.com": ("Anna Petrova", "third")}


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


def test_every_error_is_found_but_the_listing_stops_after_fifty(client_user):
    rows = [["email"]] + [[f"broken-{n}"] for n in range(120)]
    with pytest.raises(ClientImportError) as error:
        clients_import(owner=client_user, data=csv_bytes(*rows))
    assert len(error.value.issues) == 120
    listing = error.value.listing()
    assert len(listing) == 51
    assert listing[0].startswith("Row 2:")
    assert listing[-1] == "… and 70 more."


@pytest.mark.parametrize(
    "data",
    [b"", b"   \r\n\r\n", codecs.BOM_UTF8, b",,,\n,,\n"],
    ids=["nothing", "blank lines", "only a BOM", "empty cells"],
)
def test_an_empty_file_is_refused(client_user, data):
    assert "The file is empty." in problems(data, client_user)


def test_rows_without_an_address_are_skipped_and_counted(client_user):
    data = csv_bytes(
        ["email", "full_name", "phone"],
        ["anna@example.com", "Anna", ""],
        ["", "Plumber", "+7 900 000"],
        ["  ", "Taxi", "+7 900 001"],
    )
    result = clients_import(owner=client_user, data=data)
    assert (result.rows, result.created, result.skipped) == (3, 1, 2)
    assert result.skipped_listing == "3, 4"
    assert set(owned(client_user)) == {"anna@example.com"}


def test_a_file_where_no_row_has_an_address_is_refused(client_user):
    data = csv_bytes(["email", "full_name"], ["", "Plumber"])
    assert "None of the rows has an e-mail address." in problems(data, client_user)


def test_an_unclosed_quotation_mark_is_reported_at_its_row(client_user):
    data = b'email,comment\na@example.com,ok\nb@example.com,"never closed\nc@x.com,x\n'
    listing = problems(data, client_user)
    assert listing.startswith("Row 3: the row is not valid CSV")
    assert "quotation marks are paired" in listing
    assert not Client.objects.exists()


def test_a_giant_cell_is_reported_at_its_row(client_user):
    data = csv_bytes(["email", "comment"], ["a@example.com", "x" * 200_000])
    assert problems(data, client_user).startswith("Row 2: the row is not valid CSV")


def test_old_mac_line_endings_are_read(client_user):
    data = b"email;full_name\ra@example.com;Anna\rb@example.com;Boris\r"
    clients_import(owner=client_user, data=data)
    assert owned(client_user) == {
        "a@example.com": ("Anna", ""),
        "b@example.com": ("Boris", ""),
    }


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
    clients_import(owner=client_user, data=data)
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
    clients_import(owner=client_user, data=data)
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
    clients_import(owner=client_user, data=data)
    assert owned(client_user) == {
        "john@acme.example": ("John Q. Public", "client"),
        "mary@acme.example": ("Mary", ""),
    }


def test_a_russian_excel_file_in_windows_1251_with_semicolons(client_user):
    data = csv_bytes(
        ["Электронная почта", "ФИО", "Примечание"],
        ["ivan@example.ru", "Фёдор Иванов", "Тёма; важный"],
        delimiter=";",
        encoding="cp1251",
    )
    clients_import(owner=client_user, data=data)
    assert owned(client_user) == {"ivan@example.ru": ("Фёдор Иванов", "Тёма; важный")}


@pytest.mark.parametrize(
    "encoding, bom", [("utf-8", True), ("utf-8", False), ("utf-16", False)]
)
def test_unicode_files_with_and_without_bom(client_user, encoding, bom):
    data = csv_bytes(
        ["почта", "имя", "комментарий"],
        ["ivan@example.ru", "Иван", "ёлка"],
        encoding=encoding,
        bom=bom,
    )
    clients_import(owner=client_user, data=data)
    assert owned(client_user) == {"ivan@example.ru": ("Иван", "ёлка")}


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_delimiter_is_detected(client_user, delimiter):
    data = csv_bytes(
        ["email", "full_name", "comment"],
        ["anna@example.com", "Petrova, Anna", "a; b"],
        delimiter=delimiter,
    )
    clients_import(owner=client_user, data=data)
    assert owned(client_user) == {"anna@example.com": ("Petrova, Anna", "a; b")}


def test_a_spreadsheet_file_is_refused_as_not_text(client_user):
    xlsx = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + b"x" * 200
    assert "not a text CSV file" in problems(xlsx, client_user)


def test_a_file_over_the_size_limit_is_refused(client_user, settings):
    settings.IMPORT_EXPORT_CLIENTS_MAX_UPLOAD_SIZE = 1024 * 1024
    data = csv_bytes(["email"], *([f"n{n}@example.com"] for n in range(80_000)))
    listing = problems(data, client_user)
    assert "The file is 1.5\xa0MB; files up to 1.0\xa0MB can be imported." in listing


def test_a_formula_in_a_name_is_stored_as_plain_text(client_user):
    formula = '=HYPERLINK("http://evil.example","click")'
    data = csv_bytes(["email", "full_name"], ["anna@example.com", formula])
    clients_import(owner=client_user, data=data)
    assert owned(client_user)["anna@example.com"][0] == formula


def test_an_import_never_renews_a_subscription_but_can_end_one(client_user):
    gone = ClientFactory(
        owner=client_user, email="gone@example.com", unsubscribed_at=timezone.now()
    )
    ClientFactory(owner=client_user, email="stays@example.com")
    data = csv_bytes(
        ["email", "unsubscribed_at"],
        ["gone@example.com", ""],
        ["stays@example.com", "2024-05-01 10:00:00"],
        ["new@example.com", "да"],
        ["fresh@example.com", "no"],
    )
    clients_import(owner=client_user, data=data)
    state = dict(
        Client.objects.filter(owner=client_user).values_list("email", "unsubscribed_at")
    )
    assert state["gone@example.com"] == gone.unsubscribed_at
    assert state["stays@example.com"].date().isoformat() == "2024-05-01"
    assert state["new@example.com"] is not None
    assert state["fresh@example.com"] is None


def test_an_unreadable_unsubscribed_value_is_an_error(client_user):
    data = csv_bytes(["email", "unsubscribed"], ["anna@example.com", "sometimes"])
    assert "Row 2: “sometimes” in the unsubscribed column" in problems(
        data, client_user
    )


def test_a_dry_run_counts_but_saves_nothing(client_user):
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    data = csv_bytes(
        ["email", "full_name"],
        ["anna@example.com", "Anna P."],
        ["boris@example.com", "Boris"],
        ["BORIS@example.com", ""],
    )
    result = clients_import(owner=client_user, data=data, dry_run=True)
    assert (result.created, result.updated, result.merged) == (1, 1, 1)
    assert [row[:3] for row in result.preview] == [
        (2, "update", "anna@example.com"),
        (3, "new", "boris@example.com"),
    ]
    assert owned(client_user) == {"anna@example.com": ("Anna", "")}


def test_a_failure_while_writing_rolls_everything_back(client_user, monkeypatch):
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")

    def fail(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "_update_batch", fail)
    data = csv_bytes(
        ["email", "full_name"], ["new@example.com", "New"], ["anna@example.com", "A"]
    )
    with pytest.raises(RuntimeError):
        clients_import(owner=client_user, data=data)
    assert owned(client_user) == {"anna@example.com": ("Anna", "")}
    assert ClientUserObjectPermission.objects.filter(user=client_user).count() == 3


def test_the_import_export_resource_refuses_to_import_on_its_own():
    with pytest.raises(NotImplementedError, match="clients_import"):
        ClientResource().import_data(None)


# --- export --------------------------------------------------------------


def test_export_escapes_every_formula_prefix(client_user):
    names = ["=1+2", "+7 900", "-5", "@SUM(A1)", "\tTab", "\rCR", "Anna"]
    for n, name in enumerate(names):
        ClientFactory(owner=client_user, email=f"r{n}@example.com", full_name=name)
    body = b"".join(
        clients_export_csv(queryset=Client.objects.filter(owner=client_user))
    )
    rows = list(csv.reader(io.StringIO(body[3:].decode(), newline="")))
    assert rows[0] == ["email", "full_name", "comment", "unsubscribed_at"]
    assert [row[1] for row in rows[1:]] == [
        "'=1+2",
        "'+7 900",
        "'-5",
        "'@SUM(A1)",
        "'\tTab",
        "'\rCR",
        "Anna",
    ]


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
    result = clients_import(owner=other, data=body)
    assert result.created == 3
    assert owned(other) == before
    assert clients_import(owner=client_user, data=body).unchanged == 3


# --- the admin -----------------------------------------------------------


def test_a_client_imports_through_upload_check_and_confirm(client, client_user):
    client.force_login(client_user)
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    data = csv_bytes(
        ["E-mail", "Имя", "Комментарий"],
        ["anna@example.com", "Anna Petrova", ""],
        ["boris@example.com", "Борис", "new"],
        ["BORIS@example.com", "", "newer"],
        ["", "Сантехник", "no address"],
        delimiter=";",
        encoding="cp1251",
    )
    checked = upload(client, data)
    assert checked.status_code == 200
    page = checked.content.decode()
    assert "Ready to import “recipients.csv”" in page
    assert "1 row has no e-mail address and will be skipped (row 5)." in page
    assert "New recipients: 1; updated: 1; unchanged: 0; duplicate rows merged: 1" in (
        page
    )
    assert Client.objects.filter(owner=client_user).count() == 1

    done = confirm(client, checked)
    assert done.redirect_chain[-1][0] == CHANGELIST_URL
    assert (
        "Recipients created: 1, updated: 1, unchanged: 0; duplicate rows merged: 1"
        in done.content.decode()
    )
    assert owned(client_user) == {
        "anna@example.com": ("Anna Petrova", ""),
        "boris@example.com": ("Борис", "newer"),
    }


def test_the_admin_lists_row_errors_and_offers_no_confirmation(client, client_user):
    client.force_login(client_user)
    data = csv_bytes(["email"], ["ok@example.com"], ["nope"], ["also nope"])
    response = upload(client, data)
    page = response.content.decode()
    assert "The file was not imported" in page
    assert "Row 3: “nope” is not a valid e-mail address." in page
    assert "Row 4: “also nope” is not a valid e-mail address." in page
    assert not response.context.get("confirm_form")
    assert not Client.objects.exists()


@pytest.mark.parametrize("data, message", BAD_FILES, ids=BAD_FILE_IDS)
def test_the_admin_explains_a_bad_file_and_saves_nothing(
    client, client_user, data, message
):
    client.force_login(client_user)
    response = upload(client, data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not response.context.get("confirm_form")
    assert not Client.objects.exists()


def test_the_admin_refuses_a_zero_byte_upload(client, client_user):
    client.force_login(client_user)
    assert "The submitted file is empty." in upload(client, b"").content.decode()


def test_the_admin_refuses_a_file_over_the_size_limit(client, client_user, settings):
    settings.IMPORT_EXPORT_CLIENTS_MAX_UPLOAD_SIZE = 1024
    client.force_login(client_user)
    rows = ([f"a{n}@x.example"] for n in range(100))
    response = upload(client, csv_bytes(["email"], *rows))
    page = response.content.decode()
    assert "files up to 1.0\xa0KB can be imported. Split it into smaller files." in page
    assert "Ready to import" not in page
    assert not Client.objects.exists()


def test_posted_owner_or_id_fields_cannot_redirect_an_import(client, client_user):
    victim = ClientFactory(email="victim@example.org", full_name="Victim")
    client.force_login(client_user)
    data = csv_bytes(
        ["id", "owner_id", "email", "full_name"],
        [str(victim.pk), str(victim.owner_id), "victim@example.org", "Taken"],
    )
    checked = client.post(
        IMPORT_URL,
        {
            "import_file": SimpleUploadedFile("x.csv", data),
            "owner": victim.owner_id,
            "owner_id": victim.owner_id,
        },
    )
    initial = {**checked.context["confirm_form"].initial, "owner": victim.owner_id}
    client.post(CONFIRM_URL, initial)
    victim.refresh_from_db()
    assert (victim.owner_id, victim.full_name) == (victim.owner.pk, "Victim")
    assert victim.owner != client_user
    assert owned(client_user) == {"victim@example.org": ("Taken", "")}


def test_nobody_can_confirm_a_file_someone_else_uploaded(client, client_user):
    client.force_login(client_user)
    checked = upload(client, csv_bytes(["email"], ["anna@example.com"]))
    initial = checked.context["confirm_form"].initial

    intruder = UserFactory(verified=True, groups=["clients"])
    client.force_login(intruder)
    response = client.post(CONFIRM_URL, initial)
    assert "This upload has expired" in response.content.decode()
    forged = client.post(
        CONFIRM_URL, {**initial, "import_file_name": "../../etc/passwd"}
    )
    assert "This upload has expired" in forged.content.decode()
    assert not Client.objects.exists()

    client.force_login(client_user)
    confirm(client, checked)
    assert set(owned(client_user)) == {"anna@example.com"}


def test_a_confirmed_upload_cannot_be_imported_twice(client, client_user):
    client.force_login(client_user)
    checked = upload(client, csv_bytes(["email"], ["anna@example.com"]))
    confirm(client, checked)
    again = client.post(CONFIRM_URL, checked.context["confirm_form"].initial)
    assert "This upload has expired" in again.content.decode()


def test_clients_see_import_and_export_buttons_managers_only_export(
    client, client_user, manager
):
    client.force_login(client_user)
    page = client.get(CHANGELIST_URL).content.decode()
    assert IMPORT_URL in page and EXPORT_URL in page

    client.force_login(manager)
    page = client.get(CHANGELIST_URL).content.decode()
    assert EXPORT_URL in page
    assert IMPORT_URL not in page


def test_a_superuser_imports_into_their_own_list(client, superuser):
    client.force_login(superuser)
    confirm(client, upload(client, csv_bytes(["email"], ["anna@example.com"])))
    assert set(owned(superuser)) == {"anna@example.com"}


def test_a_manager_may_not_import(client, manager):
    client.force_login(manager)
    assert client.get(IMPORT_URL).status_code == 403
    assert upload(client, csv_bytes(["email"], ["a@example.com"])).status_code == 403
    assert client.post(CONFIRM_URL, {}).status_code == 403
    assert not Client.objects.exists()


def test_a_user_without_access_gets_403_and_an_anonymous_one_the_login(client):
    for url in (IMPORT_URL, EXPORT_URL):
        response = client.get(url)
        assert response.status_code == 302
        assert "login" in response["Location"]
    client.force_login(UserFactory(verified=True))
    assert client.get(IMPORT_URL).status_code == 403
    assert client.get(EXPORT_URL).status_code == 403
    assert client.post(CONFIRM_URL, {}).status_code == 403


def test_the_confirm_step_only_accepts_post(client, client_user):
    client.force_login(client_user)
    assert client.get(CONFIRM_URL).status_code == 405


def test_a_clients_export_holds_only_their_own_recipients(client, client_user):
    ClientFactory(owner=client_user, email="mine@example.com", full_name="Mine")
    ClientFactory(email="theirs@example.com", full_name="Theirs", comment="secret")
    client.force_login(client_user)
    response = client.get(EXPORT_URL)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment; filename=" in response["Content-Disposition"]
    rows = exported(response)
    assert rows == [
        ["email", "full_name", "comment", "unsubscribed_at"],
        ["mine@example.com", "Mine", "", ""],
    ]


def test_a_managers_export_holds_everyones_recipients_with_their_owner(client, manager):
    anna = ClientFactory(email="a@example.com")
    boris = ClientFactory(email="b@example.com")
    client.force_login(manager)
    rows = exported(client.get(EXPORT_URL))
    assert rows[0][-1] == "owner"
    assert {(row[0], row[-1]) for row in rows[1:]} == {
        ("a@example.com", anna.owner.email),
        ("b@example.com", boris.owner.email),
    }


def test_the_export_follows_the_lists_filters_and_search(client, client_user):
    ClientFactory(
        owner=client_user, email="left@example.com", unsubscribed_at=timezone.now()
    )
    ClientFactory(owner=client_user, email="stays@example.com")
    ClientFactory(owner=client_user, email="other@example.com")
    client.force_login(client_user)
    rows = exported(client.get(EXPORT_URL, {"subscribed": "no"}))
    assert [row[0] for row in rows[1:]] == ["left@example.com"]
    assert rows[1][3].startswith(str(timezone.localdate().year))
    rows = exported(client.get(EXPORT_URL, {"q": "stays"}))
    assert [row[0] for row in rows[1:]] == ["stays@example.com"]


def test_the_export_escapes_formulas_through_the_admin(client, client_user):
    ClientFactory(
        owner=client_user, email="f@example.com", full_name="=2+5", comment="@x"
    )
    client.force_login(client_user)
    rows = exported(client.get(EXPORT_URL))
    assert rows[1][:3] == ["f@example.com", "'=2+5", "'@x"]


def test_a_long_export_is_streamed_in_chunks_not_built_whole(client, client_user):
    Client.objects.bulk_create(
        Client(owner=client_user, email=f"r{n}@example.com") for n in range(4500)
    )
    client.force_login(client_user)
    response = client.get(EXPORT_URL)
    chunks = list(response.streaming_content)
    assert len(chunks) >= 3
    assert b"".join(chunks).count(b"\r\n") == 4501


def test_export_selected_streams_only_the_chosen_own_rows(client, client_user):
    chosen = ClientFactory(owner=client_user, email="chosen@example.com")
    ClientFactory(owner=client_user, email="left-out@example.com")
    theirs = ClientFactory(email="theirs@example.com")
    client.force_login(client_user)
    response = client.post(
        CHANGELIST_URL,
        {"action": "export_selected", "_selected_action": [chosen.pk, theirs.pk]},
    )
    assert [row[0] for row in exported(response)[1:]] == ["chosen@example.com"]


# --- the command ---------------------------------------------------------


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
    call_command("import_clients", str(path), "--owner", client_user.email.upper())
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
        call_command("import_clients", str(path), "--owner", client_user.email)
    assert message in str(error.value)
    assert not Client.objects.exists()


def test_the_command_refuses_a_file_over_the_size_limit(
    tmp_path, client_user, settings
):
    settings.IMPORT_EXPORT_CLIENTS_MAX_UPLOAD_SIZE = 10
    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(["email"], ["anna@example.com"]))
    with pytest.raises(CommandError, match="files up to 10\xa0bytes can be imported"):
        call_command("import_clients", str(path), "--owner", client_user.email)


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
        call_command("import_clients", str(bad), "--owner", client_user.email)
    assert "Nothing was imported" in str(error.value)
    assert "Row 3: “nope” is not a valid e-mail address." in str(error.value)
    assert not Client.objects.exists()
