"""What every owned model's admin shares: isolation and read-only oversight.

- A client sees and touches only their own rows; another user's row answers
  exactly as a missing one, because it is not in the queryset.
- A manager (global `view_*` permission) sees every row, read-only.
- Row-level rights come from django-guardian object permissions.
- Guardian's object-permission pages are for superusers only.
"""

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
