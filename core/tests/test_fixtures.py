"""The demo data: both files load on a fresh database, in either order, twice.

They bring their own users (by natural key, so loading again changes
nothing), and every demo owner then works with their rows in the admin.
"""

import io
import json
import re

import pytest
import time_machine
from django.conf import settings
from django.core.management import CommandError, call_command
from django.urls import reverse

from core.models import Article, Attempt, Client, Mailing, MailingRun, Message, User
from core.models.markup import article_body_html

pytestmark = pytest.mark.django_db

FIXTURES_DIR = settings.BASE_DIR / "fixtures"
BLOG, MAILING = "blog_data.json", "mailing_data.json"
DEMO_PASSWORD = "demo-demo-2026"
# The day the demo data was written: its unsent mailings all start later.
WRITTEN_ON = "2026-11-26 12:00:00+03:00"


def rows_of(name):
    return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))


def demo_emails(name):
    return {
        row["fields"]["email"] for row in rows_of(name) if row["model"] == "core.user"
    }


def load(*names):
    for name in names:
        call_command("loaddata", name, verbosity=0)


def counts():
    return {
        model.__name__: model.objects.count()
        for model in (User, Article, Client, Message, Mailing, MailingRun, Attempt)
    }


@pytest.mark.parametrize(
    "order", [(BLOG, MAILING), (MAILING, BLOG)], ids=["blog-first", "mailing-first"]
)
def test_both_files_load_in_either_order_twice(order):
    load(*order)
    first = counts()
    load(*order)
    assert counts() == first
    assert first["User"] == len(demo_emails(BLOG) | demo_emails(MAILING))
    assert first["Article"] == sum(r["model"] == "core.article" for r in rows_of(BLOG))


@pytest.mark.parametrize("name", [BLOG, MAILING])
def test_each_file_loads_alone_with_the_users_it_needs(name):
    load(name)
    assert set(User.objects.values_list("email", flat=True)) == demo_emails(name)


def test_loading_does_not_touch_real_users():
    real = User.objects.create_user("real@example.com", "secret", full_name="Real")
    load(BLOG, MAILING, BLOG)
    real.refresh_from_db()
    assert (real.email, real.full_name) == ("real@example.com", "Real")
    assert real.check_password("secret")


def test_demo_content_covers_every_status_and_periodicity():
    load(BLOG, MAILING)
    assert set(Article.objects.values_list("status", flat=True)) == set(
        Article.Status.values
    )
    assert set(Mailing.objects.values_list("periodicity", flat=True)) == set(
        Mailing.Periodicity.values
    )
    assert {"sent", "failed", "skipped"} <= set(
        Attempt.objects.values_list("status", flat=True)
    )
    assert Article.objects.exclude(rejection_reason="").filter(status="rejected")
    for run in MailingRun.objects.all():
        assert run.total_count == run.attempts.count()
        assert run.sent_count == run.attempts.filter(status="sent").count()
    demo = User.objects.filter(email__in=demo_emails(BLOG))
    assert demo.filter(groups__name="managers").exists()
    assert all(user.is_verified and user.is_staff for user in demo)


def test_nothing_is_due_when_the_demo_is_loaded():
    load(BLOG, MAILING)
    with time_machine.travel(WRITTEN_ON):
        from django.utils import timezone

        assert not Mailing.objects.due(timezone.now()).exists()
        for mailing in Mailing.objects.filter(next_run_at__isnull=False):
            assert mailing.next_run_at == mailing.start_at > timezone.now()


def test_article_bodies_are_the_sanitized_markdown():
    load(BLOG)
    for article in Article.objects.all():
        assert article.body == article_body_html(source=article.source)


