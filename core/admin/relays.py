"""A client's own SMTP relay: where their mail goes out, and a test of it."""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from core.models import SmtpRelay
from core.services.mail.ratelimit import rate_parse
from core.services.relays import relay_test

from .base import OwnedAdmin, OwnedForm


class SmtpRelayForm(OwnedForm):
    # Never shown again once saved: empty keeps the saved one.
    new_password = forms.CharField(
        label=_("password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_(
            "Stored encrypted, never shown again. Leave empty to keep the saved one."
        ),
    )
    clear_password = forms.BooleanField(
        label=_("log in without a password"), required=False
    )

    class Meta:
        model = SmtpRelay
        fields = [
            "host",
            "port",
            "security",
            "username",
            "max_connections",
            "rate_limit",
            "is_active",
        ]

    def clean_rate_limit(self):
        value = (self.cleaned_data.get("rate_limit") or "").strip()
        if value:
            try:
                rate_parse(value)
            except ValueError as error:
                raise forms.ValidationError(str(error)) from error
        return value

    def clean(self):
        cleaned = super().clean()
        if self.owner_has() and self.instance.pk is None:
            raise forms.ValidationError(
                _("You have a relay already: change it, or delete it first.")
            )
        # Set before the model's checks, which judge the password with the
        # encryption (none is refused with one).
        if cleaned.get("clear_password"):
            self.instance.password_set("")
        elif password := cleaned.get("new_password"):
            self.instance.password_set(password)
        return cleaned


@admin.register(SmtpRelay)
class SmtpRelayAdmin(OwnedAdmin):
    form = SmtpRelayForm
    list_display = ("__str__", "security", "is_active", "checked_at", "state")
    actions = ["test_connection"]
    readonly_fields = ("checked_at", "problem")
    fieldsets = (
        (None, {"fields": ("host", "port", "security", "is_active")}),
        (_("Login"), {"fields": ("username", "new_password", "clear_password")}),
        (_("Limits"), {"fields": ("max_connections", "rate_limit")}),
        (_("Last connection"), {"fields": ("checked_at", "problem")}),
    )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        # Nothing to tell of a connection before the relay is saved.
        return fieldsets if obj is not None else fieldsets[:-1]

    @admin.display(description=_("state"))
    def state(self, obj):
        if obj.checked_at is None:
            return _("not tested yet")
        return obj.problem or _("works")

    @admin.action(description=_("Test connection"), permissions=["change"])
    def test_connection(self, request, queryset):
        for relay in queryset:
            problem = relay_test(relay)
            if problem:
                self.message_user(
                    request,
                    _("%(relay)s: %(problem)s") % {"relay": relay, "problem": problem},
                    messages.ERROR,
                )
            else:
                self.message_user(
                    request,
                    _("%(relay)s: connected and logged in.") % {"relay": relay},
                    messages.SUCCESS,
                )
