import uuid

from django.conf import settings
from django.core.validators import MaxLengthValidator
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .base import OwnedQuerySet
from .markup import (
    ARTICLE_SOURCE_MAX_LENGTH,
    SLUG_RESERVED,
    article_body_html,
    article_slug_base,
)

ARTICLE_TITLE_MAX_LENGTH = 200
# The cover formats we accept, and the extension each is stored under.
ARTICLE_IMAGE_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
ARTICLE_IMAGE_EXTENSIONS = frozenset({*ARTICLE_IMAGE_FORMATS.values(), "jpeg"})


def article_image_path(instance, filename):
    """A random name under the month: never the uploader's name or extension."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension not in ARTICLE_IMAGE_EXTENSIONS:
        extension = "img"
    return f"articles/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.{extension}"


class ArticleQuerySet(OwnedQuerySet):
    def published(self):
        """What readers may see: approved articles of authors not blocked."""
        return self.filter(status=Article.Status.PUBLISHED, author__is_active=True)

    def free_slug(self, *, title: str, exclude_pk=None) -> str:
        """The title's address, or it with -2, -3 … when that is taken."""
        base = article_slug_base(title=title)
        taken = set(
            self.filter(slug__startswith=base)
            .exclude(pk=exclude_pk)
            .values_list("slug", flat=True)
        )
        taken |= SLUG_RESERVED
        if base not in taken:
            return base
        number = 2
        while f"{base}-{number}" in taken:
            number += 1
        return f"{base}-{number}"


class Article(models.Model):
    """A blog post written by a user and published after a manager approves it."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        PENDING = "pending", _("awaiting moderation")
        PUBLISHED = "published", _("published")
        REJECTED = "rejected", _("rejected")

    # OwnedQuerySet, OwnedAdmin and the object-permission grants read the
    # owner from this field.
    owner_field = "author"

    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("author"),
        on_delete=models.CASCADE,
        related_name="articles",
        editable=False,
    )
    title = models.CharField(_("title"), max_length=ARTICLE_TITLE_MAX_LENGTH)
    slug = models.SlugField(
        _("address"),
        max_length=100,
        unique=True,
        editable=False,
        help_text=_("Made from the title; Cyrillic letters are transliterated."),
    )
    source = models.TextField(
        _("text"),
        max_length=ARTICLE_SOURCE_MAX_LENGTH,
        validators=[MaxLengthValidator(ARTICLE_SOURCE_MAX_LENGTH)],
        help_text=_(
            "Markdown: **bold**, *italic*, [link](https://example.com), "
            "lists, > quotes, ## headings. HTML is cleaned of anything unsafe."
        ),
    )
    body = models.TextField(
        _("text as HTML"),
        blank=True,
        editable=False,
        help_text=_("Made from the text and sanitized; this is what readers see."),
    )
    image = models.ImageField(
        _("cover image"),
        upload_to=article_image_path,
        blank=True,
        help_text=_("Optional. JPEG, PNG, WebP or GIF, up to 5 MB."),
    )
    # Only the moderation services move an article between statuses.
    status = models.CharField(
        _("status"), max_length=16, choices=Status, default=Status.DRAFT, editable=False
    )
    rejection_reason = models.TextField(
        _("moderator's note"),
        blank=True,
        editable=False,
        help_text=_("Why the article was rejected; shown to its author."),
    )
    published_at = models.DateTimeField(
        _("published"), null=True, blank=True, editable=False
    )
    views_count = models.PositiveIntegerField(_("views"), default=0, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("changed"), auto_now=True)

    objects = ArticleQuerySet.as_manager()

    class Meta:
        verbose_name = _("article")
        verbose_name_plural = _("articles")
        ordering = ["-published_at", "-created_at"]
        permissions = [("approve_article", _("Can approve and reject articles"))]
        indexes = [
            models.Index(
                fields=["status", "-published_at"], name="article_status_pub_idx"
            ),
            models.Index(
                fields=["author", "-created_at"], name="article_author_created_idx"
            ),
        ]

    def __str__(self):
        return self.title

    def save(self, *args, **kwargs):
        if getattr(self, "_markup_loaded", None) != (self.source, self.body):
            self.body = article_body_html(source=self.source, html=self.body)
            self._markup_loaded = (self.source, self.body)
        if not self._state.adding and kwargs.get("update_fields") is None:
            # Views are counted by UPDATEs of their own; an edit saved in the
            # meantime must not write back the count it loaded.
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name != "views_count"
            ]
        # The address follows the title until the article is first published;
        # after that links to it exist and it stays.
        regenerate = not self.slug or (
            self.published_at is None and self._title_changed()
        )
        if not regenerate:
            return super().save(*args, **kwargs)
        for attempt in range(5):
            self.slug = type(self).objects.free_slug(
                title=self.title, exclude_pk=self.pk
            )
            try:
                # A savepoint: another author may take the same address
                # between the check and the insert; then take the next one.
                with transaction.atomic():
                    return super().save(*args, **kwargs)
            except IntegrityError:
                taken = type(self).objects.filter(slug=self.slug)
                if attempt == 4 or not taken.exclude(pk=self.pk).exists():
                    raise

    def get_absolute_url(self):
        return reverse("blog_article", args=[self.slug])

    @classmethod
    def from_db(cls, db, field_names, values):
        article = super().from_db(db, field_names, values)
        # What the body was made from, so a save that changes neither (an
        # approval, a rejection) does not render the Markdown again.
        article._markup_loaded = (
            article.__dict__.get("source"),
            article.__dict__.get("body"),
        )
        return article

    def _title_changed(self) -> bool:
        if self.pk is None:
            return True
        saved = type(self).objects.filter(pk=self.pk).values_list("title", flat=True)
        return saved.first() != self.title

    @property
    def is_published(self):
        return self.status == self.Status.PUBLISHED
