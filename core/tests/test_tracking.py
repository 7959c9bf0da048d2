"""Opens and clicks: the rewritten message, the signed endpoints, machines."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client as Browser
from django.utils import timezone

from core.models import Attempt, Event, MailingRun
from core.services.dispatch import dispatch_tick
from core.services.mail.tracking import (
    GROWTH,
    HONEYPOT_LINK,
    PIXEL,
    links_found,
    tracked_parts,
    tracking_token,
    tracking_token_parse,
)
from core.services.tracking import machine_reason

from .factories import ClientFactory, MessageFactory, due_mailing

pytestmark = pytest.mark.django_db

PERSON = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/128.0"
HTML = (
    "<html><body><p>Здравствуйте, {{ client.full_name }}!</p>"
    '<p><a href="https://shop.example/sale?from=mail&amp;x=1">Скидки</a> '
    '<a href="https://shop.example/me?e={{ client.email }}">Кабинет</a> '
    '<a href="mailto:shop@example.org">Написать</a> '
    "<a href='https://blog.example/'>Блог</a></p>"
    '<p><a href="{{ unsubscribe_url }}">Отписаться</a></p></body></html>'
)
TEXT = (
    "Скидки: https://shop.example/sale?from=mail&x=1.\n"
    "Кабинет: https://shop.example/me?e={{ client.email }}\n"
    "Новое: https://new.example/page\n"
    "Отписаться: {{ unsubscribe_url }}"
)


# --- the message, rewritten once -------------------------------------------


def test_links_are_read_as_browsers_read_them():
    html = (
        '<a data-href="https://not-this.example/" '
        'href="https://shop.example/?x=1&param=2&amp;y=3&#38;z=4">a</a>'
    )
    text = "See https://en.wikipedia.org/wiki/Foo_(bar). Or (https://b.example/x)."
    assert links_found(text=text, html_body=html) == [
        "https://shop.example/?x=1&param=2&y=3&z=4",
        "https://en.wikipedia.org/wiki/Foo_(bar)",
        "https://b.example/x",
    ]
    parts = tracked_parts(
        "s", text, html, tuple(links_found(text=text, html_body=html)), False
    )
    assert 'data-href="https://not-this.example/"' in parts.html_body
    assert parts.body == "See \x1fc2/. Or (\x1fc3/)."


def test_links_found_are_the_plain_links_of_both_parts_each_once():
    assert links_found(text=TEXT, html_body=HTML) == [
        "https://shop.example/sale?from=mail&x=1",
        "https://blog.example/",
        "https://new.example/page",
    ]


def test_parts_are_rewritten_to_markers_with_a_pixel_and_a_hidden_link():
    links = tuple(links_found(text=TEXT, html_body=HTML))
    parts = tracked_parts("Тема", TEXT, HTML, links, True)
    assert "https://shop.example/sale" not in parts.html_body
    assert "https://shop.example/me?e={{ client.email }}" in parts.html_body
    assert 'href="mailto:shop@example.org"' in parts.html_body
    assert "{{ unsubscribe_url }}" in parts.html_body
    assert parts.html_body.index(HONEYPOT_LINK) == len("<html><body>")
    assert parts.html_body.endswith(PIXEL + "</body></html>")
    assert "\x1fc1/" in parts.body and "\x1fc3/" in parts.body
    assert "https://shop.example/me?e={{ client.email }}" in parts.body
    assert parts.subject == "Тема"
    # What the language bounds a saved part to, the sender may pass by this.
    assert len(PIXEL) + len(HONEYPOT_LINK) <= GROWTH


def test_a_part_holding_the_marker_character_goes_out_as_it_is():
    html = '<a href="https://a.example/">a</a>\x1f'
    parts = tracked_parts("s", "", html, ("https://a.example/",), True)
    assert parts.html_body == html


def test_tokens_verify_and_tampered_ones_do_not():
    token = tracking_token(run_id=41, attempt_id=9_000_001)
    assert tracking_token_parse(token) == (41, 9_000_001)
    assert tracking_token_parse(tracking_token(run_id=41)) == (41, 0)
    run, attempt, mac = token.split("-")
    assert tracking_token_parse(f"{run}-{attempt}-{mac[::-1]}") is None
    assert tracking_token_parse(f"{run}-{attempt[:-1]}z-{mac}") is None
    assert tracking_token_parse("") is None
    assert tracking_token_parse("x" * 500) is None


@pytest.mark.parametrize(
    "agent, method, machine",
    [
        (PERSON, "GET", False),
        ("Mozilla/5.0 (via ggpht.com GoogleImageProxy)", "GET", False),
        ("", "GET", True),
        ("python-requests/2.32", "GET", True),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "GET", True),
        ("Mozilla/5.0 (compatible; bingbot/2.0)", "GET", True),
        (PERSON, "HEAD", True),
    ],
)
def test_machines_by_user_agent_and_method(agent, method, machine):
    assert bool(machine_reason(user_agent=agent, method=method)) is machine


# --- sent and followed ----------------------------------------------------


def _send(owner, smtp_server, count=1, **mailing):
    message = MessageFactory(owner=owner, body=TEXT, html_body=HTML)
    recipients = [ClientFactory(owner=owner) for _ in range(count)]
    due_mailing(owner, recipients, message=message, **mailing)
    dispatch_tick()
    return {tos[0]: email for tos, email in smtp_server.messages}


def _links(email):
    html = email.get_body(("html",)).get_content()
    pixel = re.search(r'<img src="([^"]+)" width="1"', html)
    clicks = re.findall(r"""href=["'](http://[^"']+/t/c/[^"']+)["']""", html)
    return (
        urlsplit(pixel[1]).path if pixel else None,
        [urlsplit(url).path for url in clicks],
    )


