"""Data requests a recipient makes of the owner: everything held of them,
and their erasure (core/services/privacy.py), as recipient list actions
logged in each recipient's history."""

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.services import privacy


class DataRequestMixin:
    """For the recipients' OwnedAdmin: only the user's own rows are acted on."""

    # --- data requests ---------------------------------------------------
    def has_data_request_permission(self, request):
        return self.works_here(request)

    @admin.action(
        description=_("Export all data of selected recipients (data request)"),
        permissions=["data_request"],
    )
    def export_data(self, request, queryset):
        """What the service holds of each selected recipient the user owns,
        as one JSON file; each export is in the recipient's history."""
        mine = list(queryset.filter(owner=request.user))
        data = [privacy.client_data(client=client) for client in mine]
        for client in mine:
            self.log_change(request, client, _("Data exported (data request)."))
        response = JsonResponse(
            data, safe=False, json_dumps_params={"ensure_ascii": False, "indent": 2}
        )
        name = f"recipients-data-{timezone.localdate():%Y-%m-%d}.json"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @admin.action(
        description=_("Erase selected recipients (data request)"),
        permissions=["data_request"],
    )
    def erase_selected(self, request, queryset):
        mine = queryset.filter(owner=request.user)
        if "apply" in request.POST:
            # The history keeps that it happened, not whose address it was.
            erased_ids = list(mine.values_list("pk", flat=True))
            erased = privacy.clients_erase(clients=mine)
            ctype = ContentType.objects.get_for_model(self.model)
            LogEntry.objects.bulk_create(
                LogEntry(
                    user_id=request.user.pk,
                    content_type=ctype,
                    object_id=str(pk),
                    object_repr=f"#{pk}",
                    action_flag=DELETION,
                    change_message=str(_("Erased at the recipient's request.")),
                )
                for pk in erased_ids
            )
            self.message_user(
                request,
                ngettext(
                    "%(count)d recipient erased; the address stays suppressed.",
                    "%(count)d recipients erased; their addresses stay suppressed.",
                    erased,
                )
                % {"count": erased},
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Erase recipients"),
            "opts": self.opts,
            "recipients": list(mine),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/core/client/erase.html", context)
