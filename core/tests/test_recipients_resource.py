"""ClientResource on django-import-export: owner, matching, merges, writes."""

import threading
from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from import_export import resources
from import_export.instance_loaders import ModelInstanceLoader

from core.models import Client, ClientUserObjectPermission
from core.services.recipients import (
    ClientImportError,
    ClientResource,
    RecipientCSV,
    clients_import,
)
from core.services.recipients import resource as recipients_resource
from core.services.recipients.resource import OwnListLoader
from core.services.recipients.writing import clients_update_rows

from .factories import ClientFactory, UserFactory
from .recipients import (
    CONSENT,
    _english,  # noqa: F401 (autouse: English messages)
    csv_bytes,
    owned,
    problems,
)

pytestmark = pytest.mark.django_db


def test_import_creates_recipients_the_importer_owns_with_permissions(client_user):
    data = csv_bytes(
        ["email", "full_name", "comment"],
        ["Anna@Example.com", "Анна Иванова", "from the fair"],
        ["boris@example.com", "", ""],
    )
    result = clients_import(owner=client_user, data=data, consent=CONSENT)
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
    result = clients_import(owner=client_user, data=data, consent=CONSENT)
    assert (result.created, result.updated) == (0, 1)
    existing.refresh_from_db()
    assert (existing.full_name, existing.comment) == ("Anna New", "new note")
    assert Client.objects.filter(owner=client_user).count() == 1


def test_empty_cells_keep_the_stored_name_and_comment(client_user):
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    data = csv_bytes(["email", "full_name", "comment"], ["anna@example.com", "", ""])
    result = clients_import(owner=client_user, data=data, consent=CONSENT)
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
    result = clients_import(owner=client_user, data=data, consent=CONSENT)
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
    result = clients_import(owner=client_user, data=data, consent=CONSENT)
    assert (result.created, result.merged) == (1, 2)
    assert owned(client_user) == {"anna@example.com": ("Anna Petrova", "third")}


def test_every_error_is_found_but_the_listing_stops_after_fifty(client_user):
    rows = [["email"]] + [[f"broken-{n}"] for n in range(120)]
    with pytest.raises(ClientImportError) as error:
        clients_import(owner=client_user, data=csv_bytes(*rows), consent=CONSENT)
    assert len(error.value.issues) == 120
    listing = error.value.listing()
    assert len(listing) == 51
    assert listing[0].startswith("Row 2:")
    assert listing[-1] == "… and 70 more."


def test_rows_without_an_address_are_skipped_and_counted(client_user):
    data = csv_bytes(
        ["email", "full_name", "phone"],
        ["anna@example.com", "Anna", ""],
        ["", "Plumber", "+7 900 000"],
        ["  ", "Taxi", "+7 900 001"],
    )
    result = clients_import(owner=client_user, data=data, consent=CONSENT)
    assert (result.rows, result.created, result.skipped) == (3, 1, 2)
    assert result.skipped_listing == "3, 4"
    assert set(owned(client_user)) == {"anna@example.com"}


def test_a_file_where_no_row_has_an_address_is_refused(client_user):
    data = csv_bytes(["email", "full_name"], ["", "Plumber"])
    assert "None of the rows has an e-mail address." in problems(data, client_user)


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
    clients_import(owner=client_user, data=data, consent=CONSENT)
    state = dict(
        Client.objects.filter(owner=client_user).values_list("email", "unsubscribed_at")
    )
    assert state["gone@example.com"] == gone.unsubscribed_at
    assert state["stays@example.com"].date().isoformat() == "2024-05-01"
    assert state["new@example.com"] is not None
    assert state["fresh@example.com"] is None


def test_a_dry_run_counts_but_saves_nothing(client_user):
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    data = csv_bytes(
        ["email", "full_name"],
        ["anna@example.com", "Anna P."],
        ["boris@example.com", "Boris"],
        ["BORIS@example.com", ""],
    )
    result = clients_import(owner=client_user, data=data, dry_run=True, consent=CONSENT)
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

    monkeypatch.setattr(recipients_resource, "clients_update_rows", fail)
    data = csv_bytes(
        ["email", "full_name"], ["new@example.com", "New"], ["anna@example.com", "A"]
    )
    with pytest.raises(RuntimeError):
        clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user) == {"anna@example.com": ("Anna", "")}
    assert ClientUserObjectPermission.objects.filter(user=client_user).count() == 3


def test_the_import_export_resource_refuses_to_import_on_its_own():
    # Without an owner there is no list to import into, and none is guessed.
    dataset = RecipientCSV().create_dataset(b"email\nanna@example.com\n")
    with pytest.raises(ValueError, match="owner"):
        ClientResource().import_data(dataset)
    assert not Client.objects.exists()


