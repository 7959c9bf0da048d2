"""Consents: the proof, read-only for everyone, each owner seeing theirs."""

import pytest
from django.urls import reverse

from core.models import Consent

from .factories import ClientFactory, UserFactory

pytestmark = pytest.mark.django_db


def consent_of(client, text="I agree."):
    (record,) = Consent.objects.record(
        owner_id=client.owner_id,
        client_ids=[client.pk],
        kind=Consent.Kind.MARKETING,
        text=text,
        source="autumn",
        ip="192.0.2.1",
        user_agent="Firefox",
    )
    return record


def test_each_owner_reads_their_recipients_consents_and_managers_all(
    client, owner, manager
):
    mine = consent_of(ClientFactory(owner=owner, email="mine@example.com"))
    other = UserFactory(verified=True, groups=["clients"])
    theirs = consent_of(ClientFactory(owner=other, email="theirs@example.com"))
    listing = reverse("admin:core_consent_changelist")
    client.force_login(owner)
    page = client.get(listing)
    assert [c.pk for c in page.context["cl"].result_list] == [mine.pk]
    assert (
        client.get(reverse("admin:core_consent_change", args=[theirs.pk])).status_code
        == 302
    )
    shown = client.get(reverse("admin:core_consent_change", args=[mine.pk]))
    assert shown.status_code == 200 and "I agree." in shown.content.decode()
    client.force_login(manager)
    page = client.get(listing)
    assert {c.pk for c in page.context["cl"].result_list} == {mine.pk, theirs.pk}


def test_nobody_adds_changes_or_deletes_a_consent(client, owner, superuser):
    record = consent_of(ClientFactory(owner=owner))
    for user in (owner, superuser):
        client.force_login(user)
        assert client.get(reverse("admin:core_consent_add")).status_code == 403
        change = reverse("admin:core_consent_change", args=[record.pk])
        client.post(change, {"text": "Forged"})
        record.refresh_from_db()
        assert record.text == "I agree."
        delete = reverse("admin:core_consent_delete", args=[record.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Consent.objects.count() == 1


def test_the_recipients_page_shows_how_they_agreed(client, owner):
    person = ClientFactory(owner=owner)
    consent_of(person)
    client.force_login(owner)
    page = client.get(reverse("admin:core_client_change", args=[person.pk]))
    assert "autumn" in page.content.decode()


def test_the_version_is_the_texts_sha256(owner):
    import hashlib

    record = consent_of(ClientFactory(owner=owner), text="Да, согласен.")
    assert record.version == hashlib.sha256("Да, согласен.".encode()).hexdigest()


def test_an_imports_consents_are_the_same_records_written_in_bulk(owner):
    """`record_many` (an import's) writes what `record` writes, for the
    owner's recipients only."""
    mine = [ClientFactory(owner=owner) for _ in range(3)]
    stranger = ClientFactory(owner=UserFactory(verified=True, groups=["clients"]))
    common = dict(
        owner_id=owner.pk,
        kind=Consent.Kind.PERSONAL_DATA,
        text="Они согласились.",
        source=Consent.IMPORT,
        ip="192.0.2.7",
        user_agent="Firefox " * 100,
    )
    written = Consent.objects.record_many(
        client_ids=[c.pk for c in mine[:2]] + [stranger.pk], **common
    )
    (single,) = Consent.objects.record(client_ids=[mine[2].pk], **common)
    assert written == 2
    fields = (
        "owner_id",
        "kind",
        "action",
        "text",
        "version",
        "ip",
        "user_agent",
        "source",
    )
    rows = list(Consent.objects.order_by("client_id").values("client_id", *fields))
    assert [row["client_id"] for row in rows] == [c.pk for c in mine]
    expected = {name: getattr(single, name) for name in fields}
    assert all({name: row[name] for name in fields} == expected for row in rows)
    assert not Consent.objects.filter(client=stranger).exists()
