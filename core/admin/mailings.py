from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core import tasks
from core.models import Attempt, Client, Mailing, MailingRun, Message
from core.services import dispatch
from core.services import mailings as mailing_services
from core.services.messages import message_template_errors

from .base import OwnedAdmin, perm_name


class MessageForm(forms.ModelForm):
    class Meta:
        model = Message
        fields = ["subject", "body", "html_body"]
        widgets = {
            "subject": forms.TextInput(attrs={"size": 80}),
            "body": forms.Textarea(attrs={"rows": 14}),
            "html_body": forms.Textarea(attrs={"rows": 10}),
        }

    def clean(self):
        cleaned = super().clean()
        errors = message_template_errors(
            subject=cleaned.get("subject", ""),
            body=cleaned.get("body", ""),
            html_body=cleaned.get("html_body", ""),
        )
        for field, error in errors.items():
            self.add_error(field, error)
        return cleaned


@admin.register(Message)
class MessageAdmin(OwnedAdmin):
    form = MessageForm
    list_display = ("subject", "created_at", "updated_at")
    search_fields = ("subject", "body")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("subject", "body")}),
        (_("HTML"), {"fields": ("html_body",), "classes": ("collapse",)}),
        (_("History"), {"fields": ("created_at", "updated_at")}),
    )

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="{}_{}_preview".format(*info),
            ),
            path(
                "<path:object_id>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="{}_{}_send_test".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "extra_object_tools": [
                {
                    "url": reverse("admin:core_message_preview", args=[object_id]),
                    "label": _("Preview"),
                }
            ],
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def preview_view(self, request, object_id):
        message = get_object_or_404(self.get_queryset(request), pk=object_id)
        preview = mailing_services.message_preview(message=message)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": message,
            "title": _("Preview: %(subject)s") % {"subject": message.subject},
            "preview": preview,
            "can_send_test": request.user.has_perm(
                perm_name(Message, "change"), message
            )
            or request.user.is_superuser,
        }
        return TemplateResponse(request, "admin/core/message/preview.html", context)

    def send_test_view(self, request, object_id):
        message = get_object_or_404(self.get_queryset(request), pk=object_id)
        preview_url = reverse("admin:core_message_preview", args=[message.pk])
        if request.method != "POST":
            return admin.options.HttpResponseRedirect(preview_url)
        if not (
            request.user.is_superuser or self.has_change_permission(request, message)
        ):
            raise admin.options.PermissionDenied
        ok, detail = mailing_services.message_send_test(
            message=message, to=request.user.email
        )
        if ok:
            self.message_user(
                request,
                _("A test e-mail was sent to %(email)s.")
                % {"email": request.user.email},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                _("The test e-mail could not be sent: %(error)s") % {"error": detail},
                messages.ERROR,
            )
        return admin.options.HttpResponseRedirect(preview_url)


