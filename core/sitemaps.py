"""The sitemap: public pages and published articles, on SITE_URL."""

from django.conf import settings
from django.contrib.sitemaps import Sitemap
from django.urls import reverse

from .services import blog


class SiteSitemap(Sitemap):
    """Absolute links name SITE_URL, never the Host header of the request."""

    def get_domain(self, site=None):
        return settings.SITE_DOMAIN

    def get_protocol(self, protocol=None):
        return "https" if settings.SITE_USES_HTTPS else "http"


class PagesSitemap(SiteSitemap):
    changefreq = "weekly"

    def items(self):
        return ["home", "blog", "signup"]

    def location(self, item):
        return reverse(item)


class ArticleSitemap(SiteSitemap):
    changefreq = "monthly"

    def items(self):
        return blog.blog_sitemap_items()

    def location(self, item):
        return reverse("blog_article", args=[item["slug"]])

    def lastmod(self, item):
        return item["updated_at"]


SITEMAPS = {"pages": PagesSitemap, "articles": ArticleSitemap}
