"""Imports and exports carry custom fields and tags; an import records the
owner's word of consent, and offers to create fields for unknown columns."""

import csv
import io

import pytest

from core.models import Client, Consent, Field, Tag
from core.services.recipients import clients_export_csv, clients_import

from .factories import ClientFactory, UserFactory
from .recipients import (
    CONFIRM_URL,
    CONSENT,
    EXPORT_URL,
    _english,  # noqa: F401 (autouse: English messages)
    confirm,
    csv_bytes,
    problems,
    upload,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def fields(owner):
    return [
        Field.objects.create(owner=owner, key="city", label="Город"),
        Field.objects.create(owner=owner, key="age", label="Age", kind="number"),
        Field.objects.create(owner=owner, key="vip", label="VIP", kind="boolean"),
    ]


def attributes(owner):
    return {c.email: c.attributes for c in Client.objects.filter(owner=owner)}


def tags(owner):
    return {
        c.email: sorted(t.name for t in c.tags.all())
        for c in Client.objects.filter(owner=owner)
    }


def test_columns_fill_fields_by_key_or_label_in_any_case(owner, fields):
    data = csv_bytes(
        ["Email", "ГОРОД", "AGE", "vip"],
        ["anna@example.com", "Казань", "31", "да"],
        ["boris@example.com", "", "1 000,5", "no"],
    )
    summary = clients_import(owner=owner, data=data, consent=CONSENT)
    assert summary.unknown_columns == []
    assert attributes(owner) == {
        "anna@example.com": {"city": "Казань", "age": 31, "vip": True},
        "boris@example.com": {"age": 1000.5, "vip": False},
    }


def test_an_empty_cell_keeps_the_stored_value_and_a_new_one_replaces_it(owner, fields):
    ClientFactory(owner=owner, email="anna@example.com", attributes={"city": "Omsk"})
    ClientFactory(owner=owner, email="boris@example.com", attributes={"city": "Tver"})
    data = csv_bytes(
        ["email", "city", "age"],
        ["anna@example.com", "", "30"],
        ["boris@example.com", "Tver", ""],
    )
    summary = clients_import(owner=owner, data=data, consent=CONSENT)
    assert (summary.updated, summary.unchanged) == (1, 1)
    assert attributes(owner) == {
        "anna@example.com": {"city": "Omsk", "age": 30},
        "boris@example.com": {"city": "Tver"},
    }


def test_a_value_of_the_wrong_kind_is_a_numbered_error_and_nothing_is_saved(
    owner, fields
):
    data = csv_bytes(
        ["email", "age", "vip", "city"],
        ["anna@example.com", "31", "yes", "Omsk"],
        ["boris@example.com", "old", "perhaps", "x" * 1001],
    )
    listing = problems(data, owner)
    assert "Row 3:" in listing
    assert "“Age” must be a number, not “old”" in listing
    assert "“VIP” must be yes or no" in listing
    assert "“Город” is at most 1000 characters" in listing
    assert len(listing) < 2000  # a long value is never echoed back
    assert not Client.objects.exists()


def test_a_megabyte_cell_is_refused_with_its_row(owner, fields):
    data = csv_bytes(["email", "city"], ["a@example.com", "x" * 1_000_000])
    assert problems(data, owner) == (
        "Row 2: the row is not valid CSV: a cell is longer than 131 072 characters."
    )
    assert not Client.objects.exists()


def test_a_tags_column_adds_tags_creating_the_missing_ones(owner):
    Tag.objects.create(owner=owner, name="VIP")
    theirs = UserFactory(verified=True, groups=["clients"])
    Tag.objects.create(owner=theirs, name="Wholesale")
    anna = ClientFactory(owner=owner, email="anna@example.com")
    anna.tags.add(Tag.objects.create(owner=owner, name="Old"))
    data = csv_bytes(
        ["email", "Labels"],
        ["anna@example.com", "vip ::: * myContacts ::: Wholesale"],
        ["boris@example.com", '"Retail","VIP"'],
        ["boris@example.com", "Новые"],
        ["carl@example.com", ""],
    )
    summary = clients_import(owner=owner, data=data, dry_run=True, consent=CONSENT)
    assert summary.new_tags == ["Retail", "Wholesale", "Новые"]
    assert summary.tagged == 2
    assert not Tag.objects.filter(owner=owner, name="Retail").exists()

    clients_import(owner=owner, data=data, consent=CONSENT)
    assert tags(owner) == {
        "anna@example.com": ["Old", "VIP", "Wholesale"],  # added, none removed
        "boris@example.com": ["Retail", "VIP", "Новые"],
        "carl@example.com": [],
    }
    # The other owner's tag of the same name is not theirs to use.
    assert Tag.objects.get(owner=owner, name="Wholesale").pk != (
        Tag.objects.get(owner=theirs).pk
    )
    assert Tag.objects.filter(owner=owner).count() == 5
    # The new tags are the owner's, with their permissions.
    assert owner.has_perm("core.change_tag", Tag.objects.get(name="Retail"))


@pytest.mark.parametrize("header", ["tags", "TAGS", "Теги", "labels"])
def test_the_tags_column_goes_by_its_usual_names(owner, header):
    clients_import(
        owner=owner,
        data=csv_bytes(["email", header], ["anna@example.com", "a, b"]),
        consent=CONSENT,
    )
    assert tags(owner) == {"anna@example.com": ["a", "b"]}


def test_a_cell_with_ten_thousand_tags_is_refused(owner):
    cell = ",".join(f"t{n}" for n in range(10_000))
    listing = problems(csv_bytes(["email", "tags"], ["anna@example.com", cell]), owner)
    assert "Row 2: a row may carry at most 100 tags (this one has 10000)." in listing
    assert not Tag.objects.exists() and not Client.objects.exists()


def test_each_recipient_added_gets_the_owners_word_of_consent(owner):
    ClientFactory(owner=owner, email="known@example.com")
    data = csv_bytes(["email"], ["known@example.com"], ["new@example.com"])
    clients_import(owner=owner, data=data, consent=CONSENT)
    new = Client.objects.get(email="new@example.com")
    assert (new.source, new.confirmed_at is not None) == ("import", True)
    records = Consent.objects.filter(client=new)
    assert sorted(records.values_list("kind", flat=True)) == [
        "marketing",
        "personal_data",
    ]
    record = records.first()
    assert (record.text, record.source, record.ip) == (
        "They all agreed.",
        "import",
        "192.0.2.1",
    )
    assert len(record.version) == 64
    # Who was on the list before gave their consent before.
    assert not Consent.objects.filter(client__email="known@example.com").exists()


def test_an_import_without_the_owners_word_imports_nothing(owner):
    data = csv_bytes(["email"], ["anna@example.com"])
    listing = problems_without_consent(data, owner)
    assert "Confirm that the people in the file agreed" in listing
    assert not Client.objects.exists()


def problems_without_consent(data, owner):
    from core.services.recipients import ClientImportError

    with pytest.raises(ClientImportError) as error:
        clients_import(owner=owner, data=data)
    return "\n".join(error.value.listing())


def test_the_confirm_page_asks_for_consent_and_offers_fields_for_unknown_columns(
    client, owner, fields
):
    client.force_login(owner)
    data = csv_bytes(
        ["email", "city", "Birthday", "Любимый цвет", "id"],
        ["anna@example.com", "Omsk", "01.02.1990", "синий", "7"],
    )
    checked = upload(client, data)
    page = checked.content.decode()
    assert 'name="consent"' in page and "required" in page
    assert checked.context["summary"].unknown_columns == ["Birthday", "Любимый цвет"]
    assert [c[1:] for c in checked.context["new_columns"]] == [
        ("Birthday", "birthday"),
        ("Любимый цвет", ""),  # not Latin: the owner types the key
    ]
    # Without the owner's word, nothing is imported.
    refused = client.post(CONFIRM_URL, checked.context["confirm_form"].initial)
    assert "This field is required." in refused.content.decode()
    assert not Client.objects.exists()

    done = confirm(
        client,
        checked,
        new_field_0="Birthday",
        new_key_0="birthday",
        new_kind_0="date",
        new_field_1="Любимый цвет",
        new_key_1="colour",
        new_kind_1="text",
    )
    assert "Import finished" in done.content.decode()
    anna = Client.objects.get()
    assert anna.attributes == {
        "city": "Omsk",
        "birthday": "1990-02-01",
        "colour": "синий",
    }
    created = Field.objects.get(owner=owner, key="birthday")
    assert (created.label, created.kind) == ("Birthday", "date")
    assert Consent.objects.filter(client=anna, source="import").count() == 2
    assert Consent.objects.filter(client=anna).first().ip == "127.0.0.1"


def test_a_bad_key_for_a_new_field_imports_nothing_and_says_which(
    client, owner, fields
):
    client.force_login(owner)
    checked = upload(client, csv_bytes(["email", "Colour"], ["anna@example.com", "x"]))
    done = confirm(client, checked, new_field_0="Colour", new_key_0="Not A Key")
    assert "Column “Colour”:" in done.content.decode()
    assert not Client.objects.exists()
    assert not Field.objects.filter(key__icontains="not").exists()


def test_an_export_carries_the_owners_fields_and_tags_and_imports_back(
    client, owner, fields
):
    anna = ClientFactory(
        owner=owner,
        email="anna@example.com",
        full_name="Anna",
        attributes={"city": "=Omsk", "age": 31, "vip": True},
    )
    anna.tags.add(Tag.objects.create(owner=owner, name="VIP"))
    anna.tags.add(Tag.objects.create(owner=owner, name="b2b"))
    ClientFactory(owner=owner, email="boris@example.com", full_name="Boris")
    client.force_login(owner)
    response = client.get(EXPORT_URL)
    body = b"".join(response.streaming_content)
    rows = list(csv.reader(io.StringIO(body[3:].decode(), newline="")))
    assert rows[0] == [
        "email",
        "full_name",
        "comment",
        "unsubscribed_at",
        "age",  # the fields in the order of their labels
        "vip",
        "city",
        "tags",
    ]
    assert rows[1] == [
        "anna@example.com",
        "Anna",
        "",
        "",
        "31",
        "yes",
        "'=Omsk",
        "b2b, VIP",
    ]
    assert rows[2][4:] == ["", "", "", ""]
    # The file comes back as it went.
    summary = clients_import(owner=owner, data=body, consent=CONSENT)
    assert (summary.created, summary.updated, summary.unknown_columns) == (0, 0, [])


def test_the_fast_export_writes_what_the_librarys_export_writes(owner, fields):
    from core.services.recipients import ClientResource

    anna = ClientFactory(owner=owner, email="a@example.com", attributes={"age": 3})
    anna.tags.add(Tag.objects.create(owner=owner, name="z"))
    anna.tags.add(Tag.objects.create(owner=owner, name="Äpfel"))
    ClientFactory(owner=owner, email="b@example.com", attributes={"vip": False})
    queryset = Client.objects.filter(owner=owner).order_by("email")
    body = b"".join(clients_export_csv(queryset=queryset, owner=owner))
    ours = list(csv.reader(io.StringIO(body[3:].decode(), newline="")))
    library = ClientResource(fields_of=owner).export(queryset)
    assert ours[0] == list(library.headers)
    assert ours[1:] == [list(row) for row in library]


def test_no_consent_is_recorded_for_an_address_that_said_no(owner):
    from core.models import Suppression

    Suppression.objects.record(
        owner_id=owner.pk, emails=["gone@example.com"], reason="unsubscribed"
    )
    data = csv_bytes(
        ["email", "unsubscribed"], ["gone@example.com", ""], ["no@example.com", "yes"]
    )
    clients_import(owner=owner, data=data, consent=CONSENT)
    assert Client.objects.count() == 2
    assert not Consent.objects.exists()


def test_a_google_label_with_a_comma_is_refused_with_its_row(owner):
    data = csv_bytes(["email", "Labels"], ["a@example.com", "VIP ::: Москва, центр"])
    assert "holds a comma" in problems(data, owner)
    assert not Tag.objects.exists()
