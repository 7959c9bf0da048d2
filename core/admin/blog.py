"""Blog articles: authors write their own, moderators approve or reject.

- Any verified user (group `clients`, global `add_article`) writes articles
  and sees, edits and deletes only their own.
- Saving sends the article to moderation (pending); the status is not in the
  author's form, so no request of theirs can publish it.
- Moderators (global `view_article` and `approve_article`) see every article
  read-only and approve or reject it, with a reason the author reads.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.models import Article
from core.services import blog

from .base import OwnedAdmin

STATUS_COLOURS = {
    Article.Status.DRAFT: "secondary",
    Article.Status.PENDING: "warning",
    Article.Status.PUBLISHED: "success",
    Article.Status.REJECTED: "danger",
}


class ArticleImageField(forms.ImageField):
    """A cover: the size is checked before Pillow reads a byte of it."""

    def to_python(self, data):
        if data is not None and getattr(data, "size", None) is not None:
            blog.article_image_check_size(upload=data)
        checked = super().to_python(data)
        if checked is None:
            return None
        return blog.article_image_clean(upload=checked)


class ArticleForm(forms.ModelForm):
    submit = forms.BooleanField(
        label=_("Send to moderation"),
        required=False,
        initial=True,
        help_text=_(
            "A moderator reads the article before it appears on the site, and "
            "again after every change. Untick to keep a draft: it stays off the "
            "site, and only you and the service's managers (read-only) see it."
        ),
    )

    class Meta:
        model = Article
        fields = ["title", "source", "image"]
        field_classes = {"image": ArticleImageField}
        widgets = {
            "title": forms.TextInput(attrs={"style": "width: 100%"}),
            "source": forms.Textarea(attrs={"rows": 20, "style": "width: 100%"}),
            "image": forms.ClearableFileInput(
                attrs={"accept": "image/jpeg,image/png,image/webp,image/gif"}
            ),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.status == Article.Status.DRAFT:
            self.fields["submit"].initial = False

    def clean_title(self):
        return " ".join(self.cleaned_data["title"].split())


class RejectForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("The author reads this next to the article."),
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError(_("Tell the author why."))
        return reason


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Article.Status.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(status=self.value())
        return queryset


@admin.register(Article)
class ArticleAdmin(OwnedAdmin):
    form = ArticleForm
    list_display = (
        "title",
        "status_badge",
        "published_at",
        "views_count",
        "updated_at",
    )
    list_filter = (StatusFilter,)
    search_fields = ("title",)
    list_select_related = ("author",)
    actions = ("approve_articles", "reject_articles")
    readonly_fields = (
        "status_badge",
        "moderator_note",
        "slug",
        "published_at",
        "views_count",
        "created_at",
        "updated_at",
        "preview",
    )

    def get_fieldsets(self, request, obj=None):
        writes = obj is None or self.has_change_permission(request, obj)
        main = ["title", "source", "image"] + (["submit"] if writes else [])
        if obj is not None and self._sees_authors(request):
            main.insert(0, "author")
        fieldsets = [(None, {"fields": main})]
        if obj is not None:
            fieldsets += [
                (
                    _("Moderation"),
                    {
                        "fields": (
                            "status_badge",
                            "moderator_note",
                            "slug",
                            "published_at",
                            "views_count",
                            ("created_at", "updated_at"),
                        )
                    },
                ),
                (_("As readers will see it"), {"fields": ("preview",)}),
            ]
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and self._sees_authors(request):
            readonly.append("author")
        return readonly

    def _sees_authors(self, request):
        return self.sees_all(request)

    # --- columns and read-only fields ------------------------------------
    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        return format_html(
            '<span class="badge bg-{}">{}</span>',
            STATUS_COLOURS[obj.status],
            obj.get_status_display(),
        )

    @admin.display(description=_("moderator's note"))
    def moderator_note(self, obj):
        return obj.rejection_reason or "—"

    @admin.display(description=_("text"))
    def preview(self, obj):
        # The body is sanitized whenever the article is saved or loaded.
        return format_html(
            '<div class="article-preview border rounded p-3">{}</div>',
            mark_safe(obj.body),
        )

    def view_on_site(self, obj):
        return obj.get_absolute_url() if obj.is_published else None

    # --- pages -----------------------------------------------------------
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/moderate/",
                self.admin_site.admin_view(self.moderate_view),
                name="{}_{}_moderate".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        tools = []
        if obj is not None and request.method == "GET":
            if obj.status == Article.Status.REJECTED and obj.rejection_reason:
                self.message_user(
                    request,
                    _("A moderator rejected this article: %(reason)s")
                    % {"reason": obj.rejection_reason},
                    messages.WARNING,
                )
            awaiting = obj.status in (Article.Status.PENDING, Article.Status.PUBLISHED)
            if awaiting and self._may_moderate(request, obj):
                tools.append(
                    {
                        "url": reverse("admin:core_article_moderate", args=[obj.pk]),
                        "label": _("Approve or reject"),
                    }
                )
        extra_context = {**(extra_context or {}), "extra_object_tools": tools}
        return super().change_view(request, object_id, form_url, extra_context)

    def moderate_view(self, request, object_id):
        """One article, as readers would see it, with the two decisions."""
        article = self.get_object(request, object_id)
        if article is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self._may_moderate(request, article):
            raise PermissionDenied
        form = RejectForm()
        if request.method == "POST":
            decision = request.POST.get("decision")
            if decision == "approve":
                self._approve(request, [article])
                return redirect("admin:core_article_change", article.pk)
            if decision == "reject":
                form = RejectForm(request.POST)
                if form.is_valid():
                    self._reject(request, [article], form.cleaned_data["reason"])
                    return redirect("admin:core_article_change", article.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": article,
            "title": _("Moderate: %(title)s") % {"title": article.title},
            "form": form,
            "can_approve": article.status == Article.Status.PENDING,
            "can_reject": article.status
            in (Article.Status.PENDING, Article.Status.PUBLISHED),
        }
        return TemplateResponse(request, "admin/core/article/moderate.html", context)

    # --- writing ---------------------------------------------------------
    def save_model(self, request, obj, form, change):
        blog.article_author_save(
            article=obj,
            author=request.user,
            changed=bool(set(form.changed_data) - {"submit"}),
            submit=form.cleaned_data.get("submit", False),
        )

    def response_add(self, request, obj, post_url_continue=None):
        self._say_status(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        self._say_status(request, obj)
        return super().response_change(request, obj)

    def _say_status(self, request, obj):
        if obj.status == Article.Status.PENDING:
            self.message_user(
                request,
                _(
                    "The article awaits moderation; it appears on the site once a "
                    "moderator approves it."
                ),
                messages.INFO,
            )
        elif obj.status == Article.Status.DRAFT:
            self.message_user(
                request,
                _(
                    "The article is a draft: it is not on the site, and only "
                    "you and the service's managers (read-only) see it."
                ),
                messages.INFO,
            )

    # --- moderation --------------------------------------------------------
    def has_approve_permission(self, request):
        return request.user.has_perm("core.approve_article")

    def _may_moderate(self, request, obj):
        return self.has_approve_permission(request) and blog.article_may_moderate(
            article=obj, user=request.user
        )

    @admin.action(
        description=_("Approve and publish selected articles"),
        permissions=["approve"],
    )
    def approve_articles(self, request, queryset):
        self._approve(request, list(queryset))

    @admin.action(
        description=_("Reject selected articles…"),
        permissions=["approve"],
    )
    def reject_articles(self, request, queryset):
        form = RejectForm(request.POST if request.POST.get("post") else None)
        if form.is_valid():
            self._reject(request, list(queryset), form.cleaned_data["reason"])
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Reject articles"),
            "articles": queryset,
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/core/article/reject.html", context)

    def _approve(self, request, articles):
        approved = blog.articles_approve(articles=articles, actor=request.user)
        for article in approved:
            self.log_change(request, article, _("Approved and published."))
        self.message_user(
            request,
            ngettext(
                "%(count)d article published.",
                "%(count)d articles published.",
                len(approved),
            )
            % {"count": len(approved)},
            messages.SUCCESS if approved else messages.WARNING,
        )
        self._say_skipped(request, articles, approved)

    def _reject(self, request, articles, reason):
        rejected = blog.articles_reject(
            articles=articles, actor=request.user, reason=reason
        )
        for article in rejected:
            self.log_change(
                request, article, _("Rejected: %(reason)s") % {"reason": reason}
            )
        self.message_user(
            request,
            ngettext(
                "%(count)d article rejected.",
                "%(count)d articles rejected.",
                len(rejected),
            )
            % {"count": len(rejected)},
            messages.SUCCESS if rejected else messages.WARNING,
        )
        self._say_skipped(request, articles, rejected)

    def _say_skipped(self, request, articles, done):
        done_ids = {article.pk for article in done}
        skipped = [article.title for article in articles if article.pk not in done_ids]
        if skipped:
            self.message_user(
                request,
                _(
                    "Left as they were (not awaiting this decision, or your own): "
                    "%(titles)s"
                )
                % {"titles": ", ".join(skipped)},
                messages.WARNING,
            )
