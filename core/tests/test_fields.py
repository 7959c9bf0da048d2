"""Custom fields: the owner's columns, their values on every path, and
`{{ client.attributes.<key> }}` in messages."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from core.models import Client, Field
from core.models.audience import FIELDS_MAX, attributes_clean
from core.services.dispatch import dispatch_tick

from .factories import ClientFactory, MessageFactory, UserFactory, due_mailing

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        yield


def fields_of(owner):
    return [
        Field.objects.create(owner=owner, key="city", label="City"),
        Field.objects.create(owner=owner, key="age", label="Age", kind="number"),
        Field.objects.create(owner=owner, key="born", label="Born", kind="date"),
        Field.objects.create(
            owner=owner,
            key="plan",
            label="Plan",
            kind="choice",
            choices=["Basic", "Pro"],
        ),
        Field.objects.create(owner=owner, key="vip", label="VIP", kind="boolean"),
    ]


@pytest.mark.parametrize(
    ("key", "raw", "kept"),
    [
        ("city", "  Казань ", "Казань"),
        ("age", "42", 42),
        ("age", "1 234,5", 1234.5),
        ("born", "31.12.1990", "1990-12-31"),
        ("born", "1990-12-31", "1990-12-31"),
        ("plan", "pro", "Pro"),
        ("vip", "да", True),
        ("vip", "No", False),
        ("city", "", None),
    ],
)
def test_values_are_kept_in_the_form_of_their_kind(owner, key, raw, kept):
    field = {f.key: f for f in fields_of(owner)}[key]
    assert field.value_of(raw) == kept


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"age": "forty"}, "must be a number"),
        ({"age": "1e400"}, "must be a number"),
        ({"age": True}, "must be a number"),
        ({"born": "yesterday"}, "must be a date"),
        ({"plan": "Gold"}, "must be one of"),
        ({"vip": "perhaps"}, "yes or no"),
        ({"city": "x" * 1_000_000}, "at most 1000 characters"),
        ({"nickname": "Bob"}, "no custom field “nickname”"),
    ],
)
def test_a_wrong_value_is_refused_with_what_is_wrong(owner, values, words):
    with pytest.raises(ValidationError) as refused:
        attributes_clean(fields=fields_of(owner), values=values)
    assert words in " ".join(refused.value.messages)
    # A megabyte never comes back whole in a message.
    assert all(len(message) < 300 for message in refused.value.messages)


def test_the_model_checks_values_against_the_owners_own_fields(owner):
    fields_of(owner)
    other = UserFactory(verified=True, groups=["clients"])
    stranger = ClientFactory(owner=other, attributes={"city": "Omsk"})
    with pytest.raises(ValidationError) as refused:
        stranger.full_clean()
    assert "no custom field “city”" in str(refused.value)
    mine = ClientFactory(owner=owner, attributes={"age": "7"})
    mine.full_clean()
    assert mine.attributes == {"age": 7}


def test_keys_and_labels_are_unique_per_owner_and_keys_are_slugs(client, owner):
    Field.objects.create(owner=owner, key="city", label="City")
    client.force_login(owner)
    url = reverse("admin:core_field_add")
    for data, error in [
        ({"key": "city", "label": "Town"}, "key"),
        ({"key": "town", "label": " city "}, "label"),
        ({"key": "Town Name", "label": "Town"}, "key"),
    ]:
        response = client.post(url, {"kind": "text", "choices": "", **data})
        assert response.status_code == 200
        assert error in response.context["adminform"].form.errors
    response = client.post(
        url, {"key": "plan", "label": "Plan", "kind": "choice", "choices": ""}
    )
    assert "choices" in response.context["adminform"].form.errors
    response = client.post(
        url, {"key": "plan", "label": "Plan", "kind": "choice", "choices": "A\nB\na"}
    )
    assert response.status_code == 302
    assert Field.objects.get(key="plan").choices == ["A", "B"]


def test_an_owner_has_at_most_so_many_fields(client, owner):
    Field.objects.bulk_create(
        Field(owner=owner, key=f"f{n}", label=f"F{n}") for n in range(FIELDS_MAX)
    )
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_field_add"),
        {"key": "one_more", "label": "One more", "kind": "text"},
    )
    assert response.status_code == 200
    assert "the most an account may have" in response.content.decode()


def test_key_and_kind_are_fixed_once_the_field_exists(client, owner):
    field = Field.objects.create(owner=owner, key="age", label="Age", kind="number")
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_field_change", args=[field.pk]),
        {"key": "years", "label": "Years", "kind": "text", "choices": ""},
    )
    assert response.status_code == 302
    field.refresh_from_db()
    assert (field.key, field.kind, field.label) == ("age", "number", "Years")


def test_a_choice_recipients_hold_cannot_be_removed(client, owner):
    plan = Field.objects.create(
        owner=owner, key="plan", label="Plan", kind="choice", choices=["Basic", "Pro"]
    )
    ClientFactory(owner=owner, attributes={"plan": "Pro"})
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_field_change", args=[plan.pk]),
        {"label": "Plan", "choices": "Basic"},
    )
    assert response.status_code == 200
    assert "1 recipient holds a value you removed (Pro)" in response.content.decode()
    plan.refresh_from_db()
    assert plan.choices == ["Basic", "Pro"]


def test_deleting_a_field_takes_its_values_with_it(owner):
    city, age, *_ = fields_of(owner)
    person = ClientFactory(owner=owner, attributes={"city": "Omsk", "age": 30})
    other = UserFactory(verified=True, groups=["clients"])
    Field.objects.create(owner=other, key="city", label="City")
    stranger = ClientFactory(owner=other, attributes={"city": "Tver"})
    Field.objects.filter(pk=city.pk).delete()  # as the admin's bulk delete does
    person.refresh_from_db()
    stranger.refresh_from_db()
    assert person.attributes == {"age": 30}
    assert stranger.attributes == {"city": "Tver"}


def test_the_recipient_form_has_an_input_per_field_and_checks_each(client, owner):
    fields_of(owner)
    client.force_login(owner)
    url = reverse("admin:core_client_add")
    page = client.get(url)
    assert page.status_code == 200
    for key in ("city", "age", "born", "plan", "vip"):
        assert f'name="attribute_{key}"' in page.content.decode()
    data = {
        "email": "ann@example.com",
        "attribute_city": "Omsk",
        "attribute_age": "twelve",
        "attribute_born": "1990-12-31",
        "attribute_plan": "Pro",
        "attribute_vip": "true",
    }
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert "attribute_age" in refused.context["adminform"].form.errors
    assert not Client.objects.exists()
    assert client.post(url, {**data, "attribute_age": "12"}).status_code == 302
    person = Client.objects.get()
    assert person.attributes == {
        "city": "Omsk",
        "age": 12,
        "born": "1990-12-31",
        "plan": "Pro",
        "vip": True,
    }
    assert person.confirmed_at is not None and person.source == "admin"
    change = client.get(reverse("admin:core_client_change", args=[person.pk]))
    assert 'value="Omsk"' in change.content.decode()


def test_a_manager_reads_the_values_and_cannot_post_them(client, owner, manager):
    fields_of(owner)
    person = ClientFactory(owner=owner, attributes={"city": "Omsk", "vip": True})
    client.force_login(manager)
    page = client.get(reverse("admin:core_client_change", args=[person.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "Omsk" in text and 'name="attribute_city"' not in text


def test_a_message_uses_the_recipients_values(owner, smtp_server):
    fields_of(owner)
    person = ClientFactory(
        owner=owner, email="ann@example.com", attributes={"city": "Казань", "vip": True}
    )
    message = MessageFactory(
        owner=owner,
        subject="Hello from {{ client.attributes.city }}",
        body="VIP: {{ client.attributes.vip }}; plan: "
        '{{ client.attributes.plan|default:"none" }}; '
        "{% if client.attributes.vip %}gold{% else %}plain{% endif %}",
    )
    plain = ClientFactory(
        owner=owner, email="bob@example.com", attributes={"vip": False}
    )
    due_mailing(owner, [person, plain], message=message)
    dispatch_tick()
    sent = {to: email for (to,), email in smtp_server.messages}
    assert sent["ann@example.com"]["Subject"].strip() == "Hello from Казань"
    assert sent["bob@example.com"]["Subject"].strip() == "Hello from"
    body = {to: email.get_body(("plain",)).get_content() for to, email in sent.items()}
    # A yes/no reads in the service's language, and {% if %} tests the answer.
    assert "VIP: да; plan: none; gold" in body["ann@example.com"]
    assert "VIP: нет; plan: none; plain" in body["bob@example.com"]


def test_the_preview_shows_a_real_recipients_values(client, owner):
    fields_of(owner)
    ClientFactory(owner=owner, email="a@example.com")
    ClientFactory(owner=owner, email="b@example.com", attributes={"city": "Omsk"})
    ClientFactory(owner=owner, email="c@example.com", attributes={"city": "Tver"})
    message = MessageFactory(owner=owner, body="From {{ client.attributes.city }}")
    client.force_login(owner)
    url = reverse("admin:core_message_preview", args=[message.pk])
    page = client.get(url)
    assert "From Omsk" in page.content.decode()  # the first one with values
    chosen = client.get(url, {"as": "C@example.com"})
    assert "From Tver" in chosen.content.decode()
    assert "c@example.com" in chosen.content.decode()
    other = UserFactory(verified=True, groups=["clients"])
    ClientFactory(owner=other, email="x@example.com", attributes={})
    # Another owner's recipient is not found: the sample stays the owner's.
    assert "From Omsk" in client.get(url, {"as": "x@example.com"}).content.decode()
