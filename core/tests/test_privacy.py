"""The preference centre and data requests: a recipient changes, downloads
or erases what is theirs; each change a consent or a suppression is
recorded as one; an erased address never comes back by an import."""

import json
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import translation

from core.models import Attempt, Client, Consent, Field, Suppression, Tag
from core.models.suppressions import email_digest
from core.services.dispatch import dispatch_tick
from core.services.privacy import preferences_client, preferences_url
from core.services.recipients import clients_import

from .factories import ClientFactory, MessageFactory, UserFactory, due_mailing
from .recipients import CONSENT, csv_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def ann(owner):
    Field.objects.create(owner=owner, key="city", label="City", is_editable=True)
    Field.objects.create(owner=owner, key="score", label="Score", kind="number")
    Tag.objects.create(owner=owner, name="Sales", is_public=True)
    Tag.objects.create(owner=owner, name="Blog", is_public=True)
    person = ClientFactory(
        owner=owner,
        email="ann@example.com",
        full_name="Ann",
        attributes={"city": "Omsk", "score": 7},
    )
    person.tags.add(Tag.objects.create(owner=owner, name="Internal VIP"))
    return person


def url_of(person):
    return preferences_url(client_id=person.pk).split("127.0.0.1:8000", 1)[-1]


def test_every_message_carries_the_recipients_own_link(owner, ann, smtp_server):
    message = MessageFactory(owner=owner, body="Manage: {{ preferences_url }}")
    due_mailing(owner, [ann], message=message)
    dispatch_tick()
    ((_to, email),) = smtp_server.messages
    body = email.get_body(("plain",)).get_content()
    token = re.search(r"/preferences/([^/\s]+)/", body).group(1)
    assert preferences_client(token=token) == ann


def test_a_recipient_changes_name_editable_fields_and_topics_only(client, ann):
    url = url_of(ann)
    page = client.get(url)
    text = page.content.decode()
    assert page.status_code == 200
    assert 'name="attribute_city"' in text and 'name="attribute_score"' not in text
    assert "Sales" in text and "Internal VIP" not in text
    sales = Tag.objects.get(name="Sales")
    response = client.post(
        url,
        {
            "action": "save",
            "full_name": "Ann Smith",
            "attribute_city": "Kazan",
            "attribute_score": "100",  # not theirs to edit: ignored
            "topics": [sales.pk, Tag.objects.get(name="Internal VIP").pk],
        },
    )
    assert response.status_code == 200  # the hidden tag is not a choice
    response = client.post(
        url,
        {
            "action": "save",
            "full_name": "Ann Smith",
            "attribute_city": "Kazan",
            "topics": [sales.pk],
        },
    )
    assert response.status_code == 302
    ann.refresh_from_db()
    assert (ann.full_name, ann.attributes) == (
        "Ann Smith",
        {"city": "Kazan", "score": 7},
    )
    assert sorted(t.name for t in ann.tags.all()) == ["Internal VIP", "Sales"]


def test_unsubscribing_from_everything_is_a_suppression_and_a_withdrawal(
    client, owner, ann
):
    client.post(url_of(ann), {"action": "unsubscribe"})
    ann.refresh_from_db()
    assert ann.unsubscribed_at is not None
    assert Suppression.objects.filter(
        owner=owner, email="ann@example.com", reason="unsubscribed"
    ).exists()
    withdrawal = Consent.objects.get(client=ann)
    assert (withdrawal.kind, withdrawal.action, withdrawal.source) == (
        "marketing",
        "withdrawn",
        "preferences",
    )


def test_a_recipient_downloads_everything_held_of_them(client, owner, ann):
    Consent.objects.record(
        owner_id=owner.pk,
        client_ids=[ann.pk],
        kind="marketing",
        text="Yes.",
        source="f",
    )
    response = client.post(url_of(ann), {"action": "download"})
    assert response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert data["recipient"]["email"] == "ann@example.com"
    assert data["attributes"]["city"] == {"label": "City", "value": "Omsk"}
    assert data["tags"] == ["Internal VIP"]
    assert data["consents"][0]["text"] == "Yes."
    assert data["attempts"] == [] and data["events"] == []


