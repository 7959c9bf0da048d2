"""What every owned model's admin shares: isolation and read-only oversight.

- A client sees and touches only their own rows; another user's row answers
  exactly as a missing one, because it is not in the queryset.
- A manager (global `view_*` permission) sees every row, read-only.
- Row-level rights come from django-guardian object permissions.
- Guardian's object-permission pages are for superusers only.
"""

from django import forms
from django.contrib import admin, messages
from guardian.admin import ReinforcedGuardedModelAdminMixin

from core.models.base import sees_all
from core.models.grants import owner_field_name, perm_name


class OwnedAdmin(ReinforcedGuardedModelAdminMixin, admin.ModelAdmin):
    change_form_template = "admin/core/owned_change_form.html"
    # Counting every row of a million-row table on each page costs more than
    # it tells; the filtered count is still shown.
    show_full_result_count = False
    list_per_page = 50

    # --- who sees what -------------------------------------------------
    @property
    def owner_field(self):
        return owner_field_name(self.model)

    def sees_all(self, request):
        return sees_all(request.user, self.model)

    def works_here(self, request):
        """Clients may add rows here, so they may use the page for their own."""
        return request.user.has_perm(perm_name(self.model, "add"))

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user)

    def has_view_permission(self, request, obj=None):
        if self.sees_all(request):
            return True
        if obj is None:
            return self.works_here(request)
        return request.user.has_perm(perm_name(self.model, "view"), obj)

    def has_change_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        if obj is None:
            return self.works_here(request)
        return request.user.has_perm(perm_name(self.model, "change"), obj)

    def has_delete_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        if obj is None:
            return self.works_here(request)
        return request.user.has_perm(perm_name(self.model, "delete"), obj)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    # --- writing -------------------------------------------------------
    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.request_user = request.user
        return form

    def save_model(self, request, obj, form, change):
        if not change:
            setattr(obj, self.owner_field, request.user)
        super().save_model(request, obj, form, change)

    def get_list_display(self, request):
        display = list(super().get_list_display(request))
        if self.sees_all(request):
            display.append(self.owner_field)
        return display

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if self.sees_all(request):
            filters.append((self.owner_field, admin.RelatedOnlyFieldListFilter))
        return filters

    def get_search_fields(self, request):
        fields = list(super().get_search_fields(request))
        if self.sees_all(request):
            fields.append(f"{self.owner_field}__email")
        return fields


class SendingNoticeMixin:
    """Owners whose sending a manager suspended read why, where they send."""

    def _sending_notice(self, request):
        user = request.user
        if request.method == "GET" and user.sending_suspended_at is not None:
            self.message_user(request, user.sending_refusal(), messages.ERROR)

    def changelist_view(self, request, extra_context=None):
        self._sending_notice(request)
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._sending_notice(request)
        return super().change_view(request, object_id, form_url, extra_context)


class OwnedForm(forms.ModelForm):
    """The form of an owned row (OwnedAdmin sets `request_user`).

    A new row is the requesting user's before the model's checks run: its
    rules read the owner's fields, tags and limits (the admin sets the owner
    again when saving). `owner_has` asks whether another of the owner's rows
    matches, as the unique constraints that name the owner do: the form
    cannot check those itself, the owner not being one of its fields.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.owner_id is None:
            self.instance.owner_id = self.request_user.pk

    def owner_has(self, rows=None, **lookup) -> bool:
        """Whether another of the owner's rows (of `rows`, a queryset, or
        all) matches `lookup`."""
        if rows is None:
            rows = type(self.instance)._default_manager.all()
        rows = rows.filter(owner_id=self.instance.owner_id, **lookup)
        return rows.exclude(pk=self.instance.pk).exists()


class RecordAdmin(admin.ModelAdmin):
    """Records owners read (their own) and managers read (all): suppressions,
    consents. A user is an owner here when they hold `owners_perm`."""

    owners_perm = ""
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user)

    def get_list_display(self, request):
        display = list(super().get_list_display(request))
        if sees_all(request.user, self.model):
            display.append("owner")
        return display

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        user = request.user
        if sees_all(user, self.model):
            return True
        return user.has_perm(self.owners_perm) and (
            obj is None or obj.owner_id == user.pk
        )