def _delivered_long_ago():
    Attempt.objects.update(attempted_at=timezone.now() - timedelta(minutes=5))


def test_a_tracked_message_carries_its_recipients_own_links(owner, smtp_server):
    sent = _send(owner, smtp_server, count=2)
    run = MailingRun.objects.get()
    assert (run.track_opens, run.track_clicks, run.track_recipients) == (
        True,
        True,
        True,
    )
    assert run.links == links_found(text=TEXT, html_body=HTML)
    paths = {address: _links(email) for address, email in sent.items()}
    (first, second) = paths.values()
    assert first[0] != second[0]  # a pixel each
    assert len(first[1]) == 3  # the hidden link and two tracked ones
    assert first[1][0].endswith("/0/")
    for address, email in sent.items():
        text = email.get_body(("plain",)).get_content()
        assert "https://new.example/page" not in text
        assert f"https://shop.example/me?e={address}" in text
        html = email.get_body(("html",)).get_content()
        assert f"https://shop.example/me?e={address}" in html
        assert "\x1f" not in text + html


def test_an_open_and_a_click_are_recorded_and_stamp_the_attempt(owner, smtp_server):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    pixel, clicks = _links(next(iter(sent.values())))
    browser = Browser(HTTP_USER_AGENT=PERSON)

    opened = browser.get(pixel)
    assert opened.status_code == 200
    assert opened["Content-Type"] == "image/gif"
    assert opened.content.startswith(b"GIF89a")
    assert "no-store" in opened["Cache-Control"]
    assert "Set-Cookie" not in opened

    clicked = browser.get(clicks[1])
    assert clicked.status_code == 302
    assert clicked["Location"] == "https://shop.example/sale?from=mail&x=1"
    assert "Set-Cookie" not in clicked

    attempt = Attempt.objects.get()
    assert attempt.opened_at and attempt.clicked_at
    events = Event.objects.order_by("at")
    assert [(e.kind, e.is_machine, e.url) for e in events] == [
        ("open", False, ""),
        ("click", False, "https://shop.example/sale?from=mail&x=1"),
    ]
    assert all(e.attempt_id == attempt.pk and e.owner_id == owner.pk for e in events)


def test_a_click_counts_as_an_open_when_images_are_off(owner, smtp_server):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    _, clicks = _links(next(iter(sent.values())))
    Browser(HTTP_USER_AGENT=PERSON).get(clicks[2])
    attempt = Attempt.objects.get()
    assert attempt.opened_at == attempt.clicked_at


def test_the_text_parts_links_lead_where_they_said(owner, smtp_server):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    text = next(iter(sent.values())).get_body(("plain",)).get_content()
    urls = re.findall(r"http://\S+/t/c/\S+/", text)
    assert len(urls) == 2
    answers = [Browser(HTTP_USER_AGENT=PERSON).get(urlsplit(u).path) for u in urls]
    assert [a["Location"] for a in answers] == [
        "https://shop.example/sale?from=mail&x=1",
        "https://new.example/page",
    ]


