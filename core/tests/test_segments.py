"""Segments: rules checked against the owner's own fields, tags and
mailings, compiled into one query, edited as rows, and sent to."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from core.models import Attempt, Client, Field, MailingRun, Segment, Tag
from core.models.segments import CONDITIONS_MAX, rules_clean
from core.services.dispatch import dispatch_tick

from .factories import (
    AttemptFactory,
    ClientFactory,
    MailingFactory,
    MailingRunFactory,
    MessageFactory,
    UserFactory,
    due_mailing,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def shop(owner):
    """An owner with fields, a tag and five recipients who differ in each."""
    Field.objects.create(owner=owner, key="city", label="City")
    Field.objects.create(owner=owner, key="age", label="Age", kind="number")
    Field.objects.create(owner=owner, key="born", label="Born", kind="date")
    Field.objects.create(
        owner=owner, key="plan", label="Plan", kind="choice", choices=["Basic", "Pro"]
    )
    Field.objects.create(owner=owner, key="vip", label="VIP", kind="boolean")
    vip = Tag.objects.create(owner=owner, name="VIP")
    rows = {
        "ann": {"city": "Moscow", "age": 30, "plan": "Pro", "vip": True},
        "bob": {"city": "Kazan", "age": 45, "born": "1980-05-01", "plan": "Basic"},
        "cat": {"city": "moscow", "age": 19, "born": "2006-01-02"},
        "dan": {"age": 60, "vip": False},
        "eve": {},
    }
    people = {}
    for name, attributes in rows.items():
        people[name] = ClientFactory(
            owner=owner,
            email=f"{name}@example.org",
            full_name=f"{name.title()} Smith",
            attributes=attributes,
        )
    people["ann"].tags.add(vip)
    people["dan"].tags.add(vip)
    return people


def members(owner, *conditions, match="all"):
    rules = rules_clean(
        {"match": match, "conditions": list(conditions)}, owner_id=owner.pk
    )
    segment = Segment.objects.create(
        owner=owner, name=f"s{Segment.objects.count()}", rules=rules
    )
    return sorted(c.email.split("@")[0] for c in segment.members())


def cond(field, op, value):
    return {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([cond("attributes.city", "eq", "MOSCOW")], ["ann", "cat"]),
        ([cond("attributes.city", "ne", "Moscow")], ["bob", "dan", "eve"]),
        ([cond("attributes.city", "contains", "aza")], ["bob"]),
        ([cond("attributes.city", "in", "kazan, Moscow")], ["ann", "bob", "cat"]),
        ([cond("attributes.age", "gt", "40")], ["bob", "dan"]),
        ([cond("attributes.age", "lt", 30)], ["cat"]),
        ([cond("attributes.age", "eq", "30,0")], ["ann"]),
        ([cond("attributes.born", "lt", "01.01.2000")], ["bob"]),
        ([cond("attributes.born", "gt", "1999-12-31")], ["cat"]),
        ([cond("attributes.plan", "in", ["pro", "basic"])], ["ann", "bob"]),
        ([cond("attributes.plan", "ne", "Pro")], ["bob", "cat", "dan", "eve"]),
        ([cond("attributes.vip", "eq", "yes")], ["ann"]),
        ([cond("attributes.vip", "eq", "нет")], ["dan"]),
        (
            [cond("email", "contains", "@EXAMPLE.org")],
            ["ann", "bob", "cat", "dan", "eve"],
        ),
        ([cond("email", "eq", "Bob@example.org")], ["bob"]),
        ([cond("full_name", "contains", "an s")], ["dan"]),
        ([cond("tag", "has", "vip")], ["ann", "dan"]),
        ([cond("tag", "not_has", "VIP")], ["bob", "cat", "eve"]),
        (
            [cond("tag", "has", "VIP"), cond("attributes.age", "gt", 40)],
            ["dan"],
        ),
    ],
)
def test_each_operator_selects_what_it_says(owner, shop, conditions, expected):
    assert members(owner, *conditions) == expected


def test_any_matches_either_condition(owner, shop):
    assert members(
        owner,
        cond("attributes.city", "eq", "Kazan"),
        cond("attributes.vip", "eq", True),
        match="any",
    ) == ["ann", "bob"]


def test_added_on_compares_the_day_a_recipient_was_added(owner, shop):
    Client.objects.filter(email="eve@example.org").update(
        created_at=timezone.now() - timedelta(days=400)
    )
    last_year = (timezone.now() - timedelta(days=200)).date().isoformat()
    assert members(owner, cond("created_at", "lt", last_year)) == ["eve"]
    assert len(members(owner, cond("created_at", "gt", last_year))) == 4


def test_opened_and_clicked_match_recorded_activity(owner, shop):
    mailing = MailingFactory(owner=owner, clients=[])
    run = MailingRunFactory(mailing=mailing)
    now = timezone.now()
    AttemptFactory(run=run, client=shop["ann"], opened_at=now - timedelta(days=2))
    AttemptFactory(run=run, client=shop["bob"], opened_at=now - timedelta(days=40))
    AttemptFactory(run=run, client=shop["cat"], clicked_at=now)
    recent = {"mailing": "any", "days": 30}
    assert members(owner, cond("opened", "has", recent)) == ["ann"]
    assert members(
        owner, cond("opened", "has", {"mailing": mailing.pk, "days": 60})
    ) == [
        "ann",
        "bob",
    ]
    assert members(owner, cond("clicked", "not_has", recent)) == [
        "ann",
        "bob",
        "dan",
        "eve",
    ]


def test_members_are_counted_in_one_query(owner, shop):
    segment = Segment.objects.create(
        owner=owner,
        name="Mix",
        rules=rules_clean(
            {
                "match": "any",
                "conditions": [
                    cond("attributes.city", "eq", "Moscow"),
                    cond("attributes.age", "gt", 50),
                    cond("opened", "has", {"mailing": "any", "days": 7}),
                ],
            },
            owner_id=owner.pk,
        ),
    )
    q = segment.members_q()
    with CaptureQueriesContext(connection) as queries:
        count = Client.objects.filter(owner=owner).filter(q).count()
    assert count == 3
    assert len(queries) == 1


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        (cond("attributes.shoe", "eq", "42"), "no field “attributes.shoe”"),
        (cond("attributes.age", "eq", "many"), "must be a number"),
        (cond("attributes.age", "contains", "4"), "cannot be compared"),
        (cond("attributes.vip", "gt", "yes"), "cannot be compared"),
        (cond("tag", "eq", "VIP"), "cannot be compared"),
        (cond("tag", "has", "Gold"), "no tag “Gold”"),
        (cond("attributes.city", "eq", ""), "give a value"),
        (cond("attributes.city", "eq", "x" * 1_000_000), "at most 1000 characters"),
        (cond("opened", "has", {"mailing": "any", "days": 0}), "number of days"),
        (cond("opened", "has", {"mailing": "999999", "days": 3}), "no mailing"),
        ("not a condition", "a condition is"),
    ],
)
def test_a_wrong_rule_is_refused_by_number(owner, shop, condition, words):
    with pytest.raises(ValidationError) as refused:
        rules_clean(
            {"match": "all", "conditions": [cond("email", "contains", "@"), condition]},
            owner_id=owner.pk,
        )
    text = " ".join(refused.value.messages)
    assert "Condition 2:" in text and words in text
    assert len(text) < 400


def test_rules_cannot_name_another_owners_tag_or_mailing(owner, shop):
    other = UserFactory(verified=True, groups=["clients"])
    theirs = Tag.objects.create(owner=other, name="Theirs")
    their_mailing = MailingFactory(owner=other, clients=[])
    for condition in (
        cond("tag", "has", theirs.pk),
        cond("tag", "has", "Theirs"),
        cond("opened", "has", {"mailing": their_mailing.pk, "days": 3}),
    ):
        with pytest.raises(ValidationError):
            rules_clean({"match": "all", "conditions": [condition]}, owner_id=owner.pk)


def test_a_segment_has_at_most_so_many_conditions(owner, shop):
    with pytest.raises(ValidationError, match="at most"):
        rules_clean(
            {
                "match": "all",
                "conditions": [cond("email", "contains", "@")] * (CONDITIONS_MAX + 1),
            },
            owner_id=owner.pk,
        )
    with pytest.raises(ValidationError):
        rules_clean({"match": "some", "conditions": []}, owner_id=owner.pk)
    with pytest.raises(ValidationError):
        rules_clean(["not", "rules"], owner_id=owner.pk)


def test_a_condition_on_something_deleted_since_matches_nobody(owner, shop):
    segment = Segment.objects.create(
        owner=owner,
        name="Gone",
        rules=rules_clean(
            {"match": "all", "conditions": [cond("tag", "not_has", "VIP")]},
            owner_id=owner.pk,
        ),
    )
    assert segment.members().count() == 3
    Tag.objects.filter(owner=owner).delete()
    assert segment.members().count() == 0
    city = Segment.objects.create(
        owner=owner,
        name="City",
        rules=rules_clean(
            {"match": "all", "conditions": [cond("attributes.city", "ne", "Omsk")]},
            owner_id=owner.pk,
        ),
    )
    Field.objects.filter(owner=owner, key="city").delete()
    assert city.members().count() == 0


def editor_post(name, rows, match="all"):
    data = {"name": name, "rules-match": match}
    for index, row in enumerate(rows):
        for key, value in row.items():
            data[f"rules-{index}-{key}"] = value
    return data


def test_the_editor_saves_rows_as_the_rules_json(client, owner, shop):
    client.force_login(owner)
    add = reverse("admin:core_segment_add")
    page = client.get(add)
    assert page.status_code == 200
    assert 'name="rules-0-field"' in page.content.decode()
    response = client.post(
        add,
        editor_post(
            "Moscow VIPs",
            [
                {"field": "attributes.city", "op": "eq", "value": "Moscow"},
                {"field": "tag", "op": "has", "value": "vip"},
                {"field": "opened", "op": "not_has", "mailing": "any", "days": "30"},
                {"field": "", "op": "eq", "value": "ignored"},
            ],
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    segment = Segment.objects.get()
    vip = Tag.objects.get(name="VIP")
    assert segment.rules == {
        "match": "all",
        "conditions": [
            cond("attributes.city", "eq", "Moscow"),
            cond("tag", "has", vip.pk),
            cond("opened", "not_has", {"mailing": "any", "days": 30}),
        ],
    }
    change = client.get(reverse("admin:core_segment_change", args=[segment.pk]))
    text = change.content.decode()
    assert 'value="VIP"' in text  # the tag is shown by its name, not its id
    assert "1 recipient matches now." in text and "ann@example.org" in text


def test_the_editor_names_the_wrong_row_and_saves_nothing(client, owner, shop):
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_segment_add"),
        editor_post(
            "Bad",
            [
                {"field": "attributes.city", "op": "eq", "value": "Moscow"},
                {"field": "attributes.age", "op": "gt", "value": "old"},
            ],
        ),
    )
    assert response.status_code == 200
    assert "Condition 2: “Age” must be a number" in response.content.decode()
    empty = client.post(reverse("admin:core_segment_add"), editor_post("Empty", []))
    assert "Add at least one condition." in empty.content.decode()
    assert not Segment.objects.exists()


def test_the_live_count_answers_for_unsaved_rules(client, owner, shop):
    client.force_login(owner)
    url = reverse("admin:core_segment_count")
    answer = client.post(
        url, editor_post("x", [{"field": "attributes.age", "op": "gt", "value": "20"}])
    ).json()
    assert "3 recipients match now." in answer["html"]
    assert "ann@example.org" in answer["html"]
    wrong = client.post(
        url, editor_post("x", [{"field": "attributes.shoe", "op": "eq", "value": "1"}])
    ).json()
    assert "no field" in wrong["errors"][0]
    assert client.get(url).status_code == 405


def test_another_owners_segment_is_not_a_choice(client, owner, shop):
    other = UserFactory(verified=True, groups=["clients"])
    theirs = Segment.objects.create(
        owner=other,
        name="Theirs",
        rules={"match": "all", "conditions": [cond("email", "contains", "@")]},
    )
    ClientFactory(owner=other, email="secret@example.net")
    Segment.objects.create(
        owner=owner,
        name="Mine",
        rules={"match": "all", "conditions": [cond("email", "contains", "@")]},
    )
    client.force_login(owner)
    message = MessageFactory(owner=owner)
    response = client.post(
        reverse("admin:core_mailing_add"),
        {
            "title": "Forged",
            "message": message.pk,
            "segments": [theirs.pk],
            "start_at_0": "2030-01-01",
            "start_at_1": "10:00",
            "periodicity": "once",
        },
    )
    assert response.status_code == 200
    assert "segments" in response.context["adminform"].form.errors
    count = client.post(
        reverse("admin:core_mailing_audience"), {"segments": [theirs.pk]}
    ).json()
    assert count["html"].startswith("0 recipients")
    filtered = client.get(
        reverse("admin:core_client_changelist"), {"segment": theirs.pk}
    )
    assert filtered.status_code == 200
    assert "secret@example.net" not in filtered.content.decode()
    assert list(filtered.context["cl"].result_list) == []


def test_the_mailing_form_counts_its_audience_before_saving(client, owner, shop):
    vip = Tag.objects.get(name="VIP")
    segment = Segment.objects.create(
        owner=owner,
        name="Moscow",
        rules=rules_clean(
            {"match": "all", "conditions": [cond("attributes.city", "eq", "Moscow")]},
            owner_id=owner.pk,
        ),
    )
    Client.objects.filter(email="cat@example.org").update(confirmed_at=None)
    client.force_login(owner)
    answer = client.post(
        reverse("admin:core_mailing_audience"),
        {"clients": [shop["eve"].pk], "tags": [vip.pk], "segments": [segment.pk]},
    ).json()
    # ann (tag and segment, once), dan (tag), cat (segment), eve (chosen);
    # cat has not confirmed.
    assert answer["html"].startswith("4 recipients, 3 of them may be mailed now")


def test_a_mailing_to_a_segment_reaches_exactly_its_confirmed_members(
    client, owner, shop, smtp_server
):
    segment = Segment.objects.create(
        owner=owner,
        name="Moscow",
        rules=rules_clean(
            {"match": "all", "conditions": [cond("attributes.city", "eq", "moscow")]},
            owner_id=owner.pk,
        ),
    )
    unconfirmed = ClientFactory(
        owner=owner,
        email="new@example.org",
        attributes={"city": "Moscow"},
        confirmed_at=None,
    )
    mailing = due_mailing(owner, [])
    mailing.segments.add(segment)
    client.force_login(owner)
    listed = client.get(reverse("admin:core_mailing_changelist"))
    assert '<td class="field-recipients">3</td>' in listed.content.decode()

    dispatch_tick()

    assert smtp_server.recorder.count_by_address() == {
        "ann@example.org": 1,
        "cat@example.org": 1,
    }
    skipped = Attempt.objects.get(client=unconfirmed)
    assert skipped.status == Attempt.Status.SKIPPED
    run = MailingRun.objects.get()
    page = client.get(reverse("admin:core_mailingrun_change", args=[run.pk]))
    assert "subscription not confirmed: 1" in page.content.decode()


def test_managers_read_segments_and_cannot_edit_them(client, owner, shop, manager):
    segment = Segment.objects.create(
        owner=owner,
        name="Moscow",
        rules=rules_clean(
            {"match": "all", "conditions": [cond("attributes.city", "eq", "Moscow")]},
            owner_id=owner.pk,
        ),
    )
    client.force_login(manager)
    page = client.get(reverse("admin:core_segment_change", args=[segment.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert 'name="rules-0-field"' not in text
    assert "City" in text and "Moscow" in text
    assert client.post(reverse("admin:core_segment_count"), {}).status_code == 403


@pytest.mark.parametrize("key", ["isnull", "in", "contains", "gt", "exact"])
def test_a_field_key_that_names_a_lookup_is_still_a_key(owner, key):
    Field.objects.create(owner=owner, key=key, label=f"F {key}", kind="boolean")
    ClientFactory(owner=owner, email="yes@example.org", attributes={key: True})
    ClientFactory(owner=owner, email="no@example.org", attributes={key: False})
    ClientFactory(owner=owner, email="none@example.org", attributes={})
    assert members(owner, cond(f"attributes.{key}", "eq", "yes")) == ["yes"]
    assert members(owner, cond(f"attributes.{key}", "ne", "yes")) == ["no", "none"]


def test_a_key_cannot_hold_a_lookup_path(owner):
    for key in ("score__gt", "a__b", "trailing_", "_x"):
        with pytest.raises(ValidationError):
            Field(owner=owner, key=key, label=key).full_clean()
