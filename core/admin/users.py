from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.models import User
from core.services.accounts import users_set_active


class UserCreationAdminForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("email", "full_name")


class UserChangeAdminForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    list_display = (
        "email",
        "full_name",
        "is_active",
        "email_verified_at",
        "is_staff",
        "date_joined",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")
    search_fields = ("email", "full_name")
    ordering = ("email",)
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Personal info"), {"fields": ("full_name",)}),
        (
            _("Access"),
            {
                "fields": (
                    "is_active",
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
    actions = ("block_users", "unblock_users")
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
            (_("Access"), {"fields": ("is_active", "email_verified_at", "groups")}),
            (_("Important dates"), {"fields": ("last_login", "date_joined")}),
        )

    # --- manager actions -----------------------------------------------
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
        self.message_user(request, text % {"count": len(changed)}, messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                _(
                    "Left unchanged: %(users)s. Nobody can block themselves, "
                    "a superuser or a manager."
                )
                % {"users": ", ".join(user.email for user in refused)},
                messages.WARNING,
            )
