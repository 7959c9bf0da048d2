"""The recipients' CSV import and export pages, on django-import-export.

The upload is checked by a dry run of `ClientResource` and imported when the
user confirms it (`ImportMixin.import_action`, `process_import`). What is
ours: every imported row goes to the requesting user's list; the confirm
step is signed for the uploader; the page shows our counts and row-numbered
problems; and the export is streamed row by row.
"""

import logging
import os
import re
from contextlib import suppress

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportMixin
from import_export.forms import ConfirmImportForm, ImportForm
from import_export.signals import post_export

from core.clientip import client_ip
from core.models import Field
from core.models.audience import FIELD_KEY_PATTERN
from core.services.recipients import (
    CONSENT_TEXT,
    ClientImportError,
    ClientResource,
    ImportConsent,
    RecipientCSV,
    clients_export_csv,
    clients_import_check_size,
    clients_import_max_bytes,
    suppressed_note,
)
from core.services.recipients.uploads import (
    CONFIRM_MAX_AGE,
    UploadStorage,
    upload_is_users,
    upload_keep,
)

logger = logging.getLogger(__name__)

EXPIRED = _("This upload has expired. Please upload the file again.")
# Unknown columns offered as new custom fields, at most.
MAX_NEW_FIELDS = 50


def _suggested_key(column: str) -> str:
    """A field key from a column name written in Latin letters ("" for one
    that is not: the user types it)."""
    key = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")
    return key[:50] if re.fullmatch(FIELD_KEY_PATTERN, key) else ""


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

    def clean_format(self):
        # One format, CSV, whatever the file's name says.
        return self.cleaned_data.get("format") or "0"

    def clean_import_file(self):
        upload = self.cleaned_data["import_file"]
        try:
            clients_import_check_size(size=upload.size)
        except ClientImportError as error:
            raise forms.ValidationError(error.listing()) from error
        return upload


class ClientConfirmImportForm(ConfirmImportForm):
    """The confirm step. The stored file's name is signed for the uploader,
    so nobody can confirm, and so read, a file someone else uploaded.

    The owner confirms the people in the file consented (recorded for each
    recipient added), and may create custom fields for the file's unknown
    columns (posted as new_field_<n>, new_key_<n>, new_kind_<n>).
    """

    consent = forms.BooleanField(label=CONSENT_TEXT, required=True)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self):
        cleaned = super().clean()
        new_fields = {}
        kinds = set(Field.Kind.values) - {Field.Kind.CHOICE}
        for index in range(MAX_NEW_FIELDS):
            column = (self.data.get(f"new_field_{index}") or "").strip()
            if not column:
                continue
            key = (self.data.get(f"new_key_{index}") or "").strip()[:50]
            kind = self.data.get(f"new_kind_{index}")
            new_fields[column[:100]] = (key, kind if kind in kinds else "text")
        cleaned["new_fields"] = new_fields
        return cleaned

    # The page posts these back as hidden fields: whatever they say, the
    # one format and the one resource (the library indexes with them).
    def clean_format(self):
        return "0"

    def clean_resource(self):
        return ""

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
            raise forms.ValidationError(EXPIRED) from error
        if not upload_is_users(name=name, user_id=self.user.pk):
            raise forms.ValidationError(EXPIRED)
        return os.path.basename(name)


