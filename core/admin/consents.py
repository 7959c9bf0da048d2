"""Consents: the proof of what each recipient agreed to, read-only.

Owners read their recipients' records; managers read everyone's; nobody
adds, changes or deletes one here (forms, imports and the preference
centre write them).
"""

from django.contrib import admin

from core.models import Client, Consent
from core.models.grants import perm_name

from .base import RecordAdmin


@admin.register(Consent)
class ConsentAdmin(RecordAdmin):
    # An owner of recipients reads their recipients' consents.
    owners_perm = perm_name(Client, "add")
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

    # A record: it stands as it was written.
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
