"""The recipients admin: import pages (check, confirm) and streamed export."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from core.models import Client
from core.services.recipients.resource import OwnListLoader

from .factories import ClientFactory, UserFactory
from .recipients import (
    BAD_FILE_IDS,
    BAD_FILES,
    CHANGELIST_URL,
    CONFIRM_URL,
    EXPORT_URL,
    IMPORT_URL,
    _english,  # noqa: F401 (autouse: English messages)
    confirm,
    csv_bytes,
    exported,
    owned,
    upload,
)

pytestmark = pytest.mark.django_db


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
    initial = {
        **checked.context["confirm_form"].initial,
        "owner": victim.owner_id,
        "consent": "on",
    }
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
    again = client.post(
        CONFIRM_URL, {**checked.context["confirm_form"].initial, "consent": "on"}
    )
    assert "This upload has expired" in again.content.decode()


@pytest.mark.parametrize("field, value", [("format", "x"), ("resource", "7")])
def test_a_tampered_hidden_field_still_imports_the_checked_file(
    client, client_user, field, value
):
    client.force_login(client_user)
    checked = upload(client, csv_bytes(["email"], ["anna@example.com"]))
    posted = {**checked.context["confirm_form"].initial, field: value, "consent": "on"}
    done = client.post(CONFIRM_URL, posted, follow=True)
    assert done.status_code == 200
    assert set(owned(client_user)) == {"anna@example.com"}


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
        ["email", "full_name", "comment", "unsubscribed_at", "tags"],
        ["mine@example.com", "Mine", "", "", ""],
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


def test_an_upload_that_fails_the_check_leaves_no_copy_behind(
    client, client_user, tmp_path, settings
):
    settings.IMPORT_UPLOAD_DIR = pending = tmp_path / "uploads"
    client.force_login(client_user)
    upload(client, csv_bytes(["email"], ["nope"]))
    assert list(pending.iterdir()) == []
    checked = upload(client, csv_bytes(["email"], ["anna@example.com"]))
    assert len(list(pending.iterdir())) == 1
    confirm(client, checked)
    assert list(pending.iterdir()) == []


def test_checks_never_confirmed_keep_one_upload_per_user_and_expire(
    client, client_user, settings, tmp_path
):
    import os
    import time

    from core.services.recipients.uploads import CONFIRM_MAX_AGE

    settings.IMPORT_UPLOAD_DIR = pending = tmp_path / "uploads"
    client.force_login(client_user)
    for n in range(5):
        upload(client, csv_bytes(["email"], [f"person{n}@example.com"]))
    (mine,) = pending.iterdir()
    assert mine.name.startswith(f"u{client_user.pk}-")
    # Someone else's, past the confirmation window, goes with the next upload.
    stale = pending / "u999999-abandoned"
    stale.write_bytes(b"email\nold@example.com\n")
    old = time.time() - CONFIRM_MAX_AGE - 60
    os.utime(stale, (old, old))
    last = upload(client, csv_bytes(["email"], ["last@example.com"]))
    assert [path.name for path in pending.iterdir()] != [mine.name]
    assert len(list(pending.iterdir())) == 1 and not stale.exists()
    done = confirm(client, last)
    assert done.status_code == 200
    assert list(pending.iterdir()) == []


def test_an_upload_cannot_be_confirmed_by_another_user(client, client_user, settings):
    from .factories import UserFactory

    client.force_login(client_user)
    checked = upload(client, csv_bytes(["email"], ["anna@example.com"]))
    initial = checked.context["confirm_form"].initial
    other = UserFactory(verified=True, groups=["clients"])
    client.force_login(other)
    response = client.post(CONFIRM_URL, initial, follow=True)
    assert "This upload has expired" in response.content.decode()
    assert not Client.objects.filter(owner=other).exists()


def test_a_confirmation_after_the_list_changed_imports_nothing_and_says_why(
    client, client_user, monkeypatch
):
    client.force_login(client_user)
    checked = upload(client, csv_bytes(["email"], ["anna@example.com"]))
    # Someone adds the address after the list is read for the import.
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    monkeypatch.setattr(OwnListLoader, "get_instance", lambda self, row: None)
    done = confirm(client, checked)
    page = done.content.decode()
    assert done.redirect_chain == []
    assert "The recipient list changed while the file was being imported" in page
    assert owned(client_user) == {"anna@example.com": ("Anna", "")}


def test_the_subscription_filter_lists_subscribed_or_unsubscribed(client, client_user):
    ClientFactory(owner=client_user, email="stays-here@example.org")
    ClientFactory(
        owner=client_user, email="went-away@example.org", unsubscribed_at=timezone.now()
    )
    client.force_login(client_user)
    for value, shown, hidden in (
        ("yes", "stays-here@", "went-away@"),
        ("no", "went-away@", "stays-here@"),
    ):
        page = client.get(CHANGELIST_URL, {"subscribed": value}).content.decode()
        assert f"{shown}example.org" in page
        assert f"{hidden}example.org" not in page