class RecipientCSVMixin(ImportExportMixin):
    """Import into the user's own list; export what they may see, streamed.

    For an OwnedAdmin: who sees what comes from its `works_here`,
    `sees_all` and `get_queryset`.
    """

    resource_classes = [ClientResource]
    formats = [RecipientCSV]
    import_form_class = ClientImportForm
    confirm_form_class = ClientConfirmImportForm
    import_template_name = "admin/core/client/import.html"
    tmp_storage_class = UploadStorage
    # One history entry per recipient would bury every other action under a
    # 100,000-row import; the import is logged once instead.
    skip_admin_log = True

    # --- who may import and export ---------------------------------------
    def has_import_permission(self, request):
        # Managers see every list but add to none; a client fills their own.
        return request.user.is_superuser or self.works_here(request)

    def has_export_permission(self, request):
        # What one may see, one may download: get_queryset limits the rows.
        return self.has_view_permission(request)

    # --- import: the library's check and confirm, into the user's list -----
    def get_import_resource_kwargs(self, request, **kwargs):
        # Whatever was posted, the rows go to the requesting user's list.
        resource_kwargs = {"owner": request.user}
        form = kwargs.get("form")
        if isinstance(form, ClientConfirmImportForm) and form.is_valid():
            resource_kwargs["consent"] = ImportConsent(
                text=str(CONSENT_TEXT),
                ip=client_ip(request) or None,
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
            resource_kwargs["new_fields"] = form.cleaned_data["new_fields"]
        return resource_kwargs

    def get_import_data_kwargs(self, **kwargs):
        kwargs = super().get_import_data_kwargs(**kwargs)
        # Nothing is imported while any row is invalid.
        kwargs["rollback_on_validation_errors"] = True
        return kwargs

    def get_confirm_form_kwargs(self, request, import_form=None):
        kwargs = super().get_confirm_form_kwargs(request, import_form)
        return {**kwargs, "user": request.user}

    def get_confirm_form_initial(self, request, import_form):
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            kept = upload_keep(
                name=initial["import_file_name"], user_id=request.user.pk
            )
            initial["import_file_name"] = ClientConfirmImportForm.sign(
                user=request.user, name=kept
            )
        return initial

    def write_to_tmp_storage(self, import_file, input_format):
        # The library joins the upload's chunks with +=, a copy of all read
        # so far for each one: 1.3 s for 20 MB. Hand it the file as one.
        class Whole:
            def chunks(self):
                yield b"".join(import_file.chunks())

        return super().write_to_tmp_storage(Whole(), input_format)

    def add_data_read_fail_error_to_form(self, form, e):
        if isinstance(e, ClientImportError):
            form.add_error(None, e.listing())
        else:
            super().add_data_read_fail_error_to_form(form, e)

    def import_action(self, request, **kwargs):
        response = super().import_action(request, **kwargs)
        context = getattr(response, "context_data", None) or {}
        if context.get("confirm_form") is None and "form" in context:
            self._discard_upload(context["form"])
        return self._import_page(request, response)

    def _discard_upload(self, form):
        """The check failed: nothing will confirm this upload, so drop its copy."""
        upload = (getattr(form, "cleaned_data", None) or {}).get("import_file")
        if name := getattr(upload, "tmp_storage_name", None):
            storage = self.get_tmp_storage_class()(
                name=name, **self.get_tmp_storage_class_kwargs()
            )
            with suppress(OSError):
                storage.remove()

    def process_import(self, request, **kwargs):
        try:
            response = super().process_import(request, **kwargs)
        except FileNotFoundError:
            # Imported already, or cleaned away from the temporary folder.
            return self._import_page(request, import_errors=[EXPIRED])
        return self._import_page(request, response)

    def process_result(self, result, request):
        if error := result.error():
            # The list changed between the check and the confirmation.
            return self._import_page(request, import_errors=error.listing())
        return super().process_result(result, request)

    def add_success_message(self, result, request):
        summary = result.summary(dry_run=False)
        logger.info(
            "User %s imported recipients: %s created, %s updated, %s merged",
            request.user.pk,
            summary.created,
            summary.updated,
            summary.merged,
        )
        self.message_user(
            request,
            _(
                "Import finished. Recipients created: %(created)d, updated: "
                "%(updated)d, unchanged: %(unchanged)d; duplicate rows merged: "
                "%(merged)d."
            )
            % {
                "created": summary.created,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "merged": summary.merged,
            },
            messages.SUCCESS,
        )
        if summary.suppressed:
            self.message_user(request, suppressed_note(summary), messages.WARNING)

    def _import_page(self, request, response=None, *, import_errors=()):
        """The library's import page, with our title, counts and problems."""
        if response is None:
            request.current_app = self.admin_site.name
            response = TemplateResponse(
                request,
                [self.import_template_name],
                {**self.admin_site.each_context(request), "opts": self.opts},
            )
        if not isinstance(response, TemplateResponse):
            return response
        context = response.context_data
        errors = [*context.get("import_errors", ()), *import_errors]
        form = context.get("form")
        if form is None:
            context["form"] = form = self.get_import_form_class(request)(
                self.get_import_formats(), self.get_import_resource_classes(request)
            )
        if form.is_bound:
            errors += form.non_field_errors()
        confirm_form = context.get("confirm_form")
        if confirm_form is not None and confirm_form.is_bound:
            # A confirmation that failed: say why and offer the upload again.
            errors += [e for field in confirm_form.errors.values() for e in field]
            context["confirm_form"] = None
        # The page shows the summary and the problems; the library's result,
        # every row of the file, is not kept for it.
        if (result := context.pop("result", None)) is not None:
            if error := result.error():
                errors += error.listing()
            else:
                context["summary"] = summary = result.summary(dry_run=True)
                context["new_columns"] = [
                    (index, column, _suggested_key(column))
                    for index, column in enumerate(
                        summary.unknown_columns[:MAX_NEW_FIELDS]
                    )
                ]
                context["field_kinds"] = [
                    kind for kind in Field.Kind.choices if kind[0] != Field.Kind.CHOICE
                ]
                context["key_pattern"] = FIELD_KEY_PATTERN
        context.update(
            title=_("Import recipients"),
            import_errors=errors,
            max_bytes=clients_import_max_bytes(),
        )
        return response

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
                with_owner=self.sees_all(request),
                owner=None if self.sees_all(request) else request.user,
            ),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="recipients-{timezone.localdate():%Y-%m-%d}.csv"'
        )
        post_export.send(sender=None, model=self.model)
        return response
