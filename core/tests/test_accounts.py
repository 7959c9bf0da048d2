"""The account journey on the public site, and every way to get it wrong."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from core.models import User
from core.services.accounts import user_verification_link

from .factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-much-better-secret-42"


def link_in(message):
    """The only link of our site in an e-mail's text part."""
    (link,) = re.findall(r"https?://\S+", message.body)
    return link.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def signup(client, email="newcomer@example.com", password=PASSWORD, **extra):
    data = {
        "email": email,
        "full_name": "Анна Петрова",
        "password1": password,
        "password2": password,
        **extra,
    }
    return client.post(reverse("signup"), data)


def login(client, email, password=PASSWORD, **extra):
    return client.post(
        reverse("login"), {"username": email, "password": password, **extra}
    )


def test_newcomer_signs_up_confirms_and_lands_in_the_admin(client, mailoutbox):
    response = signup(client, email="Newcomer@Example.COM")
    assert response.status_code == 302
    assert response.url == reverse("signup_done")
    page = client.get(response.url).content.decode()
    assert "newcomer@example.com" in page

    user = User.objects.get()
    assert user.email == "newcomer@example.com"
    assert user.full_name == "Анна Петрова"
    assert user.email_verified_at is None and not user.is_staff

    (mail,) = mailoutbox
    assert mail.to == ["newcomer@example.com"]
    assert mail.alternatives and mail.alternatives[0][1] == "text/html"
    link = link_in(mail)
    assert link.startswith("/verify/")

    # Not confirmed yet: login is refused with a way to get a new link.
    refused = login(client, "newcomer@example.com")
    assert refused.status_code == 200
    assert reverse("verify_resend") in refused.content.decode()
    assert "_auth_user_id" not in client.session

    confirmed = client.get(link)
    assert confirmed.status_code == 200
    user.refresh_from_db()
    assert user.email_verified_at is not None
    assert user.is_staff
    assert user.groups.filter(name="clients").exists()

    response = login(client, "NEWCOMER@example.com", next="/admin/")
    assert response.status_code == 302
    assert response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_signup_with_a_taken_address_looks_the_same_and_mails_the_owner(
    client, mailoutbox
):
    owner = UserFactory(email="taken@example.com", verified=True)
    response = signup(client, email="TAKEN@example.com")
    assert response.status_code == 302
    assert response.url == reverse("signup_done")
    assert User.objects.count() == 1
    (mail,) = mailoutbox
    assert mail.to == [owner.email]
    assert reverse("password_reset") in mail.body
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b@example.com"}, "email"),
        ({"password1": "123", "password2": "123"}, "password1"),
        ({"password1": "password", "password2": "password"}, "password1"),
        ({"password2": "something-else-entirely"}, "password2"),
        ({"full_name": ""}, "full_name"),
    ],
)
def test_bad_signup_is_shown_on_the_form_and_creates_nothing(
    client, mailoutbox, extra, field
):
    data = {
        "email": "someone@example.com",
        "full_name": "Someone",
        "password1": PASSWORD,
        "password2": PASSWORD,
        **extra,
    }
    response = client.post(reverse("signup"), data)
    assert response.status_code == 200
    assert response.context["form"].errors[field]
    assert "is-invalid" in response.content.decode()
    assert not User.objects.exists()
    assert mailoutbox == []


def test_password_similar_to_the_address_is_refused(client):
    response = signup(
        client, email="katerina.ivanova@example.com", password="katerina.ivanova"
    )
    assert response.status_code == 200
    assert response.context["form"].errors["password1"]


def test_tampered_verification_link_is_refused(client):
    user = UserFactory()
    link = user_verification_link(user=user)
    path = "/" + link.split("/", 3)[3]
    response = client.get(path[:-3] + "xyz/")
    assert response.status_code == 400
    user.refresh_from_db()
    assert user.email_verified_at is None
    # A link naming a user that does not exist answers the same way.
    assert client.get("/verify/OTk5OTk/abc-123/").status_code == 400
    assert client.get("/verify/!!!/abc/").status_code == 400


def test_used_verification_link_says_already_confirmed(client):
    user = UserFactory()
    path = "/" + user_verification_link(user=user).split("/", 3)[3]
    assert client.get(path).status_code == 200
    first_confirmation = User.objects.get(pk=user.pk).email_verified_at
    again = client.get(path)
    assert again.status_code == 200
    assert again.context["outcome"] == "already"
    assert User.objects.get(pk=user.pk).email_verified_at == first_confirmation


def test_expired_verification_link_is_refused(client, settings):
    user = UserFactory()
    path = "/" + user_verification_link(user=user).split("/", 3)[3]
    # A day past the limit: time-machine and the token disagree on local time.
    later = timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT, days=1)
    with time_machine.travel(later):
        response = client.get(path)
    assert response.status_code == 400
    assert response.context["outcome"] == "invalid"
    user.refresh_from_db()
    assert user.email_verified_at is None


def test_resend_mails_unconfirmed_users_and_tells_strangers_nothing(client, mailoutbox):
    UserFactory(email="waiting@example.com")
    UserFactory(email="done@example.com", verified=True)
    pages = []
    for email in ("Waiting@example.com", "done@example.com", "nobody@example.com"):
        response = client.post(reverse("verify_resend"), {"email": email})
        assert response.status_code == 200
        card = response.content.decode().split('class="card-body')[1]
        pages.append(card.split("</div>")[0].replace(email.lower(), "EMAIL"))
    assert pages[0] == pages[1] == pages[2]
    (mail,) = mailoutbox
    assert mail.to == ["waiting@example.com"]
    assert link_in(mail).startswith("/verify/")


