"""Recipients: the list, and its CSV import and export.

The Import and Export buttons and pages are django-import-export's,
bound to the requesting user's own list in `recipient_csv`.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AdminDateWidget
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.forms import ATTRIBUTE_PREFIX, attribute_form_field, attribute_values
from core.models import Client, Field, Segment, Tag
from core.models.users import email_normalize

from .base import OwnedAdmin, OwnedForm
from .recipient_csv import RecipientCSVMixin
from .recipient_privacy import DataRequestMixin


def _admin_input(field):
    """The custom field's input, with its variable as the help text."""
    input_field = attribute_form_field(field, date_widget=AdminDateWidget)
    input_field.help_text = "{{ client.attributes." + field.key + " }}"
    return input_field


class ClientForm(OwnedForm):
    # The owner's custom fields, one input each (ClientAdmin.get_form).
    owner_fields = ()

    class Meta:
        model = Client
        # The unsubscribe date is the recipient's, never the owner's to
        # clear: it is shown, read-only (DESIGN.md, List health).
        fields = ["email", "full_name", "comment", "tags"]
        widgets = {"tags": forms.CheckboxSelectMultiple}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.owner_fields:
            name = ATTRIBUTE_PREFIX + field.key
            if name in self.fields:
                self.initial.setdefault(name, self.instance.attributes.get(field.key))
        if "tags" in self.fields:
            # The owner's tags only: another user's, posted by id, fail
            # validation like a missing one.
            self.fields["tags"].queryset = Tag.objects.filter(
                owner_id=self.instance.owner_id
            )

    def clean_email(self):
        email = email_normalize(self.cleaned_data.get("email"))
        if self.owner_has(Client.objects.with_email(email)):
            raise forms.ValidationError(
                _("You already have a recipient with this e-mail.")
            )
        return email

    def clean(self):
        cleaned = super().clean()
        if self.owner_fields:
            self.instance.attributes = attribute_values(self, self.owner_fields)
        return cleaned


class TagFilter(admin.SimpleListFilter):
    title = _("tag")
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        # Only tags the user may see: the sidebar names nobody else's.
        tags = Tag.objects.visible_to(request.user).order_by("name")
        return [(str(tag.pk), tag.name) for tag in tags]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(tags=self.value())
        return queryset


class SegmentFilter(admin.SimpleListFilter):
    title = _("segment")
    parameter_name = "segment"

    def lookups(self, request, model_admin):
        segments = Segment.objects.visible_to(request.user).order_by("name")
        return [(str(segment.pk), segment.name) for segment in segments]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        segment = (
            Segment.objects.visible_to(request.user)
            .filter(pk=self.value() if self.value().isdigit() else None)
            .first()
        )
        if segment is None:  # not theirs, or gone: nobody, as for any id
            return queryset.none()
        return queryset.filter(owner_id=segment.owner_id).filter(segment.members_q())


class TagChoiceForm(forms.Form):
    tag = forms.ModelChoiceField(label=_("Tag"), queryset=Tag.objects.none())

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tag"].queryset = Tag.objects.filter(owner=owner)


class SubscriptionFilter(admin.SimpleListFilter):
    title = _("subscription")
    parameter_name = "subscribed"

    def lookups(self, request, model_admin):
        return [
            ("yes", _("subscribed")),
            ("no", _("unsubscribed")),
            ("unconfirmed", _("awaiting confirmation")),
        ]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.subscribed()
        if self.value() == "no":
            return queryset.unsubscribed().exclude(confirmed_at__isnull=True)
        if self.value() == "unconfirmed":
            return queryset.unconfirmed()
        return queryset


