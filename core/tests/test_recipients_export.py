"""Recipient export: streamed CSV through the resource, formulas quoted."""

import csv
import io

import pytest
from django.utils import timezone

from core.models import Client
from core.services.recipients import ClientResource, clients_export_csv
from core.services.recipients.export import escape_formula

from .factories import ClientFactory

pytestmark = pytest.mark.django_db


def test_export_escapes_every_formula_prefix(client_user):
    names = ["=1+2", "+7 900", "-5", "@SUM(A1)", "\tTab", "\rCR", "Anna"]
    for n, name in enumerate(names):
        ClientFactory(owner=client_user, email=f"r{n}@example.com", full_name=name)
    body = b"".join(
        clients_export_csv(queryset=Client.objects.filter(owner=client_user))
    )
    rows = list(csv.reader(io.StringIO(body[3:].decode(), newline="")))
    assert rows[0] == ["email", "full_name", "comment", "unsubscribed_at", "tags"]
    assert [row[1] for row in rows[1:]] == [
        "'=1+2",
        "'+7 900",
        "'-5",
        "'@SUM(A1)",
        "'\tTab",
        "'\rCR",
        "Anna",
    ]


def test_the_export_writes_each_row_through_the_resources_fields(
    client_user, monkeypatch
):
    ClientFactory(owner=client_user, email="anna@example.com", comment="private")

    def whole_dataset(self, *args, **kwargs):
        raise AssertionError("the export must not build the whole file in memory")

    monkeypatch.setattr(ClientResource, "export", whole_dataset)
    monkeypatch.setattr(
        ClientResource, "dehydrate_comment", lambda self, c: c.comment.upper(), False
    )
    body = b"".join(
        clients_export_csv(queryset=Client.objects.filter(owner=client_user))
    )
    rows = list(csv.reader(io.StringIO(body[3:].decode(), newline="")))
    assert rows[1][:3] == ["anna@example.com", rows[1][1], "PRIVATE"]


@pytest.mark.parametrize("with_owner", [False, True])
def test_the_export_holds_what_the_librarys_own_export_renders(client_user, with_owner):
    # The plain-values path is for speed: the library's export is the judge.
    ClientFactory(owner=client_user, email="anna@example.com", full_name="Анна")
    ClientFactory(
        owner=client_user,
        email="boris@example.com",
        comment='met at "Expo", =2',
        unsubscribed_at=timezone.now(),
    )
    queryset = Client.objects.filter(owner=client_user).order_by("email")
    body = b"".join(clients_export_csv(queryset=queryset, with_owner=with_owner))
    ours = list(csv.reader(io.StringIO(body[3:].decode(), newline="")))
    library = ClientResource(with_owner=with_owner).export(queryset)
    assert ours[0] == list(library.headers)
    assert ours[1:] == [[escape_formula(cell) for cell in row] for row in library]
    assert ours[2][3]  # the unsubscribe's time is there
