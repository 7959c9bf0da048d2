"""Unsubscribing: the signed link, one click, and what it stops."""

import pytest
from django.urls import reverse

from core.services.dispatch import dispatch_tick
from core.services.unsubscribe import unsubscribe_token

from .factories import ClientFactory, due_mailing, people

pytestmark = pytest.mark.django_db


def test_unsubscribe_link_asks_then_unsubscribes(client, owner):
    person = ClientFactory(owner=owner)
    url = reverse("unsubscribe", args=[unsubscribe_token(client_id=person.pk)])
    page = client.get(url)
    assert page.status_code == 200 and page.context["outcome"] == "confirm"
    person.refresh_from_db()
    assert person.unsubscribed_at is None

    done = client.post(url)
    assert done.status_code == 200 and done.context["outcome"] == "done"
    person.refresh_from_db()
    assert person.unsubscribed_at is not None
    assert client.post(url).status_code == 200  # twice is fine


def test_one_click_unsubscribe_needs_no_form_or_cookie(owner):
    from django.test import Client as MailProgram

    person = ClientFactory(owner=owner)
    url = reverse("unsubscribe", args=[unsubscribe_token(client_id=person.pk)])
    response = MailProgram(enforce_csrf_checks=True).post(
        url,
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    person.refresh_from_db()
    assert person.unsubscribed_at is not None


def test_tampered_unsubscribe_token_is_refused(client, owner):
    person = ClientFactory(owner=owner)
    token = unsubscribe_token(client_id=person.pk)
    for bad in (token[:-2] + "xx", "garbage", token.replace(":", "!")):
        response = client.post(reverse("unsubscribe", args=[bad]))
        assert response.status_code == 400
    person.refresh_from_db()
    assert person.unsubscribed_at is None


def test_unsubscribed_recipient_is_skipped_by_every_mailing_of_the_owner(
    client, owner, smtp_server
):
    person, other = people(owner, 2)
    client.post(reverse("unsubscribe", args=[unsubscribe_token(client_id=person.pk)]))
    due_mailing(owner, [person, other])
    due_mailing(owner, [person])
    dispatch_tick()
    assert smtp_server.recorder.count_by_address() == {other.email: 1}


def test_links_signed_before_tokens_lost_compression_still_work(client, owner):
    from django.core import signing

    from core.services.unsubscribe import UNSUBSCRIBE_SALT

    person = ClientFactory(owner=owner)
    old = signing.dumps(person.pk, salt=UNSUBSCRIBE_SALT, compress=True)
    assert client.post(reverse("unsubscribe", args=[old])).status_code == 200
    person.refresh_from_db()
    assert person.unsubscribed_at is not None


def test_the_link_follows_site_url(settings):
    from core.services.unsubscribe import unsubscribe_client_id, unsubscribe_url

    first = unsubscribe_url(client_id=7)
    settings.SITE_URL = "https://mail.example.org"
    moved = unsubscribe_url(client_id=7)
    assert first.startswith("http://127.0.0.1:8000/unsubscribe/")
    assert moved.startswith("https://mail.example.org/unsubscribe/")
    token = moved.rstrip("/").rsplit("/", 1)[1]
    assert unsubscribe_client_id(token=token) == 7