def test_bad_tokens_and_links_lead_nowhere_and_record_nothing(owner, smtp_server):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    pixel, clicks = _links(next(iter(sent.values())))
    browser = Browser(HTTP_USER_AGENT=PERSON)
    token = clicks[1].split("/")[3]
    tampered = token[:-1] + ("a" if token[-1] != "a" else "b")

    assert browser.get(f"/t/c/{tampered}/1/").status_code == 404
    assert browser.get(f"/t/c/{token}/4/").status_code == 404
    assert browser.get(f"/t/c/{token}/99999999999/").status_code == 404
    assert browser.get(f"/t/c/{token}/-1/").status_code == 404
    assert browser.get("/t/c/nothing/1/").status_code == 404
    # A broken pixel would show as a broken image: the image, nothing recorded.
    answer = browser.get(pixel.replace(token, tampered))
    assert answer.status_code == 200 and answer.content.startswith(b"GIF")
    assert browser.post(pixel).status_code == 405
    assert not Event.objects.exists()
    assert Attempt.objects.get().opened_at is None


def test_a_click_leads_only_to_the_runs_own_links_even_after_an_edit(
    owner, smtp_server
):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    _, clicks = _links(next(iter(sent.values())))
    message = MailingRun.objects.get().mailing.message
    message.html_body = '<a href="https://evil.example/">x</a>'
    message.body = "https://evil.example/"
    message.save()
    answer = Browser(HTTP_USER_AGENT=PERSON).get(clicks[1])
    assert answer["Location"] == "https://shop.example/sale?from=mail&x=1"


def test_opens_right_after_delivery_are_a_machines(owner, smtp_server):
    sent = _send(owner, smtp_server)
    pixel, clicks = _links(next(iter(sent.values())))
    Browser(HTTP_USER_AGENT=PERSON).get(pixel)
    Browser(HTTP_USER_AGENT=PERSON).get(clicks[1])
    assert list(Event.objects.values_list("is_machine", "detail")) == [
        (True, "machine:early"),
        (True, "machine:early"),
    ]
    attempt = Attempt.objects.get()
    assert attempt.opened_at is None and attempt.clicked_at is None


def test_scanners_by_agent_and_head_requests_are_machines(owner, smtp_server):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    pixel, clicks = _links(next(iter(sent.values())))
    assert Browser(HTTP_USER_AGENT="curl/8.5").get(clicks[1]).status_code == 302
    assert Browser(HTTP_USER_AGENT=PERSON).head(pixel).status_code == 200
    assert sorted(Event.objects.values_list("detail", flat=True)) == [
        "machine:head",
        "machine:user-agent",
    ]
    assert Attempt.objects.get().opened_at is None


def test_the_honeypot_flags_what_the_message_did_around_it(owner, smtp_server):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    pixel, clicks = _links(next(iter(sent.values())))
    browser = Browser(HTTP_USER_AGENT=PERSON)
    browser.get(pixel)
    browser.get(clicks[1])
    assert Attempt.objects.get().clicked_at is not None

    hidden = browser.get(clicks[0])
    assert hidden.status_code == 204
    browser.get(clicks[2])  # the scanner goes on clicking

    assert not Event.objects.filter(is_machine=False).exists()
    assert sorted(Event.objects.values_list("detail", flat=True)) == [
        "machine:honeypot",
        "machine:near-honeypot",
        "machine:near-honeypot",
        "machine:near-honeypot",
    ]
    attempt = Attempt.objects.get()
    assert attempt.opened_at is None and attempt.clicked_at is None


def test_tracking_not_tied_to_recipients_counts_without_naming_them(owner, smtp_server):
    sent = _send(owner, smtp_server, count=2, track_recipients=False)
    _delivered_long_ago()
    paths = [_links(email) for email in sent.values()]
    assert paths[0] == paths[1]  # nothing in the message names its reader
    Browser(HTTP_USER_AGENT=PERSON).get(paths[0][0])
    Browser(HTTP_USER_AGENT=PERSON).get(paths[0][1][1])
    events = list(Event.objects.values_list("kind", "attempt_id", "is_machine"))
    assert sorted(events) == [("click", None, False), ("open", None, False)]
    assert not Attempt.objects.filter(opened_at__isnull=False).exists()


