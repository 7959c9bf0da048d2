"""Every asset a page loads is served by us: no CDN, no font service."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

pytestmark = pytest.mark.django_db

ASSET = re.compile(r'<(?:link|script|img)\b[^>]*\b(?:href|src)="([^"]+)"')


def assets_of(page: str) -> set[str]:
    return {url for url in ASSET.findall(page) if not url.startswith("#")}


def check_local(urls):
    for url in urls:
        assert url.startswith("/"), f"external asset {url}"
        if url.startswith("/static/") and url.endswith(".css"):
            path = finders.find(url.removeprefix("/static/").split("?")[0])
            assert path, f"missing static file {url}"
            css = open(path, encoding="utf-8", errors="replace").read()
            assert not re.search(r"@import\s+url\(\s*['\"]?https?:", css), url
            assert "fonts.googleapis" not in css, url


@pytest.mark.parametrize("name", ["home", "signup", "login", "password_reset", "blog"])
def test_public_pages_load_only_local_assets(client, name, published_article):
    page = client.get(reverse(name)).content.decode()
    urls = assets_of(page)
    assert any(url.endswith(".css") for url in urls)
    check_local(urls)


@pytest.fixture
def published_article(db, settings, tmp_path):
    """A published article with a cover, and a picture from elsewhere in it."""
    from django.core.files.base import ContentFile

    from .factories import ArticleFactory
    from .test_blog import image_bytes

    settings.MEDIA_ROOT = tmp_path
    article = ArticleFactory(
        source="![pixel](https://tracker.example/p.gif) ![own](/media/x.png)"
    )
    article.image.save("cover.png", ContentFile(image_bytes()), save=True)
    return article


def test_article_pages_load_only_local_assets(client, published_article):
    page = client.get(published_article.get_absolute_url()).content.decode()
    urls = assets_of(page)
    assert published_article.image.url in urls
    check_local(urls)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/core/client/",
        "/admin/core/mailing/add/",
        "/admin/core/attempt/",
    ],
)
def test_admin_pages_load_only_local_assets(client, superuser, path):
    client.force_login(superuser)
    page = client.get(path).content.decode()
    urls = assets_of(page)
    assert any(url.endswith(".css") for url in urls)
    check_local(urls)
