"""The public site: home figures, the blog, its feed and sitemap, and caching.

Readers see published articles only; what is cached holds nothing personal
and gives way as soon as what it shows changes; every view is counted.
"""

import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from core.models import Article, Client, Mailing
from core.services import blog

from .factories import ArticleFactory, ClientFactory, MailingFactory, UserFactory
from .test_blog import image_bytes

pytestmark = pytest.mark.django_db

PUBLISHED, PENDING = Article.Status.PUBLISHED, Article.Status.PENDING
DRAFT, REJECTED = Article.Status.DRAFT, Article.Status.REJECTED


@pytest.fixture
def anna(db):
    return UserFactory(
        email="anna@example.com",
        full_name="Анна Смирнова",
        verified=True,
        groups=["clients"],
    )


@pytest.fixture
def articles(anna):
    return {
        status: ArticleFactory(author=anna, title=f"Статья {status}", status=status)
        for status in Article.Status.values
    }


def english(client):
    client.cookies["django_language"] = "en"


# --- what readers see --------------------------------------------------------


def test_the_list_shows_published_articles_only(client, articles):
    page = client.get(reverse("blog")).content.decode()
    assert "Статья published" in page
    for status in (DRAFT, PENDING, REJECTED):
        assert f"Статья {status}" not in page


@pytest.mark.parametrize("status", [DRAFT, PENDING, REJECTED])
def test_an_unpublished_article_answers_like_a_missing_one(client, articles, status):
    hidden = client.get(articles[status].get_absolute_url())
    missing = client.get(reverse("blog_article", args=["no-such-article"]))
    assert hidden.status_code == missing.status_code == 404
    assert articles[status].title not in hidden.content.decode()
    articles[status].refresh_from_db()
    assert articles[status].views_count == 0


def test_even_the_author_does_not_read_a_pending_article_on_the_site(
    client, articles, anna
):
    client.force_login(anna)
    assert client.get(articles[PENDING].get_absolute_url()).status_code == 404


def test_the_article_page_shows_the_article(client, articles):
    article = articles[PUBLISHED]
    page = client.get(article.get_absolute_url()).content.decode()
    assert f'<h1 class="mb-3">{article.title}</h1>' in page
    assert "<strong>правильно</strong>" in page
    assert "Анна Смирнова" in page