def test_the_library_reports_invalid_rows_numbered_as_the_spreadsheet(client_user):
    data = b"email,full_name\nok@example.com,Ok\n\nnope,Bad\n"
    dataset = RecipientCSV().create_dataset(data)
    result = ClientResource(owner=client_user).import_data(dataset, dry_run=True)
    assert result.has_validation_errors() and not result.has_errors()
    assert [(row.number, row.error_dict) for row in result.invalid_rows] == [
        (4, {"email": ["“nope” is not a valid e-mail address."]})
    ]
    assert result.totals["new"] == 1
    assert not Client.objects.exists()


# The library's own path, where ours goes around it for speed: one query per
# row to find the recipient, a copy and diff of every instance for
# skip_unchanged, full_clean on every row and QuerySet.bulk_update.
class StockPathResource(ClientResource):
    class Meta:
        instance_loader_class = ModelInstanceLoader
        skip_diff = False
        clean_model_instances = True

    def skip_row(self, instance, original, row, import_validation_errors=None):
        if not self.row_key:
            return True
        return resources.ModelResource.skip_row(
            self, instance, original, row, import_validation_errors
        )

    def bulk_update(self, *args, **kwargs):
        return resources.ModelResource.bulk_update(self, *args, **kwargs)


def test_our_fast_path_writes_what_the_librarys_own_path_writes(db):
    data = csv_bytes(
        ["email", "full_name", "comment", "unsubscribed"],
        ["kept@example.com", "Kept", "same", ""],
        ["renamed@example.com", "New Name", "", "no"],
        ["noted@example.com", "", "a note", ""],
        ["ended@example.com", "", "", "2024-05-01 10:00:00"],
        ["gone@example.com", "Gone", "", "нет"],
        ["", "Plumber", "no address", ""],
        ["fresh@example.com", "Fresh", "=1+2", "01.02.2023"],
        ["NEW@Example.com", "", "", "да"],
    )
    results = {}
    for resource_class in (StockPathResource, ClientResource):
        owner = UserFactory(verified=True, groups=["clients"])
        ClientFactory(owner=owner, email="kept@example.com", full_name="Kept")
        Client.objects.filter(owner=owner).update(comment="same")
        ClientFactory(owner=owner, email="renamed@example.com", full_name="Old")
        ClientFactory(owner=owner, email="noted@example.com", full_name="N")
        ClientFactory(owner=owner, email="ended@example.com", full_name="E")
        ClientFactory(
            owner=owner,
            email="gone@example.com",
            full_name="G",
            unsubscribed_at=timezone.make_aware(datetime(2020, 1, 1)),
        )
        dataset = RecipientCSV().create_dataset(data)
        result = resource_class(owner=owner, consent=CONSENT).import_data(dataset)
        assert result.issues() == []
        summary = result.summary(dry_run=False)
        rows = {
            (c.email, c.full_name, c.comment, c.unsubscribed_at is not None)
            for c in Client.objects.filter(owner=owner)
        }
        dates = dict(
            Client.objects.filter(owner=owner)
            .exclude(email="new@example.com")
            .values_list("email", "unsubscribed_at")
        )
        grants = ClientUserObjectPermission.objects.filter(user=owner).count()
        counts = (summary.created, summary.updated, summary.unchanged, summary.skipped)
        results[resource_class] = rows, dates, grants, counts
    assert results[StockPathResource] == results[ClientResource]
    rows, dates, grants, counts = results[ClientResource]
    assert counts == (2, 4, 1, 1)
    assert grants == 7 * 3
    assert ("fresh@example.com", "Fresh", "=1+2", True) in rows
    assert ("new@example.com", "", "", True) in rows
    assert dates["gone@example.com"] == timezone.make_aware(datetime(2020, 1, 1))


def test_repeated_addresses_merge_across_write_batches(client_user, monkeypatch):
    monkeypatch.setattr(ClientResource._meta, "batch_size", 2)
    ClientFactory(owner=client_user, email="same@example.com", full_name="Same")
    ClientFactory(owner=client_user, email="later@example.com", full_name="Later")
    ClientFactory(owner=client_user, email="back@example.com", full_name="Back")
    data = csv_bytes(
        ["email", "full_name", "comment"],
        ["a@example.com", "A", ""],
        ["same@example.com", "Same", ""],
        ["later@example.com", "Later", ""],
        ["back@example.com", "Changed", ""],
        ["b@example.com", "B", ""],
        ["c@example.com", "C", ""],
        ["A@example.com", "", "written after its row was inserted"],
        ["later@example.com", "", "only the later row changes it"],
        ["back@example.com", "Back", ""],
        ["same@example.com", "", ""],
    )
    summary = clients_import(owner=client_user, data=data, consent=CONSENT)
    assert (summary.created, summary.updated, summary.unchanged, summary.merged) == (
        3,
        1,
        2,
        4,
    )
    assert owned(client_user) == {
        "a@example.com": ("A", "written after its row was inserted"),
        "b@example.com": ("B", ""),
        "c@example.com": ("C", ""),
        "same@example.com": ("Same", ""),
        "later@example.com": ("Later", "only the later row changes it"),
        "back@example.com": ("Back", ""),
    }
    for recipient in Client.objects.filter(owner=client_user):
        assert client_user.has_perm("core.change_client", recipient)


