"""Recipients: the list, and its CSV import and export.

The Import and Export buttons and pages are django-import-export's,
bound to the requesting user's own list in `recipient_csv`.
"""

from django import forms
from django.contrib import admin, messages
from django.utils import formats
from django.utils.translation import gettext_lazy as _

from core.models import Client

from .base import OwnedAdmin
from .recipient_csv import RecipientCSVMixin


class ClientForm(forms.ModelForm):
    class Meta:
        model = Client
        # The unsubscribe date is the recipient's, never the owner's to
        # clear: it is shown, read-only (DESIGN.md, List health).
        fields = ["email", "full_name", "comment"]

    def clean_email(self):
        email = (self.cleaned_data.get("email") or "").strip().lower()
        owner_id = self.instance.owner_id or self.request_user.pk
        duplicate = (
            Client.objects.filter(owner_id=owner_id, email__iexact=email)
            .exclude(pk=self.instance.pk)
            .exists()
        )
        if duplicate:
            raise forms.ValidationError(
                _("You already have a recipient with this e-mail.")
            )
        return email


class SubscriptionFilter(admin.SimpleListFilter):
    title = _("subscription")
    parameter_name = "subscribed"

    def lookups(self, request, model_admin):
        return [("yes", _("subscribed")), ("no", _("unsubscribed"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.subscribed()
        if self.value() == "no":
            return queryset.unsubscribed()
        return queryset


@admin.register(Client)
class ClientAdmin(RecipientCSVMixin, OwnedAdmin):
    form = ClientForm
    list_display = ("email", "full_name", "comment", "unsubscribed_at", "created_at")
    list_filter = (SubscriptionFilter,)
    search_fields = ("email", "full_name", "comment")
    readonly_fields = ("unsubscribed_at", "created_at", "updated_at")
    actions = ("export_selected",)
    fieldsets = (
        (_("Recipient"), {"fields": ("email", "full_name", "comment")}),
        (
            _("Subscription"),
            {"fields": ("unsubscribed_at", "created_at", "updated_at")},
        ),
    )

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
