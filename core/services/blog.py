"""The moderated blog: covers, moderation, and what readers see.

An article's life:

    draft     → pending     its author submits it (a new article too)
    pending   → published   a moderator approves it
    pending   → rejected    a moderator rejects it, with a reason for the author
    published → rejected    a moderator takes it down, with a reason
    published → pending     its author changes it
    rejected  → pending     its author changes it and submits it again
    any       → draft       its author unticks "send to moderation"

Readers see published articles only. Public data is cached under a version
key that every change to an article replaces, so a new version never serves
what the old one cached.
"""

import html
import random
import re
from io import BytesIO
from uuid import uuid4

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.html import strip_tags
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from core.models import Article
from core.models.blog import ARTICLE_IMAGE_FORMATS

# --- cover images -----------------------------------------------------------

ARTICLE_IMAGE_MAX_BYTES = 5 * 1024 * 1024
# Beyond this many pixels (all frames together) a small file may still unpack
# into gigabytes.
ARTICLE_IMAGE_MAX_PIXELS = 40_000_000
NOT_AN_IMAGE = _(
    "This file is not a picture we accept. Upload a JPEG, PNG, WebP or GIF image."
)


def article_image_check_size(*, upload) -> None:
    """Refuse a file above the limit before anything reads it."""
    if upload.size > ARTICLE_IMAGE_MAX_BYTES:
        raise ValidationError(
            _("The image is %(size)s; the limit is %(limit)s."),
            code="too_large",
            params={
                "size": filesizeformat(upload.size),
                "limit": filesizeformat(ARTICLE_IMAGE_MAX_BYTES),
            },
        )


def article_image_clean(*, upload) -> ContentFile:
    """The uploaded cover, checked and encoded again by Pillow.

    Encoding again keeps only the picture: camera metadata (places, names)
    and anything hidden after the image data (a script in a "GIF") are gone.
    The name is ours, so the file is always served as the image it is.
    """
    # Pillow is imported here, by the one request that needs it, not by
    # every process that loads the blog's cache helpers.
    from PIL import Image, UnidentifiedImageError

    article_image_check_size(upload=upload)
    try:
        upload.seek(0)
        with Image.open(upload) as probe:
            image_format = probe.format
            width, height = probe.size
            probe.verify()
        if image_format not in ARTICLE_IMAGE_FORMATS:
            raise ValidationError(NOT_AN_IMAGE, code="invalid_image")
        if width * height > ARTICLE_IMAGE_MAX_PIXELS:
            raise ValidationError(
                _("The image is too large (%(width)d×%(height)d pixels)."),
                code="too_many_pixels",
                params={"width": width, "height": height},
            )
        # Every frame of an animation is decoded: 12 frames of 6000×6000 in
        # a 331 KB GIF took 1.2 GB. Counting frames reads no pixel data.
        upload.seek(0)
        with Image.open(upload) as probe:
            frames = getattr(probe, "n_frames", 1)
        if width * height * frames > ARTICLE_IMAGE_MAX_PIXELS:
            raise ValidationError(
                _(
                    "The animation is too large (%(frames)d frames of "
                    "%(width)d×%(height)d pixels)."
                ),
                code="too_many_pixels",
                params={"frames": frames, "width": width, "height": height},
            )
        upload.seek(0)
        output = BytesIO()
        with Image.open(upload) as image:
            _image_reencode(image=image, image_format=image_format, output=output)
    except ValidationError:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        ValueError,
        SyntaxError,
    ) as error:
        # What Pillow raises for a file that is not an image, a damaged one,
        # or one that would unpack into more pixels than memory holds.
        raise ValidationError(NOT_AN_IMAGE, code="invalid_image") from error
    extension = ARTICLE_IMAGE_FORMATS[image_format]
    return ContentFile(output.getvalue(), name=f"cover.{extension}")


def _image_reencode(*, image, image_format, output) -> None:
    from PIL import ImageOps

    animated = getattr(image, "n_frames", 1) > 1
    if image_format == "JPEG":
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(output, format="JPEG", quality=88, optimize=True)
    elif animated:
        image.save(output, format=image_format, save_all=True)
    else:
        image.save(output, format=image_format)


# --- moderation -------------------------------------------------------------


def article_author_save(*, article, author, changed: bool, submit: bool) -> Article:
    """An author saves their article.

    Submitted, it waits for a moderator (pending) unless it is published and
    nothing changed; not submitted, it is a draft only its author sees. An
    author can never publish: only a moderator's approval does that.
    """
    if article.pk is None:
        article.author = author
    if not submit:
        article.status = Article.Status.DRAFT
    elif changed or article.status != Article.Status.PUBLISHED:
        article.status = Article.Status.PENDING
    article.save()
    return article


def article_may_moderate(*, article, user) -> bool:
    """Moderators decide on other people's articles; a superuser on any."""
    if user.is_superuser:
        return True
    return user.has_perm("core.approve_article") and article.author_id != user.pk


def articles_approve(*, articles, actor) -> list[Article]:
    """Publish the pending ones of `articles` the actor may moderate."""
    approved = []
    now = timezone.now()
    with transaction.atomic():
        rows = Article.objects.filter(
            pk__in=[article.pk for article in articles],
            status=Article.Status.PENDING,
        ).select_for_update()
        for article in rows:
            if not article_may_moderate(article=article, user=actor):
                continue
            article.status = Article.Status.PUBLISHED
            # An edit approved again keeps the date it first appeared.
            article.published_at = article.published_at or now
            article.rejection_reason = ""
            article.save(
                update_fields=[
                    "status",
                    "published_at",
                    "rejection_reason",
                    "updated_at",
                ]
            )
            approved.append(article)
    return approved


