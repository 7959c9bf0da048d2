from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.models import User
from core.models.users import quotas_check
from core.services.accounts import users_set_active, users_set_quota, users_set_sending
from core.services.quotas import quota_of, usage_of


class UserCreationAdminForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("email", "full_name")


class UserChangeAdminForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class SuspendSendingForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason, shown to the user"),
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class SendingQuotaForm(forms.Form):
    daily_quota = forms.IntegerField(
        label=_("Messages a day"),
        min_value=0,
        required=False,
        widget=forms.NumberInput(attrs={"class": "form-control w-auto"}),
        help_text=_("Empty: the service's default. 0 stops their sending."),
    )
    monthly_quota = forms.IntegerField(
        label=_("Messages a calendar month"),
        min_value=0,
        required=False,
        widget=forms.NumberInput(attrs={"class": "form-control w-auto"}),
        help_text=_("Empty: the service's default. 0 stops their sending."),
    )

    def clean(self):
        cleaned = super().clean()
        quotas_check(cleaned.get("daily_quota"), cleaned.get("monthly_quota"))
        return cleaned


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    list_display = (
        "email",
        "full_name",
        "is_active",
        "sending",
        "quota",
        "email_verified_at",
        "is_staff",
        "date_joined",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")
    search_fields = ("email", "full_name")
    ordering = ("email",)
    readonly_fields = (
        "last_login",
        "date_joined",
        "sending_suspended_at",
        "sending_suspended_reason",
        "quota_usage",
    )
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Personal info"), {"fields": ("full_name",)}),
        (
            _("Access"),
            {
                "fields": (
                    "is_active",
                    "sending_suspended_at",
                    "sending_suspended_reason",
                    "daily_quota",
                    "monthly_quota",
                    "quota_usage",
                    "email_verified_at",
                    "is_staff",
                    "is_superuser",
                    "groups",
                    "user_permissions",
                )
            },
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    actions = (
        "block_users",
        "unblock_users",
        "suspend_sending",
        "resume_sending",
        "set_sending_quota",
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "full_name", "password1", "password2"),
            },
        ),
    )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or request.user.is_superuser:
            return fieldsets
        # Managers oversee people, not their password hashes or permissions.
        return (
            (None, {"fields": ("email",)}),
            (_("Personal info"), {"fields": ("full_name",)}),
            (
                _("Access"),
                {
                    "fields": (
                        "is_active",
                        "sending_suspended_at",
                        "sending_suspended_reason",
                        "daily_quota",
                        "monthly_quota",
                        "quota_usage",
                        "email_verified_at",
                        "groups",
                    )
                },
            ),
            (_("Important dates"), {"fields": ("last_login", "date_joined")}),
        )

    @admin.display(description=_("may send"), boolean=True)
    def sending(self, obj):
        return obj.sending_suspended_at is None

    @admin.display(description=_("quota a day / month"))
    def quota(self, obj):
        quota = quota_of(obj)
        return " / ".join(
            "∞" if limit is None else f"{limit:,}".replace(",", "\u00a0")
            for limit in (quota.daily, quota.monthly)
        )

    @admin.display(description=_("sent today / this month"))
    def quota_usage(self, obj):
        if obj.pk is None:
            return "—"
        usage = usage_of(obj)
        text = _(
            "%(today)d of %(daily)s today; %(month)d of %(monthly)s this month"
        ) % {
            "today": usage.today,
            "daily": "∞" if usage.quota.daily is None else usage.quota.daily,
            "month": usage.month,
            "monthly": "∞" if usage.quota.monthly is None else usage.quota.monthly,
        }
        held = usage.explain()
        return f"{text}. {held}" if held else text

    # --- manager actions -----------------------------------------------
    @admin.action(
        description=_("Set sending quotas of selected users"),
        permissions=["suspend_sending"],
    )
    def set_sending_quota(self, request, queryset):
        form = SendingQuotaForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            daily = form.cleaned_data["daily_quota"]
            monthly = form.cleaned_data["monthly_quota"]
            changed, refused = users_set_quota(
                users=queryset, daily=daily, monthly=monthly, actor=request.user
            )
            for user in changed:
                self.log_change(
                    request,
                    user,
                    [{"changed": {"fields": ["daily_quota", "monthly_quota"]}}],
                )
            self._report(
                request,
                ngettext(
                    "Sending quota set for %(count)d user.",
                    "Sending quota set for %(count)d users.",
                    len(changed),
                )
                % {"count": len(changed)},
                refused,
                _(
                    "Left unchanged: %(users)s. Nobody can set the quota of "
                    "themselves, a superuser or a manager."
                ),
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Set sending quotas"),
            "opts": self.opts,
            "users": queryset,
            "form": form,
            "defaults": quota_of(User()),
            "action": "set_sending_quota",
            "list_id": "quota-users",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/core/user/sending_quota.html", context)

    def has_suspend_sending_permission(self, request):
        return request.user.has_perm("core.suspend_sending")

    @admin.action(
        description=_("Suspend sending of selected users"),
        permissions=["suspend_sending"],
    )
    def suspend_sending(self, request, queryset):
        form = SuspendSendingForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            reason = form.cleaned_data["reason"]
            changed, refused = users_set_sending(
                users=queryset, suspended=True, actor=request.user, reason=reason
            )
            for user in changed:
                self.log_change(
                    request,
                    user,
                    _("Sending suspended: %(reason)s") % {"reason": reason},
                )
            self._report_sending(request, changed, refused, suspended=True)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Suspend sending"),
            "opts": self.opts,
            "users": queryset,
            "form": form,
            "action": "suspend_sending",
            "list_id": "suspend-users",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/core/user/suspend_sending.html", context
        )

    @admin.action(
        description=_("Resume sending of selected users"),
        permissions=["suspend_sending"],
    )
    def resume_sending(self, request, queryset):
        changed, refused = users_set_sending(
            users=queryset, suspended=False, actor=request.user
        )
        for user in changed:
            self.log_change(request, user, _("Sending resumed."))
        self._report_sending(request, changed, refused, suspended=False)

    def _report_sending(self, request, changed, refused, *, suspended):
        if suspended:
            text = ngettext(
                "Sending suspended for %(count)d user.",
                "Sending suspended for %(count)d users.",
                len(changed),
            )
        else:
            text = ngettext(
                "Sending resumed for %(count)d user.",
                "Sending resumed for %(count)d users.",
                len(changed),
            )
        self._report(
            request,
            text % {"count": len(changed)},
            refused,
            _(
                "Left unchanged: %(users)s. Nobody can suspend themselves, "
                "a superuser or a manager."
            ),
        )

    def _report(self, request, done: str, refused, refused_text) -> None:
        """What a manager's action changed, and whom it left alone."""
        self.message_user(request, done, messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                refused_text % {"users": ", ".join(user.email for user in refused)},
                messages.WARNING,
            )

    def has_set_user_active_status_permission(self, request):
        return request.user.has_perm("core.set_user_active_status")

    @admin.action(
        description=_("Block selected users"), permissions=["set_user_active_status"]
    )
    def block_users(self, request, queryset):
        self._set_active(request, queryset, active=False)

    @admin.action(
        description=_("Unblock selected users"), permissions=["set_user_active_status"]
    )
    def unblock_users(self, request, queryset):
        self._set_active(request, queryset, active=True)

    def _set_active(self, request, queryset, *, active):
        changed, refused = users_set_active(
            users=queryset, active=active, actor=request.user
        )
        for user in changed:
            self.log_change(request, user, [{"changed": {"fields": ["is_active"]}}])
        if active:
            text = ngettext(
                "%(count)d user unblocked.", "%(count)d users unblocked.", len(changed)
            )
        else:
            text = ngettext(
                "%(count)d user blocked.", "%(count)d users blocked.", len(changed)
            )
        self._report(
            request,
            text % {"count": len(changed)},
            refused,
            _(
                "Left unchanged: %(users)s. Nobody can block themselves, "
                "a superuser or a manager."
            ),
        )