def test_erasing_deletes_the_row_and_keeps_only_a_digest(client, owner, ann):
    mailing = due_mailing(owner, [ann])
    dispatch_tick()  # no SMTP server here: the attempt fails, and is kept
    client.post(url_of(ann), {"action": "erase"})  # without the box: nothing
    assert Client.objects.filter(pk=ann.pk).exists()
    done = client.post(url_of(ann), {"action": "erase", "erase_confirm": "on"})
    assert "your data is deleted" in done.content.decode()
    assert not Client.objects.filter(pk=ann.pk).exists()
    kept = Suppression.objects.get(owner=owner, reason="erased")
    assert kept.email == email_digest("ann@example.com")
    assert not Suppression.objects.filter(email="ann@example.com").exists()
    attempt = Attempt.objects.get(run__mailing=mailing)
    assert "ann@" not in attempt.email
    # No import brings the address back as subscribed.
    clients_import(
        owner=owner, data=csv_bytes(["email"], ["ANN@example.com"]), consent=CONSENT
    )
    back = Client.objects.get(email="ann@example.com")
    assert back.unsubscribed_at is not None
    # Nor does adding it by hand.
    back.delete()
    again = ClientFactory(owner=owner, email="ann@example.com")
    assert again.unsubscribed_at is not None
    # The link of an erased recipient names nobody.
    assert client.get(url_of(ann)).status_code == 400


def test_a_tampered_link_names_nobody(client, ann):
    response = client.get(url_of(ann)[:-4] + "abc/")
    assert response.status_code == 400 and "damaged" in response.content.decode()


def test_the_owner_exports_and_erases_selected_recipients_with_history(
    client, owner, ann
):
    other = UserFactory(verified=True, groups=["clients"])
    stranger = ClientFactory(owner=other, email="stranger@example.com")
    bob = ClientFactory(owner=owner, email="bob@example.com")
    client.force_login(owner)
    changelist = reverse("admin:core_client_changelist")
    picked = {"_selected_action": [ann.pk, bob.pk, stranger.pk]}
    exported = client.post(changelist, {**picked, "action": "export_data"})
    data = json.loads(exported.content)
    assert sorted(item["recipient"]["email"] for item in data) == [
        "ann@example.com",
        "bob@example.com",
    ]
    assert LogEntry.objects.filter(object_id=str(ann.pk)).exists()
    asked = client.post(changelist, {**picked, "action": "erase_selected"})
    assert "Erase for good" in asked.content.decode()
    assert Client.objects.filter(pk=ann.pk).exists()
    client.post(changelist, {**picked, "action": "erase_selected", "apply": "1"})
    assert set(Client.objects.values_list("email", flat=True)) == {
        "stranger@example.com"
    }
    assert Suppression.objects.filter(owner=owner, reason="erased").count() == 2
    assert LogEntry.objects.filter(action_flag=3, object_id=str(bob.pk)).exists()


def test_managers_cannot_erase_or_export_anyones_data(client, ann, manager):
    client.force_login(manager)
    changelist = reverse("admin:core_client_changelist")
    page = client.get(changelist)
    assert "erase_selected" not in page.content.decode()
    client.post(
        changelist,
        {"_selected_action": [ann.pk], "action": "erase_selected", "apply": "1"},
    )
    assert Client.objects.filter(pk=ann.pk).exists()


def test_an_erasure_leaves_no_plain_address_anywhere(client, owner, ann):
    from django.contrib.admin.models import LogEntry

    client.post(url_of(ann), {"action": "unsubscribe"})  # a plain suppression
    bob = ClientFactory(owner=owner, email="bob@example.com")
    due_mailing(owner, [bob])
    dispatch_tick()
    bob.delete()  # the attempt keeps the address, its recipient gone
    client.force_login(owner)
    again = ClientFactory(owner=owner, email="bob@example.com")
    changelist = reverse("admin:core_client_changelist")
    picked = {"_selected_action": [ann.pk, again.pk], "action": "erase_selected"}
    client.post(changelist, {**picked, "apply": "1"})
    for address in ("ann@example.com", "bob@example.com"):
        assert not Suppression.objects.filter(email=address).exists()
        assert not Attempt.objects.filter(email=address).exists()
        assert not LogEntry.objects.filter(object_repr__icontains=address).exists()
    digest = Suppression.objects.get(email=email_digest("ann@example.com"))
    assert "unsubscribed" in digest.detail
    # Adding the address again marks it unsubscribed and writes no plain row.
    back = ClientFactory(owner=owner, email="ann@example.com")
    assert back.unsubscribed_at is not None
    assert not Suppression.objects.filter(email="ann@example.com").exists()
