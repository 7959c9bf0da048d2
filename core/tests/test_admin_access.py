"""Every admin URL of every owned model, for every role.

A client sees only their own rows; another user's row answers exactly as a
missing one. Managers read everything and change nothing of others.
"""

from dataclasses import dataclass

import pytest
from django.urls import reverse

from core.models import (
    Attempt,
    Client,
    Field,
    Mailing,
    MailingRun,
    Message,
    Segment,
    SubscriptionForm,
    Tag,
)

from .factories import (
    AttemptFactory,
    ClientFactory,
    MailingFactory,
    MailingRunFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

MISSING_PK = 987654


@dataclass
class Rows:
    client: Client
    message: Message
    mailing: Mailing
    run: MailingRun
    attempt: Attempt
    tag: Tag
    field: Field
    segment: Segment
    subscriptionform: SubscriptionForm

    def of(self, model_name):
        return getattr(self, {"mailingrun": "run"}.get(model_name, model_name))


def rows_for(owner):
    client = ClientFactory(owner=owner, email=f"friend-of-{owner.email}")
    mailing = MailingFactory(owner=owner, clients=[client])
    run = MailingRunFactory(mailing=mailing)
    attempt = AttemptFactory(run=run, client=client, email=client.email)
    tag = Tag.objects.create(owner=owner, name=f"tag of {owner.email}")
    field = Field.objects.create(owner=owner, key="city", label=f"city {owner.email}")
    segment = Segment.objects.create(
        owner=owner,
        name=f"segment of {owner.email}",
        rules={
            "match": "all",
            "conditions": [{"field": "tag", "op": "has", "value": tag.pk}],
        },
    )
    form = SubscriptionForm.objects.create(
        owner=owner,
        title=f"form of {owner.email}",
        personal_data_text="I agree.",
        ask_marketing=False,
    )
    return Rows(
        client, mailing.message, mailing, run, attempt, tag, field, segment, form
    )


@pytest.fixture
def world(db):
    owner_a = UserFactory(email="anna@example.com", verified=True, groups=["clients"])
    owner_b = UserFactory(email="boris@example.com", verified=True, groups=["clients"])
    return {
        "a": owner_a,
        "b": owner_b,
        "rows_a": rows_for(owner_a),
        "rows_b": rows_for(owner_b),
        "manager": UserFactory(
            email="maria@example.com", verified=True, groups=["managers"]
        ),
        "superuser": UserFactory(
            email="root@example.com", verified=True, is_superuser=True
        ),
    }


def as_role(client, world, role):
    """Log the test client in as `role`; the blocked user is blocked after."""
    if role == "anonymous":
        return None
    if role == "blocked":
        user = UserFactory(verified=True, groups=["clients"])
        client.force_login(user)
        user.is_active = False
        user.save()
        return user
    user = {"client_a": world["a"], "client_b": world["b"]}.get(role) or world[role]
    client.force_login(user)
    return user


OWNED = [
    "client",
    "message",
    "mailing",
    "tag",
    "field",
    "segment",
    "subscriptionform",
]
REPORTS = ["mailingrun", "attempt"]
ROLES = ["anonymous", "blocked", "client_a", "client_b", "manager", "superuser"]


def url(model_name, view, pk=None):
    name = f"admin:core_{model_name}_{view}"
    return reverse(name, args=[pk] if pk is not None else [])


def is_login_redirect(response):
    return response.status_code == 302 and response.url.startswith("/admin/login/")


def is_missing_redirect(response):
    """How the admin answers for a row that does not exist."""
    return response.status_code == 302 and response.url == reverse("admin:index")


# --- changelists --------------------------------------------------------


@pytest.mark.parametrize("model_name", OWNED + REPORTS)
@pytest.mark.parametrize("role", ROLES)
def test_changelist_answers_each_role(client, world, role, model_name):
    as_role(client, world, role)
    response = client.get(url(model_name, "changelist"))
    if role in ("anonymous", "blocked"):
        assert is_login_redirect(response)
        return
    assert response.status_code == 200
    shown = {obj.pk for obj in response.context["cl"].result_list}
    own_a = world["rows_a"].of(model_name).pk
    own_b = world["rows_b"].of(model_name).pk
    expected = {
        "client_a": {own_a},
        "client_b": {own_b},
        "manager": {own_a, own_b},
        "superuser": {own_a, own_b},
    }[role]
    assert shown == expected
    # The count and the filter sidebar tell nothing of other owners either.
    assert response.context["cl"].result_count == len(expected)
    page = response.content.decode()
    if role == "client_a":
        assert "boris@example.com" not in page
    if role == "client_b":
        assert "anna@example.com" not in page


# --- add ----------------------------------------------------------------


@pytest.mark.parametrize("model_name", OWNED)
@pytest.mark.parametrize("role", ROLES)
def test_add_page_answers_each_role(client, world, role, model_name):
    as_role(client, world, role)
    response = client.get(url(model_name, "add"))
    expected = {
        "anonymous": "login",
        "blocked": "login",
        "client_a": 200,
        "client_b": 200,
        "manager": 403,
        "superuser": 200,
    }[role]
    if expected == "login":
        assert is_login_redirect(response)
    else:
        assert response.status_code == expected


@pytest.mark.parametrize("model_name", REPORTS)
@pytest.mark.parametrize("role", ["client_a", "manager", "superuser"])
def test_reports_cannot_be_added_by_hand(client, world, role, model_name):
    as_role(client, world, role)
    assert client.get(url(model_name, "add")).status_code == 403


# --- change, delete, history of client A's row -----------------------------


EXPECTED_ON_A_ROW = {
    # role: (change, delete, history) for an owned model
    "anonymous": ("login", "login", "login"),
    "blocked": ("login", "login", "login"),
    "client_a": ("edit", 200, 200),
    "client_b": ("missing", "missing", "missing"),
    "manager": ("read-only", 403, 200),
    "superuser": ("edit", 200, 200),
}


def check(response, expected):
    if expected == "login":
        assert is_login_redirect(response)
    elif expected == "missing":
        assert is_missing_redirect(response)
    elif expected == "edit":
        assert response.status_code == 200
        assert 'name="_save"' in response.content.decode()
    elif expected == "read-only":
        assert response.status_code == 200
        assert 'name="_save"' not in response.content.decode()
    else:
        assert response.status_code == expected


@pytest.mark.parametrize("model_name", OWNED)
@pytest.mark.parametrize("role", ROLES)
def test_row_pages_of_client_a_answer_each_role(client, world, role, model_name):
    as_role(client, world, role)
    pk = world["rows_a"].of(model_name).pk
    change, delete, history = EXPECTED_ON_A_ROW[role]
    check(client.get(url(model_name, "change", pk)), change)
    check(client.get(url(model_name, "delete", pk)), delete)
    check(client.get(url(model_name, "history", pk)), history)


@pytest.mark.parametrize("model_name", REPORTS)
@pytest.mark.parametrize("role", ROLES)
def test_report_pages_of_client_a_answer_each_role(client, world, role, model_name):
    as_role(client, world, role)
    pk = world["rows_a"].of(model_name).pk
    view, delete, history = {
        "anonymous": ("login", "login", "login"),
        "blocked": ("login", "login", "login"),
        "client_a": ("read-only", 403, 200),
        # Reports cannot be deleted by clients at all: 403 whether the row
        # exists or not, so the answer still tells nothing.
        "client_b": ("missing", 403, "missing"),
        "manager": ("read-only", 403, 200),
        "superuser": ("read-only", 200, 200),
    }[role]
    check(client.get(url(model_name, "change", pk)), view)
    check(client.get(url(model_name, "delete", pk)), delete)
    check(client.get(url(model_name, "history", pk)), history)


@pytest.mark.parametrize("model_name", OWNED + REPORTS)
def test_foreign_row_answers_exactly_like_a_missing_one(client, world, model_name):
    as_role(client, world, "client_b")
    foreign = world["rows_a"].of(model_name).pk
    for view in ("change", "delete", "history"):
        a = client.get(url(model_name, view, foreign), follow=True)
        b = client.get(url(model_name, view, MISSING_PK), follow=True)
        assert (a.status_code, a.redirect_chain) == (b.status_code, b.redirect_chain)
        if a.status_code == 200:
            text_a = [str(m) for m in a.context["messages"]]
            text_b = [str(m) for m in b.context["messages"]]
            assert [t.replace(str(foreign), "ID") for t in text_a] == [
                t.replace(str(MISSING_PK), "ID") for t in text_b
            ]


# --- autocomplete -------------------------------------------------------


def autocomplete(client, model_name, field_name, term=""):
    return client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "core",
            "model_name": model_name,
            "field_name": field_name,
            "term": term,
        },
    )


