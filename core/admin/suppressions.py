"""Suppressions: what no mailing may reach, shown and (manual ones) lifted.

Owners see theirs and may add an address by hand; nobody changes one.
Managers see every owner's and the service's; a manager or superuser lifts a
manual one (logged in its owner's history), and nobody lifts the others.
"""

from django import forms
from django.contrib import admin, messages
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.models import Suppression
from core.models.base import sees_all
from core.models.grants import perm_name
from core.models.users import email_normalize

from .base import RecordAdmin


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ["email", "detail"]

    def clean_email(self):
        email = email_normalize(self.cleaned_data.get("email"))
        validate_email(email)
        owner = self.request_user
        if Suppression.objects.filter(
            owner=owner, email=email, reason=Suppression.Reason.MANUAL
        ).exists():
            raise forms.ValidationError(_("This address is suppressed already."))
        return email


@admin.register(Suppression)
class SuppressionAdmin(RecordAdmin):
    owners_perm = perm_name(Suppression, "add")
    form = SuppressionForm
    list_display = ("email", "reason", "detail", "created_at")
    list_filter = ("reason",)
    search_fields = ("email",)
    fields = ("email", "reason", "detail", "created_at")
    readonly_fields = ("created_at",)
    actions = ("lift",)

    def get_search_fields(self, request):
        fields = list(super().get_search_fields(request))
        if sees_all(request.user, Suppression):
            fields.append("owner__email")
        return fields

    def has_add_permission(self, request):
        return request.user.has_perm(perm_name(Suppression, "add"))

    def has_change_permission(self, request, obj=None):
        return False  # a record: it stands as it was written

    def has_delete_permission(self, request, obj=None):
        return False  # lifting is an action, for manual ones only

    def has_lift_permission(self, request):
        user = request.user
        return user.is_superuser or user.has_perm("core.lift_suppression")

    def get_fields(self, request, obj=None):
        # Added by hand is the only reason a person may give.
        return self.fields if obj is not None else ("email", "detail")

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.request_user = request.user
        return form

    def save_model(self, request, obj, form, change):
        obj.owner = request.user
        obj.reason = Suppression.Reason.MANUAL
        super().save_model(request, obj, form, change)

    @admin.action(
        description=_("Lift selected manual suppressions"), permissions=["lift"]
    )
    def lift(self, request, queryset):
        lifted = list(queryset.liftable())
        kept = queryset.count() - len(lifted)
        # In the history as deletions by whoever lifted them.
        self.log_deletions(request, lifted)
        Suppression.objects.filter(pk__in=[s.pk for s in lifted]).delete()
        if lifted:
            self.message_user(
                request,
                ngettext(
                    "%(count)d suppression lifted.",
                    "%(count)d suppressions lifted.",
                    len(lifted),
                )
                % {"count": len(lifted)},
                messages.SUCCESS,
            )
        if kept:
            self.message_user(
                request,
                ngettext(
                    "%(count)d suppression kept: only manual ones may be lifted.",
                    "%(count)d suppressions kept: only manual ones may be lifted.",
                    kept,
                )
                % {"count": kept},
                messages.WARNING,
            )
