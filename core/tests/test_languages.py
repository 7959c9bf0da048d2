"""Russian by default, English after the switch, on every public page."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

PUBLIC_PAGES = ["home", "signup", "login", "verify_resend", "password_reset"]


@pytest.mark.parametrize("name", PUBLIC_PAGES)
def test_public_pages_speak_russian_by_default_and_offer_the_switch(client, name):
    response = client.get(reverse(name))
    page = response.content.decode()
    assert response.status_code == 200
    assert '<html lang="ru">' in page
    assert 'id="language-switcher"' in page
    assert "Войти" in page


def test_switching_to_english_turns_the_site_and_the_admin_english(client, client_user):
    response = client.post(
        reverse("set_language"), {"language": "en", "next": reverse("login")}
    )
    assert response.status_code == 302
    page = client.get(reverse("login")).content.decode()
    assert '<html lang="en">' in page
    assert "Log in" in page and "Войти" not in page

    client.force_login(client_user)
    admin = client.get("/admin/").content.decode()
    assert 'lang="en"' in admin

    client.post(reverse("set_language"), {"language": "ru", "next": "/"})
    assert '<html lang="ru">' in client.get("/").content.decode()


def test_browser_language_is_honoured_without_a_cookie(client):
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert '<html lang="en">' in page


def test_verification_mail_is_written_in_the_visitors_language(client, mailoutbox):
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    client.post(
        reverse("signup"),
        {
            "email": "english@example.com",
            "full_name": "Jane",
            "password1": "correct-horse-battery-staple",
            "password2": "correct-horse-battery-staple",
        },
    )
    assert "Confirm your e-mail" in mailoutbox[0].subject

    client.post(reverse("set_language"), {"language": "ru", "next": "/"})
    client.post(reverse("verify_resend"), {"email": "english@example.com"})
    assert "Подтвердите" in mailoutbox[1].subject