@pytest.mark.parametrize("role", ROLES)
def test_autocomplete_offers_only_what_the_role_may_see(client, world, role):
    as_role(client, world, role)
    recipients = autocomplete(client, "mailing", "clients")
    messages = autocomplete(client, "mailing", "message")
    if role in ("anonymous", "blocked"):
        assert is_login_redirect(recipients) and is_login_redirect(messages)
        return
    assert recipients.status_code == messages.status_code == 200
    got_clients = {int(r["id"]) for r in recipients.json()["results"]}
    got_messages = {int(r["id"]) for r in messages.json()["results"]}
    a, b = world["rows_a"], world["rows_b"]
    expected = {
        "client_a": ({a.client.pk}, {a.message.pk}),
        "client_b": ({b.client.pk}, {b.message.pk}),
        "manager": ({a.client.pk, b.client.pk}, {a.message.pk, b.message.pk}),
        "superuser": ({a.client.pk, b.client.pk}, {a.message.pk, b.message.pk}),
    }[role]
    assert (got_clients, got_messages) == expected


def test_autocomplete_search_does_not_find_other_owners_rows(client, world):
    as_role(client, world, "client_b")
    response = autocomplete(client, "mailing", "clients", term="anna")
    assert response.json()["results"] == []


# --- guardian's object-permission pages -----------------------------------