def test_a_stored_unsubscribe_date_is_never_moved(client_user):
    ended = timezone.make_aware(datetime(2021, 3, 4, 5, 6))
    ClientFactory(owner=client_user, email="gone@example.com", unsubscribed_at=ended)
    data = csv_bytes(
        ["email", "unsubscribed_at"],
        ["gone@example.com", "2024-01-01"],
        ["twice@example.com", "2022-01-01"],
        ["twice@example.com", "нет"],
        ["twice@example.com", "2023-01-01"],
    )
    clients_import(owner=client_user, data=data, consent=CONSENT)
    state = dict(
        Client.objects.filter(owner=client_user).values_list("email", "unsubscribed_at")
    )
    assert state["gone@example.com"] == ended
    assert timezone.localtime(state["twice@example.com"]).year == 2023


def test_an_address_added_meanwhile_fails_the_import_and_saves_nothing(
    client_user, monkeypatch
):
    # As if the address were added (by the form) after the list was read.
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    monkeypatch.setattr(OwnListLoader, "get_instance", lambda self, row: None)
    data = csv_bytes(
        ["email", "full_name"], ["new@example.com", "N"], ["anna@example.com", "A"]
    )
    assert "The recipient list changed while the file was being imported" in problems(
        data, client_user
    )
    assert owned(client_user) == {"anna@example.com": ("Anna", "")}


def test_an_update_never_reaches_another_owners_row(client_user):
    theirs = ClientFactory(email="theirs@example.com", full_name="Theirs")
    clients_update_rows(owner=client_user, rows=[(theirs.pk, "Taken", "x", None, {})])
    theirs.refresh_from_db()
    assert (theirs.full_name, theirs.comment) == ("Theirs", "")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_imports_into_one_list_at_once_both_land(client_user):
    first = csv_bytes(["email"], *([f"r{n}@example.com"] for n in range(0, 3000)))
    second = csv_bytes(
        ["email", "comment"], *([f"r{n}@example.com", "2"] for n in range(1500, 4500))
    )
    errors = []

    def run(data):
        try:
            clients_import(owner=client_user, data=data, consent=CONSENT)
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(data,)) for data in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    recipients = Client.objects.filter(owner=client_user)
    assert recipients.count() == 4500
    assert recipients.filter(comment="2").count() == 3000
    assert ClientUserObjectPermission.objects.filter(user=client_user).count() == 13500


def test_a_check_reads_the_list_and_writes_or_locks_nothing(client_user):
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Anna")
    data = csv_bytes(
        ["email", "full_name"], ["anna@example.com", "A"], ["new@example.com", "N"]
    )
    with CaptureQueriesContext(connection) as queries:
        summary = clients_import(
            owner=client_user, data=data, dry_run=True, consent=CONSENT
        )
    assert (summary.created, summary.updated) == (1, 1)
    statements = " ".join(query["sql"].upper() for query in queries)
    assert "INSERT" not in statements and "UPDATE" not in statements
    assert owned(client_user) == {"anna@example.com": ("Anna", "")}


# --- bounds against hostile files --------------------------------------------


def test_a_file_of_a_million_bad_rows_is_refused_before_a_row_is_checked(owner):
    from core.services.recipients import ClientImportError

    data = b"email\n" + b"x\n" * 1_000_000  # 2 MB
    with pytest.raises(ClientImportError) as refused:
        clients_import(owner=owner, data=data, consent=CONSENT)
    assert refused.value.listing() == [
        "The file has more than 200 000 recipients. Split it into smaller files."
    ]


def test_bad_rows_past_the_listed_ones_are_counted_not_kept(owner):
    from core.services.recipients import ClientImportError, ClientResource
    from core.services.recipients.resource import RecipientCSV

    data = b"email\n" + b"nope\n" * 10_000
    with pytest.raises(ClientImportError) as refused:
        clients_import(owner=owner, data=data, consent=CONSENT)
    lines = refused.value.listing()
    assert lines[0] == "Row 2: “nope” is not a valid e-mail address."
    assert lines[-1] == "… and 9950 more."
    dataset = RecipientCSV().create_dataset(data)
    result = ClientResource(owner=owner).import_data(dataset, dry_run=True)
    assert len(result.invalid_rows) == 1000 and result.unlisted_invalid == 9000
    assert len(result.rows) <= 1000


def test_a_comment_past_the_cap_is_a_row_error(owner):
    long = "к" * 2001
    data = f"email,comment\na@example.com,ok\nb@example.com,{long}\n".encode()
    assert "Row 3: the comment is longer than 2000 characters." in problems(data, owner)
    assert not Client.objects.exists()
