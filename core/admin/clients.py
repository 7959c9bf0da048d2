"""Recipients: the list, and its CSV import and export.

The Import and Export buttons and pages come from django-import-export; the
work is done by `core.services.imports`, which imports into the requesting
user's own list only and streams exports row by row.
"""

import logging
import os

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV
from import_export.forms import ImportForm
from import_export.signals import post_export, post_import

from core.models import Client
from core.services.imports import (
    ClientImportError,
    ClientResource,
    clients_export_csv,
    clients_import,
    clients_import_check_size,
    clients_import_max_bytes,
)

from .base import OwnedAdmin

logger = logging.getLogger(__name__)

# How long an uploaded file waits for its "Confirm import".
CONFIRM_MAX_AGE = 60 * 60


class ClientForm(forms.ModelForm):
    class Meta:
        model = Client
        fields = ["email", "full_name", "comment", "unsubscribed_at"]

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


class ClientImportForm(ImportForm):
    """The upload step: one file; its delimiter and encoding are detected."""

    def __init__(self, formats, resources, **kwargs):
        super().__init__(formats, resources, **kwargs)
        self.fields["format"].required = False
        self.fields["format"].widget = forms.HiddenInput()
        self.fields["import_file"].label = _("CSV file")
        self.fields["import_file"].widget.attrs["accept"] = (
            ".csv,.txt,.tsv,text/csv,text/plain,text/tab-separated-values"
        )

    def clean_import_file(self):
        upload = self.cleaned_data["import_file"]
        try:
            clients_import_check_size(size=upload.size)
        except ClientImportError as error:
            raise forms.ValidationError(error.listing()) from error
        return upload


class ClientConfirmImportForm(forms.Form):
    """The confirm step. The stored file's name is signed for the uploader,
    so nobody can confirm, and so read, a file someone else uploaded."""

    import_file_name = forms.CharField(widget=forms.HiddenInput())
    original_file_name = forms.CharField(widget=forms.HiddenInput())

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    @staticmethod
    def sign(*, user, name: str) -> str:
        return signing.dumps(os.path.basename(name), salt=f"client-import:{user.pk}")

    def clean_import_file_name(self):
        try:
            name = signing.loads(
                self.cleaned_data["import_file_name"],
                salt=f"client-import:{self.user.pk}",
                max_age=CONFIRM_MAX_AGE,
            )
        except signing.BadSignature as error:
            raise forms.ValidationError(
                _("This upload has expired. Please upload the file again.")
            ) from error
        return os.path.basename(name)


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
class ClientAdmin(ImportExportMixin, OwnedAdmin):
    form = ClientForm
    list_display = ("email", "full_name", "comment", "unsubscribed_at", "created_at")
    list_filter = (SubscriptionFilter,)
    search_fields = ("email", "full_name", "comment")
    readonly_fields = ("created_at", "updated_at")
    actions = ("export_selected",)
    fieldsets = (
        (_("Recipient"), {"fields": ("email", "full_name", "comment")}),
        (
            _("Subscription"),
            {"fields": ("unsubscribed_at", "created_at", "updated_at")},
        ),
    )

    # django-import-export
    resource_classes = [ClientResource]
    formats = [CSV]
    import_form_class = ClientImportForm
    import_template_name = "admin/core/client/import.html"

    # --- who may import and export ---------------------------------------
    def has_import_permission(self, request):
        # Managers see every list but add to none; a client fills their own.
        return request.user.is_superuser or self.works_here(request)

    def has_export_permission(self, request):
        # What one may see, one may download: get_queryset limits the rows.
        return self.has_view_permission(request)

    # --- import: upload and check, then confirm ---------------------------
    def import_action(self, request, **kwargs):
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = self.create_import_form(request)
        context = {}
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["import_file"]
            data = upload.read()
            try:
                context["result"] = clients_import(
                    owner=request.user, data=data, dry_run=True
                )
            except ClientImportError as error:
                context["import_errors"] = error.listing()
            else:
                context["confirm_form"] = ClientConfirmImportForm(
                    user=request.user,
                    initial={
                        "import_file_name": ClientConfirmImportForm.sign(
                            user=request.user, name=self._stash(data)
                        ),
                        "original_file_name": upload.name,
                    },
                )
        return self._import_page(request, form=form, **context)

    @method_decorator(require_POST)
    def process_import(self, request, **kwargs):
        if not self.has_import_permission(request):
            raise PermissionDenied
        confirm_form = ClientConfirmImportForm(request.POST, user=request.user)
        if not confirm_form.is_valid():
            return self._import_page(
                request,
                import_errors=[
                    e for errors in confirm_form.errors.values() for e in errors
                ],
            )
        storage = self._tmp_storage(name=confirm_form.cleaned_data["import_file_name"])
        try:
            data = storage.read()
            storage.remove()
        except OSError:
            data = None
        if data is None:
            return self._import_page(
                request,
                import_errors=[
                    _("This upload has expired. Please upload the file again.")
                ],
            )
        try:
            result = clients_import(owner=request.user, data=data)
        except ClientImportError as error:
            return self._import_page(request, import_errors=error.listing())
        logger.info(
            "User %s imported recipients: %s created, %s updated, %s merged",
            request.user.pk,
            result.created,
            result.updated,
            result.merged,
        )
        self.message_user(
            request,
            _(
                "Import finished. Recipients created: %(created)d, updated: "
                "%(updated)d, unchanged: %(unchanged)d; duplicate rows merged: "
                "%(merged)d."
            )
            % {
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "merged": result.merged,
            },
            messages.SUCCESS,
        )
        post_import.send(sender=None, model=self.model)
        return HttpResponseRedirect(
            reverse("admin:core_client_changelist", current_app=self.admin_site.name)
        )

    def _tmp_storage(self, name=None):
        # Bytes in, bytes out: the service detects the encoding itself.
        return self.get_tmp_storage_class()(
            name=name,
            encoding=None,
            read_mode="rb",
            **self.get_tmp_storage_class_kwargs(),
        )

    def _stash(self, data: bytes) -> str:
        storage = self._tmp_storage()
        storage.save(data)
        return storage.name

    def _import_page(self, request, *, form=None, **context):
        if form is None:
            form = self.get_import_form_class(request)(
                self.get_import_formats(), self.get_import_resource_classes(request)
            )
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            self.import_template_name,
            {
                **self.admin_site.each_context(request),
                "title": _("Import recipients"),
                "opts": self.opts,
                "form": form,
                "media": self.media,
                "max_bytes": clients_import_max_bytes(),
                **context,
            },
        )

    # --- export: streamed, never built in memory --------------------------
    def export_action(self, request):
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            # The list as shown: its filters and search apply.
            queryset = self.get_export_queryset(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(
                reverse(
                    "admin:core_client_changelist", current_app=self.admin_site.name
                )
            )
        return self._export_response(request, queryset)

    @admin.action(
        description=_("Export selected recipients to CSV"), permissions=["export"]
    )
    def export_selected(self, request, queryset):
        return self._export_response(request, queryset)

    def _export_response(self, request, queryset):
        response = StreamingHttpResponse(
            clients_export_csv(
                queryset=queryset,
                with_owner=request.user.is_superuser or self.sees_all(request),
            ),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="recipients-{timezone.localdate():%Y-%m-%d}.csv"'
        )
        post_export.send(sender=None, model=self.model)
        return response
