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

    # Opening the link asks; only its button confirms (a mail scanner that
    # follows links confirms nothing).
    opened = client.get(link)
    assert opened.status_code == 200 and opened.context["outcome"] == "confirm"
    user.refresh_from_db()
    assert user.email_verified_at is None
    confirmed = client.post(link)
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
    assert client.post(path).status_code == 200
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
    client.post(path)
    client.post(path)
    assert Group.objects.get(name="clients").user_set.filter(pk=user.pk).count() == 1


# --- what a stranger with a fresh account tried ---------------------------


def test_mail_throttle_counts_an_address_however_it_is_spelled(client, mailoutbox):
    UserFactory(email="victim@example.org")
    spellings = [
        "victim@example.org",
        "Victim@example.org",
        " victim@example.org",
        "victim@Example.org",
        "VICTIM@EXAMPLE.ORG",
    ]
    statuses = [
        client.post(reverse("verify_resend"), {"email": email}).status_code
        for email in spellings
    ]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(mailoutbox) == 3


def visitor(address):
    """A request as it reaches the site through one nginx in front."""
    return {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": address}


def login_from(client, address, email, password=PASSWORD):
    return client.post(
        reverse("login"), {"username": email, "password": password}, **visitor(address)
    )


def test_client_address_behind_trusted_proxies_cannot_be_forged(rf, settings):
    from core.clientip import client_ip

    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(rf.get("/", **visitor("203.0.113.7"))) == "203.0.113.7"
    forged = visitor("198.51.100.1, 203.0.113.7")  # the visitor wrote the first
    assert client_ip(rf.get("/", **forged)) == "203.0.113.7"
    settings.TRUSTED_PROXY_COUNT = 2  # a CDN, then nginx
    cdn = visitor("198.51.100.1, 203.0.113.7, 192.0.2.10")
    assert client_ip(rf.get("/", **cdn)) == "203.0.113.7"
    settings.TRUSTED_PROXY_COUNT = 0  # no proxy: the header is the visitor's
    assert client_ip(rf.get("/", **visitor("203.0.113.7"))) == "127.0.0.1"


def test_behind_the_proxy_one_strangers_resets_do_not_close_reset_for_all(
    client, settings, mailoutbox
):
    settings.TRUSTED_PROXY_COUNT = 1
    for n in range(12):
        client.post(
            reverse("password_reset"),
            {"email": f"nobody{n}@example.org"},
            **visitor("203.0.113.7"),
        )
    UserFactory(email="someone@example.org", verified=True)
    other = client.post(
        reverse("password_reset"),
        {"email": "someone@example.org"},
        **visitor("198.51.100.20"),
    )
    assert other.status_code == 302
    assert [mail.to for mail in mailoutbox] == [["someone@example.org"]]


def test_behind_the_proxy_a_strangers_wrong_passwords_lock_only_the_stranger(
    client, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    user = UserFactory(email="target@example.com", verified=True)
    for _ in range(5):
        login_from(client, "203.0.113.7", user.email, password="guess")
    assert login_from(client, "203.0.113.7", user.email).status_code == 429
    owner = login_from(client, "198.51.100.20", user.email)
    assert owner.status_code == 302 and client.session["_auth_user_id"]


def test_one_account_takes_only_so_many_wrong_passwords_from_all_addresses(
    client, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    # Fewer than django-axes needs to lock one address, from any address.
    settings.LOGIN_FAILURES_PER_ACCOUNT = "3/h"
    user = UserFactory(email="target@example.com", verified=True)
    for n in range(3):
        login_from(client, f"203.0.113.{n}", user.email, password="guess")
    refused = login_from(client, "198.51.100.20", user.email)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    other = UserFactory(email="other@example.com", verified=True)
    assert login_from(client, "198.51.100.20", other.email).status_code == 302


@pytest.fixture
def hashes(monkeypatch):
    """How many password hashes a request computes (each is ~240 ms in
    production: the count is what a stranger can time)."""
    from django.contrib.auth.hashers import MD5PasswordHasher

    calls = []
    encode = MD5PasswordHasher.encode
    monkeypatch.setattr(
        MD5PasswordHasher,
        "encode",
        lambda self, *args, **kwargs: calls.append(1) or encode(self, *args, **kwargs),
    )
    return calls


def test_signup_with_a_taken_address_costs_what_a_new_one_costs(client, hashes):
    UserFactory(email="taken@example.com", verified=True)
    hashes.clear()
    signup(client, email="taken@example.com")
    taken = len(hashes)
    hashes.clear()
    signup(client, email="new@example.com")
    assert taken == len(hashes) >= 1


def test_a_wrong_password_for_a_blocked_account_costs_what_any_other_costs(
    client, hashes
):
    UserFactory(email="blocked@example.com", verified=True, is_active=False)
    UserFactory(email="open@example.com", verified=True)
    costs = {}
    for email in ("blocked@example.com", "open@example.com", "nobody@example.com"):
        hashes.clear()
        login(client, email, password="wrong-password")
        costs[email] = len(hashes)
    assert len(set(costs.values())) == 1, costs
    # The right password still tells the blocked person why.
    assert (
        login(client, "blocked@example.com")
        .context["form"]
        .has_error("__all__", code="inactive")
    )


def test_a_mail_scanner_opening_the_link_confirms_nothing(client, mailoutbox):
    signup(client, email="someone-else@example.org")
    link = link_in(mailoutbox[0])
    for _ in range(3):
        assert client.get(link).context["outcome"] == "confirm"
    assert not User.objects.get().is_verified


def test_the_name_a_stranger_typed_never_reaches_an_unconfirmed_address(
    client, mailoutbox
):
    bait = "Visit evil.example for your prize"
    data = {"full_name": bait}
    signup(client, email="victim@example.org", **data)
    signup(client, email="victim@example.org", **data)  # the notice, too
    assert len(mailoutbox) == 2
    for mail in mailoutbox:
        assert bait not in mail.body and bait not in mail.subject
        assert all(bait not in body for body, _ in mail.alternatives)


def test_unconfirmed_accounts_lapse_and_the_address_can_sign_up_again(
    client, settings, mailoutbox
):
    from core.services.accounts import users_purge_unverified

    stale = UserFactory(email="late@example.org")
    User.objects.filter(pk=stale.pk).update(
        date_joined=timezone.now()
        - timedelta(days=settings.UNVERIFIED_ACCOUNT_DAYS + 1)
    )
    fresh = UserFactory(email="fresh@example.org")
    confirmed = UserFactory(email="old@example.org", verified=True)
    User.objects.filter(pk=confirmed.pk).update(date_joined=stale.date_joined)
    signup(client, email="late@example.org")
    assert [mail.to for mail in mailoutbox] == [["late@example.org"]]
    assert "/verify/" in mailoutbox[0].body  # a new account, not the notice
    User.objects.filter(email="late@example.org").update(
        date_joined=timezone.now() - timedelta(days=30)
    )
    assert users_purge_unverified() == 1
    assert set(User.objects.values_list("pk", flat=True)) == {fresh.pk, confirmed.pk}


def test_unblocking_does_not_bring_an_old_session_back(client, client_user, manager):
    from django.test import Client as Browser

    client.force_login(client_user)
    assert client.get("/admin/").status_code == 200
    desk = Browser()
    desk.force_login(manager)
    for action in ("block_users", "unblock_users"):
        desk.post(
            reverse("admin:core_user_changelist"),
            {"action": action, "_selected_action": [client_user.pk]},
        )
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))


def test_guessing_the_current_password_on_the_profile_is_throttled(client, client_user):
    client.force_login(client_user)

    def change(old):
        return client.post(
            reverse("profile"),
            {
                "action": "password",
                "old_password": old,
                "new_password1": NEW_PASSWORD,
                "new_password2": NEW_PASSWORD,
            },
        )

    assert [change(f"guess-{n}").status_code for n in range(5)] == [200] * 5
    refused = change(PASSWORD)  # even the right one, for a while
    assert refused.status_code == 429
    client_user.refresh_from_db()
    assert client_user.check_password(PASSWORD)


def test_guessing_the_current_password_in_the_admin_is_throttled(client, client_user):
    client.force_login(client_user)
    url = reverse("admin:password_change")
    data = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    for n in range(5):
        assert (
            client.post(url, {**data, "old_password": f"guess-{n}"}).status_code == 200
        )
    refused = client.post(url, {**data, "old_password": PASSWORD})
    assert refused.status_code == 429
    client_user.refresh_from_db()
    assert client_user.check_password(PASSWORD)


def test_signups_racing_for_one_address_all_get_the_signup_page(
    client, monkeypatch, mailoutbox
):
    """Another signup committed between this one's lookup and its insert."""
    from django.db.models import QuerySet

    UserFactory(email="racer@example.org")  # the other request's account
    first, missed = QuerySet.first, []

    def lookup_before_the_other_committed(self):
        if not missed:
            missed.append(True)
            return None
        return first(self)

    monkeypatch.setattr(QuerySet, "first", lookup_before_the_other_committed)
    response = signup(client, email="racer@example.org")
    assert response.status_code == 302 and response.url == reverse("signup_done")
    assert User.objects.filter(email="racer@example.org").count() == 1


def test_tries_the_lockout_refused_do_not_spend_the_accounts_allowance(
    client, settings
):
    """One address kept posting wrong passwords after django-axes locked it
    out; each used to count against the account for every address."""
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_FAILURES_PER_ACCOUNT = "8/h"
    user = UserFactory(email="target@example.com", verified=True)
    for _ in range(12):
        login_from(client, "203.0.113.9", user.email, password="guess")
    owner = login_from(client, "198.51.100.1", user.email)
    assert owner.status_code == 302


def test_an_address_spelled_with_lookalike_letters_is_another_account():
    """PostgreSQL's UPPER() makes "vıctim" (dotless ı) and "ſ" match "victim"
    and "s": each spelling had a lockout count of its own."""
    victim = UserFactory(email="sasha.victim@example.org", verified=True)
    assert User.objects.with_email(" Sasha.Victim@Example.org").get() == victim
    for lookalike in ("sasha.vıctim@example.org", "ſaſha.victim@example.org"):
        assert not User.objects.with_email(lookalike).exists()