def test_the_article_page_tells_what_to_show_when_shared(
    client, anna, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    article = ArticleFactory(author=anna, title="Письма, которые читают")
    article.image.save("c.png", ContentFile(image_bytes()), save=True)
    page = client.get(article.get_absolute_url()).content.decode()
    url = f"{settings.SITE_URL}{article.get_absolute_url()}"
    assert '<meta property="og:title" content="Письма, которые читают">' in page
    assert '<meta property="og:type" content="article">' in page
    assert f'<meta property="og:url" content="{url}">' in page
    assert (
        f'<meta property="og:image" content="{settings.SITE_URL}{article.image.url}">'
        in page
    )
    description = re.search(r'<meta name="description" content="([^"]*)"', page)
    assert description.group(1).startswith("Как правильно писать письма")
    assert "<title>Письма, которые читают — " in page


def test_the_list_is_paginated(client, anna):
    for number in range(blog.BLOG_PAGE_SIZE + 2):
        ArticleFactory(
            author=anna,
            title=f"Номер {number:02d}",
            published_at=timezone.now() - timedelta(days=number),
        )
    first = client.get(reverse("blog")).content.decode()
    second = client.get(reverse("blog"), {"page": 2}).content.decode()
    assert "Номер 00" in first and "Номер 08" in first and "Номер 09" not in first
    assert "Номер 09" in second and "Номер 10" in second and "Номер 00" not in second
    assert "Номер 00" in client.get(reverse("blog"), {"page": "x"}).content.decode()
    assert "Номер 10" in client.get(reverse("blog"), {"page": 99}).content.decode()


def test_an_empty_blog_says_so(client):
    english(client)
    response = client.get(reverse("blog"))
    assert response.status_code == 200
    assert "No articles yet" in response.content.decode()


@pytest.mark.parametrize("language", ["ru", "en"])
def test_blog_pages_speak_both_languages(client, articles, language):
    client.cookies["django_language"] = language
    for path in (reverse("blog"), articles[PUBLISHED].get_absolute_url(), "/"):
        page = client.get(path).content.decode()
        assert f'<html lang="{language}">' in page
        assert ("Войти" if language == "ru" else "Log in") in page
        assert "Статья published" in page


# --- the home page -----------------------------------------------------------


def test_home_shows_the_services_figures(client):
    first = MailingFactory()
    second = MailingFactory(owner=first.owner)
    MailingFactory(completed=True)
    MailingFactory(is_enabled=False)  # switched off by a manager
    ClientFactory(owner=first.owner, email="same@example.com")
    ClientFactory(email="SAME@example.com")
    ClientFactory(owner=second.owner, email="other@example.com")
    page = client.get("/").content.decode()
    assert '<div class="display-6 text-primary" id="figure-mailings-total">4<' in page
    assert 'id="figure-mailings-active">2<' in page
    assert 'id="figure-recipients-unique">2<' in page


@pytest.mark.parametrize("published", [0, 1, 2, 3, 7])
def test_home_shows_up_to_three_random_published_articles(client, anna, published):
    for number in range(published):
        ArticleFactory(author=anna, title=f"Опубликована {number}")
    ArticleFactory(author=anna, title="Ждёт модерации", status=PENDING)
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="card h-100 article-card"') == min(published, 3)
    assert "Ждёт модерации" not in page
    assert ('id="home-articles-title"' in page) == (published > 0)


def test_home_articles_are_drawn_at_random(client, anna):
    for number in range(8):
        ArticleFactory(author=anna, title=f"Случайная {number}")
    seen = set()
    for _ in range(20):
        seen |= set(re.findall(r"Случайная \d", client.get("/").content.decode()))
    assert len(seen) > 3


# --- feed and sitemap --------------------------------------------------------


def test_the_feed_lists_published_articles_with_absolute_links(
    client, articles, settings
):
    response = client.get(reverse("blog_feed"))
    assert response["Content-Type"].startswith("application/rss+xml")
    channel = ElementTree.fromstring(response.content).find("channel")
    items = channel.findall("item")
    assert [item.findtext("title") for item in items] == ["Статья published"]
    link = items[0].findtext("link")
    assert link == settings.SITE_URL + articles[PUBLISHED].get_absolute_url()
    assert "<strong>правильно</strong>" in items[0].findtext("description")


def test_the_sitemap_lists_pages_and_published_articles(client, articles, settings):
    response = client.get("/sitemap.xml")
    assert response.status_code == 200
    namespace = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locations = [
        loc.text
        for loc in ElementTree.fromstring(response.content).findall(
            "s:url/s:loc", namespace
        )
    ]
    assert settings.SITE_URL + "/" in locations
    assert settings.SITE_URL + articles[PUBLISHED].get_absolute_url() in locations
    for status in (DRAFT, PENDING, REJECTED):
        assert not any(articles[status].slug in loc for loc in locations)


def test_links_name_the_site_not_the_host_header(client, articles, settings):
    feed = client.get(reverse("blog_feed"), HTTP_HOST="evil.example").content
    sitemap = client.get("/sitemap.xml", HTTP_HOST="evil.example").content
    assert b"evil.example" not in feed and b"evil.example" not in sitemap


# --- caching -----------------------------------------------------------------


def test_a_cached_list_is_served_without_touching_the_database(
    client, articles, django_assert_num_queries
):
    client.get(reverse("blog"))
    with django_assert_num_queries(0):
        assert "Статья published" in client.get(reverse("blog")).content.decode()


def test_views_are_counted_on_every_view_even_from_the_cache(
    client, articles, django_assert_num_queries
):
    english(client)
    article = articles[PUBLISHED]
    client.get(article.get_absolute_url())
    # Cached: one UPDATE counts the view and one SELECT reads the total.
    with django_assert_num_queries(2):
        page = client.get(article.get_absolute_url()).content.decode()
    assert re.search(
        r'id="article-views"[^>]*><i class="far fa-eye"></i> 2 views', page
    )
    client.get(article.get_absolute_url())
    article.refresh_from_db()
    assert article.views_count == 3


def test_an_edit_saved_meanwhile_does_not_lose_counted_views(articles):
    article = articles[PUBLISHED]
    opened_for_editing = Article.objects.get(pk=article.pk)
    blog.blog_article_count_view(article_id=article.pk)
    blog.blog_article_count_view(article_id=article.pk)
    opened_for_editing.title = "Исправленное название"
    opened_for_editing.save()
    article.refresh_from_db()
    assert (article.title, article.views_count) == ("Исправленное название", 2)


def test_an_approved_article_appears_at_once(client, articles, manager):
    client.get(reverse("blog"))
    client.get("/")
    blog.articles_approve(articles=[articles[PENDING]], actor=manager)
    assert "Статья pending" in client.get(reverse("blog")).content.decode()
    assert "Статья pending" in client.get("/").content.decode()
    assert client.get(articles[PENDING].get_absolute_url()).status_code == 200


def test_an_edited_article_leaves_the_cached_pages_at_once(client, articles, anna):
    article = articles[PUBLISHED]
    assert client.get(article.get_absolute_url()).status_code == 200
    client.get(reverse("blog"))
    blog.article_author_save(article=article, author=anna, changed=True, submit=True)
    assert client.get(article.get_absolute_url()).status_code == 404
    assert "Статья published" not in client.get(reverse("blog")).content.decode()
    assert "Статья published" not in client.get(reverse("blog_feed")).content.decode()


def test_a_rejected_or_deleted_article_leaves_the_cached_pages(
    client, articles, manager
):
    article = articles[PUBLISHED]
    other = ArticleFactory(author=article.author, title="Вторая")
    for item in (article, other):
        client.get(item.get_absolute_url())
    blog.articles_reject(articles=[article], actor=manager, reason="Устарело")
    other.delete()
    assert client.get(article.get_absolute_url()).status_code == 404
    assert client.get(other.get_absolute_url()).status_code == 404


def test_a_renamed_author_shows_at_once(client, articles, anna):
    client.get(articles[PUBLISHED].get_absolute_url())
    anna.full_name = "Анна Петрова"
    anna.save()
    assert (
        "Анна Петрова"
        in client.get(articles[PUBLISHED].get_absolute_url()).content.decode()
    )


def test_home_figures_follow_new_mailings_and_recipients_on_schedule(client):
    from core.tasks import site_figures_refresh

    mailing = MailingFactory()
    client.get("/")
    MailingFactory(owner=mailing.owner)
    Client.objects.create(owner=mailing.owner, email="new@example.com")
    site_figures_refresh()
    page = client.get("/").content.decode()
    assert 'id="figure-mailings-total">2<' in page
    assert 'id="figure-recipients-unique">1<' in page
    Mailing.objects.get(pk=mailing.pk).delete()
    site_figures_refresh()
    assert 'id="figure-mailings-total">1<' in client.get("/").content.decode()


def test_adding_an_address_does_not_tell_whether_another_client_has_it(client):
    """A client added an address and watched the unique-recipients figure:
    unchanged meant it was on someone else's list."""
    ClientFactory(email="secret@example.org")
    first = client.get("/").content.decode()
    assert 'id="figure-recipients-unique">1<' in first
    ClientFactory(email="probe-1@example.org")
    ClientFactory(email="SECRET@example.org")
    page = client.get("/").content.decode()
    assert 'id="figure-recipients-unique">1<' in page  # until the next refresh


def test_nothing_personal_is_served_from_the_cache(client, articles, anna):
    paths = ("/", reverse("blog"), articles[PUBLISHED].get_absolute_url())
    client.force_login(anna)
    for path in paths:
        assert 'href="/profile/"' in client.get(path).content.decode()
    client.logout()
    for path in paths:
        page = client.get(path).content.decode()
        assert 'href="/profile/"' not in page
        assert f'action="{reverse("logout")}"' not in page


def test_each_visitor_gets_their_own_csrf_token(client, articles):
    from django.test import Client as Browser

    path = articles[PUBLISHED].get_absolute_url()
    first = Browser().get(path).content.decode()
    second = Browser().get(path).content.decode()
    token = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
    assert token.search(first).group(1) != token.search(second).group(1)


def test_every_page_carries_a_content_security_policy(client, anna):
    """Scripts from this site only, never inline; the admin theme's inline
    styles are allowed."""
    client.force_login(anna)
    for path in ("/", reverse("blog"), "/admin/", "/admin/core/client/"):
        policy = client.get(path)["Content-Security-Policy"]
        directives = dict(
            (part.split(" ", 1) + [""])[:2] for part in policy.split("; ")
        )
        assert directives["script-src"] == "'self'"
        assert directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert "'unsafe-inline'" in directives["style-src"]
    change_list = client.get("/admin/core/client/").content.decode()
    # The theme's change list reads globals its inline script would set.
    assert change_list.index("core/js/jazzmin-csp.js") < change_list.index(
        "jazzmin/js/change_list.js"
    )