@pytest.mark.parametrize("model_name", OWNED)
@pytest.mark.parametrize("role", ["client_a", "manager", "superuser"])
def test_object_permission_pages_are_for_superusers_only(
    client, world, role, model_name
):
    as_role(client, world, role)
    pk = world["rows_a"].of(model_name).pk
    response = client.get(url(model_name, "permissions", pk))
    if role == "superuser":
        assert response.status_code == 200
    else:
        assert response.status_code == 302
        assert response.url == reverse("admin:index")
    change_page = client.get(url(model_name, "change", pk)).content.decode()
    assert (url(model_name, "permissions", pk) in change_page) == (role == "superuser")


def test_owner_cannot_grant_another_user_rights_on_their_row(client, world):
    as_role(client, world, "client_a")
    mailing = world["rows_a"].mailing
    response = client.post(
        reverse(
            "admin:core_mailing_permissions_manage_user",
            args=[mailing.pk, world["b"].pk],
        ),
        {"permissions": ["change_mailing"]},
    )
    assert response.status_code == 302
    assert not world["b"].has_perm("core.change_mailing", mailing)


# --- import and export of recipients -----------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_recipient_import_and_export_answer_each_role(client, world, role):
    as_role(client, world, role)
    import_page = client.get(reverse("admin:core_client_import"))
    export = client.get(reverse("admin:core_client_export"))
    if role in ("anonymous", "blocked"):
        assert is_login_redirect(import_page) and is_login_redirect(export)
        return
    assert import_page.status_code == (403 if role == "manager" else 200)
    assert export.status_code == 200
    csv_text = b"".join(export.streaming_content).decode("utf-8-sig")
    a_email, b_email = world["rows_a"].client.email, world["rows_b"].client.email
    sees = {
        "client_a": {a_email},
        "client_b": {b_email},
        "manager": {a_email, b_email},
        "superuser": {a_email, b_email},
    }[role]
    assert {e for e in (a_email, b_email) if e in csv_text} == sees


def test_manager_cannot_import_into_anyones_list(client, world):
    from django.core.files.uploadedfile import SimpleUploadedFile

    as_role(client, world, "manager")
    upload = SimpleUploadedFile("list.csv", b"email\nnew@example.com\n", "text/csv")
    response = client.post(
        reverse("admin:core_client_import"), {"import_file": upload, "format": 0}
    )
    assert response.status_code == 403
    assert not Client.objects.filter(email="new@example.com").exists()