def test_untracked_mailings_carry_their_links_as_they_are(owner, smtp_server):
    sent = _send(owner, smtp_server, track_opens=False, track_clicks=False)
    email = next(iter(sent.values()))
    html = email.get_body(("html",)).get_content()
    assert "/t/" not in html and "<img" not in html
    assert 'href="https://shop.example/sale?from=mail&amp;x=1"' in html
    run = MailingRun.objects.get()
    assert (run.track_opens, run.track_clicks, run.links) == (False, False, [])


def test_clicks_alone_and_text_only_messages_get_no_pixel(owner, smtp_server):
    message = MessageFactory(owner=owner, body="Смотрите https://a.example/")
    due_mailing(owner, [ClientFactory(owner=owner)], message=message)
    dispatch_tick()
    ((_, email),) = smtp_server.messages
    run = MailingRun.objects.get()
    assert (run.track_opens, run.track_clicks) == (False, True)
    assert "/t/c/" in email.get_body(("plain",)).get_content()


def test_a_second_event_costs_one_statement(
    owner, smtp_server, django_assert_max_num_queries
):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    pixel, _ = _links(next(iter(sent.values())))
    browser = Browser(HTTP_USER_AGENT=PERSON)
    browser.get(pixel)
    from django.db import connection

    # PostgreSQL: one statement; SQLite: the event and the stamp, in a transaction.
    expected = 1 if connection.vendor == "postgresql" else 4
    with django_assert_max_num_queries(expected):
        browser.get(pixel)
    assert Event.objects.filter(kind="open").count() == 2


# --- reports --------------------------------------------------------------


def _followed(owner, smtp_server, count=3):
    """A run of `count`: the first opens and clicks, the second opens, a
    scanner clicks the third's link right after delivery."""
    sent = _send(owner, smtp_server, count=count)
    links = [_links(sent[address]) for address in sorted(sent)]
    Browser(HTTP_USER_AGENT=PERSON).get(links[2][1][1])  # seconds after delivery
    _delivered_long_ago()
    browser = Browser(HTTP_USER_AGENT=PERSON)
    browser.get(links[0][0])
    browser.get(links[0][1][1])
    browser.get(links[0][1][1])
    browser.get(links[1][0])
    return MailingRun.objects.get()


