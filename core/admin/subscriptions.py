"""Subscription forms: what each asks and records, its public page, and the
HTML snippet that puts it on another site."""

from django import forms
from django.contrib import admin
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from core.links import absolute_url
from core.models import Consent, Field, Message, SubscriptionForm, Tag
from core.services import subscriptions

from .base import OwnedAdmin, OwnedForm

PERSONAL_DATA_TEXT = _(
    "I agree to the processing of my personal data (e-mail, name and the "
    "answers above) to receive this mailing."
)
MARKETING_TEXT = _("I agree to receive advertising and news by e-mail.")


class SubscriptionFormForm(OwnedForm):
    redirect_url = forms.URLField(
        label=SubscriptionForm._meta.get_field("redirect_url").verbose_name,
        help_text=SubscriptionForm._meta.get_field("redirect_url").help_text,
        required=False,
        assume_scheme="https",
        max_length=200,
    )

    class Meta:
        model = SubscriptionForm
        fields = [
            "title",
            "slug",
            "intro",
            "ask_name",
            "fields",
            "required_fields",
            "tags",
            "personal_data_text",
            "ask_marketing",
            "marketing_text",
            "success_message",
            "redirect_url",
            "welcome_message",
            "is_published",
        ]
        widgets = {
            "fields": forms.CheckboxSelectMultiple,
            "required_fields": forms.CheckboxSelectMultiple,
            "tags": forms.CheckboxSelectMultiple,
            "intro": forms.Textarea(attrs={"rows": 3}),
            "personal_data_text": forms.Textarea(attrs={"rows": 3}),
            "marketing_text": forms.Textarea(attrs={"rows": 3}),
            "success_message": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        owner_id = self.instance.owner_id
        # The owner's own rows only: another's, posted by id, are refused.
        owned = {
            "fields": Field.objects.filter(owner_id=owner_id),
            "required_fields": Field.objects.filter(owner_id=owner_id),
            "tags": Tag.objects.filter(owner_id=owner_id),
            "welcome_message": Message.objects.filter(owner_id=owner_id),
        }
        for name, queryset in owned.items():
            if name in self.fields:
                self.fields[name].queryset = queryset
        if self.instance.pk is None:
            self.initial.setdefault("personal_data_text", str(PERSONAL_DATA_TEXT))
            self.initial.setdefault("marketing_text", str(MARKETING_TEXT))

    def clean_slug(self):
        slug = self.cleaned_data.get("slug")
        taken = (
            slug
            and SubscriptionForm.objects.filter(slug=slug)
            .exclude(pk=self.instance.pk)
            .exists()
        )
        if taken:
            raise forms.ValidationError(_("This address is taken. Choose another."))
        return slug

    def clean(self):
        cleaned = super().clean()
        asked = set(cleaned.get("fields") or ())
        extra = [
            f.label for f in cleaned.get("required_fields") or () if f not in asked
        ]
        if extra:
            self.add_error(
                "required_fields",
                _("Ask for a field to require it: %(fields)s.")
                % {"fields": ", ".join(extra)},
            )
        return cleaned


@admin.register(SubscriptionForm)
class SubscriptionFormAdmin(OwnedAdmin):
    form = SubscriptionFormForm
    list_display = ("title", "public_link", "is_published", "subscribers")
    list_filter = ("is_published",)
    search_fields = ("title", "slug")
    readonly_fields = ("public_link", "embed_code")
    fieldsets = (
        (None, {"fields": ("title", "slug", "intro", "is_published")}),
        (
            _("What it asks"),
            {"fields": ("ask_name", "fields", "required_fields")},
        ),
        (
            _("Consents"),
            {"fields": ("personal_data_text", "ask_marketing", "marketing_text")},
        ),
        (
            _("After confirmation"),
            {"fields": ("tags", "success_message", "redirect_url", "welcome_message")},
        ),
        (_("On your site"), {"fields": ("public_link", "embed_code")}),
    )

    def get_queryset(self, request):
        # Who confirmed through the form: its slug is their consents' source.
        confirmed = (
            Consent.objects.filter(source=OuterRef("slug"), owner=OuterRef("owner"))
            .order_by()
            .values("owner")
            .annotate(n=Count("client", distinct=True))
            .values("n")[:1]
        )
        return (
            super()
            .get_queryset(request)
            .annotate(subscriber_count=Coalesce(Subquery(confirmed), 0))
        )

    @admin.display(description=_("subscribers confirmed"), ordering="subscriber_count")
    def subscribers(self, obj):
        return obj.subscriber_count

    @admin.display(description=_("public page"))
    def public_link(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        url = absolute_url(obj.get_absolute_url())
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{}</a>', url, url
        )

    @admin.display(description=_("HTML for your site"))
    def embed_code(self, obj):
        if obj is None or obj.pk is None:
            return _("Save the form to get its code.")
        code = form_snippet(form=obj)
        return format_html(
            '<textarea readonly rows="12" class="form-control" id="embed-code">{}'
            "</textarea><div class='help'>{}</div>",
            code,
            _(
                "Paste it into a page of your site. It posts to this service, "
                "which answers with its own pages; protected against bots "
                "without any third party."
            ),
        )


def form_snippet(*, form) -> str:
    """The form as plain HTML for another site, with its lasting token."""
    questions = [
        (field, field in set(form.required_fields.all())) for field in form.fields.all()
    ]
    return render_to_string(
        "core/subscribe/embed.html",
        {
            "subscription": form,
            "action": absolute_url(reverse("subscribe", kwargs={"slug": form.slug})),
            "token": subscriptions.form_token(form=form, embedded=True),
            "questions": questions,
        },
    ).strip()
