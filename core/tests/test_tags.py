"""Tags: labels on recipients, bulk actions, and mailings to a tag."""

import pytest
from django.urls import reverse

from core.models import Attempt, Client, Tag
from core.services.dispatch import dispatch_tick

from .factories import ClientFactory, MailingFactory, UserFactory, due_mailing, people

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


def test_tag_names_are_unique_per_owner_whatever_the_case(client, owner):
    Tag.objects.create(owner=owner, name="VIP")
    client.force_login(owner)
    response = client.post(reverse("admin:core_tag_add"), {"name": " vip "})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    other = UserFactory(verified=True, groups=["clients"])
    client.force_login(other)
    assert (
        client.post(reverse("admin:core_tag_add"), {"name": "VIP"}).status_code == 302
    )


def test_a_mailing_to_a_tag_reaches_each_member_once(owner, smtp_server):
    vip = Tag.objects.create(owner=owner, name="VIP")
    chosen, tagged, both, neither = people(owner, 4)
    tagged.tags.add(vip)
    both.tags.add(vip)
    mailing = due_mailing(owner, [chosen, both])
    mailing.tags.add(vip)

    dispatch_tick()

    assert smtp_server.recorder.count_by_address() == {
        chosen.email: 1,
        tagged.email: 1,
        both.email: 1,
    }
    assert Attempt.objects.count() == 3


def test_a_tag_reaches_only_its_owners_recipients(owner, smtp_server):
    """A tag linked to another owner's recipient (the shell, a bad fixture)
    still sends to nobody but the mailing owner's."""
    other = UserFactory(verified=True, groups=["clients"])
    vip = Tag.objects.create(owner=owner, name="VIP")
    stranger = ClientFactory(owner=other, email="stranger@example.org")
    stranger.tags.add(vip)
    (mine,) = people(owner, 1)
    mine.tags.add(vip)
    mailing = due_mailing(owner, [])
    mailing.tags.add(vip)
    dispatch_tick()
    assert smtp_server.recorder.count_by_address() == {mine.email: 1}


def test_another_owners_tag_is_refused_in_the_mailing_and_recipient_forms(
    client, owner
):
    other = UserFactory(verified=True, groups=["clients"])
    foreign = Tag.objects.create(owner=other, name="theirs")
    message = MailingFactory(owner=owner).message
    client.force_login(owner)
    page = client.post(
        reverse("admin:core_mailing_add"),
        {
            "title": "x",
            "message": message.pk,
            "tags": [foreign.pk],
            "start_at_0": "2030-01-01",
            "start_at_1": "10:00:00",
            "periodicity": "once",
        },
    )
    assert page.status_code == 200 and "tags" in page.context["adminform"].form.errors
    person = ClientFactory(owner=owner)
    page = client.post(
        reverse("admin:core_client_change", args=[person.pk]),
        {"email": person.email, "full_name": "", "comment": "", "tags": [foreign.pk]},
    )
    assert page.status_code == 200 and "tags" in page.context["adminform"].form.errors
    assert not person.tags.exists()


def bulk(client, action, pks, **extra):
    return client.post(
        reverse("admin:core_client_changelist"),
        {"action": action, "_selected_action": pks, **extra},
        follow=True,
    )


def test_add_and_remove_a_tag_in_bulk(client, owner):
    vip = Tag.objects.create(owner=owner, name="VIP")
    recipients = people(owner, 3)
    recipients[0].tags.add(vip)
    pks = [r.pk for r in recipients]
    client.force_login(owner)
    chooser = bulk(client, "add_tag", pks)
    assert 'id="tag-action-form"' in chooser.content.decode()
    done = bulk(client, "add_tag", pks, apply="1", tag=vip.pk)
    assert "Tag “VIP” added to 2 recipients." in [
        str(m) for m in done.context["messages"]
    ]
    assert set(vip.clients.values_list("pk", flat=True)) == set(pks)
    done = bulk(client, "remove_tag", pks[:2], apply="1", tag=vip.pk)
    assert "Tag “VIP” removed from 2 recipients." in [
        str(m) for m in done.context["messages"]
    ]
    assert list(vip.clients.values_list("pk", flat=True)) == [pks[2]]


def test_bulk_tagging_never_touches_another_owners_rows(client, owner):
    other = UserFactory(verified=True, groups=["clients"])
    theirs = Tag.objects.create(owner=other, name="theirs")
    their_person = ClientFactory(owner=other)
    mine = Tag.objects.create(owner=owner, name="mine")
    (my_person,) = people(owner, 1)
    client.force_login(owner)
    # Their tag, forged into the form: refused, nothing changes.
    refused = bulk(client, "add_tag", [my_person.pk], apply="1", tag=theirs.pk)
    assert refused.context["form"].errors["tag"]
    # Their recipient, forged into the selection: not in the user's list.
    bulk(client, "add_tag", [their_person.pk, my_person.pk], apply="1", tag=mine.pk)
    assert list(mine.clients.all()) == [my_person]
    assert not theirs.clients.exists() and not their_person.tags.exists()


def test_the_tag_filter_and_counts_name_only_the_users_tags(client, owner):
    other = UserFactory(verified=True, groups=["clients"])
    Tag.objects.create(owner=other, name="secret-of-theirs")
    vip = Tag.objects.create(owner=owner, name="VIP")
    tagged, untagged = people(owner, 2)
    tagged.tags.add(vip)
    client.force_login(owner)
    page = client.get(reverse("admin:core_client_changelist"), {"tag": vip.pk})
    assert [c.pk for c in page.context["cl"].result_list] == [tagged.pk]
    assert "secret-of-theirs" not in page.content.decode()
    tags = client.get(reverse("admin:core_tag_changelist"))
    assert [(t.name, t.recipient_count) for t in tags.context["cl"].result_list] == [
        ("VIP", 1)
    ]
    assert Client.objects.count() == 2


def test_the_mailing_list_counts_the_audience_as_the_send_path_resolves_it(
    client, owner
):
    vip = Tag.objects.create(owner=owner, name="VIP")
    chosen, both, tagged, outsider = people(owner, 4)
    for person in (both, tagged):
        person.tags.add(vip)
    mailing = MailingFactory(owner=owner, clients=[chosen, both])
    mailing.tags.add(vip)
    MailingFactory(owner=owner, clients=[])
    client.force_login(owner)
    page = client.get(reverse("admin:core_mailing_changelist"))
    sizes = {m.pk: m.recipient_count for m in page.context["cl"].result_list}
    assert sizes[mailing.pk] == 3
    assert sorted(sizes.values()) == [0, 3]


def test_the_run_report_says_who_was_left_out_and_why(client, owner, smtp_server):
    from core.models import MailingRun, Suppression
    from core.services.unsubscribe import client_unsubscribe, unsubscribe_token

    vip = Tag.objects.create(owner=owner, name="VIP")
    mailed, unsubscribed, suppressed, also_unsubscribed = people(owner, 4)
    for person in (unsubscribed, also_unsubscribed):
        client_unsubscribe(token=unsubscribe_token(client_id=person.pk))
    Suppression.objects.record(
        owner_id=None, emails=[suppressed.email], reason="complaint"
    )
    for person in (mailed, unsubscribed, suppressed, also_unsubscribed):
        person.tags.add(vip)
    mailing = due_mailing(owner, [])
    mailing.tags.add(vip)
    dispatch_tick()
    run = MailingRun.objects.get()
    client.force_login(owner)
    page = client.get(reverse("admin:core_mailingrun_change", args=[run.pk]))
    assert "unsubscribed: 2; suppressed: 1" in page.content.decode()
    assert run.skipped_count == 3 and run.sent_count == 1
