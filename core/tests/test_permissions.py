"""The owner holds view/change/delete on every owned row, however it was made."""

import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from core.models import (
    Client,
    ClientUserObjectPermission,
    Mailing,
    MailingUserObjectPermission,
    Message,
)

from .factories import MailingFactory, UserFactory

pytestmark = pytest.mark.django_db

ACTIONS = ("view", "change", "delete")


def holds_all(user, obj):
    name = obj._meta.model_name
    return all(user.has_perm(f"core.{action}_{name}", obj) for action in ACTIONS)


@pytest.fixture
def owner(db):
    return UserFactory(verified=True, groups=["clients"])


def test_rows_made_by_a_service_or_the_shell_are_granted(owner):
    recipient = Client.objects.create(owner=owner, email="a@example.com")
    message = Message.objects.create(owner=owner, subject="s", body="b")
    stranger = UserFactory(verified=True, groups=["clients"])
    assert holds_all(owner, recipient) and holds_all(owner, message)
    assert not stranger.has_perm("core.view_client", recipient)


def test_bulk_created_rows_are_granted(owner):
    rows = Client.objects.bulk_create(
        [Client(owner=owner, email=f"r{i}@example.com") for i in range(50)]
    )
    assert ClientUserObjectPermission.objects.filter(user=owner).count() == 150
    assert all(holds_all(owner, row) for row in rows[:3])


def test_saving_again_does_not_duplicate_grants(owner):
    recipient = Client.objects.create(owner=owner, email="a@example.com")
    recipient.full_name = "Анна"
    recipient.save()
    assert (
        ClientUserObjectPermission.objects.filter(content_object=recipient).count() == 3
    )


def test_a_later_save_writes_no_grants(owner):
    recipient = Client.objects.create(owner=owner, email="a@example.com")
    recipient.full_name = "Анна"
    with CaptureQueriesContext(connection) as queries:
        recipient.save()
    grant_table = ClientUserObjectPermission._meta.db_table
    assert [q["sql"] for q in queries if grant_table in q["sql"]] == []


def test_sync_repairs_missing_grants_idempotently(owner, capsys):
    mailing = MailingFactory(owner=owner)
    recipient = Client.objects.create(owner=owner, email="a@example.com")
    MailingUserObjectPermission.objects.all().delete()
    ClientUserObjectPermission.objects.filter(
        permission__codename="change_client"
    ).delete()
    assert not owner.has_perm("core.view_mailing", mailing)

    with translation.override("en"):
        call_command("sync_object_permissions")
    first = capsys.readouterr().out
    owner = type(owner).objects.get(pk=owner.pk)  # fresh permission cache
    assert holds_all(owner, mailing) and holds_all(owner, recipient)
    assert "mailings: 3" in first and "recipients: 1" in first

    with translation.override("en"):
        call_command("sync_object_permissions")
    second = capsys.readouterr().out
    assert "mailings: 0" in second and "recipients: 0" in second
    assert MailingUserObjectPermission.objects.count() == 3


def test_loaddata_grants_the_owner(owner, tmp_path):
    fixture = tmp_path / "recipients.json"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "core.client",
                    "pk": 4242,
                    "fields": {
                        "owner": owner.pk,
                        "email": "loaded@example.com",
                        "full_name": "Из фикстуры",
                        "comment": "",
                        "unsubscribed_at": None,
                        "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z",
                    },
                }
            ]
        )
    )
    call_command("loaddata", str(fixture), verbosity=0)
    call_command("loaddata", str(fixture), verbosity=0)  # twice is fine
    loaded = Client.objects.get(pk=4242)
    assert holds_all(owner, loaded)
    assert ClientUserObjectPermission.objects.filter(content_object=loaded).count() == 3


def test_mailing_visible_to_its_owner_only(owner):
    mailing = MailingFactory(owner=owner)
    other = UserFactory(verified=True, groups=["clients"])
    assert list(Mailing.objects.visible_to(owner)) == [mailing]
    assert list(Mailing.objects.visible_to(other)) == []