def test_demo_logins_work_with_the_documented_password(client, settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    load(BLOG)
    response = client.post(
        reverse("login"),
        {"username": "maria@demo.example.com", "password": DEMO_PASSWORD},
    )
    assert response.status_code == 302
    assert client.get(reverse("admin:core_article_changelist")).status_code == 200


def test_the_readme_lists_every_demo_login():
    readme = (settings.BASE_DIR / "README.md").read_text(encoding="utf-8")
    section = re.search(r"## Demo data\n(.*?)(?=\n## |\Z)", readme, re.S).group(1)
    for email in demo_emails(BLOG) | demo_emails(MAILING):
        assert email in section
    assert DEMO_PASSWORD in section


CHANGELISTS = ["client", "message", "mailing", "mailingrun", "attempt", "article"]


def test_after_loading_every_owner_sees_their_rows_in_the_admin(client):
    load(MAILING, BLOG)
    owners = User.objects.filter(groups__name="clients")
    assert owners.count() >= 2
    for owner in owners:
        client.force_login(owner)
        for model_name in CHANGELISTS:
            response = client.get(reverse(f"admin:core_{model_name}_changelist"))
            shown = {obj.pk for obj in response.context["cl"].result_list}
            model = response.context["cl"].model
            field = "author" if model is Article else "owner"
            own = set(
                model.objects.filter(**{field: owner}).values_list("pk", flat=True)
            )
            assert shown == own, (owner, model_name)
        article = Article.objects.filter(author=owner).first()
        page = client.get(reverse("admin:core_article_change", args=[article.pk]))
        assert 'name="_save"' in page.content.decode()
        mailing = Mailing.objects.filter(owner=owner).first()
        if mailing:
            page = client.get(reverse("admin:core_mailing_change", args=[mailing.pk]))
            assert 'name="_save"' in page.content.decode()


def test_after_loading_the_manager_sees_everything(client):
    load(BLOG, MAILING)
    client.force_login(User.objects.get(groups__name="managers"))
    response = client.get(reverse("admin:core_article_changelist"))
    assert response.context["cl"].result_count == Article.objects.count()
    response = client.get(reverse("admin:core_mailing_changelist"))
    assert response.context["cl"].result_count == Mailing.objects.count()


def test_the_public_site_shows_the_demo_articles(client):
    load(BLOG)
    published = Article.objects.published()
    page = client.get(reverse("blog")).content.decode()
    for article in published:
        assert article.title in page
        assert client.get(article.get_absolute_url()).status_code == 200
    for article in Article.objects.exclude(status="published"):
        assert client.get(article.get_absolute_url()).status_code == 404


def test_demo_data_loads_once_and_keeps_the_users_changes():
    call_command("load_demo_data", stdout=io.StringIO())
    demo = demo_emails(BLOG) | demo_emails(MAILING)
    assert set(User.objects.values_list("email", flat=True)) >= demo
    client = Client.objects.get(pk=9001)
    client.full_name = "Переименована мной"
    client.save()

    out = io.StringIO()
    call_command("load_demo_data", stdout=out)
    assert "here already" in out.getvalue()
    client.refresh_from_db()
    assert client.full_name == "Переименована мной"

    # Deleting one demo user does not make the next start reload the rest.
    User.objects.get(email=sorted(demo)[-1]).delete()
    call_command("load_demo_data", stdout=io.StringIO())
    client.refresh_from_db()
    assert client.full_name == "Переименована мной"
    assert User.objects.filter(email__in=demo).count() == len(demo) - 1

    call_command("load_demo_data", "--reset", stdout=io.StringIO())
    client.refresh_from_db()
    assert client.full_name != "Переименована мной"


def test_demo_data_never_overwrites_another_users_rows():
    """A busy service has its own row 9001: loading must not take it over."""
    someone = User.objects.create_user(email="real@example.org", password="x" * 12)
    real = Client.objects.create(pk=9001, owner=someone, email="keep@example.org")
    with pytest.raises(CommandError, match=r"core\.client 9001"):
        call_command("load_demo_data", stdout=io.StringIO())
    real.refresh_from_db()
    assert (real.owner, real.email) == (someone, "keep@example.org")
    assert not User.objects.filter(email__in=demo_emails(MAILING)).exists()
    assert not Article.objects.exists()  # nothing at all was loaded


def test_the_demo_audience_has_tags_fields_a_segment_and_a_form(client):
    from core.models import Consent, Field, Segment, SubscriptionForm, Tag

    load(MAILING)
    anna = User.objects.get(email="anna@demo.example.com")
    assert Tag.objects.filter(owner=anna, is_public=True).count() == 2
    assert {f.kind for f in Field.objects.filter(owner=anna)} == {
        "text",
        "date",
        "choice",
        "number",
        "boolean",
    }
    segment = Segment.objects.get(owner=anna)
    segment.full_clean()  # its rules name the owner's own fields and tags
    members = set(segment.members().values_list("email", flat=True))
    assert members == {
        "olga.petrova@example.com",
        "ivan.sokolov@example.org",
        "sergey.morozov@example.com",
        "irina.kozlova@example.net",
    }
    form = SubscriptionForm.objects.get(owner=anna)
    assert form.is_published and form.ask_marketing
    assert form.slug == "flower-news"  # as the README names it
    subscriber = Client.objects.get(email="vera.zaitseva@example.com")
    assert set(
        Consent.objects.filter(client=subscriber).values_list("kind", flat=True)
    ) == {
        "personal_data",
        "marketing",
    }
    assert Client.objects.unconfirmed().filter(owner=anna).count() == 1
    page = client.get(reverse("subscribe", kwargs={"slug": form.slug}))
    assert (
        page.status_code == 200 and "Новости цветочной лавки" in page.content.decode()
    )
    client.force_login(anna)
    segment_page = client.get(
        reverse("admin:core_segment_change", args=[segment.pk]),
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert "4 recipients match now." in segment_page.content.decode()


def test_the_demo_report_shows_a_bounce_a_soft_bounce_and_a_complaint(db):
    from django.core.management import call_command

    from core.models import MailingRun, Suppression
    from core.services.events import run_followed

    call_command("load_demo_data", verbosity=0)
    run = MailingRun.objects.get(pk=9001)
    assert run_followed(run=run) == {
        "bounced": 2,
        "complained": 1,
        "unsubscribed": 0,
        "delivered": 5,
        "severities": {"hard": 1, "soft": 1},
    }
    assert set(
        Suppression.objects.filter(owner=run.owner).values_list("email", "reason")
    ) >= {
        ("no-such-mailbox@example.com", "hard_bounce"),
        ("natalia.ivanova@example.net", "complaint"),
    }