def test_resend_is_throttled_per_address(client, mailoutbox):
    UserFactory(email="waiting@example.com")
    statuses = [
        client.post(
            reverse("verify_resend"), {"email": "waiting@example.com"}
        ).status_code
        for _ in range(5)
    ]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429, 429]
    assert len(mailoutbox) == 3


def test_blocked_user_is_told_so_and_not_logged_in(client):
    UserFactory(email="blocked@example.com", verified=True, is_active=False)
    response = login(client, "blocked@example.com")
    assert response.status_code == 200
    assert response.context["form"].errors["__all__"]
    assert response.context["form"].has_error("__all__", code="inactive")
    assert "_auth_user_id" not in client.session


def test_blocked_user_with_a_wrong_password_learns_nothing(client):
    UserFactory(email="blocked@example.com", verified=True, is_active=False)
    response = login(client, "blocked@example.com", password="wrong-password")
    assert response.context["form"].has_error("__all__", code="invalid_login")


def test_blocking_a_user_ends_their_open_session(client, client_user):
    client.force_login(client_user)
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("profile")).status_code == 200
    client_user.is_active = False
    client_user.save()
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert response.context["user"].is_anonymous
    assert client.get(reverse("profile")).status_code == 302


def test_repeated_failed_logins_lock_the_address_out(client):
    user = UserFactory(email="target@example.com", verified=True)
    for _ in range(4):
        assert login(client, user.email, password="guess").status_code == 200
    assert login(client, user.email.upper(), password="guess").status_code == 429
    locked = login(client, user.email)  # even the right password
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    assert reverse("password_reset") in locked.content.decode()


def test_admin_login_goes_through_the_public_login_page(client, client_user):
    response = client.get("/admin/login/?next=/admin/core/user/")
    assert response.status_code == 302
    assert response.url == reverse("login") + "?next=%2Fadmin%2Fcore%2Fuser%2F"
    unverified = UserFactory(email="fresh@example.com")
    refused = login(client, unverified.email, next="/admin/")
    assert refused.status_code == 200
    assert client.get("/admin/").status_code == 302


def test_logged_in_user_without_admin_access_sees_a_clear_page(client):
    outsider = UserFactory(verified=True, is_staff=False)
    client.force_login(outsider)
    response = client.get("/admin/login/")
    assert response.status_code == 403
    assert outsider.email in response.content.decode()


def test_logout_only_by_post(client, client_user):
    client.force_login(client_user)
    assert client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in client.session
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_password_reset_for_known_and_unknown_addresses_look_the_same(
    client, mailoutbox, settings
):
    settings.SITE_URL = "https://mail.example.org"
    settings.SITE_DOMAIN = "mail.example.org"
    settings.SITE_USES_HTTPS = True
    settings.ALLOWED_HOSTS = ["*"]  # even where any Host is let in
    UserFactory(email="known@example.com", verified=True)
    unknown = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    known = client.post(
        reverse("password_reset"),
        {"email": "Known@Example.com"},
        HTTP_HOST="evil.example.net",
    )
    assert unknown.status_code == known.status_code == 302
    assert unknown.url == known.url == reverse("password_reset_done")
    (mail,) = mailoutbox
    assert mail.to == ["known@example.com"]
    assert "https://mail.example.org/password-reset/" in mail.body
    assert "evil.example.net" not in mail.body

    confirm = client.get(link_in(mail), follow=True)
    assert confirm.status_code == 200
    set_password_url = confirm.redirect_chain[-1][0]
    done = client.post(
        set_password_url,
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert done.status_code == 302
    assert login(client, "known@example.com", NEW_PASSWORD).status_code == 302


def test_reused_password_reset_link_is_refused(client, mailoutbox):
    user = UserFactory(verified=True)
    client.post(reverse("password_reset"), {"email": user.email})
    link = link_in(mailoutbox[0])
    set_url = client.get(link, follow=True).redirect_chain[-1][0]
    client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    again = client.get(link, follow=True)
    assert again.status_code == 200
    assert again.context["validlink"] is False


def test_profile_changes_name_and_password(client, client_user):
    client.force_login(client_user)
    response = client.post(
        reverse("profile"), {"action": "profile", "full_name": "Новое Имя"}
    )
    assert response.status_code == 302
    client_user.refresh_from_db()
    assert client_user.full_name == "Новое Имя"

    wrong = client.post(
        reverse("profile"),
        {
            "action": "password",
            "old_password": "not-it",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 200
    assert wrong.context["password_form"].errors["old_password"]

    changed = client.post(
        reverse("profile"),
        {
            "action": "password",
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert changed.status_code == 302
    client_user.refresh_from_db()
    assert client_user.check_password(NEW_PASSWORD)
    # The session survives its own password change.
    assert client.get(reverse("profile")).status_code == 200


def test_profile_needs_login(client):
    response = client.get(reverse("profile"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_signup_survives_a_mail_server_that_refuses(client, settings, mailoutbox):
    settings.EMAIL_BACKEND = "core.tests.test_accounts.RefusingBackend"
    response = signup(client)
    assert response.status_code == 302
    page = client.get(response.url).content.decode()
    assert reverse("verify_resend") in page
    assert User.objects.filter(email="newcomer@example.com").exists()
    assert client.get(reverse("signup_done")).context["mail_sent"] is False


class RefusingBackend:
    """A mail backend whose server answers every message with an error."""

    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        import smtplib

        raise smtplib.SMTPDataError(554, b"Transaction failed")


def test_verified_user_lands_in_clients_group_once(client):
    user = UserFactory()
    path = "/" + user_verification_link(user=user).split("/", 3)[3]
    client.get(path)
    client.get(path)
    assert Group.objects.get(name="clients").user_set.filter(pk=user.pk).count() == 1