def articles_reject(*, articles, actor, reason: str) -> list[Article]:
    """Reject pending (or take down published) articles, telling the author why."""
    reason = reason.strip()
    if not reason:
        raise ValueError("A rejection needs a reason.")
    rejected = []
    with transaction.atomic():
        rows = Article.objects.filter(
            pk__in=[article.pk for article in articles],
            status__in=[Article.Status.PENDING, Article.Status.PUBLISHED],
        ).select_for_update()
        for article in rows:
            if not article_may_moderate(article=article, user=actor):
                continue
            article.status = Article.Status.REJECTED
            article.rejection_reason = reason
            article.save(update_fields=["status", "rejection_reason", "updated_at"])
            rejected.append(article)
    return rejected


# --- what readers see, cached ---------------------------------------------------

BLOG_CACHE_SECONDS = 60 * 60
BLOG_PAGE_SIZE = 9
BLOG_FEED_SIZE = 20
HOME_ARTICLES = 3
# The home page draws its random articles from the latest ones: cheap with
# any number of articles, and no ORDER BY RANDOM() over the whole table.
HOME_POOL_SIZE = 60
EXCERPT_WORDS = 28
DESCRIPTION_CHARS = 200
VERSION_KEY = "core:blog:version"


def _version() -> str:
    version = cache.get(VERSION_KEY)
    if version is None:
        cache.add(VERSION_KEY, uuid4().hex, None)
        version = cache.get(VERSION_KEY)
    return version


def _cached(name: str, build):
    key = f"core:blog:{_version()}:{name}"
    value = cache.get(key)
    if value is None:
        value = build()
        if value is not None:
            cache.set(key, value, BLOG_CACHE_SECONDS)
    return value


def blog_cache_invalidate() -> None:
    """Retire everything cached for readers."""
    cache.set(VERSION_KEY, uuid4().hex, None)


def blog_cache_invalidate_on_commit() -> None:
    # Now, so this transaction reads fresh data; and again after the commit,
    # so nobody caches what was read while the change was not yet visible.
    blog_cache_invalidate()
    transaction.on_commit(blog_cache_invalidate)


def _text_of(body: str) -> str:
    """Plain text of the paragraphs: headings and lists make poor excerpts."""
    paragraphs = re.findall(r"<p>(.*?)</p>", body, flags=re.S) or [body]
    return " ".join(html.unescape(strip_tags(" ".join(paragraphs))).split())


def _card(article) -> dict:
    text = _text_of(article.body)
    return {
        "id": article.pk,
        "slug": article.slug,
        "url": article.get_absolute_url(),
        "title": article.title,
        "excerpt": Truncator(text).words(EXCERPT_WORDS),
        "description": Truncator(text).chars(DESCRIPTION_CHARS),
        "image_url": article.image.url if article.image else "",
        # Which colour a card without a cover gets: neighbours differ.
        "accent": article.pk % 4,
        "author_name": article.author.get_short_name(),
        "published_at": article.published_at,
        "updated_at": article.updated_at,
    }


def _published():
    return (
        Article.objects.published()
        .select_related("author")
        .defer("source")
        .order_by("-published_at", "-pk")
    )


def blog_page(*, number) -> dict:
    """One page of the article list; a wrong page number gives the nearest."""
    count = _cached("count", lambda: _published().count())
    pages = max(1, -(-count // BLOG_PAGE_SIZE))
    try:
        number = min(max(int(number), 1), pages)
    except (TypeError, ValueError):
        number = 1

    def build():
        start = (number - 1) * BLOG_PAGE_SIZE
        return [
            _card(article) for article in _published()[start : start + BLOG_PAGE_SIZE]
        ]

    articles = _cached(f"page:{number}", build)
    return {"articles": articles, "number": number, "pages": pages, "count": count}


def blog_article(*, slug: str) -> dict | None:
    """A published article for readers, or None (not published, or no such)."""

    def build():
        article = _published().filter(slug=slug).first()
        if article is None:
            return None
        return {**_card(article), "body": article.body}

    return _cached(f"article:{slug}", build)


def blog_article_count_view(*, article_id) -> int | None:
    """Count one view in the database, whatever the cache holds; return the
    new total, or None when the article is no longer published."""
    counted = (
        Article.objects.published()
        .filter(pk=article_id)
        .update(views_count=F("views_count") + 1)
    )
    if not counted:
        return None
    return (
        Article.objects.filter(pk=article_id)
        .values_list("views_count", flat=True)
        .first()
    )


def blog_feed_items() -> list[dict]:
    """The latest articles, whole, for the RSS feed."""
    return _cached(
        "feed",
        lambda: [
            {**_card(article), "body": article.body}
            for article in _published()[:BLOG_FEED_SIZE]
        ],
    )


def blog_home_articles(*, count: int = HOME_ARTICLES) -> list[dict]:
    """Up to `count` random published articles; fewer, or none, if so many
    do not exist."""
    pool = _cached(
        "home-pool",
        lambda: [_card(article) for article in _published()[:HOME_POOL_SIZE]],
    )
    return random.sample(pool, min(count, len(pool)))


def blog_sitemap_items() -> list[dict]:
    return _cached(
        "sitemap",
        lambda: list(
            Article.objects.published()
            .order_by("-published_at", "-pk")
            .values("slug", "updated_at")
        ),
    )
