"""Subscription forms: double opt-in always, proof of consent, bots and
floods refused, and nothing a visitor posts changes a subscriber's data."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client as Browser
from django.urls import reverse
from django.utils import timezone, translation

from core.models import Client, Consent, Field, SubscriptionForm, Suppression, Tag
from core.services import subscriptions
from core.services.dispatch import dispatch_tick

from .factories import ClientFactory, MessageFactory, UserFactory, due_mailing

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english_and_patient(client, monkeypatch, inline_tasks):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    # A person's few seconds at the form, skipped (one test checks them).
    monkeypatch.setattr(subscriptions, "MIN_FILL_SECONDS", 0)
    with translation.override("en"):
        yield


@pytest.fixture
def shop(owner):
    city = Field.objects.create(owner=owner, key="city", label="City")
    Field.objects.create(owner=owner, key="age", label="Age", kind="number")
    news = Tag.objects.create(owner=owner, name="News")
    form = SubscriptionForm.objects.create(
        owner=owner,
        title="Shop news",
        personal_data_text="I agree to the processing of my data.",
        marketing_text="I agree to advertising.",
        success_message="Welcome aboard!",
    )
    form.fields.add(city)
    form.required_fields.add(city)
    form.tags.add(news)
    return form


def page(client, form):
    return client.get(reverse("subscribe", kwargs={"slug": form.slug}))


def post(client, form, **data):
    """Submit the form as a browser does; REMOTE_ADDR and HTTP_* go to the
    request, the rest into the form."""
    extra = {k: data.pop(k) for k in list(data) if k.isupper()}
    token = page(client, form).context["form"]["token"].value()
    values = {
        "token": token,
        "email": "ann@example.com",
        "full_name": "Ann",
        "attribute_city": "Omsk",
        "personal_data": "on",
        "marketing": "on",
        **data,
    }
    return client.post(
        reverse("subscribe", kwargs={"slug": form.slug}), values, **extra
    )


def link_in(message) -> str:
    return re.search(r"http://\S+/subscribe/confirm/\S+/", message.body).group(0)


def confirm_path(link: str) -> str:
    return link.split("127.0.0.1:8000", 1)[-1]


def test_a_visitor_subscribes_and_is_confirmed_only_by_pressing_the_button(
    client, owner, shop
):
    response = post(client, shop, HTTP_USER_AGENT="Firefox")
    assert response.status_code == 302
    assert response.url == reverse("subscribe_sent", kwargs={"slug": shop.slug})
    ann = Client.objects.get(owner=owner)
    assert (ann.email, ann.full_name, ann.attributes) == (
        "ann@example.com",
        "Ann",
        {"city": "Omsk"},
    )
    assert ann.confirmed_at is None and ann.source == "form"
    (confirmation,) = mail.outbox
    assert confirmation.to == ["ann@example.com"]
    assert confirmation.reply_to == [owner.email]
    assert "Shop news" in confirmation.subject

    path = confirm_path(link_in(confirmation))
    shown = client.get(path)  # what a mail scanner does: nothing confirms
    assert (
        shown.status_code == 200 and 'id="subscribe-confirm"' in shown.content.decode()
    )
    ann.refresh_from_db()
    assert ann.confirmed_at is None

    done = client.post(path, HTTP_USER_AGENT="Firefox", REMOTE_ADDR="192.0.2.7")
    assert "Welcome aboard!" in done.content.decode()
    ann.refresh_from_db()
    assert ann.confirmed_at is not None
    assert [t.name for t in ann.tags.all()] == ["News"]
    consents = {c.kind: c for c in Consent.objects.filter(client=ann)}
    assert set(consents) == {"personal_data", "marketing"}
    proof = consents["personal_data"]
    assert proof.text == "I agree to the processing of my data."
    assert proof.version == subscriptions_version(proof.text)
    assert (proof.source, proof.action) == (shop.slug, "given")
    assert proof.ip == "192.0.2.7"  # who pressed the button gave the consent
    assert proof.user_agent == "Firefox"


def subscriptions_version(text):
    from core.models.consents import text_version

    return text_version(text)


def test_the_page_is_in_russian_and_english(client, shop):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "ru"
    russian = page(client, shop).content.decode()
    assert "Подписаться" in russian and "Shop news" in russian
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert "Subscribe" in page(client, shop).content.decode()


def test_the_two_consents_are_separate_unticked_and_both_needed(client, shop):
    text = page(client, shop).content.decode()
    boxes = re.findall(
        r'<input type="checkbox" name="(personal_data|marketing)"[^>]*>', text
    )
    assert boxes == ["personal_data", "marketing"]
    assert "checked" not in " ".join(
        re.findall(
            r'<input type="checkbox" name="(?:personal_data|marketing)"[^>]*>', text
        )
    )
    refused = post(client, shop, marketing="")
    assert refused.status_code == 200
    assert "marketing" in refused.context["form"].errors
    assert not Client.objects.exists() and not mail.outbox


def test_unconfirmed_subscribers_never_receive_mailings(
    client, owner, shop, smtp_server
):
    post(client, shop)
    ann = Client.objects.get()
    mailing = due_mailing(owner, [ann])
    dispatch_tick()
    # The confirmation went out through the server; the mailing did not.
    assert [email["Subject"] for _to, email in smtp_server.messages] == [
        "Confirm your subscription: Shop news"
    ]
    assert mailing.runs.get().attempts.get().server_response == "unconfirmed"


def test_a_post_without_its_token_is_refused_and_loses_nothing(client, shop):
    response = post(client, shop, token="")
    assert response.status_code == 200
    assert "not sent from its page" in response.content.decode()
    # What was typed comes back, with a token to send it again.
    assert response.context["form"]["email"].value() == "ann@example.com"
    assert response.context["form"]["token"].value()
    forged = post(client, shop, token="eyJmIjoxfQ:bad:signature")
    assert "not sent from its page" in forged.content.decode()
    assert not Client.objects.exists() and not mail.outbox


def test_another_forms_token_does_not_open_this_one(client, owner, shop):
    other = SubscriptionForm.objects.create(
        owner=owner, title="Other", personal_data_text="ok", ask_marketing=False
    )
    token = subscriptions.form_token(form=other)
    response = post(client, shop, token=token)
    assert "not sent from its page" in response.content.decode()
    assert not Client.objects.exists()


def test_a_form_sent_faster_than_a_person_types_is_refused(client, shop, monkeypatch):
    monkeypatch.setattr(subscriptions, "MIN_FILL_SECONDS", 2)
    response = post(client, shop)
    assert "too quick" in response.content.decode()
    assert not Client.objects.exists()
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        token = page(client, shop).context["form"]["token"].value()
    with time_machine.travel(timezone.now() + timedelta(seconds=10)):
        assert post(client, shop, token=token).status_code == 302  # not `post`'s own
    # The page's own token is fresh; this one was shown 5 s before.


def test_a_bot_that_fills_the_trap_is_told_nothing_and_gets_nothing(client, shop):
    response = post(client, shop, website="http://spam.example")
    assert response.status_code == 302  # as for a person
    assert not Client.objects.exists() and not mail.outbox


def test_the_same_address_a_hundred_times_gets_three_mails(client, shop):
    for n in range(100):
        response = post(
            client, shop, email="ANN@example.com", REMOTE_ADDR=f"10.0.{n}.1"
        )
        assert response.status_code == 302
    assert len(mail.outbox) == 3
    assert Client.objects.count() == 1


def test_one_address_posting_too_often_is_slowed_down(client, shop):
    codes = [
        post(client, shop, email=f"p{n}@example.com").status_code for n in range(62)
    ]
    assert codes[:30].count(302) == 30
    assert 429 in codes


def test_a_confirmation_link_reused_expired_or_tampered_does_nothing(client, shop):
    post(client, shop)
    path = confirm_path(link_in(mail.outbox[0]))
    client.post(path)
    ann = Client.objects.get()
    first = ann.confirmed_at
    again = client.post(path)
    assert "confirmed already" in again.content.decode()
    ann.refresh_from_db()
    assert ann.confirmed_at == first
    assert Consent.objects.count() == 2  # not four

    tampered = client.get(path[:-3] + "xy/")
    assert tampered.status_code == 400 and "damaged" in tampered.content.decode()
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        expired = client.post(path)
    assert expired.status_code == 400 and "expired" in expired.content.decode()


def test_a_submission_never_changes_a_subscriber_who_is_on_the_list(
    client, owner, shop
):
    ClientFactory(
        owner=owner, email="ann@example.com", full_name="Ann Real", attributes={}
    )
    post(client, shop, full_name="Hacked", attribute_city="Nowhere")
    ann = Client.objects.get()
    assert (ann.full_name, ann.attributes) == ("Ann Real", {})
    client.post(confirm_path(link_in(mail.outbox[0])))
    ann.refresh_from_db()
    assert (ann.full_name, ann.attributes) == ("Ann Real", {})
    assert [t.name for t in ann.tags.all()] == ["News"]


def test_an_unsubscribed_address_comes_back_only_by_its_own_confirmation(
    client, owner, shop
):
    ann = ClientFactory(owner=owner, email="ann@example.com")
    ann.unsubscribed_at = timezone.now()
    ann.save()
    post(client, shop)
    ann.refresh_from_db()
    assert ann.unsubscribed_at is not None  # a submission alone lifts nothing
    client.post(confirm_path(link_in(mail.outbox[0])))
    ann.refresh_from_db()
    assert ann.unsubscribed_at is None
    assert not Suppression.objects.filter(email="ann@example.com").exists()
    assert Client.objects.subscribed().filter(pk=ann.pk).exists()


def test_a_complaint_is_not_lifted_by_subscribing_again(client, owner, shop):
    Suppression.objects.record(
        owner_id=None, emails=["ann@example.com"], reason="complaint"
    )
    post(client, shop)
    # No confirmation goes to an address that complained: nothing to lift.
    assert not mail.outbox
    assert Suppression.objects.filter(reason="complaint").exists()


def test_the_welcome_message_follows_the_confirmation(client, owner, shop):
    shop.welcome_message = MessageFactory(
        owner=owner,
        subject="Hi {{ client.full_name }}",
        body="From {{ client.attributes.city }}: {{ unsubscribe_url }}",
    )
    shop.save()
    post(client, shop)
    client.post(confirm_path(link_in(mail.outbox[0])))
    welcome = mail.outbox[1]
    assert welcome.subject == "Hi Ann"
    assert welcome.body.startswith("From Omsk: http://")
    assert (
        welcome.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    )


def test_a_redirect_follows_the_confirmation_when_set(client, shop):
    shop.redirect_url = "https://shop.example/thanks"
    shop.save()
    post(client, shop)
    done = client.post(confirm_path(link_in(mail.outbox[0])))
    assert (done.status_code, done.url) == (302, "https://shop.example/thanks")


def test_pending_subscribers_lapse_after_seven_days(client, owner, shop):
    post(client, shop)
    kept = ClientFactory(owner=owner, email="imported@example.com", confirmed_at=None)
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert subscriptions.subscriptions_purge_pending() == 1
    assert list(Client.objects.all()) == [kept]  # only what a form brought


@pytest.mark.parametrize("reason", ["unpublished", "blocked", "suspended"])
def test_a_closed_form_accepts_nothing(client, owner, shop, reason):
    if reason == "unpublished":
        shop.is_published = False
        shop.save()
    elif reason == "blocked":
        owner.is_active = False
        owner.save()
    else:
        owner.sending_suspended_at = timezone.now()
        owner.save()
    url = reverse("subscribe", kwargs={"slug": shop.slug})
    assert client.get(url).status_code == 404
    assert client.post(url, {"email": "a@example.com"}).status_code == 404


def test_the_snippet_posts_from_another_site_without_a_csrf_cookie(owner, shop):
    from core.admin.subscriptions import form_snippet

    snippet = form_snippet(form=shop)
    action = re.search(r'action="([^"]+)"', snippet).group(1)
    token = re.search(r'name="token" value="([^"]+)"', snippet).group(1)
    browser = Browser(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    response = browser.post(
        action.split("127.0.0.1:8000", 1)[-1],
        {
            "token": token,
            "email": "bob@example.com",
            "attribute_city": "Kazan",
            "personal_data": "on",
            "marketing": "on",
        },
        HTTP_ORIGIN="https://shop.example",
    )
    assert response.status_code == 302
    assert Client.objects.get().email == "bob@example.com"
    assert 'name="website"' in snippet  # the trap is in the snippet too


def test_a_wrong_value_or_a_megabyte_is_refused_with_the_field(client, owner, shop):
    age = Field.objects.get(key="age")
    shop.fields.add(age)
    response = post(client, shop, attribute_age="old", attribute_city="x" * 1_000_000)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "must be a number" in str(errors["attribute_age"])
    assert "attribute_city" in errors
    assert len(response.content) < 200_000  # the megabyte is not echoed back whole
    assert not Client.objects.exists()


# --- the admin --------------------------------------------------------------


def test_an_owner_builds_a_form_of_their_own_fields_and_tags(client, owner, shop):
    other = UserFactory(verified=True, groups=["clients"])
    their_tag = Tag.objects.create(owner=other, name="Theirs")
    their_field = Field.objects.create(owner=other, key="x", label="X")
    client.force_login(owner)
    add = reverse("admin:core_subscriptionform_add")
    page_ = client.get(add)
    assert "I agree to the processing of my personal data" in page_.content.decode()
    data = {
        "title": "Autumn sale",
        "personal_data_text": "Yes to my data.",
        "ask_marketing": "",
        "is_published": "on",
        "tags": [their_tag.pk],
        "fields": [their_field.pk],
    }
    refused = client.post(add, data)
    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert "tags" in errors and "fields" in errors
    city = Field.objects.get(owner=owner, key="city")
    required_only = client.post(
        add, {**data, "tags": [], "fields": [], "required_fields": [city.pk]}
    )
    assert "required_fields" in required_only.context["adminform"].form.errors
    done = client.post(add, {**data, "tags": [], "fields": [city.pk]})
    assert done.status_code == 302
    made = SubscriptionForm.objects.get(title="Autumn sale")
    assert made.slug == "autumn-sale" and made.owner == owner
    change = client.get(reverse("admin:core_subscriptionform_change", args=[made.pk]))
    text = change.content.decode()
    assert 'id="embed-code"' in text and "/subscribe/autumn-sale/" in text


def test_a_link_cannot_confirm_texts_the_visitor_never_saw(client, shop):
    post(client, shop)
    shop.personal_data_text = "New words nobody agreed to."
    shop.save()
    response = client.post(confirm_path(link_in(mail.outbox[0])))
    assert response.status_code == 400
    assert "consent texts have changed" in response.content.decode()
    assert Client.objects.get().confirmed_at is None
    assert not Consent.objects.exists()


def test_no_confirmation_goes_to_an_address_that_bounced_or_complained(
    client, owner, shop
):
    Suppression.objects.record(
        owner_id=None, emails=["ann@example.com"], reason="complaint"
    )
    assert post(client, shop).status_code == 302  # the page says the same
    assert not mail.outbox and not Client.objects.exists()


def test_many_forms_together_cannot_flood_one_mailbox(client, owner, shop):
    forms = [
        SubscriptionForm.objects.create(
            owner=owner, title=f"Form {n}", personal_data_text="ok", ask_marketing=False
        )
        for n in range(4)
    ]
    for form in forms:
        for _ in range(3):
            post(client, form, attribute_city="")
    assert len(mail.outbox) == 6  # SUBSCRIBE_RATE_PER_EMAIL_ALL_FORMS


def test_a_form_cannot_take_an_address_the_site_uses(client, owner):
    form = SubscriptionForm(
        owner=owner,
        title="x",
        slug="confirm",
        personal_data_text="ok",
        ask_marketing=False,
    )
    with pytest.raises(ValidationError):
        form.full_clean()
    made = SubscriptionForm.objects.create(
        owner=owner, title="Confirm", personal_data_text="ok", ask_marketing=False
    )
    assert made.slug != "confirm"


def test_a_pending_subscriber_who_submits_again_keeps_their_link_alive(
    client, owner, shop
):
    start = timezone.now()
    with time_machine.travel(start):
        post(client, shop)
    with time_machine.travel(start + timedelta(days=6)):
        post(client, shop)
    with time_machine.travel(start + timedelta(days=8)):
        assert subscriptions.subscriptions_purge_pending() == 0
        client.post(confirm_path(link_in(mail.outbox[1])))
    assert Client.objects.get().confirmed_at is not None
