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


def test_the_link_is_the_same_whoever_builds_it(settings):
    """A request served under a script prefix (or with a URLconf of its own)
    builds the same link as a delivery worker: SITE_URL says where the site
    is, whichever of the two resolves the link first."""
    from django.urls import set_script_prefix

    from core import links
    from core.services.unsubscribe import unsubscribe_url

    for request_first in (True, False):
        links._link_around_token.cache_clear()
        built = []
        for prefix in ("/app/", "/") if request_first else ("/", "/app/"):
            set_script_prefix(prefix)
            try:
                built.append(unsubscribe_url(client_id=7))
            finally:
                set_script_prefix("/")
        assert built[0] == built[1]
        assert built[0].startswith(f"{settings.SITE_URL}/unsubscribe/")


# --- unsubscribes and preference changes are events of their message ------


def _links_of(smtp_server):
    """{address: (unsubscribe link, preference link)} of the messages sent."""
    import re

    links = {}
    for tos, message in smtp_server.messages:
        unsubscribe = message["List-Unsubscribe"].strip()[1:-1]
        text = message.get_body(("plain",)).get_content()
        preferences = re.search(r"http\S+/preferences/\S+", text)
        links[tos[0]] = (unsubscribe, preferences[0] if preferences else "")
    return links


def _mailing_with_links(owner, smtp_server, recipients):
    from .factories import MessageFactory

    message = MessageFactory(
        owner=owner,
        subject="Новости",
        body="Отписаться: {{ unsubscribe_url }}\nНастройки: {{ preferences_url }}",
    )
    mailing = due_mailing(owner, recipients, message=message)
    dispatch_tick()
    return mailing, _links_of(smtp_server)


def test_a_one_click_unsubscribe_is_an_event_of_its_message_once(
    client, owner, smtp_server
):
    from core.models import Attempt, Event

    person, other = people(owner, 2)
    _, links = _mailing_with_links(owner, smtp_server, [person, other])
    unsubscribe, _ = links[person.email]
    assert "?m=" in unsubscribe

    client.post(
        unsubscribe,
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    client.post(unsubscribe)

    attempt = Attempt.objects.get(email=person.email)
    (event,) = Event.objects.all()
    assert (event.kind, event.attempt_id, event.run_id, event.source) == (
        "unsubscribe",
        attempt.pk,
        attempt.run_id,
        "link",
    )
    assert attempt.unsubscribed_at is not None
    assert Attempt.objects.get(email=other.email).unsubscribed_at is None


def test_a_link_with_another_recipients_token_counts_for_its_own_message(
    client, owner, smtp_server
):
    from core.models import Attempt, Event

    person, other = people(owner, 2)
    _, links = _mailing_with_links(owner, smtp_server, [person, other])
    own = links[person.email][0].split("?")[0]
    foreign = links[other.email][0].split("?m=")[1]
    client.post(f"{own}?m={foreign}")
    client.post(links[other.email][0].split("?")[0] + "?m=1-aaaaaaaa")
    events = set(Event.objects.values_list("attempt__email", "kind"))
    assert events == {(person.email, "unsubscribe"), (other.email, "unsubscribe")}
    assert Attempt.objects.filter(unsubscribed_at__isnull=False).count() == 2


def test_preference_changes_and_an_unsubscribe_there_are_events(
    client, owner, smtp_server
):
    from core.models import Event

    (person,) = people(owner, 1)
    _, links = _mailing_with_links(owner, smtp_server, [person])
    _, preferences = links[person.email]
    assert "?m=" in preferences
    client.get(preferences)
    assert (
        client.post(preferences, {"action": "save", "full_name": "Анна"}).status_code
        == 302
    )
    client.post(preferences, {"action": "unsubscribe"})
    kinds = sorted(Event.objects.values_list("kind", flat=True))
    assert kinds == ["preferences", "unsubscribe"]


def test_an_unsubscribe_of_someone_never_mailed_records_no_event(client, owner):
    from core.models import Event

    person = ClientFactory(owner=owner)
    client.post(reverse("unsubscribe", args=[unsubscribe_token(client_id=person.pk)]))
    person.refresh_from_db()
    assert person.unsubscribed_at is not None
    assert not Event.objects.exists()


def test_an_older_messages_link_counts_for_its_own_run(client, owner, smtp_server):
    from core.models import Attempt, Event

    (person,) = people(owner, 1)
    _, first = _mailing_with_links(owner, smtp_server, [person])
    smtp_server.recorder.messages.clear()
    _mailing_with_links(owner, smtp_server, [person])
    older = Attempt.objects.order_by("pk").first()
    client.post(first[person.email][0])
    assert list(Event.objects.values_list("attempt_id", flat=True)) == [older.pk]


def test_the_preference_page_keeps_its_message_after_a_save(client, owner, smtp_server):
    from core.models import Attempt, Event

    (person,) = people(owner, 1)
    _, first = _mailing_with_links(owner, smtp_server, [person])
    smtp_server.recorder.messages.clear()
    _mailing_with_links(owner, smtp_server, [person])
    older = Attempt.objects.order_by("pk").first()
    saved = client.post(first[person.email][1], {"action": "save", "full_name": "А"})
    assert "?m=" in saved["Location"]
    client.post(saved["Location"], {"action": "unsubscribe"})
    assert set(Event.objects.values_list("attempt_id", flat=True)) == {older.pk}


def test_every_public_link_resolves_as_the_sites_own_urls_do():
    """Links in mail are resolved in the public URLconf alone; the site
    serves it at its root, so each name gives the same path either way."""
    from django.urls import URLPattern, get_resolver

    from core.links import PUBLIC_URLCONF

    patterns = get_resolver(PUBLIC_URLCONF).url_patterns
    names = [p.name for p in patterns if isinstance(p, URLPattern) and p.name]
    assert {"unsubscribe", "preferences", "track_open", "track_click"} <= set(names)
    for pattern in patterns:
        if not isinstance(pattern, URLPattern) or not pattern.name:
            continue
        # Every argument a string of digits: a slug, a token and an int
        # converter all take it.
        kwargs = {name: "7" for name in pattern.pattern.converters}
        public = reverse(pattern.name, urlconf=PUBLIC_URLCONF, kwargs=kwargs)
        assert reverse(pattern.name, kwargs=kwargs) == public, pattern.name


@pytest.mark.slow
def test_a_process_that_only_sends_never_loads_the_admin():
    """The links of a message, built in a fresh process, load the public
    URLconf and not the admin's modules."""
    from .fresh import modules_loaded

    code = (
        "from core.services.unsubscribe import unsubscribe_url\n"
        "from core.services.privacy import preferences_url\n"
        "from core.services.tracking import tracking_urls\n"
        "unsubscribe_url(client_id=7); preferences_url(client_id=7)\n"
        "tracking_urls('a-b-c')"
    )
    admin = ("core.admin", "import_export.admin", "project.urls")
    assert modules_loaded(code, admin) == []