@admin.register(Client)
class ClientAdmin(RecipientCSVMixin, DataRequestMixin, OwnedAdmin):
    form = ClientForm
    list_display = ("email", "full_name", "comment", "unsubscribed_at", "created_at")
    list_filter = (SubscriptionFilter, TagFilter, SegmentFilter)
    search_fields = ("email", "full_name", "comment")
    readonly_fields = (
        "attributes_display",
        "consents_display",
        "source",
        "confirmed_at",
        "unsubscribed_at",
        "created_at",
        "updated_at",
    )
    actions = (
        "export_selected",
        "add_tag",
        "remove_tag",
        "export_data",
        "erase_selected",
    )
    fieldsets = (
        (_("Recipient"), {"fields": ("email", "full_name", "comment", "tags")}),
        (
            _("Subscription"),
            {
                "fields": (
                    "source",
                    "confirmed_at",
                    "unsubscribed_at",
                    "created_at",
                    "updated_at",
                    "consents_display",
                )
            },
        ),
    )

    @admin.display(description=_("consents"))
    def consents_display(self, obj):
        """How the recipient agreed, newest first: the proof, read-only."""
        consents = obj.consents.all()[:20] if obj.pk else []
        rows = [
            (
                formats.date_format(consent.at, "DATETIME_FORMAT"),
                consent.get_kind_display(),
                consent.get_action_display(),
                consent.source,
                reverse("admin:core_consent_change", args=[consent.pk]),
            )
            for consent in consents
        ]
        return (
            format_html_join("", '<div>{}: {}, {} ({}) <a href="{}">…</a></div>', rows)
            or "—"
        )

    # --- custom fields ---------------------------------------------------
    def _owner_fields(self, request, obj):
        owner_id = obj.owner_id if obj is not None else request.user.pk
        return list(Field.objects.filter(owner_id=owner_id))

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        fields = self._owner_fields(request, obj)
        if not fields:
            return fieldsets
        # Who may change the recipient gets an input per field; who may only
        # look (a manager) reads the values.
        if self.has_change_permission(request, obj):
            names = tuple(ATTRIBUTE_PREFIX + field.key for field in fields)
        else:
            names = ("attributes_display",)
        fieldsets.insert(1, (_("Custom fields"), {"fields": names}))
        return fieldsets

    def get_form(self, request, obj=None, change=False, **kwargs):
        fields = self._owner_fields(request, obj)
        if fields and self.has_change_permission(request, obj):
            declared = {
                ATTRIBUTE_PREFIX + field.key: _admin_input(field) for field in fields
            }
            kwargs["form"] = type(
                "ClientForm", (self.form,), {**declared, "owner_fields": fields}
            )
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description=_("custom fields"))
    def attributes_display(self, obj):
        fields = Field.objects.filter(owner_id=obj.owner_id)
        rows = [
            (field.label, field.display(obj.attributes.get(field.key)) or "—")
            for field in fields
        ]
        return format_html_join("", "<div><b>{}:</b> {}</div>", rows) or "—"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change and obj.unsubscribed_at is not None:
            self.message_user(
                request,
                _(
                    "%(email)s is suppressed since %(since)s (it unsubscribed "
                    "or was blocked): it was added as unsubscribed, and no "
                    "mailing reaches it."
                )
                % {
                    "email": obj.email,
                    "since": formats.date_format(obj.unsubscribed_at),
                },
                messages.WARNING,
            )

    # --- tags ------------------------------------------------------------
    def has_tag_permission(self, request):
        return self.works_here(request)

    @admin.action(
        description=_("Add a tag to selected recipients"), permissions=["tag"]
    )
    def add_tag(self, request, queryset):
        return self._tag_action(request, queryset, add=True)

    @admin.action(
        description=_("Remove a tag from selected recipients"), permissions=["tag"]
    )
    def remove_tag(self, request, queryset):
        return self._tag_action(request, queryset, add=False)

    def _tag_action(self, request, queryset, *, add):
        """A page to choose one of the user's tags; then it is added to (or
        taken from) the selected recipients the user owns."""
        action = "add_tag" if add else "remove_tag"
        form = TagChoiceForm(
            request.POST if "apply" in request.POST else None, owner=request.user
        )
        if form.is_bound and form.is_valid():
            tag = form.cleaned_data["tag"]
            mine = queryset.filter(owner=request.user)
            through = Client.tags.through
            if add:
                ids = set(mine.exclude(tags=tag).values_list("pk", flat=True))
                through.objects.bulk_create(
                    [through(client_id=pk, tag_id=tag.pk) for pk in ids],
                    ignore_conflicts=True,
                )
                text = ngettext(
                    "Tag “%(tag)s” added to %(count)d recipient.",
                    "Tag “%(tag)s” added to %(count)d recipients.",
                    len(ids),
                )
            else:
                ids = set(mine.filter(tags=tag).values_list("pk", flat=True))
                through.objects.filter(tag=tag, client_id__in=ids).delete()
                text = ngettext(
                    "Tag “%(tag)s” removed from %(count)d recipient.",
                    "Tag “%(tag)s” removed from %(count)d recipients.",
                    len(ids),
                )
            self.message_user(
                request, text % {"tag": tag.name, "count": len(ids)}, messages.SUCCESS
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Add a tag") if add else _("Remove a tag"),
            "opts": self.opts,
            "recipients": queryset.filter(owner=request.user),
            "form": form,
            "action": action,
            "has_tags": Tag.objects.filter(owner=request.user).exists(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/core/client/tag_action.html", context)