class MailingForm(forms.ModelForm):
    class Meta:
        model = Mailing
        fields = ["title", "message", "clients", "start_at", "end_at", "periodicity"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        owner_id = self.instance.owner_id or self.request_user.pk
        # Only the owner's rows are valid choices: a forged id of another
        # user's message or recipient fails validation like a missing one.
        if "message" in self.fields:
            self.fields["message"].queryset = Message.objects.filter(owner_id=owner_id)
        if "clients" in self.fields:
            self.fields["clients"].queryset = Client.objects.filter(owner_id=owner_id)

    def clean(self):
        cleaned = super().clean()
        start_at, end_at = cleaned.get("start_at"), cleaned.get("end_at")
        if start_at and end_at and end_at < start_at:
            self.add_error("end_at", _("The end must not be before the start."))
        return cleaned


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Mailing.Status.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(status_value=self.value())
        return queryset


@admin.register(Mailing)
class MailingAdmin(OwnedAdmin):
    form = MailingForm
    list_display = (
        "title",
        "status_badge",
        "periodicity",
        "start_at",
        "next_run_at",
        "recipients",
        "reports",
    )
    list_filter = (StatusFilter, "periodicity", "is_enabled")
    search_fields = ("title", "message__subject")
    autocomplete_fields = ("message", "clients")
    readonly_fields = ("status_badge", "next_run_at", "last_run_at", "is_enabled")
    actions = ("send_now", "disable_mailings", "enable_mailings")
    fieldsets = (
        (None, {"fields": ("title", "message")}),
        (_("Recipients"), {"fields": ("clients",)}),
        (_("Schedule"), {"fields": ("start_at", "end_at", "periodicity")}),
        (
            _("State"),
            {"fields": ("status_badge", "is_enabled", "next_run_at", "last_run_at")},
        ),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .with_status()
            .select_related("message", "owner")
            .annotate(recipient_count=Count("clients", distinct=True))
        )

    @admin.display(description=_("status"), ordering="status_value")
    def status_badge(self, obj):
        colours = {
            Mailing.Status.CREATED: "secondary",
            Mailing.Status.RUNNING: "primary",
            Mailing.Status.COMPLETED: "success",
            Mailing.Status.DISABLED: "danger",
        }
        return format_html(
            '<span class="badge bg-{}">{}</span>',
            colours[obj.status],
            obj.status.label,
        )

    @admin.display(description=_("recipients"), ordering="recipient_count")
    def recipients(self, obj):
        return getattr(obj, "recipient_count", None)

    @admin.display(description=_("reports"))
    def reports(self, obj):
        url = reverse("admin:core_mailingrun_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>',
            url,
            urlencode({"mailing__id__exact": obj.pk}),
            _("runs"),
        )

    def save_model(self, request, obj, form, change):
        schedule_changed = not change or bool(
            {"start_at", "end_at", "periodicity"} & set(form.changed_data)
        )
        if schedule_changed:
            mailing_services.mailing_reschedule(mailing=obj)
        super().save_model(request, obj, form, change)

    # --- owner actions -------------------------------------------------
    @admin.action(description=_("Send now"))
    def send_now(self, request, queryset):
        allowed = [m for m in queryset if self.has_change_permission(request, m)]
        refused = [m for m in queryset if m not in allowed or not m.is_enabled]
        queued = [m for m in allowed if m.is_enabled]
        for mailing in queued:
            tasks.queue("core.tasks.send_now", mailing.pk)
            self.log_change(request, mailing, _("Queued to send now."))
        if queued:
            self.message_user(
                request,
                ngettext(
                    "%(count)d mailing is queued and goes out in a moment.",
                    "%(count)d mailings are queued and go out in a moment.",
                    len(queued),
                )
                % {"count": len(queued)},
                messages.SUCCESS,
            )
        if refused:
            self.message_user(
                request,
                _("Not sent (disabled, or not yours): %(titles)s")
                % {"titles": ", ".join(m.title for m in refused)},
                messages.WARNING,
            )

    # --- manager actions -----------------------------------------------
    def has_set_schedule_active_status_permission(self, request):
        return request.user.has_perm("core.set_schedule_active_status")

    @admin.action(
        description=_("Disable selected mailings"),
        permissions=["set_schedule_active_status"],
    )
    def disable_mailings(self, request, queryset):
        self._switch(request, queryset, enabled=False)

    @admin.action(
        description=_("Enable selected mailings"),
        permissions=["set_schedule_active_status"],
    )
    def enable_mailings(self, request, queryset):
        self._switch(request, queryset, enabled=True)

    def _switch(self, request, queryset, *, enabled):
        changed = mailing_services.mailings_set_enabled(
            mailings=queryset, enabled=enabled, actor=request.user
        )
        for mailing in changed:
            self.log_change(
                request,
                mailing,
                [{"changed": {"fields": ["is_enabled"]}}],
            )
        if enabled:
            text = ngettext(
                "%(count)d mailing enabled.",
                "%(count)d mailings enabled.",
                len(changed),
            )
        else:
            text = ngettext(
                "%(count)d mailing disabled.",
                "%(count)d mailings disabled.",
                len(changed),
            )
        self.message_user(request, text % {"count": len(changed)}, messages.SUCCESS)


class ReportAdmin(admin.ModelAdmin):
    """Runs and attempts: reports, visible to whoever may view the mailing."""

    show_full_result_count = False
    list_per_page = 100

    def sees_all(self, request):
        return request.user.is_superuser or request.user.has_perm(
            perm_name(self.model, "view")
        )

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.sees_all(request):
            return queryset
        return queryset.filter(owner=request.user)

    def has_view_permission(self, request, obj=None):
        if self.sees_all(request):
            return True
        if obj is None:
            return request.user.has_perm("core.add_mailing")
        mailing = obj.mailing if isinstance(obj, MailingRun) else obj.run.mailing
        return request.user.has_perm("core.view_mailing", mailing)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(MailingRun)
class MailingRunAdmin(ReportAdmin):
    list_display = (
        "mailing",
        "scheduled_for",
        "status",
        "total_count",
        "sent_count",
        "failed_count",
        "skipped_count",
        "unknown_count",
        "started_at",
        "finished_at",
        "attempts_link",
    )
    list_filter = ("status", ("mailing", admin.RelatedOnlyFieldListFilter))
    actions = ("retry_failed",)
    list_select_related = ("mailing",)
    search_fields = ("mailing__title",)
    date_hierarchy = "scheduled_for"

    def get_actions(self, request):
        # Reports are read-only, but the owner may queue a retry.
        actions = super().get_actions(request)
        if self.sees_all(request) and not request.user.is_superuser:
            actions.pop("retry_failed", None)
        return actions

    @admin.action(description=_("Retry failed recipients"))
    def retry_failed(self, request, queryset):
        total = 0
        for run in queryset.select_related("mailing"):
            may_change = request.user.is_superuser or request.user.has_perm(
                "core.change_mailing", run.mailing
            )
            if not may_change or not run.mailing.is_enabled:
                continue
            count = dispatch.run_retry_failed(run=run)
            if count:
                total += count
                self.log_change(
                    request,
                    run,
                    _("%(count)d failed recipients queued again.") % {"count": count},
                )
        if total:
            tasks.queue("core.tasks.deliver")
        self.message_user(
            request,
            ngettext(
                "%(count)d failed recipient is queued for another try.",
                "%(count)d failed recipients are queued for another try.",
                total,
            )
            % {"count": total},
            messages.SUCCESS if total else messages.WARNING,
        )

    @admin.display(description=_("attempts"))
    def attempts_link(self, obj):
        url = reverse("admin:core_attempt_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>',
            url,
            urlencode({"run__id__exact": obj.pk}),
            _("attempts"),
        )


@admin.register(Attempt)
class AttemptAdmin(ReportAdmin):
    list_display = ("email", "status", "tries", "short_response", "attempted_at", "run")
    list_filter = ("status",)
    list_select_related = ("run__mailing",)
    search_fields = ("email",)
    readonly_fields = (
        "run",
        "client",
        "email",
        "status",
        "tries",
        "server_response",
        "attempted_at",
        "next_try_at",
    )
    exclude = ("owner",)

    def lookup_allowed(self, lookup, value, request=None):
        # The run's report links here with ?run__id__exact=…; the queryset
        # is already limited to what the user may see.
        return lookup == "run__id__exact" or super().lookup_allowed(
            lookup, value, request
        )

    @admin.display(description=_("server response"))
    def short_response(self, obj):
        text = obj.server_response or ""
        return text if len(text) <= 120 else text[:117] + "…"
