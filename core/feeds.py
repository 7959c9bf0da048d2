"""The blog's RSS feed, with absolute links to SITE_URL whatever the Host."""

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.urls import reverse
from django.utils.translation import gettext as _

from .links import absolute_url
from .services import blog


class ArticleFeed(Feed):
    def title(self):
        return _("%(site)s: blog") % {"site": settings.SITE_NAME}

    def description(self):
        return _("Articles about e-mail mailings from the authors of %(site)s.") % {
            "site": settings.SITE_NAME
        }

    def link(self):
        return absolute_url(reverse("blog"))

    def feed_url(self):
        return absolute_url(reverse("blog_feed"))

    def items(self):
        return blog.blog_feed_items()

    def item_title(self, item):
        return item["title"]

    def item_description(self, item):
        return item["body"]

    def item_link(self, item):
        return absolute_url(item["url"])

    def item_guid(self, item):
        return absolute_url(item["url"])

    def item_author_name(self, item):
        return item["author_name"]

    def item_pubdate(self, item):
        return item["published_at"]

    def item_updateddate(self, item):
        return item["updated_at"]
