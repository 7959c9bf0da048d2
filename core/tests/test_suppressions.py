"""Suppressions: an unsubscribe is forever (DESIGN.md, List health)."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from core.models import Attempt, Client, MailingRun, Suppression
from core.services.dispatch import dispatch_tick, run_retry_failed
from core.services.recipients import clients_import
from core.services.unsubscribe import client_unsubscribe, unsubscribe_token

from .factories import ClientFactory, UserFactory, due_mailing, people
from .recipients import CONSENT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


def unsubscribed(person) -> Client:
    client_unsubscribe(token=unsubscribe_token(client_id=person.pk))
    person.refresh_from_db()
    return person


def test_every_unsubscribe_writes_a_suppression(owner):
    person = unsubscribed(ClientFactory(owner=owner, email="Olga@Example.org"))
    (suppression,) = Suppression.objects.all()
    assert (suppression.owner, suppression.email, suppression.reason) == (
        owner,
        "olga@example.org",
        "unsubscribed",
    )
    assert suppression.created_at == person.unsubscribed_at


def test_owner_cannot_clear_an_unsubscribe_in_the_change_form(client, owner):
    person = unsubscribed(ClientFactory(owner=owner))
    client.force_login(owner)
    url = reverse("admin:core_client_change", args=[person.pk])
    form = client.get(url).context["adminform"].form
    assert "unsubscribed_at" not in form.fields
    response = client.post(
        url,
        {"email": person.email, "full_name": "X", "comment": "", "unsubscribed_at": ""},
    )
    assert response.status_code == 302
    person.refresh_from_db()
    assert person.full_name == "X" and person.unsubscribed_at is not None


def test_clearing_the_date_in_the_shell_does_not_resubscribe(owner, smtp_server):
    person = unsubscribed(ClientFactory(owner=owner))
    person.unsubscribed_at = None
    person.save()
    person.refresh_from_db()
    assert person.unsubscribed_at is not None
    # Even a bulk UPDATE, which no rule of the model sees, sends nothing.
    Client.objects.filter(pk=person.pk).update(unsubscribed_at=None)
    due_mailing(owner, [person])
    dispatch_tick()
    assert not smtp_server.messages
    attempt = Attempt.objects.get()
    assert (attempt.status, attempt.server_response) == ("skipped", "suppressed")


def test_deleting_and_adding_the_address_again_keeps_it_unsubscribed(
    client, owner, smtp_server
):
    person = unsubscribed(ClientFactory(owner=owner, email="olga@example.org"))
    person.delete()
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_client_add"),
        {"email": "OLGA@example.org", "full_name": "Ольга", "comment": ""},
        follow=True,
    )
    (note,) = [str(m) for m in response.context["messages"] if "suppressed" in str(m)]
    assert note.startswith("olga@example.org is suppressed since")
    again = Client.objects.get()
    assert again.unsubscribed_at is not None
    due_mailing(owner, [again])
    dispatch_tick()
    assert not smtp_server.messages


def test_reimporting_an_unsubscribed_address_imports_it_unsubscribed_and_says_so(
    owner,
):
    unsubscribed(ClientFactory(owner=owner, email="olga@example.org")).delete()
    data = b"email,full_name\nOLGA@example.org,Olga\nnew@example.org,New\n"
    summary = clients_import(owner=owner, data=data, dry_run=True, consent=CONSENT)
    assert (summary.created, summary.suppressed) == (2, 1)
    summary = clients_import(owner=owner, data=data, consent=CONSENT)
    assert (summary.created, summary.suppressed) == (2, 1)
    assert set(Client.objects.unsubscribed().values_list("email", flat=True)) == {
        "olga@example.org"
    }
    assert Client.objects.get(email="new@example.org").unsubscribed_at is None


def test_the_import_page_and_the_command_tell_how_many_are_suppressed(
    client, owner, tmp_path
):
    from .recipients import confirm, csv_bytes, upload

    Suppression.objects.record(
        owner_id=owner.pk, emails=["a@example.org", "b@example.org"], reason="manual"
    )
    data = csv_bytes(["email"], ["a@example.org"], ["b@example.org"], ["c@x.org"])
    client.force_login(owner)
    page = upload(client, data)
    assert page.context["summary"].suppressed == 2
    assert 'id="import-suppressed"' in page.content.decode()
    done = confirm(client, page)
    notes = [str(m) for m in done.context["messages"]]
    assert any(note.startswith("2 addresses are suppressed") for note in notes)

    path = tmp_path / "list.csv"
    path.write_bytes(data)
    from io import StringIO

    out = StringIO()
    call_command(
        "import_clients", str(path), owner=owner.email, consent=True, stdout=out
    )
    assert "2 addresses are suppressed" in out.getvalue()


def test_an_unsubscribe_the_file_brings_sticks(owner):
    data = b"email,unsubscribed\nolga@example.org,2025-03-01\n"
    clients_import(owner=owner, data=data, consent=CONSENT)
    Client.objects.all().delete()
    clients_import(owner=owner, data=b"email\nolga@example.org\n", consent=CONSENT)
    assert Client.objects.get().unsubscribed_at is not None
    assert Suppression.objects.get().detail == "import"


def test_retry_does_not_resend_to_one_who_unsubscribed_and_was_deleted(
    owner, smtp_server
):
    recipients = people(owner, 2)
    due_mailing(owner, recipients)
    dispatch_tick()
    run = MailingRun.objects.get()
    Attempt.objects.update(status="failed", server_response="550 try later")
    MailingRun.objects.update(sent_count=0, failed_count=2)
    unsubscribed(recipients[0]).delete()
    smtp_server.messages.clear()

    assert run_retry_failed(run=run) == 2
    dispatch_tick()

    assert [tos for tos, _ in smtp_server.messages] == [[recipients[1].email]]
    gone = Attempt.objects.get(email=recipients[0].email)
    assert gone.client is None and gone.status == "skipped"


def test_a_fixture_cannot_bring_back_a_suppressed_address(owner, tmp_path):
    Suppression.objects.record(
        owner_id=owner.pk, emails=["olga@example.org"], reason="unsubscribed"
    )
    now = timezone.now().isoformat()
    rows = [
        {
            "model": "core.client",
            "pk": 900,
            "fields": {
                "owner": owner.pk,
                "email": "olga@example.org",
                "created_at": now,
                "updated_at": now,
            },
        },
        {
            "model": "core.client",
            "pk": 901,
            "fields": {
                "owner": owner.pk,
                "email": "ivan@example.org",
                "unsubscribed_at": now,
                "created_at": now,
                "updated_at": now,
            },
        },
    ]
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(rows))
    call_command("loaddata", str(path), verbosity=0)
    assert Client.objects.get(pk=900).unsubscribed_at is not None
    assert Suppression.objects.filter(email="ivan@example.org").exists()


def test_unsubscribes_made_before_suppressions_existed_stick(owner):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("core.migrations.0010_suppressions")
    person = ClientFactory(owner=owner)
    Client.objects.filter(pk=person.pk).update(unsubscribed_at=timezone.now())
    Suppression.objects.all().delete()
    migration.suppress_earlier_unsubscribes(apps, None)
    assert Suppression.objects.get().email == person.email


def test_a_service_wide_suppression_binds_every_owner(owner, smtp_server):
    other = UserFactory(verified=True, groups=["clients"])
    Suppression.objects.record(
        owner_id=None, emails=["person0@example.org"], reason="complaint"
    )
    due_mailing(owner, people(owner, 2))
    due_mailing(other, people(other, 1))
    dispatch_tick()
    assert smtp_server.recorder.count_by_address() == {"person1@example.org": 1}


# --- the admin ---------------------------------------------------------------


def test_owner_sees_only_their_suppressions_and_adds_manual_ones(client, owner):
    other = UserFactory(verified=True, groups=["clients"])
    Suppression.objects.record(owner_id=other.pk, emails=["x@y.org"], reason="manual")
    client.force_login(owner)
    page = client.get(reverse("admin:core_suppression_changelist"))
    assert page.status_code == 200 and not list(page.context["cl"].result_list)
    foreign = Suppression.objects.get()
    url = reverse("admin:core_suppression_change", args=[foreign.pk])
    assert client.get(url).status_code == 302  # as a missing row answers
    added = client.post(
        reverse("admin:core_suppression_add"),
        {"email": " Boss@Example.org ", "reason": "unsubscribed", "detail": "asked"},
    )
    assert added.status_code == 302
    mine = Suppression.objects.get(owner=owner)
    assert (mine.email, mine.reason) == ("boss@example.org", "manual")


def test_nobody_deletes_a_suppression_and_owners_cannot_lift_one(client, owner):
    Suppression.objects.record(owner_id=owner.pk, emails=["a@b.org"], reason="manual")
    suppression = Suppression.objects.get()
    client.force_login(owner)
    delete = reverse("admin:core_suppression_delete", args=[suppression.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    client.post(
        reverse("admin:core_suppression_changelist"),
        {"action": "lift", "_selected_action": [suppression.pk]},
    )
    assert Suppression.objects.exists()


def test_manager_sees_all_and_lifts_only_manual_ones(client, manager, owner):
    Suppression.objects.record(owner_id=owner.pk, emails=["a@b.org"], reason="manual")
    unsubscribed(ClientFactory(owner=owner, email="c@d.org"))
    client.force_login(manager)
    page = client.get(reverse("admin:core_suppression_changelist"))
    assert len(page.context["cl"].result_list) == 2
    response = client.post(
        reverse("admin:core_suppression_changelist"),
        {
            "action": "lift",
            "_selected_action": list(Suppression.objects.values_list("pk", flat=True)),
        },
        follow=True,
    )
    notes = [str(m) for m in response.context["messages"]]
    assert "1 suppression lifted." in notes
    assert "1 suppression kept: only manual ones may be lifted." in notes
    assert list(Suppression.objects.values_list("reason", flat=True)) == [
        "unsubscribed"
    ]
    from django.contrib.admin.models import DELETION, LogEntry

    assert LogEntry.objects.get(action_flag=DELETION).user == manager


def test_a_recipient_deleted_after_the_run_was_queued_is_not_mailed(owner, smtp_server):
    """A removal is a request to stop; the message would also carry no
    unsubscribe link, its recipient being gone."""
    from core.services.dispatch import dispatch_deliver, run_open_now

    kept, removed = people(owner, 2)
    mailing = due_mailing(owner, [kept, removed])
    run_open_now(mailing_id=mailing.pk)
    removed.delete()
    dispatch_deliver()
    assert [tos for tos, _ in smtp_server.messages] == [[kept.email]]
    gone = Attempt.objects.get(email=removed.email)
    assert (gone.status, gone.server_response) == ("skipped", "recipient deleted")