def test_the_runs_report_counts_people_and_machines_apart(client, owner, smtp_server):
    from core.services.events import run_engagement, run_links, run_timeline

    run = _followed(owner, smtp_server)
    figures = run_engagement(run=run, delivered=3)
    assert {k: figures[k] for k in ("opened", "clicked", "opens", "clicks")} == {
        "opened": 2,
        "clicked": 1,
        "opens": 2,
        "clicks": 2,
    }
    assert (figures["opens_by_machines"], figures["clicks_by_machines"]) == (0, 1)
    assert (figures["open_rate"], figures["click_rate"]) == (66.7, 33.3)
    assert run_links(run=run)[0] == {
        "index": 1,
        "url": "https://shop.example/sale?from=mail&x=1",
        "clicks": 2,
        "machines": 1,  # the scanner's, right after delivery
    }
    assert run_links(run=run)[1]["clicks"] == 0
    timeline = run_timeline(run=run)
    assert len(timeline) == 48
    assert sum(h["opens"] for h in timeline) == 2
    assert sum(h["clicks"] for h in timeline) == 2

    client.force_login(owner)
    page = client.get(
        f"/admin/core/mailingrun/{run.pk}/change/", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "opened 2 (66.7%); clicked 1 (33.3%)" in page
    assert "1 by machines" in page
    assert "https://shop.example/sale?from=mail&amp;x=1" in page
    assert 'class="run-timeline"' in page


def test_attempts_filter_by_what_followed(client, owner, smtp_server):
    _followed(owner, smtp_server)
    client.force_login(owner)

    def shown(value):
        page = client.get(
            "/admin/core/attempt/", {"followed": value}, HTTP_ACCEPT_LANGUAGE="en"
        )
        assert page.status_code == 200
        return page.context["cl"].result_count

    assert (shown("opened"), shown("clicked"), shown("not_opened")) == (2, 1, 1)
    assert shown("bounced") == 0


def test_another_owner_sees_nothing_of_the_report(client, owner, smtp_server):
    from .factories import UserFactory

    run = _followed(owner, smtp_server)
    client.force_login(UserFactory(verified=True, groups=["clients"]))
    assert client.get(f"/admin/core/mailingrun/{run.pk}/change/").status_code in (
        302,
        404,
    )
    page = client.get("/admin/core/event/", {"kind": "click"})
    assert page.context["cl"].result_count == 0


def test_untracked_runs_say_so(client, owner, smtp_server):
    run_sent = _send(owner, smtp_server, track_opens=False, track_clicks=False)
    assert run_sent
    run = MailingRun.objects.get()
    client.force_login(owner)
    page = client.get(
        f"/admin/core/mailingrun/{run.pk}/change/", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "Opens and clicks are not tracked in this run." in page


def test_the_dashboard_shows_open_and_click_rates(client, owner, manager, smtp_server):
    _followed(owner, smtp_server)
    client.force_login(owner)
    figures = client.get("/admin/").context["dashboard"]
    assert (figures["opened"], figures["clicked"]) == (2, 1)
    assert (figures["open_rate"], figures["click_rate"]) == (66.67, 33.33)
    client.force_login(manager)
    figures = client.get("/admin/").context["dashboard"]
    (row,) = [row for row in figures["owners"] if row["id"] == owner.pk]
    assert (row["open_rate"], row["click_rate"]) == (66.67, 33.33)


def test_a_new_mailing_tracks_what_the_owners_profile_says(client, owner):
    client.force_login(owner)
    page = client.get("/admin/core/mailing/add/")
    assert page.context["adminform"].form.initial["track_opens"] is True
    answer = client.post(
        "/profile/",
        {"action": "profile", "full_name": "Анна", "track_clicks_default": "on"},
    )
    assert answer.status_code == 302
    owner.refresh_from_db()
    assert (owner.track_opens_default, owner.track_clicks_default) == (False, True)
    initial = client.get("/admin/core/mailing/add/").context["adminform"].form.initial
    assert (initial["track_opens"], initial["track_clicks"]) == (False, True)
    assert initial["track_recipients"] is False


def test_the_demo_report_shows_opens_and_clicks(db):
    from django.core.management import call_command

    from core.services.events import run_engagement, run_followed, run_links

    call_command("load_demo_data", verbosity=0)
    run = MailingRun.objects.get(pk=9001)
    delivered = run_followed(run=run)["delivered"]
    figures = run_engagement(run=run, delivered=delivered)
    assert (figures["opened"], figures["clicked"]) == (3, 1)
    assert (figures["opens_by_machines"], figures["clicks_by_machines"]) == (1, 1)
    assert run_links(run=run)[0] == {
        "index": 1,
        "url": "https://flowers.example/autumn",
        "clicks": 1,
        "machines": 1,
    }


def test_hours_counted_and_events_since_add_up_to_every_event(owner, smtp_server):
    """Reports read the hours counted so far and the events after them: the
    same figures as counting every event, before and after each pass."""
    from core.models import EventCount
    from core.services.events import (
        events_count_hours,
        run_engagement,
        run_links,
        run_timeline,
    )
    from core.tasks import COUNTS_SCHEDULE_NAME, count_events, schedule_ensure

    run = _followed(owner, smtp_server)
    now = timezone.now()
    # Spread the events over the run's first hours, the last one just now.
    for number, event in enumerate(Event.objects.order_by("pk")):
        event.at = now - timedelta(hours=4 - number)
        event.save(update_fields=["at"])
    MailingRun.objects.filter(pk=run.pk).update(started_at=now - timedelta(hours=5))

    def figures():
        fresh = MailingRun.objects.get(pk=run.pk)
        return (
            run_engagement(run=fresh, delivered=3),
            run_links(run=fresh),
            run_timeline(run=fresh),
        )

    before = figures()
    assert events_count_hours(now=now) > 0
    assert EventCount.objects.filter(run=run).exists()
    assert figures() == before
    assert events_count_hours(now=now) == 0  # each hour once
    later = now + timedelta(hours=2)
    events_count_hours(now=later)
    assert figures() == before
    assert sum(EventCount.objects.values_list("count", flat=True)) == 5

    schedule_ensure()
    from django_q.models import Schedule

    assert (
        Schedule.objects.get(name=COUNTS_SCHEDULE_NAME).func
        == "core.tasks.count_events"
    )
    assert count_events() == "0 hourly counts written"


def _action(client, action, pks, **extra):
    return client.post(
        "/admin/core/mailingrun/",
        {"action": action, "_selected_action": pks, **extra},
        HTTP_ACCEPT_LANGUAGE="en",
    )


def test_a_follow_up_goes_to_those_who_did_not_open(client, owner, smtp_server):
    from core.models import Mailing

    run = _followed(owner, smtp_server)
    opened = set(
        Attempt.objects.filter(opened_at__isnull=False).values_list("client", flat=True)
    )
    client.force_login(owner)
    answer = _action(client, "follow_up", [run.pk])
    follow_up = Mailing.objects.exclude(pk=run.mailing_id).get()
    assert answer.status_code == 302
    assert answer["Location"] == f"/admin/core/mailing/{follow_up.pk}/change/"
    assert follow_up.owner == owner
    # A copy of the message: editing it leaves the original mailing alone.
    original = run.mailing.message
    assert follow_up.message != original
    assert (follow_up.message.subject, follow_up.message.html_body) == (
        original.subject,
        original.html_body,
    )
    assert follow_up.start_at > timezone.now()  # the owner reviews it first
    (segment,) = follow_up.segments.all()
    from core.models.segments import rules_clean

    # The rules are the editor's own: the owner can open and change them.
    assert rules_clean(segment.rules, owner_id=owner.pk) == segment.rules
    assert owner.has_perm("core.change_mailing", follow_up)
    assert owner.has_perm("core.change_segment", segment)
    reached = set(Attempt.objects.values_list("client", flat=True))
    # The same people now and when the follow-up goes out, a day later.
    for moment in (timezone.now(), follow_up.start_at + timedelta(minutes=1)):
        members = set(segment.members(now=moment).values_list("pk", flat=True))
        assert members == reached - opened and len(members) == 1
    # Another follow-up of the same run gets a segment of its own.
    _action(client, "follow_up", [run.pk])
    assert Mailing.objects.count() == 3


def test_no_follow_up_for_runs_not_tracked_per_recipient_or_of_others(
    client, owner, manager, smtp_server
):
    from core.models import Mailing

    _send(owner, smtp_server, track_recipients=False)
    run = MailingRun.objects.get()
    client.force_login(owner)
    answer = _action(client, "follow_up", [run.pk])
    assert answer.status_code == 302
    messages = [str(m) for m in answer.wsgi_request._messages]
    assert any("did not track opens per recipient" in m for m in messages)
    client.force_login(manager)
    page = client.get("/admin/core/mailingrun/")
    assert "follow_up" not in dict(page.context["action_form"].fields["action"].choices)
    assert Mailing.objects.count() == 1


def test_the_report_exports_as_csv(client, owner, smtp_server):
    import csv
    import io

    run = _followed(owner, smtp_server)
    client.force_login(owner)
    answer = _action(client, "export_report", [run.pk])
    assert answer["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0] == ["run", "mailing", "scheduled for", "figure", "value"]
    figures = {row[3]: row[4] for row in rows[1:]}
    assert figures["sent"] == "3"
    assert figures["opened (people)"] == "2"
    assert figures["clicks by machines"] == "1"
    assert figures["clicks by people: https://shop.example/sale?from=mail&x=1"] == "2"


def test_the_mailings_page_sums_its_runs(client, owner, smtp_server):
    from core.services.events import mailing_followed

    run = _followed(owner, smtp_server)
    assert mailing_followed(mailing=run.mailing) == {
        "runs": 1,
        "sent": 3,
        "delivered": 3,
        "bounced": 0,
        "complained": 0,
        "unsubscribed": 0,
        "opened": 2,
        "clicked": 1,
        "open_rate": 66.7,
        "click_rate": 33.3,
    }
    client.force_login(owner)
    page = client.get(
        f"/admin/core/mailing/{run.mailing_id}/change/", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "runs 1; sent 3; delivered 3;" in page
    assert "opened 2 (66.7%); clicked 1 (33.3%)" in page


def test_a_database_that_fails_loses_the_event_not_the_reader(
    owner, smtp_server, monkeypatch
):
    from django.db import OperationalError

    from core.services import tracking

    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    pixel, clicks = _links(next(iter(sent.values())))
    browser = Browser(HTTP_USER_AGENT=PERSON)
    browser.get(pixel)  # the run is known to this process now

    def down(*args, **kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(tracking, "_insert", down)
    answer = browser.get(clicks[1])
    assert answer.status_code == 302
    assert answer["Location"] == "https://shop.example/sale?from=mail&x=1"
    tracking.RUNS.clear()
    monkeypatch.setattr(tracking.RUNS, "get", down)
    assert browser.get(pixel).status_code == 200
    failed = browser.get(clicks[1])
    assert failed.status_code == 503
    assert Event.objects.count() == 1


def test_a_run_records_only_what_it_tracks(owner, smtp_server):
    """A click's token put in a pixel's path, on a run that tracks clicks
    only, records nothing; a run tracking neither refuses its clicks."""
    sent = _send(owner, smtp_server, track_opens=False)
    _delivered_long_ago()
    _, clicks = _links(next(iter(sent.values())))
    token = clicks[1].split("/")[3]
    browser = Browser(HTTP_USER_AGENT=PERSON)
    assert browser.get(f"/t/o/{token}/").status_code == 200
    assert not Event.objects.exists()
    MailingRun.objects.update(track_clicks=False)
    from core.services.tracking import RUNS

    RUNS.clear()
    assert browser.get(clicks[0]).status_code == 404  # not even the honeypot
    assert not Event.objects.exists()


def test_a_click_without_an_open_counts_as_opened_on_the_dashboard(
    client, owner, smtp_server
):
    sent = _send(owner, smtp_server)
    _delivered_long_ago()
    _, clicks = _links(next(iter(sent.values())))
    Browser(HTTP_USER_AGENT=PERSON).get(clicks[1])
    client.force_login(owner)
    figures = client.get("/admin/").context["dashboard"]
    assert (figures["opened"], figures["clicked"]) == (1, 1)


def test_another_owner_can_neither_follow_up_nor_export_a_run(
    client, owner, smtp_server
):
    from core.models import Mailing, Segment

    from .factories import UserFactory

    run = _followed(owner, smtp_server)
    client.force_login(UserFactory(verified=True, groups=["clients"]))
    _action(client, "follow_up", [run.pk])
    assert Mailing.objects.count() == 1 and not Segment.objects.exists()
    answer = _action(client, "export_report", [run.pk])
    if answer.status_code == 200 and answer["Content-Type"].startswith("text/csv"):
        assert answer.content.decode("utf-8-sig").count("\n") == 1  # the header
    else:
        assert answer.status_code == 302  # nothing chosen that they may see


def test_a_title_that_looks_like_a_formula_is_exported_as_text(
    client, owner, smtp_server
):
    run = _followed(owner, smtp_server)
    run.mailing.title = '=HYPERLINK("https://evil.example")'
    run.mailing.save()
    client.force_login(owner)
    answer = _action(client, "export_report", [run.pk])
    import csv
    import io

    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert {row[1] for row in rows[1:]} == {"'" + run.mailing.title}


def test_the_shortcut_answers_exactly_the_tracking_paths():
    """The middleware and the URL patterns name the same paths; anything
    else (another method, a longer index) takes the ordinary way."""
    from django.urls import reverse

    from core.middleware import TRACKING_PATH

    token = tracking_token(run_id=7, attempt_id=8)
    assert TRACKING_PATH.match(reverse("track_open", args=[token]))["open"] == token
    click = TRACKING_PATH.match(reverse("track_click", args=[token, 12]))
    assert (click["click"], click["index"]) == (token, "12")
    for other in ("/t/o/x/y/", "/t/c/x/", "/t/c/x/1", "/blog/t/o/x/"):
        assert TRACKING_PATH.match(other) is None


def test_tracking_answers_keep_the_security_headers_and_set_no_cookie(
    owner, smtp_server
):
    sent = _send(owner, smtp_server)
    pixel, clicks = _links(next(iter(sent.values())))
    for path in (pixel, clicks[1]):
        answer = Browser(HTTP_USER_AGENT=PERSON).get(path)
        assert answer["X-Content-Type-Options"] == "nosniff"
        assert "Set-Cookie" not in answer and "Content-Security-Policy" not in answer
    # Past what the shortcut takes, the URL patterns still answer.
    token = clicks[1].split("/")[3]
    assert Browser().get(f"/t/c/{token}/{10**12}/").status_code == 404


def test_no_follow_up_of_a_mailing_a_manager_switched_off(client, owner, smtp_server):
    from core.models import Mailing

    run = _followed(owner, smtp_server)
    Mailing.objects.filter(pk=run.mailing_id).update(is_enabled=False)
    client.force_login(owner)
    _action(client, "follow_up", [run.pk])
    assert Mailing.objects.count() == 1
