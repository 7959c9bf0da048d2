"""Consents: the proof of what each recipient agreed to, read-only.

Owners read their recipients' records; managers read everyone's; nobody
adds, changes or deletes one here (forms, imports and the preference
centre write them).
"""

from django.contrib import admin

from core.models import Client, Consent
from core.models.base import sees_all
from core.models.grants import perm_name


class ConsentReading:
    """Read-only: a consent stands as it was written."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Consent)
class ConsentAdmin(ConsentReading, admin.ModelAdmin):
    list_display = ("client", "kind", "action", "source", "at", "ip")
    list_filter = ("kind", "action", "source")
    search_fields = ("client__email",)
    list_select_related = ("client",)
    fields = (
        "client",
        "kind",
        "action",
        "text",
        "version",
        "at",
        "ip",
        "user_agent",
        "source",
    )
    readonly_fields = fields
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user)

    def get_list_display(self, request):
        display = list(super().get_list_display(request))
        if sees_all(request.user, Consent):
            display.append("owner")
        return display

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        user = request.user
        if sees_all(user, Consent):
            return True
        # An owner of recipients reads their recipients' consents.
        owns_lists = user.has_perm(perm_name(Client, "add"))
        return owns_lists and (obj is None or obj.owner_id == user.pk)
